"""Dependencies routes declare in their signatures: the session, the caller, the actor."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api import agents, ratelimit
from api.temporal import TemporalGateway
from catalog.audit import Actor
from catalog.db import utcnow
from catalog.errors import Forbidden, Unauthenticated
from catalog.identity.agents import AgentGrant, grant_of
from catalog.identity.permissions import ADMIN, SERVICE, VIEWER, Principal, principal_of
from catalog.identity.service import authenticate_token
from catalog.models import User
from config import Settings

bearer = HTTPBearer(auto_error=False, description="an API token (`POST /v1/tokens`)")

RUN_HEADER = "X-Gantry-Run-Id"


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; routes commit, anything unfinished rolls back."""
    with request.app.state.sessionmaker() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def get_temporal(request: Request) -> TemporalGateway:
    """The app's one Temporal gateway (its client is connected lazily and shared)."""
    temporal: TemporalGateway = request.app.state.temporal
    return temporal


TemporalDep = Annotated[TemporalGateway, Depends(get_temporal)]


def current_user(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated()
    found = authenticate_token(session, credentials.credentials, utcnow())
    user, agent = (found[0], grant_of(session, found[1])) if found is not None else (None, None)
    request.state.agent = agent
    # End the read transaction: its connection goes back to the pool while the request waits
    # for a thread for the route. Holding it across that wait let requests holding every
    # connection wait for threads held by requests waiting for connections (seen under a
    # thousand timer teardowns at once).
    session.commit()
    if user is None:
        raise Unauthenticated("the token is unknown, revoked or expired")
    agents.guard(request, session, agent)  # an agent token's narrowing
    ratelimit.enforce(request, session, user, credentials.credentials, agent)  # writes and launches only
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def admin_user(user: CurrentUser) -> User:
    if user.role != ADMIN:
        raise Forbidden("this needs the admin role")
    return user


AdminUser = Annotated[User, Depends(admin_user)]


def service_user(user: CurrentUser) -> User:
    """Worker routes: only the ``service`` principal (GANTRY_SERVICE_TOKEN), never a human."""
    if user.role != SERVICE:
        raise Forbidden("only the worker's service principal may call this route")
    return user


ServiceUser = Annotated[User, Depends(service_user)]


def writer_user(user: CurrentUser) -> User:
    """Anyone but a viewer: viewers read, never write or launch."""
    if user.role == VIEWER:
        raise Forbidden("viewers can read but not change anything")
    return user


WriterUser = Annotated[User, Depends(writer_user)]


def current_agent(request: Request) -> AgentGrant | None:
    """The agent token's narrowing when the caller is an agent (set by :func:`current_user`)."""
    return getattr(request.state, "agent", None)


def current_principal(request: Request, session: SessionDep, user: CurrentUser) -> Principal:
    agent = current_agent(request)
    if agent is not None:
        principal = principal_of(session, user, agent=agent.actor_name, read_only=agent.read_only)
    else:
        principal = principal_of(session, user)
    session.commit()  # as in current_user: hold no connection while waiting for the route
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def current_actor(request: Request, user: CurrentUser) -> Actor:
    """The audit actor. Only the worker's service principal may name the run it writes for."""
    run_id = request.headers.get(RUN_HEADER)
    if run_id and user.role != SERVICE:
        raise Forbidden(f"only the worker's service principal may send {RUN_HEADER}")
    agent = current_agent(request)
    if agent is not None:
        return agent.actor(run_id[:64] if run_id else None)
    return Actor(user.identifier, run_id[:64] if run_id else None)


ActorDep = Annotated[Actor, Depends(current_actor)]
