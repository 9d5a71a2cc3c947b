"""One timestamp format in every API read: RFC 3339, UTC, ``Z``, milliseconds — on SQLite and
PostgreSQL, including times that arrive in other RFC 3339 forms and times stored by older
workers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from catalog.db import utcnow
from catalog.models import Run, RunApprover
from catalog.timefmt import format_instant, parse_instant
from config import Settings
from tests.api.conftest import ADMIN_TOKEN, SERVICE_TOKEN
from tests.temporal_env import free_port

ONE_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
# Anything a reader would take for a date and time: a date, then a time of day.
LOOKS_LIKE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")

READINESS: dict[str, Any] = {
    "identifier": "readiness",
    "title": "Readiness",
    "levels": [{"title": "Basic"}, {"title": "Gold"}],
    "rules": [
        {
            "identifier": "has_tier",
            "level": "Gold",
            "query": {"combinator": "and", "rules": [{"property": "tier", "operator": "isNotEmpty"}]},
        }
    ],
}

DEPLOY: dict[str, Any] = {
    "identifier": "deploy",
    "title": "Deploy",
    "blueprint": "service",
    "trigger": {"operation": "DAY-2"},
    "steps": [{"id": "wait", "uses": "sleep", "with": {"duration": "PT1S"}}],
}

TIMERS = {"expires_at": {"remind_before": ["PT1H"], "max_extension": "P7D"}}


def timestamps(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every string in ``value`` that looks like a date and time, with its JSON pointer."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from timestamps(item, f"{where}/{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from timestamps(item, f"{where}/{index}")
    elif isinstance(value, str) and LOOKS_LIKE_TIME.search(value):
        yield where, value


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path,
        admin_token=ADMIN_TOKEN,
        service_token=SERVICE_TOKEN,
        temporal_address=f"127.0.0.1:{free_port()}",  # down: a launch ends its run as not started
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        yield c


def ok(response: Any) -> Any:
    assert response.status_code < 300, response.text
    return response.json()


def seed_catalog(client: TestClient) -> None:
    """A service blueprint with a timer and a scorecard; an entity written the ways users write
    times (offsets, microseconds), then changed so its level and timer move."""
    ok(client.post("/v1/teams", json={"identifier": "payments-team", "title": "Payments"}))
    ok(client.post("/v1/users", json={"identifier": "bob", "email": "bob@example.com", "role": "admin"}))
    blueprint = {
        "identifier": "service",
        "title": "Service",
        "schema": {
            "properties": {
                "tier": {"type": "integer"},
                "launched": {"type": "string", "format": "date-time"},
                "expires_at": {"type": "string", "format": "timer"},
            }
        },
        "timers": TIMERS,
    }
    ok(client.post("/v1/blueprints", json=blueprint))
    ok(client.post("/v1/blueprints/service/scorecards", json=READINESS))
    deadline = datetime.now(UTC).astimezone() + timedelta(days=2)
    entity = {
        "identifier": "payments",
        "team": ["payments-team"],
        "properties": {"launched": "2026-03-01T10:00:00.123456+02:00", "expires_at": deadline.isoformat()},
    }
    ok(client.post("/v1/blueprints/service/entities", json=entity))
    ok(client.patch("/v1/blueprints/service/entities/payments", json={"properties": {"tier": 1}}))
    ok(client.post("/v1/tokens", json={"user": "bob", "expires_at": "2030-01-01T00:00:00+01:00"}))


def seed_run(client: TestClient) -> str:
    """A run waiting for approval whose worker reports times in other RFC 3339 forms (as a worker
    before the one format did): the API shows them in the one format."""
    run_id = "run-times"
    now = utcnow()
    app: Any = client.app
    with app.state.sessionmaker() as session:
        session.add(
            Run(
                id=run_id,
                action="deploy",
                action_title="Deploy",
                blueprint="service",
                entity="payments",
                inputs={},
                status="IN_PROGRESS",
                status_label="In progress",
                created_by="admin",
                created_at=now,
                updated_at=now,
                steps=[],
                workflow_id=f"action:deploy:{run_id}",
            )
        )
        session.flush()
        session.add(RunApprover(run_id=run_id, user="bob"))
        session.commit()
    old_form = now.isoformat()  # +00:00, microseconds
    report = {
        "status": "WAITING_FOR_APPROVAL",
        "steps": [
            {"id": "wait", "uses": "sleep", "status": "IN_PROGRESS", "started_at": old_form, "outputs": {}}
        ],
        "approval": {
            "status": "PENDING",
            "expires_at": (now + timedelta(hours=1)).isoformat(),
            "approvals": [{"user": "bob", "at": old_form, "via": "api", "comment": None}],
            "declines": [],
            "eligible": ["bob"],
        },
        "logs": [
            {"seq": 1, "message": "waiting", "at": "2026-03-01T10:00:00.5+02:00"},
            {"seq": 2, "message": "no time given"},
        ],
    }
    service = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
    ok(client.post(f"/v1/runs/{run_id}/report", json=report, headers=service))
    return run_id


def test_every_api_read_uses_the_one_format(client: TestClient) -> None:
    seed_catalog(client)
    ok(client.post("/v1/actions", json=DEPLOY))
    launched = client.post("/v1/actions/deploy/runs", json={"entity": "payments"})
    assert launched.status_code == 503, launched.text  # Temporal down: ended at once, with times
    run_id = seed_run(client)

    reads = [
        "/v1/blueprints",
        "/v1/blueprints/service",
        "/v1/blueprints/service/entities",
        "/v1/blueprints/service/entities/payments",
        "/v1/actions/deploy",
        "/v1/runs",
        f"/v1/runs/{run_id}",
        f"/v1/runs/{run_id}/logs",
        "/v1/audit-log",
        "/v1/events",
        "/v1/timers",
        "/v1/tokens",
        "/v1/users",
        "/v1/me",
        "/v1/blueprints/service/scorecards/readiness",
        "/v1/blueprints/service/scorecards/readiness/results",
        "/v1/blueprints/service/scorecard-history?entity=payments",
    ]
    found: dict[str, list[str]] = {}
    wrong: list[str] = []
    for url in reads:
        body = ok(client.get(url))
        for where, value in timestamps(body):
            found.setdefault(url, []).append(where)
            if not ONE_FORMAT.match(value):
                wrong.append(f"{url} {where}: {value!r}")
    search = ok(client.post("/v1/entities/search", json={"query": {"combinator": "and", "rules": []}}))
    wrong += [f"search {w}: {v!r}" for w, v in timestamps(search) if not ONE_FORMAT.match(v)]
    assert not wrong, "\n".join(wrong)

    # the walk saw the times it is about (a walk that finds nothing proves nothing)
    for url, expected in (
        ("/v1/blueprints/service/entities/payments", {"/created_at", "/properties/launched"}),
        (f"/v1/runs/{run_id}", {"/steps/0/started_at", "/approval/expires_at", "/approval/approvals/0/at"}),
        (f"/v1/runs/{run_id}/logs", {"/items/0/at", "/items/1/at"}),
        ("/v1/audit-log", {"/items/0/at"}),
        ("/v1/events", {"/items/0/at"}),
        ("/v1/timers", {"/items/0/deadline", "/items/0/next_reminder"}),
        ("/v1/tokens", {"/items/0/created_at"}),
        ("/v1/blueprints/service/scorecard-history?entity=payments", {"/items/0/at"}),
    ):
        assert expected <= set(found.get(url, [])), (url, found.get(url))


def test_times_keep_their_instant(client: TestClient) -> None:
    """Rewriting a time never moves it: offsets become UTC, and only digits below a millisecond go."""
    seed_catalog(client)
    entity = ok(client.get("/v1/blueprints/service/entities/payments"))
    assert entity["properties"]["launched"] == "2026-03-01T08:00:00.123Z"
    run_id = seed_run(client)
    logs = ok(client.get(f"/v1/runs/{run_id}/logs"))["items"]
    assert logs[0]["at"] == "2026-03-01T08:00:00.500Z"
    token = next(t for t in ok(client.get("/v1/tokens"))["items"] if t["user"] == "bob")
    assert token["expires_at"] == "2029-12-31T23:00:00.000Z"
    run = ok(client.get(f"/v1/runs/{run_id}"))
    started = parse_instant(run["steps"][0]["started_at"])
    created = parse_instant(run["created_at"])
    assert started is not None and created is not None
    assert abs(started - created) < timedelta(milliseconds=1)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2026-12-02T04:10:24Z", "2026-12-02T04:10:24.000Z"),
        ("2026-12-02t04:10:24.1z", "2026-12-02T04:10:24.100Z"),
        ("2026-12-02T06:10:24.123456789+02:00", "2026-12-02T04:10:24.123Z"),
        ("2026-12-01T23:10:24.999-05:00", "2026-12-02T04:10:24.999Z"),
    ],
)
def test_any_rfc3339_form_parses_to_the_one_format(given: str, expected: str) -> None:
    parsed = parse_instant(given)
    assert parsed is not None and format_instant(parsed) == expected


@pytest.mark.parametrize("given", ["2026-12-02", "2026-12-02T04:10:24", "yesterday", ""])
def test_times_without_an_offset_are_not_instants(given: str) -> None:
    assert parse_instant(given) is None


def test_time_filters_take_any_offset_and_refuse_none(client: TestClient) -> None:
    """``?from=``/``?to=`` and ``?expires_before=`` read any RFC 3339 form; a time without an
    offset names no instant: a 422 naming the parameter, never a 500."""
    seed_catalog(client)
    newest = ok(client.get("/v1/audit-log"))["items"][0]["at"]
    moment = parse_instant(newest)
    assert moment is not None
    as_paris = (moment + timedelta(hours=1)).replace(tzinfo=None).isoformat() + "+01:00"
    since = ok(client.get("/v1/audit-log", params={"from": as_paris}))["items"]
    assert newest in [r["at"] for r in since]
    assert all(r["at"] >= newest for r in since)  # the one format orders as text
    later = ok(client.get("/v1/timers", params={"expires_before": "2999-01-01t00:00:00z"}))["items"]
    assert [t["entity"] for t in later] == ["payments"]
    for url, name in (("/v1/audit-log", "from"), ("/v1/audit-log", "to"), ("/v1/timers", "expires_before")):
        refused = client.get(url, params={name: "2026-01-01T00:00:00"})
        assert refused.status_code == 422, (url, name, refused.text)
        assert refused.json()["error"]["details"][0]["pointer"].endswith(name), refused.text
