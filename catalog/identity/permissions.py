"""Who may do what: principals, policies, blueprint moderators and permissions.

A **policy** (Port's shape) passes when the caller matches any of its ``roles``, ``users``,
``teams`` or, with ``owned_by_team``, one of the entity's owning teams. Admins (and the
worker's ``service`` principal, which executes what admins defined) pass every policy. An
explicit policy replaces the default; ``update_properties``/``update_relations`` narrow
``update`` (both must pass).

Defaults, when a blueprint sets no policy:
- read: everyone;
- create: members (and moderators, admins) — a member only for teams they belong to;
- update/delete: the owning teams, moderators, admins.

This module decides; the services and routes call it. What a caller may not read answers
404 (existence is not leaked), what they may read but not change answers 403.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field
from sqlalchemy import and_, false, or_, select, true
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement, False_, True_

from catalog.base import Strict
from catalog.models import Blueprint, Entity, TeamMembership, User
from catalog.query.compiler import owned_by_any, team_overlaps

ADMIN, MEMBER, VIEWER, SERVICE = "admin", "member", "viewer", "service"
ROLES = (ADMIN, MEMBER, VIEWER, SERVICE)
HUMAN_ROLES = (ADMIN, MEMBER, VIEWER)

EntityOperation = Literal["read", "create", "update", "delete"]


class Policy(Strict):
    """``{"roles": [], "users": [], "teams": [], "owned_by_team": false}``."""

    roles: list[Literal["admin", "member", "viewer"]] = Field(default_factory=list)
    users: list[str] = Field(default_factory=list)
    teams: list[str] = Field(default_factory=list)
    owned_by_team: bool = False


class Moderators(Strict):
    users: list[str] = Field(default_factory=list)
    teams: list[str] = Field(default_factory=list)


class BlueprintPermissions(Strict):
    read: Policy | None = None
    create: Policy | None = None
    update: Policy | None = None
    delete: Policy | None = None
    update_properties: dict[str, Policy] = Field(default_factory=dict)
    update_relations: dict[str, Policy] = Field(default_factory=dict)


class ActionPermissions(Strict):
    execute: Policy | None = None
    see: Policy | None = None


@dataclass(frozen=True)
class Principal:
    """The caller as the permission checks see it."""

    identifier: str
    role: str
    email: str = ""
    teams: frozenset[str] = field(default_factory=frozenset)
    # An agent token's principal: ``agent:{name}`` acting for ``identifier`` (its owner).
    agent: str | None = None
    read_only: bool = False

    @property
    def is_admin(self) -> bool:
        """Admins, and the worker executing what admins defined, pass every policy."""
        return self.role in (ADMIN, SERVICE)

    @property
    def is_service(self) -> bool:
        return self.role == SERVICE

    @property
    def may_write(self) -> bool:
        return self.role != VIEWER and not self.read_only


def principal_of(
    session: Session, user: User, *, agent: str | None = None, read_only: bool = False
) -> Principal:
    teams = session.scalars(select(TeamMembership.team).where(TeamMembership.user == user.identifier))
    return Principal(user.identifier, user.role, user.email, frozenset(teams), agent, read_only)


def passes(policy: Policy, who: Principal, owners: Iterable[str] = ()) -> bool:
    if who.is_admin:
        return True
    if who.role in policy.roles or _named(policy.users, who):
        return True
    if who.teams & set(policy.teams):
        return True
    return policy.owned_by_team and bool(who.teams & set(owners))


def _named(users: Iterable[str], who: Principal) -> bool:
    """Whether ``users`` names ``who`` by identifier or by email (emails in any case: they are
    unique case-insensitively and stored lower-cased)."""
    email = who.email.lower()
    return any(u == who.identifier or (email and u.lower() == email) for u in users)


def is_moderator(bp: Blueprint, who: Principal) -> bool:
    if who.is_admin:
        return True
    moderators = Moderators.model_validate(bp.moderators or {})
    return _named(moderators.users, who) or bool(who.teams & set(moderators.teams))


def blueprint_permissions(bp: Blueprint) -> BlueprintPermissions:
    return BlueprintPermissions.model_validate(bp.permissions or {})


def _default(operation: EntityOperation) -> Policy:
    if operation == "read":
        return Policy(roles=[ADMIN, MEMBER, VIEWER])
    if operation == "create":
        return Policy(roles=[ADMIN, MEMBER])
    return Policy(owned_by_team=True)


def entity_policy(bp: Blueprint, operation: EntityOperation) -> Policy:
    return getattr(blueprint_permissions(bp), operation) or _default(operation)


def may(bp: Blueprint, who: Principal, operation: EntityOperation, owners: Iterable[str] = ()) -> bool:
    """Whether ``who`` may do ``operation`` on an entity of ``bp`` owned by ``owners``."""
    if operation != "read" and not who.may_write:
        return False
    if is_moderator(bp, who):
        return True
    return passes(entity_policy(bp, operation), who, owners)


def may_update_fields(
    bp: Blueprint, who: Principal, owners: Iterable[str], properties: Iterable[str], relations: Iterable[str]
) -> list[str]:
    """The ``properties/x`` and ``relations/y`` whose narrowing policy ``who`` fails."""
    if is_moderator(bp, who):
        return []
    perms = blueprint_permissions(bp)
    owners = list(owners)
    denied = [
        f"properties/{p}"
        for p in properties
        if p in perms.update_properties and not passes(perms.update_properties[p], who, owners)
    ]
    denied += [
        f"relations/{r}"
        for r in relations
        if r in perms.update_relations and not passes(perms.update_relations[r], who, owners)
    ]
    return denied


def readable_clause(
    bp: Blueprint, who: Principal, dialect: str, team_column: Any = None
) -> ColumnElement[bool]:
    """SQL that keeps the entities of ``bp`` that ``who`` may read (applied before paging)."""
    if is_moderator(bp, who):
        return true()
    policy = entity_policy(bp, "read")
    if passes(policy, who, ()):
        return true()
    if not (policy.owned_by_team and who.teams):
        return false()
    if team_column is None:  # the entity's own teams: by the team index, not each JSON array
        return owned_by_any(sorted(who.teams))
    return team_overlaps(team_column, sorted(who.teams), dialect)


def _is_constant(clause: ColumnElement[bool], value: bool) -> bool:
    return isinstance(clause, True_ if value else False_)


def read_scope(
    session: Session, who: Principal, dialect: str, blueprints: Iterable[Blueprint] | None = None
) -> tuple[list[str], ColumnElement[bool]] | None:
    """What ``who`` may read across ``blueprints`` (default: all), as SQL over ``Entity``.

    None when every entity is readable (admins, or no blueprint narrows reads): callers add no
    filter at all. Otherwise the blueprints whose every entity is readable, and one condition
    that ORs them with each narrowing blueprint's own clause (so it filters before paging).
    """
    if who.is_admin:
        return None
    listed = list(blueprints) if blueprints is not None else list(session.scalars(select(Blueprint)))
    open_blueprints: list[str] = []
    scoped: list[ColumnElement[bool]] = []
    for bp in listed:
        clause = readable_clause(bp, who, dialect)
        if _is_constant(clause, True):
            open_blueprints.append(bp.identifier)
        elif not _is_constant(clause, False):
            scoped.append(and_(Entity.blueprint == bp.identifier, clause))
    if len(open_blueprints) == len(listed):
        return None
    opened = [Entity.blueprint.in_(open_blueprints)] if open_blueprints else []
    return open_blueprints, or_(false(), *opened, *scoped)
