"""Initiatives over HTTP with Temporal unreachable: validation by pointer, who may define one,
a 503 that saves nothing, dry runs, progress narrowed to what the caller may read, the worker's
reminder and deadline routes (each recorded once), and trend parameters. On SQLite and PostgreSQL.

The workflow's side (start, re-arm, end, reminders in Slack) is in ``test_workflow.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from catalog.audit import Actor
from catalog.identity.permissions import Principal
from catalog.initiatives import service
from catalog.initiatives.service import InitiativeIn
from config import Settings
from tests.temporal_env import free_port

ADMIN, SERVICE = "admin-initiatives", "service-initiatives"
READINESS: dict[str, Any] = {
    "identifier": "readiness",
    "title": "Readiness",
    "levels": [{"title": "Basic"}, {"title": "Bronze"}, {"title": "Gold"}],
    "rules": [
        {
            "identifier": "has_tier",
            "title": "Has a tier",
            "level": "Bronze",
            "query": {"combinator": "and", "rules": [{"property": "tier", "operator": "isNotEmpty"}]},
        },
        {
            "identifier": "has_repo",
            "title": "Has a repository",
            "level": "Gold",
            "query": {"combinator": "and", "rules": [{"property": "repo", "operator": "isNotEmpty"}]},
        },
    ],
}
INITIATIVE: dict[str, Any] = {
    "identifier": "all-gold",
    "title": "Everything gold",
    "description": "Every service with a tier and a repository.",
    "owner": {"teams": ["platform"]},
    "targets": [{"blueprint": "service", "scorecard": "readiness", "level": "Gold"}],
    "filter": {
        "combinator": "and",
        "rules": [{"property": "lifecycle", "operator": "=", "value": "production"}],
    },
    "starts_at": "2030-01-01T00:00:00Z",
    "deadline": "2030-02-01T00:00:00Z",
    "remind_before": ["P7D", "P1D"],
}


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path,
        admin_token=ADMIN,
        service_token=SERVICE,
        temporal_address=f"127.0.0.1:{free_port()}",  # down: starting a workflow answers 503
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN}"
        _catalog(c)
        yield c


def _ok(response: Any, status: int = 201) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def _catalog(c: TestClient) -> None:
    """Blueprints service (moderated by platform; reads narrowed to owning teams) and system;
    teams, a member of each and a viewer; five production services and one retired."""
    for team in ("platform", "payments", "search"):
        _ok(c.post("/v1/teams", json={"identifier": team, "title": team}))
    people = [("mo", "member", ["platform"]), ("pat", "member", ["payments"]), ("sam", "member", ["search"])]
    for user, role, teams in [*people, ("vic", "viewer", [])]:
        _ok(
            c.post(
                "/v1/users",
                json={"identifier": user, "email": f"{user}@example.com", "role": role, "teams": teams},
            )
        )
    service_bp = {
        "identifier": "service",
        "title": "Service",
        "schema": {"properties": {p: {"type": "string"} for p in ("tier", "repo", "lifecycle")}},
        "moderators": {"teams": ["platform"]},
        "permissions": {"read": {"owned_by_team": True}},
    }
    _ok(c.post("/v1/blueprints", json=service_bp))
    _ok(c.post("/v1/blueprints", json={"identifier": "system", "title": "System"}))
    _ok(c.post("/v1/blueprints/service/scorecards", json=READINESS))
    services = [
        ("pay-api", ["payments"], {"tier": "1", "repo": "r"}),
        ("pay-db", ["payments"], {"tier": "1"}),
        ("search-api", ["search"], {}),
        ("search-ui", ["search"], {"tier": "2", "repo": "r"}),
        ("orphan", [], {"repo": "r"}),
    ]
    for identifier, owners, properties in services:
        body = {
            "identifier": identifier,
            "team": owners,
            "properties": {**properties, "lifecycle": "production"},
        }
        _ok(c.post("/v1/blueprints/service/entities", json=body))
    _ok(
        c.post(
            "/v1/blueprints/service/entities",
            json={"identifier": "old", "properties": {"lifecycle": "retired"}},
        )
    )


def _token(c: TestClient, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {_ok(c.post('/v1/tokens', json={'user': user}))['token']}"}


def _seed(c: TestClient, body: dict[str, Any] = INITIATIVE) -> None:
    """Saved as a create would (Temporal is down here): for the routes that read it."""
    app: Any = c.app
    with app.state.sessionmaker() as session:
        service.save(session, InitiativeIn(**body), Actor("admin"), Principal("admin", "admin"))
        session.commit()


def _pointers(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    return [d["pointer"] for d in response.json()["error"]["details"]]


def test_every_problem_is_a_422_by_pointer_and_nothing_is_saved(client: TestClient) -> None:
    bad = {
        **INITIATIVE,
        "owner": {"teams": ["platform", "ghosts"]},
        "targets": [
            {"blueprint": "service", "scorecard": "readiness", "level": "Platinum"},
            {"blueprint": "service", "scorecard": "nope", "level": "Gold"},
            {"blueprint": "nowhere", "scorecard": "readiness", "level": "Gold"},
        ],
        "filter": {"combinator": "and", "rules": [{"property": "tier", "operator": "near"}]},
        "starts_at": "2030-03-01T00:00:00Z",
        "deadline": "2030-02-01T00:00:00Z",
        "remind_before": ["P7D", "soon", "P7D", "PT0S"],
    }
    assert sorted(_pointers(client.post("/v1/initiatives", json=bad))) == sorted(
        [
            "/owner/teams/1",
            "/targets/0/level",
            "/targets/1/scorecard",
            "/targets/2/blueprint",
            "/filter/rules/0/operator",
            "/deadline",
            "/remind_before/1",
            "/remind_before/2",
            "/remind_before/3",
        ]
    )
    assert _pointers(client.post("/v1/initiatives", json={**INITIATIVE, "deadline": "next tuesday"})) == [
        "/deadline"
    ]
    assert _pointers(client.post("/v1/initiatives", json={**INITIATIVE, "targets": []}))  # at least one
    twice = {**INITIATIVE, "targets": INITIATIVE["targets"] * 2}
    assert _pointers(client.post("/v1/initiatives", json=twice)) == ["/targets/1"]
    unknown_level = {
        "combinator": "and",
        "rules": [{"scorecard": "readiness", "operator": ">=", "value": "Mythic"}],
    }
    assert _pointers(client.post("/v1/initiatives", json={**INITIATIVE, "filter": unknown_level})) == [
        "/filter"
    ]
    assert client.get("/v1/initiatives/all-gold").status_code == 404
    assert _ok(client.get("/v1/audit-log", params={"resource_type": "initiative"}), 200)["items"] == []


def test_temporal_down_is_a_503_and_nothing_is_saved(client: TestClient) -> None:
    response = client.post("/v1/initiatives", json=INITIATIVE)
    assert response.status_code == 503, response.text
    assert response.headers.get("Retry-After")
    assert client.get("/v1/initiatives/all-gold").status_code == 404
    assert _ok(client.get("/v1/audit-log", params={"resource_type": "initiative"}), 200)["items"] == []
    # a dry run needs no workflow: it answers what would be saved, and saves nothing
    preview = _ok(client.post("/v1/initiatives", params={"dry_run": "true"}, json=INITIATIVE))
    assert (
        preview["deadline"] == "2030-02-01T00:00:00.000Z" and preview["workflow_id"] == "initiative:all-gold"
    )
    assert client.get("/v1/initiatives/all-gold").status_code == 404
    # a change of deadline re-arms the workflow: refused the same way, the old deadline stays
    _seed(client)
    moved = client.put("/v1/initiatives/all-gold", json={**INITIATIVE, "deadline": "2030-03-01T00:00:00Z"})
    assert moved.status_code == 503
    assert _ok(client.get("/v1/initiatives/all-gold"), 200)["deadline"] == "2030-02-01T00:00:00.000Z"
    assert client.delete("/v1/initiatives/all-gold").status_code == 503
    # the schedule unchanged: no workflow call, saved and audited
    retitled = _ok(
        client.put("/v1/initiatives/all-gold", json={**INITIATIVE, "title": "Gold, all of it"}), 200
    )
    assert retitled["title"] == "Gold, all of it"
    audit = _ok(client.get("/v1/audit-log", params={"resource_type": "initiative"}), 200)["items"]
    assert [(a["operation"], a["actor"]) for a in audit] == [("UPDATE", "admin"), ("CREATE", "admin")]


def test_who_may_define_an_initiative(client: TestClient) -> None:
    _seed(client)
    retitle = {**INITIATIVE, "title": "Renamed"}
    for user in ("pat", "vic"):
        headers = _token(client, user)
        assert client.put("/v1/initiatives/all-gold", json=retitle, headers=headers).status_code == 403
        assert (
            client.post(
                "/v1/initiatives", json={**INITIATIVE, "identifier": "x"}, headers=headers
            ).status_code
            == 403
        )
        assert client.delete("/v1/initiatives/all-gold", headers=headers).status_code == 403
        assert _ok(client.get("/v1/initiatives/all-gold", headers=headers), 200)["title"] == "Everything gold"
    mo = _token(client, "mo")  # moderates service
    assert _ok(client.put("/v1/initiatives/all-gold", json=retitle, headers=mo), 200)["title"] == "Renamed"
    # ...but not system: an initiative that also targets it is beyond them
    _ok(client.post("/v1/blueprints/system/scorecards", json={**READINESS, "rules": []}))
    both = {
        **retitle,
        "targets": [
            *INITIATIVE["targets"],
            {"blueprint": "system", "scorecard": "readiness", "level": "Gold"},
        ],
    }
    assert client.put("/v1/initiatives/all-gold", json=both, headers=mo).status_code == 403
    assert client.post("/v1/initiatives", json={**both, "identifier": "y"}, headers=mo).status_code == 403
    # nor may they take over one that targets system already
    _seed(client, {**both, "identifier": "wide"})
    assert (
        client.put("/v1/initiatives/wide", json={**retitle, "identifier": "wide"}, headers=mo).status_code
        == 403
    )


def test_progress_counts_what_the_caller_may_read(client: TestClient) -> None:
    _seed(client)
    everything = _ok(client.get("/v1/initiatives/all-gold/progress"), 200)
    assert (everything["total"], everything["passing"]) == (5, 2)  # 'old' is retired: out of scope
    assert everything["teams"] == [
        {"team": "payments", "total": 2, "passing": 1},
        {"team": "search", "total": 2, "passing": 1},
        {"team": None, "total": 1, "passing": 0},
    ]
    assert [(f["entity"], [r["identifier"] for r in f["rules"]]) for f in everything["failing"]] == [
        ("orphan", ["has_tier"]),
        ("pay-db", ["has_repo"]),
        ("search-api", ["has_tier", "has_repo"]),
    ]
    pat = _ok(client.get("/v1/initiatives/all-gold/progress", headers=_token(client, "pat")), 200)
    assert (pat["total"], pat["passing"]) == (2, 1)
    assert [f["entity"] for f in pat["failing"]] == ["pay-db"]
    assert [t["team"] for t in pat["teams"]] == ["payments"]
    # the burn-down, a point a day from the start to now, is narrowed too
    now = datetime.now(UTC)
    started = {**INITIATIVE, "identifier": "started", "starts_at": (now - timedelta(days=3)).isoformat()}
    _seed(client, {**started, "deadline": (now + timedelta(days=30)).isoformat()})
    points = _ok(client.get("/v1/initiatives/started/progress"), 200)["points"]
    assert (
        len(points) == 4
        and points[0]["total"] == 0
        and points[-1] == {**points[-1], "total": 5, "passing": 2}
    )
    theirs = _ok(client.get("/v1/initiatives/started/progress", headers=_token(client, "pat")), 200)["points"]
    assert (theirs[-1]["total"], theirs[-1]["passing"]) == (2, 1)
    assert _pointers(client.get("/v1/initiatives/all-gold/progress", params={"cursor": "nonsense"})) == [
        "/cursor"
    ]
    assert client.get("/v1/initiatives/none/progress").status_code == 404


def test_the_worker_records_a_reminder_and_the_final_report_once(client: TestClient) -> None:
    _seed(client)
    worker = {"Authorization": f"Bearer {SERVICE}"}
    reminder = {"key": "2030-02-01T00:00:00.000Z/P7D", "remind_before": "P7D"}
    first = _ok(client.post("/v1/initiatives/all-gold/reminders", json=reminder, headers=worker), 200)
    assert first["recorded"] is True and (first["total"], first["passing"]) == (5, 2)
    assert [(a["team"], [m["identifier"] for m in a["members"]]) for a in first["failing_teams"]] == [
        ("payments", ["pat"]),
        ("search", ["sam"]),
    ]
    assert [(a["team"], [m["email"] for m in a["members"]]) for a in first["owners"]] == [
        ("platform", ["mo@example.com"])
    ]
    again = _ok(client.post("/v1/initiatives/all-gold/reminders", json=reminder, headers=worker), 200)
    assert again["recorded"] is False
    events = _ok(client.get("/v1/events", params={"type": "INITIATIVE_REMINDER"}), 200)["items"]
    assert len(events) == 1 and events[0]["initiative"]["identifier"] == "all-gold"
    assert events[0]["reminder"]["failing_teams"] == ["payments", "search"]
    assert _pointers(
        client.post(
            "/v1/initiatives/all-gold/reminders", json={**reminder, "remind_before": "later"}, headers=worker
        )
    ) == ["/remind_before"]

    moved = client.post(
        "/v1/initiatives/all-gold/deadline", json={"deadline": "2030-01-15T00:00:00Z"}, headers=worker
    )
    assert moved.status_code == 409
    deadline = {"deadline": "2030-02-01T00:00:00+00:00"}
    report = _ok(client.post("/v1/initiatives/all-gold/deadline", json=deadline, headers=worker), 200)
    assert (report["total"], report["passing"], len(report["failing"])) == (5, 2, 3)
    assert _ok(client.post("/v1/initiatives/all-gold/deadline", json=deadline, headers=worker), 200) == report
    passed = _ok(client.get("/v1/events", params={"type": "INITIATIVE_DEADLINE_PASSED"}), 200)["items"]
    assert sorted((e["team"] or "", e.get("failing", [])) for e in passed) == [
        ("", []),
        ("payments", ["pay-db"]),
        ("search", ["search-api"]),
    ]
    stored = _ok(client.get("/v1/initiatives/all-gold"), 200)
    assert stored["final_report"] == report and stored["reported_at"]
    # a member sees the report's failing entities they may read, no others
    mine = _ok(client.get("/v1/initiatives/all-gold", headers=_token(client, "pat")), 200)["final_report"]
    assert [f["entity"] for f in mine["failing"]] == ["pay-db"]
    # only the worker records
    assert client.post("/v1/initiatives/all-gold/reminders", json=reminder).status_code == 403


def test_trend_parameters(client: TestClient) -> None:
    week = _ok(
        client.get("/v1/blueprints/service/scorecards/readiness/trend", params={"interval": "week"}), 200
    )
    assert week["interval"] == "week" and week["levels"] == ["Basic", "Bronze", "Gold"]
    last = week["points"][-1]
    assert last["distribution"] == {"Basic": 3, "Bronze": 1, "Gold": 2} and last["total"] == 6
    day = _ok(
        client.get(
            "/v1/blueprints/service/scorecards/readiness/trend",
            params={"from": "2030-01-01", "to": "2030-01-03", "team": "search"},
        ),
        200,
    )
    assert [p["at"] for p in day["points"]] == [
        "2030-01-02T00:00:00.000Z",
        "2030-01-03T00:00:00.000Z",
        "2030-01-04T00:00:00.000Z",
    ]
    assert day["team"] == "search" and day["from"] == "2030-01-01T00:00:00.000Z"
    trend = "/v1/blueprints/service/scorecards/readiness/trend"
    assert client.get(trend, params={"interval": "hour"}).status_code == 422
    assert _pointers(client.get(trend, params={"from": "2030-02-01", "to": "2030-01-01"})) == ["/from"]
    assert _pointers(client.get(trend, params={"from": "1990-01-01", "to": "2030-01-01"})) == ["/from"]
    assert client.get(trend, params={"from": "yesterday"}).status_code == 422
    assert client.get("/v1/blueprints/service/scorecards/nope/trend").status_code == 404
    sam = _ok(client.get(trend, headers=_token(client, "sam")), 200)["points"][-1]
    assert sam["total"] == 2  # only search's services
