"""Users, teams, API tokens and ``/v1/me``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request, Response

from api.deps import ActorDep, AdminUser, CurrentUser, SessionDep, current_agent
from api.etag import STALE_WRITE, DryRun, IfMatch, check_if_match, settle, tagged
from api.openapi import errors
from api.schemas import Cursor, Limit, MeView, NewToken, Page, TeamView, TokenView, UserView
from catalog.identity import service
from catalog.models import ApiToken
from catalog.pagination import page_after
from catalog.schemas import TeamIn, TeamPatch, TokenIn, UserIn, UserPatch

router = APIRouter(tags=["identity"])


@router.get("/v1/me", response_model=MeView, operation_id="get_me", response_model_exclude_unset=True)
def me(request: Request, session: SessionDep, user: CurrentUser) -> dict[str, Any]:
    """The caller's user; for an agent token, the user who owns it and the agent's narrowing."""
    answer = service.user_to_dict(session, user)
    agent = current_agent(request)
    if agent is not None:
        answer["agent"] = {
            "name": agent.name,
            "allowed_actions": sorted(agent.allowed_actions),
            "runs_per_hour": agent.runs_per_hour,
            "read_only": agent.read_only,
        }
    return answer


@router.get("/v1/users", response_model=Page[UserView])
def list_users(
    session: SessionDep, _: CurrentUser, team: str | None = None, limit: Limit = 100, cursor: Cursor = None
) -> dict[str, Any]:
    users = service.list_users(session, team=team)
    page = page_after(users, lambda u: [u.identifier], limit=limit, cursor=cursor)
    return {"items": [service.user_to_dict(session, u) for u in page.items], "next_cursor": page.next_cursor}


@router.post("/v1/users", status_code=201, response_model=UserView, responses=errors(409))
def create_user(
    session: SessionDep, _: AdminUser, actor: ActorDep, dry_run: DryRun = False, body: UserIn = Body()
) -> dict[str, Any]:
    user = service.create_user(session, body, actor)
    return settle(session, dry_run, lambda: service.user_to_dict(session, user))


@router.get("/v1/users/{identifier}", response_model=UserView)
def get_user(identifier: str, session: SessionDep, _: CurrentUser, response: Response) -> dict[str, Any]:
    return tagged(response, service.user_to_dict(session, service.get_user(session, identifier)))


@router.patch("/v1/users/{identifier}", response_model=UserView, responses={**errors(409), **STALE_WRITE})
def patch_user(
    identifier: str,
    session: SessionDep,
    _: AdminUser,
    actor: ActorDep,
    if_match: IfMatch = None,
    dry_run: DryRun = False,
    body: UserPatch = Body(),
) -> dict[str, Any]:
    check_if_match(if_match, lambda: service.user_to_dict(session, service.get_user(session, identifier)))
    user = service.update_user(session, identifier, body, actor)
    return settle(session, dry_run, lambda: service.user_to_dict(session, user))


@router.delete("/v1/users/{identifier}", status_code=204, responses=errors(409))
def delete_user(identifier: str, session: SessionDep, _: AdminUser, actor: ActorDep) -> None:
    service.delete_user(session, identifier, actor)
    session.commit()


@router.get("/v1/teams", response_model=Page[TeamView])
def list_teams(
    session: SessionDep, _: CurrentUser, limit: Limit = 100, cursor: Cursor = None
) -> dict[str, Any]:
    page = page_after(service.list_teams(session), lambda t: [t.identifier], limit=limit, cursor=cursor)
    return {"items": [service.team_to_dict(t) for t in page.items], "next_cursor": page.next_cursor}


@router.post("/v1/teams", status_code=201, response_model=TeamView, responses=errors(409))
def create_team(
    session: SessionDep, _: AdminUser, actor: ActorDep, dry_run: DryRun = False, body: TeamIn = Body()
) -> dict[str, Any]:
    team = service.create_team(session, body, actor)
    return settle(session, dry_run, lambda: service.team_to_dict(team))


@router.get("/v1/teams/{identifier}", response_model=TeamView)
def get_team(identifier: str, session: SessionDep, _: CurrentUser, response: Response) -> dict[str, Any]:
    return tagged(response, service.team_to_dict(service.get_team(session, identifier)))


@router.patch("/v1/teams/{identifier}", response_model=TeamView, responses=STALE_WRITE)
def patch_team(
    identifier: str,
    session: SessionDep,
    _: AdminUser,
    actor: ActorDep,
    if_match: IfMatch = None,
    dry_run: DryRun = False,
    body: TeamPatch = Body(),
) -> dict[str, Any]:
    check_if_match(if_match, lambda: service.team_to_dict(service.get_team(session, identifier)))
    team = service.update_team(session, identifier, body, actor)
    return settle(session, dry_run, lambda: service.team_to_dict(team))


@router.delete("/v1/teams/{identifier}", status_code=204)
def delete_team(identifier: str, session: SessionDep, _: AdminUser, actor: ActorDep) -> None:
    service.delete_team(session, identifier, actor)
    session.commit()


@router.post("/v1/tokens", status_code=201, response_model=NewToken, responses=errors(404))
def create_token(
    session: SessionDep, user: CurrentUser, actor: ActorDep, body: TokenIn = Body()
) -> dict[str, Any]:
    """A new API token. The secret is in this response only; the catalog stores its hash."""
    token, secret = service.create_token(session, body, actor, user)
    view = service.token_view(session, token)
    session.commit()
    return {**view, "token": secret}


@router.get("/v1/tokens", response_model=Page[TokenView], responses=errors(403))
def list_tokens(
    session: SessionDep,
    user: CurrentUser,
    for_user: str | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """The caller's tokens (an admin sees everyone's, or ``for_user``'s). Secrets are never listed."""
    tokens = service.list_tokens(session, user, user=for_user)
    page = page_after(tokens, _token_key, limit=limit, cursor=cursor)
    return {"items": [service.token_view(session, t) for t in page.items], "next_cursor": page.next_cursor}


def _token_key(token: ApiToken) -> list[Any]:
    """Tokens are listed by creation time (full precision: one cursor per token), then id."""
    return [token.created_at.isoformat(timespec="microseconds"), token.id]


@router.delete("/v1/tokens/{token_id}", status_code=204)
def delete_token(token_id: str, session: SessionDep, user: CurrentUser, actor: ActorDep) -> None:
    service.delete_token(session, token_id, actor, user)
    session.commit()
