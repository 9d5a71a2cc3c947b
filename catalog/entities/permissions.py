"""Whether one caller may write one entity: the blueprint's policies (catalog/identity/permissions.py)
applied to a create, an update or a delete, with the ownership rules of teams.

Each check answers None (allowed) or the error to report: ``NotFound`` when the caller may not
read the entity (its existence is not leaked), ``Forbidden`` naming what is forbidden by JSON
pointer otherwise. Moderators of the blueprint, admins and the worker's ``service`` principal
pass every check; viewers pass none.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from catalog.errors import CatalogError, FieldError, Forbidden, NotFound, pointer
from catalog.identity.permissions import (
    Principal,
    entity_policy,
    is_moderator,
    may,
    may_update_fields,
    passes,
)
from catalog.models import Blueprint

NO_TEAM = "an entity without a team is changed only by the blueprint's moderators and admins"


def forbidden(message: str, details: list[FieldError]) -> Forbidden:
    error = Forbidden(message)
    error.details = details
    return error


def not_found(bp: Blueprint, identifier: str) -> NotFound:
    return NotFound(f"entity '{identifier}' of blueprint '{bp.identifier}' not found")


def may_read(bp: Blueprint, who: Principal, team: Iterable[str]) -> bool:
    return may(bp, who, "read", team)


def write_denial(
    bp: Blueprint,
    who: Principal,
    identifier: str,
    existing_team: list[str] | None,
    team: list[str],
    base: str,
) -> CatalogError | None:
    """Create (``existing_team`` None) or update an entity so that its team becomes ``team``."""
    if existing_team is not None and not may_read(bp, who, existing_team):
        return not_found(bp, identifier)
    if not who.may_write:
        return forbidden("viewers can read but not change anything", [FieldError(base or "/", "read-only")])
    if is_moderator(bp, who):
        return None
    if existing_team is None:
        return _create_denial(bp, who, identifier, team, base)
    return _update_denial(bp, who, identifier, existing_team, team, base)


def _create_denial(
    bp: Blueprint, who: Principal, identifier: str, team: list[str], base: str
) -> CatalogError | None:
    if not passes(entity_policy(bp, "create"), who, team):
        return forbidden(
            f"you may not create entities of blueprint '{bp.identifier}'",
            [FieldError(f"{base}/identifier", "the blueprint's create permission does not include you")],
        )
    foreign = _foreign(who, team, base)
    if foreign:
        return forbidden(f"entity '{identifier}' may be created only for teams you belong to", foreign)
    return None


def _update_denial(
    bp: Blueprint, who: Principal, identifier: str, before: list[str], after: list[str], base: str
) -> CatalogError | None:
    if not before:
        return forbidden(NO_TEAM, [FieldError(f"{base}/team", NO_TEAM)])
    policy = entity_policy(bp, "update")
    if not passes(policy, who, before):
        return forbidden(
            f"you may not update entity '{identifier}' of blueprint '{bp.identifier}'",
            [FieldError(base or "/", "the blueprint's update permission does not include you")],
        )
    if set(before) == set(after):
        return None
    # Nobody adopts or gives away what they do not own: every team added or removed must be
    # the caller's, and the caller must still pass the update policy afterwards.
    changed = [t for t in [*before, *after] if (t in before) != (t in after)]
    foreign = _foreign(who, changed, base, after)
    if foreign:
        return forbidden(f"you may add or remove only teams you belong to on entity '{identifier}'", foreign)
    if not after or not passes(policy, who, after):
        return forbidden(
            f"after this change you could no longer update entity '{identifier}': ask a moderator",
            [FieldError(f"{base}/team", "you would give the entity away")],
        )
    return None


def _foreign(
    who: Principal, teams: list[str], base: str, positions: list[str] | None = None
) -> list[FieldError]:
    """A detail per team in ``teams`` the caller does not belong to (pointing into ``positions``)."""
    listed = positions if positions is not None else teams
    details = []
    for team in dict.fromkeys(teams):
        if team in who.teams:
            continue
        where = f"{base}/team/{listed.index(team)}" if team in listed else f"{base}/team"
        details.append(FieldError(where, f"you are not a member of team '{team}'"))
    return details


def field_denial(
    bp: Blueprint,
    who: Principal,
    identifier: str,
    owners: list[str],
    properties: Iterable[str],
    relations: Iterable[str],
    base: str,
) -> CatalogError | None:
    """``update_properties``/``update_relations`` narrow ``update`` for the fields changed."""
    denied = may_update_fields(bp, who, owners, properties, relations)
    if not denied:
        return None
    details = [
        FieldError(
            base + pointer(*name.split("/", 1)), "the blueprint's permission for it does not include you"
        )
        for name in denied
    ]
    return forbidden(f"you may not change these fields of entity '{identifier}'", details)


def source_owned_denial(
    identifier: str, source: str, properties: list[str], base: str, relations: Sequence[str] = ()
) -> Forbidden:
    """Properties and relations a data source set: the source names them, and its next sync
    would undo a change anyway; the blueprint's ``update_properties``/``update_relations``
    policy may allow them explicitly."""
    details = [
        FieldError(
            f"{base}/{kind}" + pointer(name),
            f"is set by data source '{source}'; the blueprint's update_{kind} does not allow you to change it",
        )
        for kind, names in (("properties", properties), ("relations", relations))
        for name in names
    ]
    what = " and ".join(k for k, names in (("properties", properties), ("relations", relations)) if names)
    return forbidden(f"entity '{identifier}' has {what} set by data source '{source}'", details)


def delete_denial(bp: Blueprint, who: Principal, identifier: str, team: list[str]) -> CatalogError | None:
    if not may_read(bp, who, team):
        return not_found(bp, identifier)
    if not who.may_write:
        return forbidden("viewers can read but not change anything", [])
    if is_moderator(bp, who):
        return None
    if not team:
        return forbidden(NO_TEAM, [FieldError("/team", NO_TEAM)])
    if not passes(entity_policy(bp, "delete"), who, team):
        return forbidden(
            f"you may not delete entity '{identifier}' of blueprint '{bp.identifier}'",
            [FieldError("/", "the blueprint's delete permission does not include you")],
        )
    return None


def stub_denial(target: Blueprint, who: Principal) -> bool:
    """Whether ``who`` may not create bare (team-less) relation targets in ``target``."""
    return not (who.may_write and (is_moderator(target, who) or passes(entity_policy(target, "create"), who)))
