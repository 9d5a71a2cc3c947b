"""The audit log through the API, on SQLite and PostgreSQL: every write type is recorded with its
actor and before/after, in the write's own transaction, and the log filters and paginates."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from api.app import ADMIN_USER, SERVICE_USER
from tests.api.conftest import ADMIN_TOKEN, SERVICE_TOKEN


def audit(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/v1/audit-log", params={"limit": 1000, **params})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def latest(client: TestClient, resource_type: str, identifier: str) -> dict[str, Any]:
    return audit(client, resource_type=resource_type, identifier=identifier)[0]


def test_every_write_type_is_audited_with_before_and_after(catalog: TestClient) -> None:
    url = "/v1/blueprints/service/entities"
    catalog.post(url, json={"identifier": "cart", "properties": {"language": "go", "tier": 2}})
    catalog.patch(f"{url}/cart", json={"properties": {"tier": 3}})
    entity = latest(catalog, "entity", "cart")
    assert (entity["operation"], entity["blueprint"], entity["actor"]) == ("UPDATE", "service", ADMIN_USER)
    assert entity["before"]["properties"] == {"language": "go", "tier": 2}
    assert entity["after"]["properties"] == {"language": "go", "tier": 3}

    bulk = catalog.post(f"{url}/bulk", json={"entities": [
        {"identifier": "a", "properties": {"language": "go"}},
        {"identifier": "b", "properties": {"language": "cobol"}},
    ]})  # fmt: skip
    assert [r["status"] for r in bulk.json()["results"]] == ["created", "failed"]
    assert latest(catalog, "entity", "a")["after"]["properties"] == {"language": "go"}
    assert audit(catalog, resource_type="entity", identifier="b") == []

    catalog.delete(f"{url}/cart")
    deleted = latest(catalog, "entity", "cart")
    assert (
        deleted["operation"] == "DELETE"
        and deleted["before"]["identifier"] == "cart"
        and deleted["after"] is None
    )

    catalog.patch("/v1/blueprints/system", json={"title": "Systems"})
    blueprint = latest(catalog, "blueprint", "system")
    assert blueprint["operation"] == "UPDATE"
    assert (blueprint["before"]["title"], blueprint["after"]["title"]) == ("System", "Systems")

    catalog.patch("/v1/users/bob", json={"teams": []})
    user = latest(catalog, "user", "bob")
    assert user["before"]["teams"] == ["payments-team"] and user["after"]["teams"] == []

    catalog.patch("/v1/teams/payments-team", json={"description": "Money"})
    team = latest(catalog, "team", "payments-team")
    assert (team["before"]["description"], team["after"]["description"]) == ("", "Money")

    token = catalog.post("/v1/tokens", json={"user": "bob"}).json()
    created = latest(catalog, "token", token["id"])
    assert created["operation"] == "CREATE" and created["after"]["user"] == "bob"
    assert token["token"] not in str(created)
    catalog.delete(f"/v1/tokens/{token['id']}")
    assert latest(catalog, "token", token["id"])["operation"] == "DELETE"

    kinds = {r["resource_type"] for r in audit(catalog, actor=ADMIN_USER)}
    assert kinds == {"blueprint", "entity", "user", "team", "token"}


def test_refused_writes_leave_no_audit_row(catalog: TestClient) -> None:
    before = len(audit(catalog))
    refused = [
        catalog.post("/v1/blueprints/service/entities", json={"identifier": "x", "properties": {"tier": 9}}),
        catalog.post("/v1/blueprints/service/entities/bulk", json={"entities": [{"identifier": "y"}]}),
        catalog.post(
            "/v1/blueprints",
            json={"identifier": "bad", "title": "Bad", "schema": {"properties": {"p": {"type": "decimal"}}}},
        ),
        catalog.post(
            "/v1/users", json={"identifier": "eve", "email": "eve@example.com", "teams": ["ghosts"]}
        ),
        catalog.post("/v1/teams", json={"identifier": "payments-team", "title": "Again"}),
        catalog.post("/v1/tokens", json={"user": "nobody"}),
    ]
    assert [r.status_code for r in refused] == [422, 207, 422, 422, 409, 404]
    assert len(audit(catalog)) == before
    assert catalog.get("/v1/users/eve").status_code == 404


@contextmanager
def failing_audit_insert(engine: Engine) -> Iterator[None]:
    """Make the database refuse any INSERT into the audit log."""

    def refuse(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO AUDIT_LOG"):
            raise RuntimeError("audit insert refused by the test")

    event.listen(engine, "before_cursor_execute", refuse)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", refuse)


def test_a_write_whose_audit_row_fails_is_not_written(catalog: TestClient) -> None:
    """The audit row is in the write's transaction: when it cannot be written, neither is the write."""
    engine = catalog.app.state.engine  # type: ignore[attr-defined]
    url = "/v1/blueprints/service/entities"
    with failing_audit_insert(engine):
        attempts = [
            catalog.post(url, json={"identifier": "ghost", "properties": {"language": "go"}}),
            catalog.post(
                f"{url}/bulk", json={"entities": [{"identifier": "g2", "properties": {"language": "go"}}]}
            ),
            catalog.post("/v1/teams", json={"identifier": "ghosts", "title": "Ghosts"}),
            catalog.post("/v1/users", json={"identifier": "eve", "email": "eve@example.com"}),
            catalog.patch("/v1/blueprints/system", json={"title": "Renamed"}),
            catalog.post("/v1/tokens", json={"user": "bob"}),
        ]
    assert all(a.status_code == 500 for a in attempts), [a.text for a in attempts]
    assert catalog.get(f"{url}/ghost").status_code == 404
    assert catalog.get(f"{url}/g2").status_code == 404
    assert catalog.get("/v1/teams/ghosts").status_code == 404
    assert catalog.get("/v1/users/eve").status_code == 404
    assert catalog.get("/v1/blueprints/system").json()["title"] == "System"
    assert [t["user"] for t in catalog.get("/v1/tokens", params={"for_user": "bob"}).json()["items"]] == []


def test_filters(catalog: TestClient) -> None:
    url = "/v1/blueprints/service/entities"
    for name in ("one", "two", "three"):
        assert (
            catalog.post(url, json={"identifier": name, "properties": {"language": "go"}}).status_code == 201
        )
    service = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
    catalog.post(
        f"{url}?upsert=true",
        json={"identifier": "two", "properties": {"language": "python"}},
        headers=service,
    )

    entities = audit(catalog, resource_type="entity")
    assert {r["resource_type"] for r in entities} == {"entity"}
    assert [r["identifier"] for r in audit(catalog, resource_type="entity", blueprint="service")] == [
        "two",
        "three",
        "two",
        "one",
    ]
    assert {r["identifier"] for r in audit(catalog, blueprint="system")} == {"billing"}
    assert [r["operation"] for r in audit(catalog, identifier="two")] == ["UPDATE", "CREATE"]
    by_service = audit(catalog, actor=SERVICE_USER)
    assert [(r["identifier"], r["actor"]) for r in by_service] == [("two", SERVICE_USER)]
    assert audit(catalog, actor="nobody") == []

    everything = audit(catalog)
    assert [r["id"] for r in everything] == sorted((r["id"] for r in everything), reverse=True)
    pivot = next(r for r in everything if r["identifier"] == "three")
    since = audit(catalog, **{"from": pivot["at"]})
    assert {r["identifier"] for r in since} >= {"three", "two"} and "one" not in {
        r["identifier"] for r in since
    }
    assert all(r["at"] >= pivot["at"] for r in since)
    until = audit(catalog, to=pivot["at"])
    assert "three" not in {r["identifier"] for r in until if r["resource_type"] == "entity"}
    assert all(r["at"] < pivot["at"] for r in until)
    assert len(since) + len(until) == len(everything)


def test_cursor_pagination(catalog: TestClient) -> None:
    for i in range(7):
        catalog.post("/v1/blueprints/system/entities", json={"identifier": f"s{i}"})
    everything = audit(catalog)
    seen: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = catalog.get("/v1/audit-log", params=params).json()
        assert len(page["items"]) <= 3
        seen += [r["id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [r["id"] for r in everything]
    filtered = catalog.get("/v1/audit-log", params={"limit": 2, "blueprint": "system"}).json()
    rest = catalog.get(
        "/v1/audit-log", params={"limit": 1000, "blueprint": "system", "cursor": filtered["next_cursor"]}
    ).json()
    ids = [r["id"] for r in filtered["items"] + rest["items"]]
    assert ids == [r["id"] for r in audit(catalog, blueprint="system")] and len(set(ids)) == len(ids)
    bad = catalog.get("/v1/audit-log", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["pointer"] == "/cursor"


def test_run_id_header_is_recorded_for_the_service_user(catalog: TestClient) -> None:
    service = {"Authorization": f"Bearer {SERVICE_TOKEN}", "X-Gantry-Run-Id": "run_0042"}
    response = catalog.post("/v1/blueprints/system/entities", json={"identifier": "ledger"}, headers=service)
    assert response.status_code == 201
    record = latest(catalog, "entity", "ledger")
    assert (record["actor"], record["run_id"]) == (SERVICE_USER, "run_0042")
    assert [r["identifier"] for r in audit(catalog, run_id="run_0042")] == ["ledger"]

    # Nobody else can attribute their writes to a run, admins included: 403, nothing written.
    token = catalog.post("/v1/tokens", json={"user": "bob"}).json()["token"]
    for bearer in (token, ADMIN_TOKEN):
        forger = {"Authorization": f"Bearer {bearer}", "X-Gantry-Run-Id": "run_forged"}
        response = catalog.post(
            "/v1/blueprints/system/entities", json={"identifier": "forged"}, headers=forger
        )
        assert response.status_code == 403
        assert "X-Gantry-Run-Id" in response.json()["error"]["message"]
    assert catalog.get("/v1/blueprints/system/entities/forged").status_code == 404
    assert audit(catalog, run_id="run_forged") == []
