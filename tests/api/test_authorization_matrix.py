"""Who may call what: every route of the app, called by every kind of principal, against a table
of the status each should get. The table is the access-control contract written out route by
route; a route the app serves but the table lacks fails the test ("add a row for METHOD PATH").

Principals: ``anonymous`` (no token), ``viewer``, ``member_owner`` (of ``payments-team``, which
owns the entity ``payments`` and requested the runs), ``member_other`` (of ``search-team``),
``moderator`` (of ``platform``, the ``service`` blueprint's moderators), ``admin`` and
``service`` (the worker). Temporal is down on purpose: a call the caller may make that needs a
workflow answers 503, which the table says. Every call is independent of the others: reads and
idempotent writes share the seeded objects, deletes and creates get fresh ones. All mismatches
are reported at once.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from api.app import create_app
from catalog.audit import Actor
from catalog.db import utcnow
from catalog.identity.permissions import Principal
from catalog.initiatives import service as initiatives
from catalog.initiatives.service import InitiativeIn
from catalog.models import Entity, Run, RunApprover, ScorecardExemption
from config import Settings
from tests.api.conftest import ADMIN_TOKEN, SERVICE_BLUEPRINT, SERVICE_TOKEN, SYSTEM_BLUEPRINT
from tests.temporal_env import free_port

PRINCIPALS = ("anonymous", "viewer", "member_owner", "member_other", "moderator", "admin", "service")
HUMANS = ("viewer", "member_owner", "member_other", "moderator", "admin")
USERS = {  # principal -> (user, role, teams)
    "viewer": ("vera", "viewer", []),
    "member_owner": ("olive", "member", ["payments-team"]),
    "member_other": ("oscar", "member", ["search-team"]),
    "moderator": ("mo", "member", ["platform"]),
}
DEPLOY: dict[str, Any] = {
    "identifier": "deploy_service",
    "title": "Deploy service",
    "blueprint": "service",
    "trigger": {"operation": "DAY-2"},
    "user_inputs": {"properties": {"version": {"type": "string"}}, "required": ["version"]},
    # Members and viewers see the action (and so the summary of its runs); executing it stays
    # with the entity's owners, the moderators and admins (the default).
    "permissions": {"see": {"roles": ["member", "viewer"]}},
    "steps": [
        {
            "id": "record",
            "uses": "catalog.upsert_entity",
            "with": {
                "blueprint": "service",
                "identifier": "{{ entity.identifier }}",
                "properties": {"tags": ["{{ inputs.version }}"]},
            },
        }
    ],
}
READINESS: dict[str, Any] = {
    "identifier": "readiness",
    "title": "Readiness",
    "levels": [{"title": "Basic"}, {"title": "Gold"}],
    "rules": [
        {
            "identifier": "has_owner",
            "level": "Gold",
            "query": {"combinator": "and", "rules": [{"property": "$team", "operator": "isNotEmpty"}]},
        }
    ],
}
ACTIVE_RUN, ENDED_RUN = "run_matrix_active", "run_matrix_failed"
TIMER = "timer:service:payments:expires_at"


# ---- the expected table -------------------------------------------------------------------

Row = dict[str, int]


def row(default: int, anonymous: int = 401, **overrides: int) -> Row:
    """``default`` for every authenticated principal unless overridden; 401 without a token."""
    expected = {p: default for p in PRINCIPALS[1:]}
    expected["anonymous"] = anonymous
    for principal, status in overrides.items():
        assert principal in PRINCIPALS, principal
        expected[principal] = status
    return expected


def admins(status: int) -> Row:
    """Admin-only routes: users, teams, blueprints, automations, the audit and event logs."""
    return row(403, admin=status)


def definitions(status: int, *, hidden_from: tuple[str, ...] = ()) -> Row:
    """Admins and the blueprint's moderators write its scorecards and actions (the service
    principal passes every policy as admins do); a hidden object is a 404."""
    extra = {p: 404 for p in hidden_from}
    return row(403, **{"admin": status, "moderator": status, "service": status, **extra})


def sources(status: int, **overrides: int) -> Row:
    """A data source writing the `service` blueprint: its moderators, admins and the worker
    (reading) see it; anyone else gets a 404."""
    return row(404, **{"moderator": status, "admin": status, "service": status, **overrides})


def worker(status: int) -> Row:
    """Worker routes: the service principal only."""
    return row(403, service=status)


def owners(status: int, **overrides: int) -> Row:
    """Entity writes: the owning team, moderators, admins (and the worker, running what admins
    defined); viewers never write; another team's member may read but not change (403)."""
    return row(status, **{"viewer": 403, "member_other": 403, **overrides})


EXEMPTIONS = "/v1/blueprints/{blueprint}/scorecards/{scorecard}/exemptions"
EXPECTED: dict[str, Row] = {
    "GET /healthz": row(200, anonymous=200),
    "GET /readyz": row(200, anonymous=200),
    "GET /docs": row(200, anonymous=200),
    "GET /redoc": row(200, anonymous=200),
    # blueprints: everyone reads, admins write (moderators administer entities, not the blueprint)
    "GET /v1/blueprints": row(200),
    "POST /v1/blueprints": admins(201),
    "GET /v1/blueprints/{blueprint}": row(200),
    "PUT /v1/blueprints/{blueprint}": admins(200),
    "PATCH /v1/blueprints/{blueprint}": admins(200),
    "DELETE /v1/blueprints/{blueprint}": admins(204),
    # entities: read by everyone; created by members for their own teams; changed by owners
    "GET /v1/blueprints/{blueprint}/entities": row(200),
    "POST /v1/blueprints/{blueprint}/entities": owners(201),
    # bulk answers per item: those who may not write get each item failed with its 403
    "POST /v1/blueprints/{blueprint}/entities/bulk": row(207),
    "GET /v1/blueprints/{blueprint}/entities/{identifier}": row(200),
    "PUT /v1/blueprints/{blueprint}/entities/{identifier}": owners(200),
    "PATCH /v1/blueprints/{blueprint}/entities/{identifier}": owners(200),
    "DELETE /v1/blueprints/{blueprint}/entities/{identifier}": owners(204),
    "POST /v1/entities/search": row(200),
    # identity: everyone reads users and teams (pickers), admins write them; tokens are one's own
    "GET /v1/me": row(200),
    "GET /v1/users": row(200),
    "POST /v1/users": admins(201),
    "GET /v1/users/{identifier}": row(200),
    "PATCH /v1/users/{identifier}": admins(200),
    "DELETE /v1/users/{identifier}": admins(204),
    "GET /v1/teams": row(200),
    "POST /v1/teams": admins(201),
    "GET /v1/teams/{identifier}": row(200),
    "PATCH /v1/teams/{identifier}": admins(200),
    "DELETE /v1/teams/{identifier}": admins(204),
    "POST /v1/tokens": row(201, service=403),  # for oneself; the worker mints none
    "GET /v1/tokens": row(200),
    # the token is member_owner's: its owner and admins delete it, nobody else learns it exists
    "DELETE /v1/tokens/{token_id}": row(404, member_owner=204, admin=204),
    "GET /v1/audit-log": admins(200),
    "GET /v1/events": admins(200),
    # configuration revisions: admins; moderators read those of their blueprints (service's here)
    "GET /v1/config/revisions": row(403, moderator=200, admin=200, service=200),
    "GET /v1/config/revisions/{revision}": row(403, moderator=200, admin=200, service=200),
    # actions: deploy_service is seen by members and viewers, executed by payments' owners
    "GET /v1/actions": row(200),
    "POST /v1/actions": definitions(201),
    "GET /v1/actions/{action}": row(200),
    "PUT /v1/actions/{action}": definitions(200),
    # a fresh action with default permissions: only those who may execute it see it
    "DELETE /v1/actions/{action}": definitions(204, hidden_from=("viewer", "member_other")),
    # launch: allowed callers reach Temporal (down: 503); those who see but may not execute: 403
    "POST /v1/actions/{action}/runs": owners(503),
    # may I launch it now? a verdict for everyone who sees the action (those who may not execute
    # it get `allowed: false`, not a 403); nothing is written
    "POST /v1/actions/{action}/check": row(200),
    # runs: olive's active run of deploy_service on payments
    "GET /v1/runs": row(200),
    "GET /v1/runs/{run_id}": row(200),  # the summary for viewer and member_other
    "GET /v1/runs/{run_id}/logs": row(200, viewer=403, member_other=403),
    "POST /v1/runs/{run_id}/cancel": row(503, viewer=403, member_other=403),
    "POST /v1/runs/{run_id}/retry": row(503, viewer=403, member_other=403),
    # mo (a moderator) and the admin are its eligible approvers (they reach the workflow: 503);
    # olive may not approve her own run, others are no approvers, the worker never is: 403
    # without asking the workflow
    "POST /v1/runs/{run_id}/approval": row(403, moderator=503, admin=503),
    "POST /v1/runs/{run_id}/report": worker(200),
    # a sub-action's child run, recorded as olive's (she may run deploy_service on payments)
    "POST /v1/runs/{run_id}/children": worker(201),
    "GET /v1/runs/{run_id}/secrets": worker(200),
    "POST /v1/runs/reconcile": worker(200),
    # timers: everyone reads; owners (and moderators, admins) extend through the timer workflow
    "GET /v1/timers": row(200),
    "POST /v1/blueprints/{blueprint}/entities/{identifier}/timers/{prop}/extend": owners(503),
    "POST /v1/timers/reports": worker(200),
    "POST /v1/timers/{timer_id}/report": worker(200),
    # scorecards: everyone reads the results they may read; moderators and admins define them
    "GET /v1/blueprints/{blueprint}/scorecards": row(200),
    "POST /v1/blueprints/{blueprint}/scorecards": definitions(201),
    "GET /v1/blueprints/{blueprint}/scorecards/{scorecard}": row(200),
    "PUT /v1/blueprints/{blueprint}/scorecards/{scorecard}": definitions(200),
    "DELETE /v1/blueprints/{blueprint}/scorecards/{scorecard}": definitions(204),
    "GET /v1/blueprints/{blueprint}/scorecards/{scorecard}/results": row(200),
    "GET /v1/blueprints/{blueprint}/scorecard-history": row(200),
    "POST /v1/scorecards/regrade": worker(200),
    # exemptions: the entity's owners, the moderators and admins ask (the approval run needs
    # Temporal: 503); everyone who reads the entity sees them; the requester (olive), moderators
    # and admins revoke (without Temporal); the worker's timer expires them
    f"POST {EXEMPTIONS}": row(403, member_owner=503, moderator=503, admin=503),
    f"GET {EXEMPTIONS}": row(200),
    f"GET {EXEMPTIONS}/{{exemption_id}}": row(200),
    f"DELETE {EXEMPTIONS}/{{exemption_id}}": row(403, member_owner=200, moderator=200, admin=200),
    f"POST {EXEMPTIONS}/{{exemption_id}}/expire": worker(200),
    # automations run actions as the system: admins define them; everyone may read them
    "GET /v1/automations": row(200),
    "POST /v1/automations": admins(201),
    "GET /v1/automations/{identifier}": row(200),
    "PUT /v1/automations/{identifier}": admins(200),
    "DELETE /v1/automations/{identifier}": admins(204),
    # initiatives: everyone reads (progress over what they may read); admins and the moderators of
    # every targeted blueprint define them; starting, re-arming or ending the workflow needs
    # Temporal (down here: 503, nothing saved); the worker records reminders and the report
    "GET /v1/initiatives": row(200),
    "POST /v1/initiatives": definitions(503),
    "GET /v1/initiatives/{identifier}": row(200),
    "PUT /v1/initiatives/{identifier}": definitions(200),
    "DELETE /v1/initiatives/{identifier}": definitions(503),
    "GET /v1/initiatives/{identifier}/progress": row(200),
    "POST /v1/initiatives/{identifier}/reminders": worker(200),
    "POST /v1/initiatives/{identifier}/deadline": worker(200),
    "GET /v1/blueprints/{blueprint}/scorecards/{scorecard}/trend": row(200),
    # Slack signs its requests: a bearer token of any kind is no substitute (unsigned: 401)
    "POST /v1/slack/interactions": row(401),
    # data sources: admins and the moderators of every blueprint a source writes (mo, of
    # `service`) define and sync them; the worker reads them and reports its syncs; others do
    # not learn a source exists (404); a source's list shows only what the caller administers
    "GET /v1/data-sources": row(200),
    "POST /v1/data-sources": row(403, moderator=201, admin=201),
    "GET /v1/data-sources/{data_source}": sources(200),
    "PUT /v1/data-sources/{data_source}": sources(200, service=403),
    "DELETE /v1/data-sources/{data_source}": sources(204, service=403),
    "POST /v1/data-sources/{data_source}/preview": sources(200),
    "GET /v1/data-sources/{data_source}/syncs": sources(200),
    # a sync needs its workflow: Temporal is down (503); the worker's syncs start from schedules
    "POST /v1/data-sources/{data_source}/syncs": sources(503, service=403),
    "GET /v1/data-sources/{data_source}/syncs/{sync_id}": sources(200),
    "PUT /v1/data-sources/{data_source}/syncs/{sync_id}": worker(200),
    "POST /v1/data-sources/{data_source}/syncs/{sync_id}/items": worker(200),
    "POST /v1/data-sources/{data_source}/syncs/{sync_id}/complete": worker(200),
    "GET /v1/data-sources/{data_source}/deliveries": sources(200),
    # webhook deliveries are signed with the source's secret: a bearer token is no substitute
    "POST /v1/webhooks/{data_source}": row(401),
    "POST /v1/ui/sign-in-codes": admins(201),  # a one-time web sign-in for the calling admin
}


# ---- the app and its objects --------------------------------------------------------------


@dataclass
class World:
    """The app's seeded objects, the principals' tokens and a counter for fresh identifiers."""

    client: TestClient
    tokens: dict[str, str] = field(default_factory=dict)
    counter: Iterator[int] = field(default_factory=itertools.count)

    def fresh(self, prefix: str) -> str:
        return f"{prefix}-{next(self.counter)}"

    def admin(self, method: str, url: str, body: Any = None) -> Any:
        response = self.client.request(method, url, json=body, headers=_bearer(ADMIN_TOKEN))
        assert response.status_code < 300, (method, url, response.text)
        return response.json() if response.content else None

    def user_of(self, principal: str) -> str:
        return {"admin": "admin", "service": "gantry-worker"}.get(principal) or USERS[principal][0]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _seed(world: World) -> None:
    for team in ("payments-team", "search-team", "platform"):
        world.admin("POST", "/v1/teams", {"identifier": team, "title": team})
    for principal, (user, role, teams) in USERS.items():
        world.admin(
            "POST",
            "/v1/users",
            {"identifier": user, "email": f"{user}@example.com", "role": role, "teams": teams},
        )
        world.tokens[principal] = world.admin("POST", "/v1/tokens", {"user": user})["token"]
    world.tokens |= {"admin": ADMIN_TOKEN, "service": SERVICE_TOKEN}
    world.admin("POST", "/v1/blueprints", SYSTEM_BLUEPRINT)
    world.admin("POST", "/v1/blueprints", SERVICE_PUT)
    world.admin(
        "POST", "/v1/blueprints/system/entities", {"identifier": "billing", "team": ["payments-team"]}
    )
    world.admin("POST", "/v1/blueprints/service/entities", _payments())
    world.admin("POST", "/v1/actions", DEPLOY)
    world.admin("POST", "/v1/blueprints/service/scorecards", READINESS)
    world.admin("POST", "/v1/automations", _automation("welcome"))
    world.admin("POST", "/v1/data-sources", _data_source("repos"))
    world.admin("POST", "/v1/data-sources", HOOKS)
    _service(world, "PUT", "/v1/data-sources/repos/syncs/seeded", {"trigger": "SCHEDULE"})
    _seed_runs(world.client.app)
    _seed_initiative(world.client.app)


def _payments() -> dict[str, Any]:
    deadline = (utcnow() + timedelta(days=3)).replace(microsecond=0).isoformat()
    return {
        "identifier": "payments",
        "title": "Payments",
        "team": ["payments-team"],
        "properties": {"language": "go", "tier": 1, "expires_at": deadline},
        "relations": {"system": "billing"},
    }


def _automation(identifier: str) -> dict[str, Any]:
    return {
        "identifier": identifier,
        "trigger": {"event": "ENTITY_CREATED", "blueprint": "service"},
        "invoke": {"action": "deploy_service", "entity": "{{ event.entity }}", "inputs": {"version": "v1"}},
    }


INITIATIVE: dict[str, Any] = {
    "identifier": "ready",
    "title": "Everything ready",
    "owner": {"teams": ["platform"]},
    "targets": [{"blueprint": "service", "scorecard": "readiness", "level": "Gold"}],
    "starts_at": "2030-01-01T00:00:00.000Z",
    "deadline": "2030-02-01T00:00:00.000Z",
    "remind_before": ["P7D"],
}


def _seed_initiative(app: Any) -> None:
    """The initiative ``ready``, saved as a create would (no Temporal: its workflow is not needed)."""
    with app.state.sessionmaker() as session:
        initiatives.save(session, InitiativeIn(**INITIATIVE), Actor("admin"), Principal("admin", "admin"))
        session.commit()


def _seed_runs(app: Any) -> None:
    """Olive's runs of deploy_service on payments, written as a launch would have (no Temporal):
    one waiting for mo's or the admin's approval, one failed."""
    now = utcnow()
    steps: list[dict[str, Any]] = [{"id": "record", "status": "PENDING", "outputs": {}, "error": None}]
    with app.state.sessionmaker() as session:
        for run_id, status, ended in (
            (ACTIVE_RUN, "WAITING_FOR_APPROVAL", None),
            (ENDED_RUN, "FAILURE", now),
        ):
            session.add(
                Run(
                    id=run_id,
                    action="deploy_service",
                    action_title="Deploy service",
                    blueprint="service",
                    entity="payments",
                    inputs={"version": "v1"},
                    status=status,
                    status_label=status.title(),
                    created_by="olive",
                    created_at=now,
                    updated_at=now,
                    ended_at=ended,
                    steps=[{**s, "status": "FAILURE" if ended else "PENDING"} for s in steps],
                    workflow_id=f"action:deploy_service:{run_id}",
                )
            )
        session.flush()
        session.add_all(RunApprover(run_id=ACTIVE_RUN, user=user) for user in ("mo", "admin"))
        session.commit()


# ---- one call per (route, principal) ------------------------------------------------------

Call = tuple[str, Any]  # the URL and the JSON body (None: no body)
Maker = Callable[[World, str], Call]


def _fixed(url: str, body: Any = None) -> Maker:
    return lambda _world, _principal: (url, body)


def _fresh_entity(world: World, _principal: str) -> Call:
    identifier = world.fresh("svc")
    world.admin(
        "POST",
        "/v1/blueprints/service/entities",
        {"identifier": identifier, "team": ["payments-team"], "properties": {"language": "go"}},
    )
    return f"/v1/blueprints/service/entities/{identifier}", None


def _new_entity(world: World, _principal: str) -> Call:
    body = {"identifier": world.fresh("new"), "team": ["payments-team"], "properties": {"language": "go"}}
    return "/v1/blueprints/service/entities", body


def _bulk(world: World, _principal: str) -> Call:
    item = {"identifier": world.fresh("bulk"), "team": ["payments-team"], "properties": {"language": "go"}}
    return "/v1/blueprints/service/entities/bulk", {"entities": [item]}


def _fresh_blueprint(world: World, _principal: str) -> Call:
    identifier = world.fresh("scratch")
    world.admin("POST", "/v1/blueprints", {"identifier": identifier, "title": "Scratch"})
    return f"/v1/blueprints/{identifier}", None


def _new_blueprint(world: World, _principal: str) -> Call:
    return "/v1/blueprints", {"identifier": world.fresh("made"), "title": "Made"}


def _fresh_user(world: World, _principal: str) -> Call:
    identifier = world.fresh("gone")
    world.admin("POST", "/v1/users", {"identifier": identifier, "email": f"{identifier}@example.com"})
    return f"/v1/users/{identifier}", None


def _new_user(world: World, _principal: str) -> Call:
    identifier = world.fresh("hire")
    return "/v1/users", {"identifier": identifier, "email": f"{identifier}@example.com"}


def _fresh_team(world: World, _principal: str) -> Call:
    identifier = world.fresh("disbanded")
    world.admin("POST", "/v1/teams", {"identifier": identifier, "title": "Disbanded"})
    return f"/v1/teams/{identifier}", None


def _new_team(world: World, _principal: str) -> Call:
    return "/v1/teams", {"identifier": world.fresh("squad"), "title": "Squad"}


def _own_token(world: World, principal: str) -> Call:
    return "/v1/tokens", {"user": world.user_of(principal) if principal != "anonymous" else "olive"}


def _olive_token(world: World, _principal: str) -> Call:
    token = world.admin("POST", "/v1/tokens", {"user": "olive", "description": "matrix"})
    return f"/v1/tokens/{token['id']}", None


def _service_revision(world: World, _principal: str) -> Call:
    page = world.admin("GET", "/v1/config/revisions?kind=Blueprint&identifier=service&limit=1")
    return f"/v1/config/revisions/{page['items'][0]['id']}", None


def _action(identifier: str) -> dict[str, Any]:
    fresh = {k: v for k, v in DEPLOY.items() if k != "permissions"}
    return {**fresh, "identifier": identifier}


def _fresh_action(world: World, _principal: str) -> Call:
    identifier = world.fresh("act").replace("-", "_")
    world.admin("POST", "/v1/actions", _action(identifier))
    return f"/v1/actions/{identifier}", None


def _new_action(world: World, _principal: str) -> Call:
    return "/v1/actions", _action(world.fresh("made").replace("-", "_"))


def _fresh_scorecard(world: World, _principal: str) -> Call:
    identifier = world.fresh("card").replace("-", "_")
    world.admin("POST", "/v1/blueprints/service/scorecards", {**READINESS, "identifier": identifier})
    return f"/v1/blueprints/service/scorecards/{identifier}", None


def _new_scorecard(world: World, _principal: str) -> Call:
    identifier = world.fresh("made").replace("-", "_")
    return "/v1/blueprints/service/scorecards", {**READINESS, "identifier": identifier}


def _fresh_automation(world: World, _principal: str) -> Call:
    identifier = world.fresh("auto").replace("-", "_")
    world.admin("POST", "/v1/automations", _automation(identifier))
    return f"/v1/automations/{identifier}", None


def _new_automation(world: World, _principal: str) -> Call:
    return "/v1/automations", _automation(world.fresh("made").replace("-", "_"))


def _data_source(identifier: str) -> dict[str, Any]:
    mappings = {"identifier": ".name", "blueprint": '"service"', "properties": {"language": ".language"}}
    return {
        "identifier": identifier,
        "kind": "github",
        "resources": [{"kind": "repository", "port": {"entity": {"mappings": mappings}}}],
    }


HOOKS: dict[str, Any] = {
    **_data_source("hooks"),
    "kind": "webhook",
    "security": {"secret_env": "GANTRY_WEBHOOK_MATRIX_UNSET"},
}


def _service(world: World, method: str, url: str, body: Any) -> Any:
    response = world.client.request(method, url, json=body, headers=_bearer(SERVICE_TOKEN))
    assert response.status_code < 300, (method, url, response.text)
    return response.json()


def _fresh_source(world: World, _principal: str) -> Call:
    identifier = world.fresh("src").replace("-", "_")
    world.admin("POST", "/v1/data-sources", _data_source(identifier))
    return f"/v1/data-sources/{identifier}", None


def _new_source(world: World, _principal: str) -> Call:
    return "/v1/data-sources", _data_source(world.fresh("made").replace("-", "_"))


def _fresh_sync(world: World, _principal: str) -> Call:
    sync_id = world.fresh("sync")
    _service(world, "PUT", f"/v1/data-sources/repos/syncs/{sync_id}", {"trigger": "SCHEDULE"})
    return f"/v1/data-sources/repos/syncs/{sync_id}/complete", {"status": "FAILURE"}


ENTITY = "/v1/blueprints/service/entities/payments"
READINESS_EXEMPTIONS = "/v1/blueprints/service/scorecards/readiness/exemptions"


def _exemption_request() -> dict[str, Any]:
    expires = (utcnow() + timedelta(days=30)).replace(microsecond=0).isoformat()
    return {"entity": "payments", "rule": "has_owner", "reason": "matrix", "expires_at": expires}


def _fresh_exemption(world: World, _principal: str) -> Call:
    """An approved exemption of payments that olive asked for, written as its run's end would."""
    identifier = world.fresh("ex")
    now = utcnow()
    with world.client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        entity_id = session.query(Entity.id).filter_by(blueprint="service", identifier="payments").scalar()
        session.add(
            ScorecardExemption(
                id=identifier,
                blueprint="service",
                scorecard="readiness",
                entity_id=entity_id,
                entity="payments",
                rule="has_owner",
                reason="matrix",
                expires_at=now + timedelta(days=30),
                status="APPROVED",
                run_id=f"r_{identifier}",
                requested_by="olive",
                created_at=now,
                updated_at=now,
            )
        )
        session.commit()
    return f"{READINESS_EXEMPTIONS}/{identifier}", None


SERVICE_PUT = {
    **SERVICE_BLUEPRINT,
    "moderators": {"users": [], "teams": ["platform"]},
    "timers": {"expires_at": {"max_ttl": "P30D", "max_extension": "P7D"}},
}
CALLS: dict[str, Maker] = {
    "GET /healthz": _fixed("/healthz"),
    "GET /readyz": _fixed("/readyz"),
    "GET /docs": _fixed("/docs"),
    "GET /redoc": _fixed("/redoc"),
    "GET /v1/blueprints": _fixed("/v1/blueprints"),
    "POST /v1/blueprints": _new_blueprint,
    "GET /v1/blueprints/{blueprint}": _fixed("/v1/blueprints/service"),
    "PUT /v1/blueprints/{blueprint}": _fixed("/v1/blueprints/service", SERVICE_PUT),
    "PATCH /v1/blueprints/{blueprint}": _fixed("/v1/blueprints/system", {"title": "System"}),
    "DELETE /v1/blueprints/{blueprint}": _fresh_blueprint,
    "GET /v1/blueprints/{blueprint}/entities": _fixed("/v1/blueprints/service/entities"),
    "POST /v1/blueprints/{blueprint}/entities": _new_entity,
    "POST /v1/blueprints/{blueprint}/entities/bulk": _bulk,
    "GET /v1/blueprints/{blueprint}/entities/{identifier}": _fixed(ENTITY),
    "PUT /v1/blueprints/{blueprint}/entities/{identifier}": lambda _w, _p: (ENTITY, _payments()),
    "PATCH /v1/blueprints/{blueprint}/entities/{identifier}": _fixed(ENTITY, {"title": "Payments"}),
    "DELETE /v1/blueprints/{blueprint}/entities/{identifier}": _fresh_entity,
    "POST /v1/entities/search": _fixed("/v1/entities/search", {"query": {"combinator": "and", "rules": []}}),
    "GET /v1/me": _fixed("/v1/me"),
    "GET /v1/users": _fixed("/v1/users"),
    "POST /v1/users": _new_user,
    "GET /v1/users/{identifier}": _fixed("/v1/users/olive"),
    "PATCH /v1/users/{identifier}": _fixed("/v1/users/oscar", {"name": "Oscar"}),
    "DELETE /v1/users/{identifier}": _fresh_user,
    "GET /v1/teams": _fixed("/v1/teams"),
    "POST /v1/teams": _new_team,
    "GET /v1/teams/{identifier}": _fixed("/v1/teams/payments-team"),
    "PATCH /v1/teams/{identifier}": _fixed("/v1/teams/search-team", {"title": "Search"}),
    "DELETE /v1/teams/{identifier}": _fresh_team,
    "POST /v1/tokens": _own_token,
    "GET /v1/tokens": _fixed("/v1/tokens"),
    "DELETE /v1/tokens/{token_id}": _olive_token,
    "GET /v1/audit-log": _fixed("/v1/audit-log"),
    "GET /v1/config/revisions": _fixed("/v1/config/revisions"),
    "GET /v1/config/revisions/{revision}": _service_revision,
    "GET /v1/events": _fixed("/v1/events"),
    "GET /v1/actions": _fixed("/v1/actions"),
    "POST /v1/actions": _new_action,
    "GET /v1/actions/{action}": _fixed("/v1/actions/deploy_service"),
    "PUT /v1/actions/{action}": _fixed("/v1/actions/deploy_service", DEPLOY),
    "DELETE /v1/actions/{action}": _fresh_action,
    "POST /v1/actions/{action}/runs": _fixed(
        "/v1/actions/deploy_service/runs", {"entity": "payments", "inputs": {"version": "v2"}}
    ),
    "POST /v1/actions/{action}/check": _fixed("/v1/actions/deploy_service/check", {"entity": "payments"}),
    "GET /v1/runs": _fixed("/v1/runs"),
    "GET /v1/runs/{run_id}": _fixed(f"/v1/runs/{ACTIVE_RUN}"),
    "GET /v1/runs/{run_id}/logs": _fixed(f"/v1/runs/{ACTIVE_RUN}/logs"),
    "POST /v1/runs/{run_id}/cancel": _fixed(f"/v1/runs/{ACTIVE_RUN}/cancel"),
    "POST /v1/runs/{run_id}/retry": _fixed(f"/v1/runs/{ENDED_RUN}/retry"),
    "POST /v1/runs/{run_id}/approval": _fixed(f"/v1/runs/{ACTIVE_RUN}/approval", {"decision": "APPROVE"}),
    "POST /v1/runs/{run_id}/report": _fixed(
        f"/v1/runs/{ACTIVE_RUN}/report", {"logs": [{"seq": 1, "message": "waiting"}]}
    ),
    "GET /v1/runs/{run_id}/secrets": _fixed(f"/v1/runs/{ACTIVE_RUN}/secrets"),
    "POST /v1/runs/{run_id}/children": _fixed(
        f"/v1/runs/{ACTIVE_RUN}/children",
        {"step_id": "record", "action": "deploy_service", "entity": "payments", "inputs": {"version": "v3"}},
    ),
    "POST /v1/runs/reconcile": _fixed("/v1/runs/reconcile"),
    "GET /v1/timers": _fixed("/v1/timers"),
    "POST /v1/blueprints/{blueprint}/entities/{identifier}/timers/{prop}/extend": _fixed(
        f"{ENTITY}/timers/expires_at/extend", {"by": "P1D"}
    ),
    "POST /v1/timers/reports": _fixed(
        "/v1/timers/reports", {"reports": [{"timer_id": TIMER, "report": {"state": "armed"}}]}
    ),
    "POST /v1/timers/{timer_id}/report": _fixed(f"/v1/timers/{TIMER}/report", {"state": "armed"}),
    "GET /v1/blueprints/{blueprint}/scorecards": _fixed("/v1/blueprints/service/scorecards"),
    "POST /v1/blueprints/{blueprint}/scorecards": _new_scorecard,
    "GET /v1/blueprints/{blueprint}/scorecards/{scorecard}": _fixed(
        "/v1/blueprints/service/scorecards/readiness"
    ),
    "PUT /v1/blueprints/{blueprint}/scorecards/{scorecard}": _fixed(
        "/v1/blueprints/service/scorecards/readiness", READINESS
    ),
    "DELETE /v1/blueprints/{blueprint}/scorecards/{scorecard}": _fresh_scorecard,
    "GET /v1/blueprints/{blueprint}/scorecards/{scorecard}/results": _fixed(
        "/v1/blueprints/service/scorecards/readiness/results"
    ),
    "GET /v1/blueprints/{blueprint}/scorecard-history": _fixed(
        "/v1/blueprints/service/scorecard-history?entity=payments"
    ),
    "POST /v1/scorecards/regrade": _fixed("/v1/scorecards/regrade"),
    f"POST {EXEMPTIONS}": lambda _w, _p: (READINESS_EXEMPTIONS, _exemption_request()),
    f"GET {EXEMPTIONS}": _fixed(READINESS_EXEMPTIONS),
    f"GET {EXEMPTIONS}/{{exemption_id}}": _fresh_exemption,
    f"DELETE {EXEMPTIONS}/{{exemption_id}}": _fresh_exemption,
    f"POST {EXEMPTIONS}/{{exemption_id}}/expire": lambda w, p: (f"{_fresh_exemption(w, p)[0]}/expire", None),
    "GET /v1/automations": _fixed("/v1/automations"),
    "POST /v1/automations": _new_automation,
    "GET /v1/automations/{identifier}": _fixed("/v1/automations/welcome"),
    "PUT /v1/automations/{identifier}": _fixed("/v1/automations/welcome", _automation("welcome")),
    "DELETE /v1/automations/{identifier}": _fresh_automation,
    "GET /v1/initiatives": _fixed("/v1/initiatives"),
    "POST /v1/initiatives": _fixed("/v1/initiatives", {**INITIATIVE, "identifier": "made-initiative"}),
    "GET /v1/initiatives/{identifier}": _fixed("/v1/initiatives/ready"),
    "PUT /v1/initiatives/{identifier}": _fixed("/v1/initiatives/ready", INITIATIVE),
    "DELETE /v1/initiatives/{identifier}": _fixed("/v1/initiatives/ready"),
    "GET /v1/initiatives/{identifier}/progress": _fixed("/v1/initiatives/ready/progress"),
    "POST /v1/initiatives/{identifier}/reminders": _fixed(
        "/v1/initiatives/ready/reminders", {"key": "matrix", "remind_before": "P1D"}
    ),
    "POST /v1/initiatives/{identifier}/deadline": _fixed(
        "/v1/initiatives/ready/deadline", {"deadline": INITIATIVE["deadline"]}
    ),
    "GET /v1/blueprints/{blueprint}/scorecards/{scorecard}/trend": _fixed(
        "/v1/blueprints/service/scorecards/readiness/trend?interval=week"
    ),
    "POST /v1/slack/interactions": _fixed("/v1/slack/interactions"),
    "GET /v1/data-sources": _fixed("/v1/data-sources"),
    "POST /v1/data-sources": _new_source,
    "GET /v1/data-sources/{data_source}": _fixed("/v1/data-sources/repos"),
    "PUT /v1/data-sources/{data_source}": _fixed("/v1/data-sources/repos", _data_source("repos")),
    "DELETE /v1/data-sources/{data_source}": _fresh_source,
    "POST /v1/data-sources/{data_source}/preview": _fixed(
        "/v1/data-sources/repos/preview", {"items": [{"name": "api", "language": "go"}]}
    ),
    "GET /v1/data-sources/{data_source}/syncs": _fixed("/v1/data-sources/repos/syncs"),
    "POST /v1/data-sources/{data_source}/syncs": _fixed("/v1/data-sources/repos/syncs"),
    "GET /v1/data-sources/{data_source}/syncs/{sync_id}": _fixed("/v1/data-sources/repos/syncs/seeded"),
    "PUT /v1/data-sources/{data_source}/syncs/{sync_id}": _fixed(
        "/v1/data-sources/repos/syncs/seeded", {"trigger": "SCHEDULE"}
    ),
    "POST /v1/data-sources/{data_source}/syncs/{sync_id}/items": _fixed(
        "/v1/data-sources/repos/syncs/seeded/items", {"resource": 0, "page": "", "items": []}
    ),
    "POST /v1/data-sources/{data_source}/syncs/{sync_id}/complete": _fresh_sync,
    "GET /v1/data-sources/{data_source}/deliveries": _fixed("/v1/data-sources/hooks/deliveries"),
    "POST /v1/webhooks/{data_source}": _fixed("/v1/webhooks/hooks", {"action": "opened"}),
    "POST /v1/ui/sign-in-codes": _fixed("/v1/ui/sign-in-codes"),
}


# ---- the routes the app serves ------------------------------------------------------------


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """Every APIRoute, also inside included routers (which this FastAPI keeps nested)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "include_context"):
            yield from _api_routes(route.include_context.included_router.routes)
        elif hasattr(route, "routes"):
            yield from _api_routes(route.routes)


def served_routes(app: FastAPI) -> set[str]:
    """``METHOD PATH`` of every route: the OpenAPI document's and those left out of it."""
    documented = {
        f"{method.upper()} {path}"
        for path, item in app.openapi()["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    every = {
        f"{method} {route.path.replace(':path', '')}"
        for route in _api_routes(list(app.routes))
        for method in (route.methods or set()) - {"HEAD", "OPTIONS"}
    }
    return documented | every


def _hidden_routes(app: FastAPI) -> set[str]:
    return {
        f"{method} {route.path}"
        for route in _api_routes(list(app.routes))
        if not route.include_in_schema
        for method in route.methods or set()
    }


# ---- the test -----------------------------------------------------------------------------


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[World]:
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path,
        admin_token=ADMIN_TOKEN,
        service_token=SERVICE_TOKEN,
        secret_key="matrix-secret-key-0123456789abcdef",
        slack_signing_secret="matrix-slack-signing-secret-0123456789",
        slack_bot_token="xoxb-matrix",
        temporal_address=f"127.0.0.1:{free_port()}",  # down: workflow calls answer 503
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        found = World(client)
        _seed(found)
        yield found


def test_every_route_has_a_row(world: World) -> None:
    app: FastAPI = world.client.app  # type: ignore[assignment]
    missing = sorted(served_routes(app) - set(EXPECTED))
    assert not missing, "\n".join(f"add a row for {route}" for route in missing)
    assert set(CALLS) == set(EXPECTED), set(CALLS) ^ set(EXPECTED)
    assert "GET /v1/runs/{run_id}/secrets" in _hidden_routes(app)  # the hidden ones are walked too


def test_authorization_matrix(world: World) -> None:
    app: FastAPI = world.client.app  # type: ignore[assignment]
    routes = sorted(served_routes(app) & set(EXPECTED), key=lambda r: (r.split()[0] == "DELETE", r))
    mismatches = []
    for route in routes:
        method = route.split()[0]
        for principal in PRINCIPALS:
            url, body = CALLS[route](world, principal)
            headers = _bearer(world.tokens[principal]) if principal != "anonymous" else {}
            response = world.client.request(method, url, json=body, headers=headers)
            expected = EXPECTED[route][principal]
            if response.status_code != expected:
                detail = response.text[:160].replace("\n", " ")
                mismatches.append(
                    f"{route:<75} {principal:<13} expected {expected}, got {response.status_code}: {detail}"
                )
    assert not mismatches, f"{len(mismatches)} calls answered otherwise:\n" + "\n".join(mismatches)
