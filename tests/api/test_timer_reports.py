"""What timer workflows tell the catalog, one at a time and many in one request, on both
databases: the record follows, the expiry emits ``TIMER_EXPIRED`` once, owners are named only
when they are to be told, and an unknown timer fails alone."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.api.conftest import SERVICE_TOKEN

SERVICE = {"Authorization": f"Bearer {SERVICE_TOKEN}"}


def timer_id(entity: str) -> str:
    return f"timer:service:{entity}:expires_at"


def make_services(catalog: TestClient, count: int) -> None:
    entities = [
        {
            "identifier": f"svc-{i}",
            "team": ["payments-team"],
            "properties": {"language": "go", "expires_at": "2031-01-01T00:00:00+00:00"},
        }
        for i in range(count)
    ]
    response = catalog.post("/v1/blueprints/service/entities/bulk", json={"entities": entities})
    assert response.status_code == 207, response.text


def report(catalog: TestClient, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = catalog.post("/v1/timers/reports", json={"reports": items}, headers=SERVICE)
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def expired_events(catalog: TestClient) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = catalog.get("/v1/events", params={"type": "TIMER_EXPIRED"}).json()["items"]
    return items


def test_many_reports_in_one_request_each_apply_in_order(catalog: TestClient) -> None:
    make_services(catalog, 3)
    reminder = {"at": "2030-12-31T00:00:00+00:00", "deadline": "2031-01-01T00:00:00+00:00"}
    results = report(
        catalog,
        [
            {
                "timer_id": timer_id("svc-0"),
                "report": {"state": "expired", "expired": True, "teardown": "pending"},
            },
            {"timer_id": timer_id("svc-1"), "report": {"reminder": reminder, "next_reminder": None}},
            {"timer_id": "timer:service:nobody:expires_at", "report": {"expired": True}},
            {"timer_id": timer_id("svc-0"), "report": {"teardown": "running", "on_expiry_run": "run_1"}},
        ],
    )

    assert [r["status"] for r in results] == [200, 200, 404, 200]
    assert "timer:service:nobody:expires_at" in results[2]["error"]
    assert results[0]["owners"] == []  # nobody is told of an expiry: no lookup
    assert [o["identifier"] for o in results[1]["owners"]] == ["bob"]  # the reminder goes to the team
    assert results[3]["timer"]["teardown"] == "running"

    timers = {t["entity"]: t for t in catalog.get("/v1/timers").json()["items"]}
    assert (timers["svc-0"]["state"], timers["svc-0"]["teardown"], timers["svc-0"]["on_expiry_run"]) == (
        "expired",
        "running",
        "run_1",
    )
    assert timers["svc-0"]["expired_at"] is not None
    assert timers["svc-1"]["reminders"][0]["log"].startswith("REMINDER: svc-1's expires_at expires at 2031")
    assert timers["svc-2"]["state"] == "active"
    assert [e["entity"] for e in expired_events(catalog)] == ["svc-0"]


def test_an_expiry_reported_twice_emits_one_event(catalog: TestClient) -> None:
    make_services(catalog, 1)
    expiry = {"timer_id": timer_id("svc-0"), "report": {"state": "expired", "expired": True}}
    report(catalog, [expiry, expiry])
    single = catalog.post(f"/v1/timers/{timer_id('svc-0')}/report", json=expiry["report"], headers=SERVICE)
    assert single.status_code == 200, single.text
    assert single.json()["owners"] == []
    assert len(expired_events(catalog)) == 1


def test_reports_are_for_the_service_token_and_well_formed(catalog: TestClient) -> None:
    make_services(catalog, 1)
    catalog.post("/v1/users", json={"identifier": "carol", "email": "carol@example.com", "role": "member"})
    carol = catalog.post("/v1/tokens", json={"user": "carol"}).json()["token"]
    body = {"reports": [{"timer_id": timer_id("svc-0"), "report": {"expired": True}}]}

    refused = catalog.post("/v1/timers/reports", json=body, headers={"Authorization": f"Bearer {carol}"})
    assert refused.status_code == 403
    for bad, field in (
        ({"reports": []}, "reports"),
        ({"reports": [{"report": {}}]}, "timer_id"),
    ):
        response = catalog.post("/v1/timers/reports", json=bad, headers=SERVICE)
        assert response.status_code == 422, response.text
        assert field in response.text
    assert catalog.get("/v1/timers").json()["items"][0]["state"] == "active"
    assert expired_events(catalog) == []
