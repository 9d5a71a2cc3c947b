"""Who may see, write and run actions, and who sees what of a run.

Temporal is down for these tests (a free port): a permitted launch records its run, then answers
503 and ends the run as not started. That is enough to tell a permitted launch (503) from a
refused one (403/404), and leaves real run records to look at.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import update

from api.app import create_app
from catalog.models import Blueprint, Entity
from config import Settings
from tests.api.conftest import ADMIN_TOKEN, SERVICE_BLUEPRINT, SERVICE_TOKEN, SYSTEM_BLUEPRINT
from tests.temporal_env import free_port

PEOPLE = {
    "alice": ("member", ["payments-team"]),  # owns the payments service
    "olive": ("member", ["payments-team"]),  # owns it too
    "mallory": ("member", ["ledger-team"]),  # owns another service only
    "ann": ("member", []),  # the approver
    "mo": ("member", []),  # a moderator of the service blueprint
    "vic": ("viewer", []),
}

DEPLOY: dict[str, Any] = {
    "identifier": "deploy",
    "title": "Deploy",
    "blueprint": "service",
    "trigger": {
        "operation": "DAY-2",
        "condition": {"combinator": "and", "rules": [{"property": "tier", "operator": "<=", "value": 2}]},
    },
    "user_inputs": {
        "properties": {
            "version": {"type": "string", "pattern": "^v[0-9]+$"},
            "token": {"type": "string", "secret": True, "pattern": "^tok_[a-z]+$"},
        },
        "required": ["version"],
    },
    "approval": {"required_approvals": 1, "approvers": {"users": ["ann"]}},
    "permissions": {"see": {"roles": ["member"]}},
    "steps": [{"id": "call", "uses": "http.request", "with": {"url": "http://127.0.0.1:9/deploy"}}],
}

RESTART: dict[str, Any] = {
    "identifier": "restart",
    "title": "Restart",
    "blueprint": "service",
    "trigger": {"operation": "DAY-2"},
    "steps": [{"id": "call", "uses": "http.request", "with": {"url": "http://127.0.0.1:9/restart"}}],
}

SECRET_VALUE = "Hunter2-IS-SECRET"


class Portal:
    """The API as each person sees it."""

    def __init__(self, client: TestClient, tokens: dict[str, str]) -> None:
        self.client = client
        self.tokens = tokens

    def as_(self, who: str, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return self.client.request(method, path, headers=headers, **kwargs)

    def launch(self, who: str, action: str = "deploy", **body: Any) -> Any:
        body.setdefault("entity", "payments")
        body.setdefault("inputs", {"version": "v1", "token": "tok_abc"})
        return self.as_(who, "POST", f"/v1/actions/{action}/runs", json=body)

    def set_entity(self, identifier: str, **values: Any) -> None:
        with self.client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
            session.execute(update(Entity).where(Entity.identifier == identifier).values(**values))
            session.commit()


@pytest.fixture
def portal(settings: Settings) -> Iterator[Portal]:
    down = settings.model_copy(
        update={
            "temporal_address": f"127.0.0.1:{free_port()}",
            "secret_key": SecretStr("secret-key-for-tests"),
        }
    )
    with TestClient(create_app(down), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        for team in ("payments-team", "ledger-team"):
            assert client.post("/v1/teams", json={"identifier": team, "title": team}).status_code == 201
        tokens = {"admin": ADMIN_TOKEN, "service": SERVICE_TOKEN}
        for name, (role, teams) in PEOPLE.items():
            user = {"identifier": name, "email": f"{name}@example.com", "role": role, "teams": teams}
            assert client.post("/v1/users", json=user).status_code == 201
            tokens[name] = client.post("/v1/tokens", json={"user": name}).json()["token"]
        assert client.post("/v1/blueprints", json=SYSTEM_BLUEPRINT).status_code == 201
        assert client.post("/v1/blueprints", json=SERVICE_BLUEPRINT).status_code == 201
        for identifier, team in (("payments", "payments-team"), ("ledger", "ledger-team")):
            entity = {"identifier": identifier, "team": [team], "properties": {"language": "go", "tier": 1}}
            assert client.post("/v1/blueprints/service/entities", json=entity).status_code == 201
        with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
            session.execute(
                update(Blueprint)
                .where(Blueprint.identifier == "service")
                .values(moderators={"users": ["mo"], "teams": []})
            )
            session.commit()
        for action in (DEPLOY, RESTART):
            assert client.post("/v1/actions", json=action).status_code == 201
        yield Portal(client, tokens)


def started(response: Any) -> bool:
    """A permitted launch: recorded, then 503 because Temporal is down."""
    return bool(response.status_code == 503 and response.headers["Retry-After"])


def run_of(portal: Portal, action: str = "deploy") -> dict[str, Any]:
    runs = portal.as_("admin", "GET", f"/v1/runs?action={action}").json()["items"]
    return dict(runs[0])


def test_default_execute_is_the_owners_moderators_and_admins(portal: Portal) -> None:
    assert started(portal.launch("alice", "restart", inputs={}))
    assert started(portal.launch("mo", "restart", inputs={}))
    assert started(portal.launch("admin", "restart", inputs={}))
    # mallory owns a service, so she sees the action, but not for an entity she does not own
    assert portal.as_("mallory", "GET", "/v1/actions/restart").status_code == 200
    assert portal.launch("mallory", "restart", inputs={}).status_code == 404
    assert started(portal.launch("mallory", "restart", entity="ledger", inputs={}))
    # ann owns nothing: she does not see the action at all; viewers never launch
    assert portal.as_("ann", "GET", "/v1/actions/restart").status_code == 404
    assert portal.launch("ann", "restart", inputs={}).status_code == 404
    assert portal.launch("vic", "restart", inputs={}).status_code == 404
    assert [
        r["created_by"] for r in portal.as_("admin", "GET", "/v1/runs?action=restart").json()["items"]
    ] == [
        "mallory",
        "admin",
        "mo",
        "alice",
    ]


def test_seeable_but_not_executable_is_403(portal: Portal) -> None:
    refused = portal.launch("mallory")
    assert refused.status_code == 403, refused.text
    assert "execute permission" in refused.json()["error"]["message"]
    assert portal.launch("vic").status_code == 404  # see: members only
    assert started(portal.launch("alice"))
    assert len(portal.as_("admin", "GET", "/v1/runs?action=deploy").json()["items"]) == 1


def test_an_unreadable_or_missing_entity_is_404(portal: Portal) -> None:
    with portal.client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        session.execute(
            update(Blueprint)
            .where(Blueprint.identifier == "service")
            .values(permissions={"read": {"owned_by_team": True}})
        )
        session.commit()
    assert portal.launch("mallory", "restart", entity="payments", inputs={}).status_code == 404
    assert portal.launch("mallory", "restart", entity="nowhere", inputs={}).status_code == 404
    assert started(portal.launch("mallory", "restart", entity="ledger", inputs={}))


def test_explicit_policies_replace_the_defaults(portal: Portal) -> None:
    restricted = copy.deepcopy(RESTART) | {
        "identifier": "restricted",
        "permissions": {"see": {"roles": ["admin"]}, "execute": {"users": ["ann"]}},
    }
    assert portal.client.post("/v1/actions", json=restricted).status_code == 201
    assert portal.as_("alice", "GET", "/v1/actions/restricted").status_code == 404
    assert "restricted" not in [
        a["identifier"] for a in portal.as_("alice", "GET", "/v1/actions").json()["items"]
    ]
    assert portal.launch("alice", "restricted", inputs={}).status_code == 404
    # ann may execute what she may not see: not seeing it is a 404 first
    assert portal.launch("ann", "restricted", inputs={}).status_code == 404
    opened = restricted | {"permissions": {"see": {"roles": ["member"]}, "execute": {"users": ["ann"]}}}
    assert portal.client.put("/v1/actions/restricted", json=opened).status_code == 200
    assert started(portal.launch("ann", "restricted", inputs={}))
    assert portal.launch("alice", "restricted", inputs={}).status_code == 403
    stored = portal.as_("ann", "GET", "/v1/actions/restricted").json()["permissions"]
    assert stored["execute"]["users"] == ["ann"]


def test_action_definitions_are_written_by_admins_and_moderators(portal: Portal) -> None:
    mine = copy.deepcopy(RESTART) | {"identifier": "drain"}
    assert portal.as_("alice", "POST", "/v1/actions", json=mine).status_code == 403
    assert portal.as_("mo", "POST", "/v1/actions", json=mine).status_code == 201
    assert portal.as_("mo", "PUT", "/v1/actions/drain", json=mine | {"title": "Drain"}).status_code == 200
    moved = mine | {"blueprint": "system"}
    assert portal.as_("mo", "PUT", "/v1/actions/drain", json=moved).status_code == 403
    assert portal.as_("alice", "DELETE", "/v1/actions/drain").status_code == 403
    assert portal.as_("mo", "DELETE", "/v1/actions/drain").status_code == 204
    bad_policy = mine | {"permissions": {"execute": {"roles": ["root"]}}}
    invalid = portal.as_("mo", "POST", "/v1/actions", json=bad_policy)
    assert invalid.status_code == 422
    assert invalid.json()["error"]["details"][0]["pointer"].startswith("/permissions/execute/roles")


def test_who_sees_the_full_run_and_who_its_summary(portal: Portal) -> None:
    assert started(portal.launch("alice"))
    run_id = run_of(portal)["id"]
    for who in ("alice", "olive", "ann", "mo", "admin"):
        full = portal.as_(who, "GET", f"/v1/runs/{run_id}")
        assert full.status_code == 200 and full.json()["visibility"] == "full", who
        assert full.json()["inputs"]["version"] == "v1"
        assert portal.as_(who, "GET", f"/v1/runs/{run_id}/logs").status_code == 200, who
    summary = portal.as_("mallory", "GET", f"/v1/runs/{run_id}").json()
    assert summary["visibility"] == "summary" and summary["status"] == "FAILURE"
    assert not {"inputs", "steps", "error", "approval", "links"} & summary.keys()
    assert portal.as_("mallory", "GET", f"/v1/runs/{run_id}/logs").status_code == 403
    [listed] = portal.as_("mallory", "GET", "/v1/runs").json()["items"]
    assert listed["visibility"] == "summary" and "inputs" not in listed
    # viewers may not see the action: its runs do not exist for them
    assert portal.as_("vic", "GET", f"/v1/runs/{run_id}").status_code == 404
    assert portal.as_("vic", "GET", f"/v1/runs/{run_id}/logs").status_code == 404
    assert portal.as_("vic", "GET", "/v1/runs").json()["items"] == []


def test_run_lists_are_filtered_before_paging(portal: Portal) -> None:
    assert started(portal.launch("mallory", "restart", entity="ledger", inputs={}))
    for _ in range(3):
        assert started(portal.launch("alice", "restart", inputs={}))
    page = portal.as_("mallory", "GET", "/v1/runs?limit=1").json()
    assert [r["created_by"] for r in page["items"]] == ["mallory"] and page["next_cursor"] is None
    assert len(portal.as_("olive", "GET", "/v1/runs").json()["items"]) == 3


def test_cancel_and_retry_need_the_requester_a_moderator_or_an_admin(portal: Portal) -> None:
    assert started(portal.launch("alice"))
    run_id = run_of(portal)["id"]
    assert portal.as_("mallory", "POST", f"/v1/runs/{run_id}/cancel").status_code == 403
    assert portal.as_("olive", "POST", f"/v1/runs/{run_id}/retry").status_code == 403
    assert portal.as_("vic", "POST", f"/v1/runs/{run_id}/retry").status_code == 404
    assert portal.as_("alice", "POST", f"/v1/runs/{run_id}/cancel").status_code == 409  # ended


def test_a_retry_is_checked_again_like_a_launch(portal: Portal) -> None:
    assert started(portal.launch("alice"))
    run_id = run_of(portal)["id"]
    # a retry re-asks the approval that never happened, and Temporal still being down ends it again
    retried = portal.as_("alice", "POST", f"/v1/runs/{run_id}/retry")
    assert started(retried)
    run = portal.as_("alice", "GET", f"/v1/runs/{run_id}").json()
    assert run["status"] == "FAILURE" and run["error"].startswith("its workflow never started")
    portal.set_entity("payments", team=["ledger-team"])  # alice no longer owns it
    refused = portal.as_("alice", "POST", f"/v1/runs/{run_id}/retry")
    assert refused.status_code == 403, refused.text
    portal.set_entity("payments", team=["payments-team"])
    portal.set_entity("payments", properties={"language": "go", "tier": 3})
    condition = portal.as_("alice", "POST", f"/v1/runs/{run_id}/retry")
    assert condition.status_code == 409
    assert condition.json()["error"]["details"][0]["pointer"] == "/trigger/condition/rules/0"
    with portal.client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        session.execute(update(Entity).where(Entity.identifier == "payments").values(team=["payments-team"]))
        session.query(Entity).filter(Entity.identifier == "payments").delete()
        session.commit()
    assert portal.as_("admin", "POST", f"/v1/runs/{run_id}/retry").status_code == 404
    audit = portal.as_("admin", "GET", f"/v1/audit-log?identifier={run_id}&resource_type=run").json()["items"]
    assert [a["operation"] for a in audit].count("RETRY") == 1


def test_a_secret_input_is_never_echoed(portal: Portal) -> None:
    response = portal.launch("alice", inputs={"version": "v1", "token": SECRET_VALUE})
    assert response.status_code == 422
    assert SECRET_VALUE not in response.text
    assert response.json()["error"]["details"] == [
        {
            "pointer": "/inputs/token",
            "message": "does not satisfy the input's 'pattern' rule (the value is secret and not shown)",
        }
    ]
    shown = portal.launch("alice", inputs={"version": "1.0"})
    assert "'1.0' does not match" in shown.json()["error"]["details"][0]["message"]


def test_secrets_are_for_the_service_only_and_it_never_approves(portal: Portal) -> None:
    assert started(portal.launch("alice"))
    run_id = run_of(portal)["id"]
    assert portal.as_("admin", "GET", f"/v1/runs/{run_id}/secrets").status_code == 403
    assert portal.as_("alice", "GET", f"/v1/runs/{run_id}/secrets").status_code == 403
    ended = portal.as_("service", "GET", f"/v1/runs/{run_id}/secrets")
    assert ended.status_code == 403 and "only while it is active" in ended.json()["error"]["message"]
    decided = portal.as_("service", "POST", f"/v1/runs/{run_id}/approval", json={"decision": "APPROVE"})
    assert decided.status_code == 403 and "never decides" in decided.json()["error"]["message"]
