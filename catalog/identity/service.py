"""Users, teams and API tokens. Tokens are random secrets shown once and stored as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from catalog import audit
from catalog.audit import Actor
from catalog.db import utcnow
from catalog.errors import Conflict, FieldError, Forbidden, Invalid, NotFound
from catalog.identity.agents import agent_fields, check_agent_fields, create_agent
from catalog.identity.permissions import ADMIN, SERVICE
from catalog.models import AgentToken, ApiToken, Team, TeamMembership, User
from catalog.schemas import TeamIn, TeamPatch, TokenIn, UserIn, UserPatch
from catalog.timefmt import format_instant, format_optional

TOKEN_PREFIX = "gnt_"
# The users GANTRY_ADMIN_TOKEN and GANTRY_SERVICE_TOKEN bootstrap.
ADMIN_USER = "admin"
SERVICE_USER = "gantry-worker"
ADMIN_TOKEN_ID = "tok_bootstrap_admin"
SERVICE_TOKEN_ID = "tok_bootstrap_service"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# ---- teams -------------------------------------------------------------------------------


def team_to_dict(team: Team) -> dict[str, Any]:
    return {"identifier": team.identifier, "title": team.title, "description": team.description}


def get_team(session: Session, identifier: str) -> Team:
    team = session.get(Team, identifier)
    if team is None:
        raise NotFound(f"team '{identifier}' not found")
    return team


def list_teams(session: Session) -> list[Team]:
    return list(session.scalars(select(Team).order_by(Team.identifier)))


def create_team(session: Session, body: TeamIn, actor: Actor) -> Team:
    if session.get(Team, body.identifier) is not None:
        raise Conflict(f"team '{body.identifier}' already exists")
    team = Team(identifier=body.identifier, title=body.title, description=body.description)
    session.add(team)
    audit.record(session, actor, "CREATE", "team", team.identifier, after=team_to_dict(team))
    return team


def update_team(session: Session, identifier: str, body: TeamPatch, actor: Actor) -> Team:
    team = get_team(session, identifier)
    before = team_to_dict(team)
    for name, value in body.model_dump(exclude_unset=True).items():
        if value is not None:
            setattr(team, name, value)
    audit.record(session, actor, "UPDATE", "team", identifier, before=before, after=team_to_dict(team))
    return team


def delete_team(session: Session, identifier: str, actor: Actor) -> None:
    team = get_team(session, identifier)
    before = team_to_dict(team)
    session.execute(delete(TeamMembership).where(TeamMembership.team == identifier))
    session.delete(team)
    audit.record(session, actor, "DELETE", "team", identifier, before=before)


def missing_teams(session: Session, identifiers: set[str]) -> set[str]:
    if not identifiers:
        return set()
    found = set(session.scalars(select(Team.identifier).where(Team.identifier.in_(identifiers))))
    return identifiers - found


# ---- users -------------------------------------------------------------------------------


def user_teams(session: Session, identifier: str) -> list[str]:
    stmt = select(TeamMembership.team).where(TeamMembership.user == identifier).order_by(TeamMembership.team)
    return list(session.scalars(stmt))


def user_to_dict(session: Session, user: User) -> dict[str, Any]:
    return {
        "identifier": user.identifier,
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "teams": user_teams(session, user.identifier),
    }


def get_user(session: Session, identifier: str) -> User:
    user = session.get(User, identifier)
    if user is None:
        raise NotFound(f"user '{identifier}' not found")
    return user


def list_users(session: Session, *, team: str | None = None) -> list[User]:
    stmt = select(User).order_by(User.identifier)
    if team is not None:
        stmt = stmt.join(TeamMembership, TeamMembership.user == User.identifier).where(
            TeamMembership.team == team
        )
    return list(session.scalars(stmt))


def normalize_email(email: str) -> str:
    """The stored form of an email: emails are unique case-insensitively, so
    ``Alice@example.com`` and ``alice@example.com`` are one user."""
    return email.strip().lower()


def user_by_email(session: Session, email: str) -> User | None:
    """The user with this email, whatever its case (stored lower-cased: the unique index serves)."""
    return session.scalar(select(User).where(User.email == normalize_email(email)))


def missing_users(session: Session, references: set[str]) -> set[str]:
    """The references (user identifiers or emails, in any case) that name no user."""
    if not references:
        return set()
    ids = set(session.scalars(select(User.identifier).where(User.identifier.in_(references))))
    lowered = {normalize_email(r) for r in references - ids}
    emails = set(session.scalars(select(User.email).where(User.email.in_(lowered))))
    return {r for r in references - ids if normalize_email(r) not in emails}


def _set_teams(session: Session, identifier: str, teams: list[str]) -> None:
    unknown = missing_teams(session, set(teams))
    if unknown:
        details = [
            FieldError(f"/teams/{teams.index(t)}", f"team '{t}' does not exist") for t in sorted(unknown)
        ]
        raise Invalid("unknown teams", details)
    session.execute(delete(TeamMembership).where(TeamMembership.user == identifier))
    session.add_all(TeamMembership(user=identifier, team=t) for t in dict.fromkeys(teams))


def _check_email_free(session: Session, email: str, identifier: str) -> None:
    owner = user_by_email(session, email)
    if owner is not None and owner.identifier != identifier:
        raise Conflict(
            f"email '{email}' belongs to user '{owner.identifier}'", [FieldError("/email", "already in use")]
        )


def create_user(session: Session, body: UserIn, actor: Actor) -> User:
    if session.get(User, body.identifier) is not None:
        raise Conflict(f"user '{body.identifier}' already exists")
    _check_email_free(session, body.email, body.identifier)
    user = User(identifier=body.identifier, email=normalize_email(body.email), name=body.name, role=body.role)
    session.add(user)
    session.flush()
    _set_teams(session, user.identifier, body.teams)
    audit.record(session, actor, "CREATE", "user", user.identifier, after=user_to_dict(session, user))
    return user


def update_user(session: Session, identifier: str, body: UserPatch, actor: Actor) -> User:
    user = get_user(session, identifier)
    before = user_to_dict(session, user)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("email"):
        _check_email_free(session, changes["email"], identifier)
        changes["email"] = normalize_email(changes["email"])
    for name in ("email", "name", "role"):
        if changes.get(name) is not None:
            setattr(user, name, changes[name])
    if changes.get("teams") is not None:
        _set_teams(session, identifier, changes["teams"])
    session.flush()
    audit.record(
        session, actor, "UPDATE", "user", identifier, before=before, after=user_to_dict(session, user)
    )
    return user


def delete_user(session: Session, identifier: str, actor: Actor) -> None:
    user = get_user(session, identifier)
    before = user_to_dict(session, user)
    session.execute(delete(TeamMembership).where(TeamMembership.user == identifier))
    session.execute(delete(ApiToken).where(ApiToken.user == identifier))
    session.delete(user)
    audit.record(session, actor, "DELETE", "user", identifier, before=before)


# ---- tokens ------------------------------------------------------------------------------


def token_to_dict(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "user": token.user,
        "description": token.description,
        "expires_at": format_optional(token.expires_at),
        "created_at": format_instant(token.created_at),
    }


def token_view(session: Session, token: ApiToken) -> dict[str, Any]:
    """A token as the API shows it: with its agent's narrowing when it is an agent's."""
    return {**token_to_dict(token), **agent_fields(session.get(AgentToken, token.id))}


def create_token(session: Session, body: TokenIn, actor: Actor, caller: User) -> tuple[ApiToken, str]:
    """A new token and its secret (returned once, never stored in clear). Admins make tokens for
    anyone; members and viewers for themselves (a viewer reads through a token too); the
    worker's service principal has GANTRY_SERVICE_TOKEN and mints no other. An agent token
    (``kind: agent``) belongs to its owner ``user``: the same rule says who may make one."""
    check_agent_fields(body)
    if caller.role == SERVICE:
        raise Forbidden("the service principal cannot create tokens")
    if caller.role != ADMIN and body.user != caller.identifier:
        raise Forbidden("members and viewers can create tokens for themselves only")
    get_user(session, body.user)
    if body.expires_at is not None:
        if body.expires_at.tzinfo is None:
            raise Invalid("invalid expiry", [FieldError("/expires_at", "must include a time zone")])
        if body.expires_at <= utcnow():
            raise Invalid("invalid expiry", [FieldError("/expires_at", "must be in the future")])
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        id="tok_" + secrets.token_hex(8),
        user=body.user,
        token_hash=hash_token(secret),
        description=body.description,
        expires_at=body.expires_at,
        created_at=utcnow(),
        created_by=actor.user,
    )
    session.add(token)
    after = token_to_dict(token)
    if body.kind == "agent":
        session.flush()  # the agent row points at the token
        after |= agent_fields(create_agent(session, token, body))
    audit.record(session, actor, "CREATE", "token", token.id, after=after)
    return token, secret


def list_tokens(session: Session, caller: User, *, user: str | None = None) -> list[ApiToken]:
    """An admin lists everyone's tokens (or ``user``'s); anyone else only their own."""
    stmt = select(ApiToken).order_by(ApiToken.created_at)
    if caller.role != ADMIN:
        if user is not None and user != caller.identifier:
            raise Forbidden("listing the tokens of others needs the admin role")
        stmt = stmt.where(ApiToken.user == caller.identifier)
    elif user is not None:
        stmt = stmt.where(ApiToken.user == user)
    return list(session.scalars(stmt))


def delete_token(session: Session, token_id: str, actor: Actor, caller: User) -> None:
    token = session.get(ApiToken, token_id)
    # Another user's token answers 404 to a non-admin: its existence is not theirs to know.
    if token is None or (caller.role != ADMIN and token.user != caller.identifier):
        raise NotFound(f"token '{token_id}' not found")
    before = token_to_dict(token)
    session.delete(token)
    audit.record(session, actor, "DELETE", "token", token_id, before=before)


def authenticate(session: Session, secret: str, now: datetime) -> User | None:
    """The user a bearer token belongs to, or None if it is unknown or expired."""
    found = authenticate_token(session, secret, now)
    return None if found is None else found[0]


def authenticate_token(session: Session, secret: str, now: datetime) -> tuple[User, str] | None:
    """The user a bearer token belongs to and the token's id, or None if unknown or expired."""
    stmt = (
        select(User, ApiToken.expires_at, ApiToken.id)
        .join(ApiToken, ApiToken.user == User.identifier)
        .where(ApiToken.token_hash == hash_token(secret))
    )
    row = session.execute(stmt).first()
    if row is None or (row.expires_at is not None and row.expires_at <= now):
        return None
    user: User = row[0]
    return user, row.id


def ensure_bootstrap_user(
    session: Session, *, identifier: str, email: str, name: str, role: str, secret: str, token_id: str
) -> None:
    """Idempotently make a user of ``role`` owning a token with this secret (admin and service tokens)."""
    system = Actor("system")
    user = session.get(User, identifier)
    if user is None:
        session.add(User(identifier=identifier, email=email, name=name, role=role))
        session.flush()
        audit.record(
            session, system, "CREATE", "user", identifier, after={"identifier": identifier, "role": role}
        )
    elif user.role != role:
        before = {"identifier": identifier, "role": user.role}
        user.role = role
        audit.record(session, system, "UPDATE", "user", identifier, before=before, after={"role": role})
    token = session.get(ApiToken, token_id)
    digest = hash_token(secret)
    if token is None:
        session.add(
            ApiToken(id=token_id, user=identifier, token_hash=digest, description=f"bootstrap {name}")
        )
        audit.record(session, system, "CREATE", "token", token_id, after={"id": token_id, "user": identifier})
    elif token.token_hash != digest:
        token.token_hash = digest
        audit.record(session, system, "UPDATE", "token", token_id, after={"id": token_id, "rotated": True})


def revoke_bootstrap_token(session: Session, token_id: str) -> None:
    """The bootstrap token of a setting that is no longer set stops working."""
    token = session.get(ApiToken, token_id)
    if token is not None:
        before = token_to_dict(token)
        session.delete(token)
        audit.record(session, Actor("system"), "DELETE", "token", token_id, before=before)
