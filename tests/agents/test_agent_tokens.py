"""Agent tokens: created by their owner or an admin, narrowed by an allow-list, a budget of runs
per hour and read-only; audited as ``agent:{name}`` on behalf of the owner; never approving."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import catalog, client, settings  # noqa: F401 - fixtures

ACTION: dict[str, Any] = {
    "identifier": "tag_service",
    "title": "Tag service",
    "blueprint": "service",
    "trigger": {"operation": "DAY-2"},
    "user_inputs": {"properties": {"tag": {"type": "string"}}, "required": ["tag"]},
    "steps": [
        {
            "id": "record",
            "uses": "catalog.upsert_entity",
            "with": {"blueprint": "service", "identifier": "{{ entity.identifier }}", "properties": {}},
        }
    ],
}


@pytest.fixture
def portal(catalog: TestClient) -> TestClient:  # noqa: F811
    for identifier in ("tag_service", "other_action"):
        body = {**ACTION, "identifier": identifier, "title": identifier}
        assert catalog.post("/v1/actions", json=body).status_code == 201, identifier
    entity = {"identifier": "payments", "team": ["payments-team"], "properties": {"language": "python"}}
    assert catalog.post("/v1/blueprints/service/entities", json=entity).status_code == 201
    bob = catalog.post("/v1/tokens", json={"user": "bob"}).json()["token"]
    catalog.headers["X-Bob"] = bob
    return catalog


def as_token(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def agent(portal: TestClient, owner_token: str, **fields: Any) -> str:
    body = {"user": "bob", "kind": "agent", "name": "helper", "allowed_actions": ["tag_service"], **fields}
    answer = portal.post("/v1/tokens", json=body, headers=as_token(owner_token))
    assert answer.status_code == 201, answer.text
    assert answer.json()["kind"] == "agent" and answer.json()["name"] == body["name"]
    return str(answer.json()["token"])


def launch(portal: TestClient, token: str, action: str = "tag_service") -> Any:
    body = {"entity": "payments", "inputs": {"tag": "x"}}
    return portal.post(f"/v1/actions/{action}/runs", json=body, headers=as_token(token))


def test_the_owner_creates_an_agent_token_others_may_not(portal: TestClient) -> None:
    bob = portal.headers["X-Bob"]
    assert (
        portal.post("/v1/users", json={"identifier": "eve", "email": "e@x.io", "name": "Eve"}).status_code
        == 201
    )
    eve = portal.post("/v1/tokens", json={"user": "eve"}).json()["token"]
    stolen = {"user": "bob", "kind": "agent", "name": "sneaky"}
    assert portal.post("/v1/tokens", json=stolen, headers=as_token(eve)).status_code == 403
    missing = portal.post("/v1/tokens", json={"user": "bob", "kind": "agent"}, headers=as_token(bob))
    assert missing.status_code == 422
    assert missing.json()["error"]["details"][0]["pointer"] == "/name"
    stray = portal.post("/v1/tokens", json={"user": "bob", "read_only": True}, headers=as_token(bob))
    assert stray.json()["error"]["details"][0]["pointer"] == "/read_only"
    token = agent(portal, bob)
    # The agent mints no token of its own: it would carry none of the narrowing.
    assert portal.post("/v1/tokens", json={"user": "bob"}, headers=as_token(token)).status_code == 403
    listed = portal.get("/v1/tokens", headers=as_token(bob)).json()["items"]
    assert [t["allowed_actions"] for t in listed if t["kind"] == "agent"] == [["tag_service"]]


def test_allow_list_names_the_refused_action(portal: TestClient) -> None:
    token = agent(portal, portal.headers["X-Bob"])
    refused = launch(portal, token, "other_action")
    assert refused.status_code == 403
    assert "other_action" in refused.json()["error"]["message"]
    assert launch(portal, token).status_code != 403  # allowed (503 here: no Temporal server)


def test_read_only_refuses_every_write_but_reads(portal: TestClient) -> None:
    token = agent(portal, portal.headers["X-Bob"], read_only=True)
    headers = as_token(token)
    assert portal.get("/v1/blueprints/service/entities/payments", headers=headers).status_code == 200
    assert portal.post("/v1/entities/search", json={}, headers=headers).status_code == 200
    assert launch(portal, token).status_code == 403
    patch = {"properties": {"language": "go"}}
    answer = portal.patch("/v1/blueprints/service/entities/payments", json=patch, headers=headers)
    assert answer.status_code == 403
    entity = portal.get("/v1/blueprints/service/entities/payments").json()
    assert entity["properties"]["language"] == "python"


def test_budget_answers_429_with_retry_after(portal: TestClient) -> None:
    token = agent(portal, portal.headers["X-Bob"], runs_per_hour=2)
    assert [launch(portal, token).status_code == 429 for _ in range(2)] == [False, False]
    over = launch(portal, token)
    assert over.status_code == 429
    assert 0 < int(over.headers["Retry-After"]) <= 3600
    assert "helper" in over.json()["error"]["message"]


def test_agent_writes_are_audited_as_the_agent_on_behalf_of_its_owner(portal: TestClient) -> None:
    token = agent(portal, portal.headers["X-Bob"])
    patch = {"properties": {"language": "go"}}
    answer = portal.patch("/v1/blueprints/service/entities/payments", json=patch, headers=as_token(token))
    assert answer.status_code == 200, answer.text
    records = portal.get("/v1/audit-log", params={"identifier": "payments", "resource_type": "entity"}).json()
    latest = records["items"][0]
    assert (latest["actor"], latest["on_behalf_of"]) == ("agent:helper", "bob")


def test_an_agent_never_approves(portal: TestClient) -> None:
    token = agent(portal, portal.headers["X-Bob"])
    answer = portal.post("/v1/runs/r_any/approval", json={"decision": "APPROVE"}, headers=as_token(token))
    assert answer.status_code == 403
    assert "approv" in answer.json()["error"]["message"]


def test_an_agent_token_opens_no_web_session(portal: TestClient) -> None:
    from api.web.sessions import live_token
    from catalog.db import utcnow

    token = agent(portal, portal.headers["X-Bob"])
    app: Any = portal.app
    with app.state.sessionmaker() as session:
        assert live_token(session, token, utcnow()) is None
        assert live_token(session, portal.headers["X-Bob"], utcnow()) is not None
