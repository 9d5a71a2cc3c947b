"""The guardrails of agent tokens, checked with authentication before any route runs.

Checking here (by route and method) rather than in each route means a write route added later
is refused to a read-only agent without anyone remembering to: the narrowing is the default.
"""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.orm import Session

from api.ratelimit import LAUNCH_ROUTES, WRITE_METHODS, kind_of
from catalog.errors import Forbidden
from catalog.identity.agents import AgentGrant
from catalog.models import Run

APPROVAL_ROUTES = frozenset({"/v1/runs/{run_id}/approval"})
TOKEN_ROUTES = frozenset({"/v1/tokens", "/v1/tokens/{token_id}"})


def is_dry_run(request: Request) -> bool:
    return request.query_params.get("dry_run", "").lower() in ("true", "1")


def guard(request: Request, session: Session, agent: AgentGrant | None) -> None:
    """Refuse (403) what an agent token may never do: approve, mint or revoke tokens, write
    when read-only, launch an action outside its allow-list."""
    if agent is None:
        return
    route = getattr(request.scope.get("route"), "path", None)
    method = request.method
    if route in APPROVAL_ROUTES and method in WRITE_METHODS:
        raise Forbidden(f"agent '{agent.name}' cannot approve or decline: approvals are for humans")
    if route in TOKEN_ROUTES and method in WRITE_METHODS:
        raise Forbidden(f"agent '{agent.name}' cannot create or delete tokens")
    if kind_of(method, route) is None or (route in LAUNCH_ROUTES and is_dry_run(request)):
        return
    if agent.read_only:
        raise Forbidden(f"agent '{agent.name}' has a read-only token: it cannot change anything")
    if route in LAUNCH_ROUTES:
        action = _launched_action(request, session)
        if action is None or not agent.may_launch(action):
            allowed = ", ".join(sorted(agent.allowed_actions)) or "none"
            raise Forbidden(
                f"agent '{agent.name}' may not launch action '{action}' (its allowed actions: {allowed})"
            )


def _launched_action(request: Request, session: Session) -> str | None:
    """The action a launch or a retry starts."""
    if "action" in request.path_params:
        return str(request.path_params["action"])
    run = session.get(Run, str(request.path_params.get("run_id", "")))
    return run.action if run is not None else None
