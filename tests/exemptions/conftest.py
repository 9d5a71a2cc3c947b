"""A catalog with a scorecard to exempt from, people in every role, and a Temporal gateway
stand-in that records what the API starts and cancels (the workflow's part is played by its
reports, as the worker sends them; tests/exemptions/test_workflow.py runs the real one)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.errors import ServiceUnavailable
from catalog.db import utcnow
from catalog.timefmt import format_instant
from config import Settings
from tests.api.conftest import ADMIN_TOKEN, SERVICE_BLUEPRINT, SERVICE_TOKEN
from tests.api.conftest import settings as settings  # the catalog's settings, per dialect

SERVICE = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
BASE = "/v1/blueprints/service/scorecards/readiness/exemptions"
READINESS: dict[str, Any] = {
    "identifier": "readiness",
    "title": "Readiness",
    "levels": [{"title": "Basic"}, {"title": "Bronze"}, {"title": "Silver"}],
    "rules": [
        {
            "identifier": "has_owner",
            "level": "Bronze",
            "query": {"combinator": "and", "rules": [{"property": "$team", "operator": "isNotEmpty"}]},
        },
        {
            "identifier": "has_repo",
            "level": "Silver",
            "query": {"combinator": "and", "rules": [{"property": "repo", "operator": "isNotEmpty"}]},
        },
    ],
}
PEOPLE: dict[str, tuple[str, list[str]]] = {  # user -> (role, teams)
    "olive": ("member", ["payments-team"]),
    "oscar": ("member", ["search-team"]),
    "vera": ("viewer", []),
    "mo": ("member", ["platform"]),
}


@dataclass
class Gateway:
    """Temporal as the API sees it: starts and cancels are recorded; ``down`` refuses them all."""

    started: list[tuple[str, Any]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    down: bool = False

    def _check(self) -> None:
        if self.down:
            raise ServiceUnavailable("Temporal at test is unreachable")

    async def start_action_run(self, workflow_input: Any, *, workflow_id: str, **_: Any) -> None:
        self._check()
        self.started.append((workflow_id, workflow_input))

    async def start_automation(self, workflow_id: str, workflow: str, arg: Any, summary: str) -> bool:
        self._check()
        self.started.append((workflow_id, arg))
        return True

    async def cancel(self, workflow_id: str) -> None:
        self._check()
        self.cancelled.append(workflow_id)

    async def arm_timer(self, *_: Any, **__: Any) -> None:
        return None


@dataclass
class World:
    client: TestClient
    gateway: Gateway
    tokens: dict[str, str]

    def as_(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def request(self, user: str = "olive", **body: Any) -> Any:
        payload = {
            "entity": "pay",
            "rule": "has_repo",
            "reason": "the repository moves to the new host next month",
            "expires_at": in_days(30),
            **body,
        }
        return self.client.post(BASE, json=payload, headers=self.as_(user))

    def report(self, run_id: str, status: str, approval: dict[str, Any] | None = None) -> None:
        """What the approval run's workflow reports as it ends."""
        body: dict[str, Any] = {"status": status, "status_label": status.title()}
        if approval is not None:
            body["approval"] = approval
        response = self.client.post(f"/v1/runs/{run_id}/report", json=body, headers=SERVICE)
        assert response.status_code == 200, response.text

    def entity_rules(self, identifier: str = "pay") -> dict[str, Any]:
        entity = self.client.get(f"/v1/blueprints/service/entities/{identifier}").json()
        card = entity["scorecards"]["readiness"]
        return {"level": card["level"], **{r["identifier"]: r for r in card["rules"]}}


def in_days(days: float) -> str:
    return format_instant(utcnow() + timedelta(days=days))


@pytest.fixture
def world(settings: Settings) -> Iterator[World]:
    gateway = Gateway()
    app = create_app(settings, temporal=gateway)  # type: ignore[arg-type]
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        tokens = _seed(client)
        yield World(client, gateway, tokens)


def _ok(response: Any) -> Any:
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def _seed(client: TestClient) -> dict[str, str]:
    for team in ("payments-team", "search-team", "platform"):
        _ok(client.post("/v1/teams", json={"identifier": team, "title": team}))
    tokens = {"admin": ADMIN_TOKEN, "service": SERVICE_TOKEN}
    for user, (role, teams) in PEOPLE.items():
        body = {"identifier": user, "email": f"{user}@example.com", "role": role, "teams": teams}
        _ok(client.post("/v1/users", json=body))
        tokens[user] = _ok(client.post("/v1/tokens", json={"user": user}))["token"]
    blueprint = {**SERVICE_BLUEPRINT, "moderators": {"users": [], "teams": ["platform"]}}
    _ok(client.post("/v1/blueprints", json={"identifier": "system", "title": "System"}))
    _ok(client.post("/v1/blueprints", json=blueprint))
    for identifier, owner in (("pay", "payments-team"), ("search", "search-team")):
        entity = {"identifier": identifier, "team": [owner], "properties": {"language": "go"}}
        _ok(client.post("/v1/blueprints/service/entities", json=entity))
    _ok(client.post("/v1/blueprints/service/scorecards", json=READINESS))
    return tokens
