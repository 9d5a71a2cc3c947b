"""Configuration revisions: every change of a team, user, blueprint, scorecard, action,
automation, data source or initiative, with its before and after, read from the audit log.

Admins read every revision; a blueprint's moderators read those of their blueprints, of the
scorecards on them and of the actions on them (the same objects they may change). Entities,
tokens and runs are not configuration: their writes stay in ``/v1/audit-log``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Query
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from api.deps import PrincipalDep, SessionDep
from api.openapi import errors
from api.schemas import Cursor, Limit, Page, View
from catalog import audit
from catalog.blueprints.service import list_blueprints
from catalog.errors import FieldError, Forbidden, Invalid, NotFound
from catalog.identity.permissions import Principal, is_moderator
from catalog.models import AuditRecord
from catalog.pagination import decode_cursor, encode_cursor

router = APIRouter(tags=["audit"])

# The configuration kinds (as documents name them) and their audit ``resource_type``.
RESOURCE_TYPES = {
    "Team": "team",
    "User": "user",
    "Blueprint": "blueprint",
    "Scorecard": "scorecard",
    "Action": "action",
    "Automation": "automation",
    "DataSource": "data_source",
    "Initiative": "initiative",
}
CHANGES = ("CREATE", "UPDATE", "DELETE")
KIND_OF = {resource: kind for kind, resource in RESOURCE_TYPES.items()}
BATCH = 200


class RevisionView(View):
    """One configuration change: the object's state before and after, who and when."""

    id: int
    at: str
    actor: str
    operation: str
    kind: str
    identifier: str
    blueprint: str | None = None
    run_id: str | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


def _view(row: AuditRecord) -> dict[str, Any]:
    return {**audit.audit_to_dict(row), "kind": KIND_OF[row.resource_type]}


def _moderated(session: Session, who: Principal) -> set[str] | None:
    """The blueprints whose revisions ``who`` may read; None: every revision (admins)."""
    if who.is_admin:
        return None
    mine = {bp.identifier for bp in list_blueprints(session) if is_moderator(bp, who)}
    if not mine or not who.may_write:
        raise Forbidden("only admins and blueprint moderators may read configuration revisions")
    return mine


def _blueprint_of(row: AuditRecord) -> str | None:
    if row.resource_type == "blueprint":
        return row.identifier
    if row.blueprint:
        return row.blueprint
    state = row.after or row.before or {}
    return state.get("blueprint") if row.resource_type == "action" else None


def _visible(rows: Iterator[AuditRecord], moderated: set[str] | None) -> Iterator[AuditRecord]:
    for row in rows:
        if moderated is None or _blueprint_of(row) in moderated:
            yield row


def _rows(session: Session, stmt: Select[Any], before_id: int | None) -> Iterator[AuditRecord]:
    """The rows of ``stmt`` newest first, read in batches (a moderator's are filtered here)."""
    while True:
        batch_stmt = stmt if before_id is None else stmt.where(AuditRecord.id < before_id)
        batch = list(session.scalars(batch_stmt.order_by(AuditRecord.id.desc()).limit(BATCH)))
        yield from batch
        if len(batch) < BATCH:
            return
        before_id = batch[-1].id


@router.get("/v1/config/revisions", response_model=Page[RevisionView], responses=errors(403))
def list_config_revisions(
    session: SessionDep,
    who: PrincipalDep,
    kind: str | None = Query(
        None, description="Team, User, Blueprint, Scorecard, Action, Automation, DataSource, Initiative"
    ),
    identifier: str | None = None,
    blueprint: str | None = Query(None, description="a scorecard's blueprint"),
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Configuration changes, newest first: who changed what, when, before and after."""
    if kind is not None and kind not in RESOURCE_TYPES:
        raise Invalid(
            "unknown kind", [FieldError("/kind", f"one of {', '.join(RESOURCE_TYPES)}, not {kind!r}")]
        )
    before_id: int | None = None
    if cursor:
        (last,) = decode_cursor(cursor, size=1)
        if not isinstance(last, int):
            raise Invalid("invalid cursor", [FieldError("/cursor", "not a cursor returned by this API")])
        before_id = last
    moderated = _moderated(session, who)
    types = [RESOURCE_TYPES[kind]] if kind else list(RESOURCE_TYPES.values())
    # Changes only: an initiative's REPORT (what its run produced) is not a revision.
    stmt = select(AuditRecord).where(AuditRecord.resource_type.in_(types), AuditRecord.operation.in_(CHANGES))
    if identifier is not None:
        stmt = stmt.where(AuditRecord.identifier == identifier)
    if blueprint is not None:
        stmt = stmt.where(AuditRecord.blueprint == blueprint)
    items: list[AuditRecord] = []
    for row in _visible(_rows(session, stmt, before_id), moderated):
        items.append(row)
        if len(items) > limit:
            break
    next_cursor = encode_cursor([items[limit - 1].id]) if len(items) > limit else None
    return {"items": [_view(r) for r in items[:limit]], "next_cursor": next_cursor}


@router.get("/v1/config/revisions/{revision}", response_model=RevisionView, responses=errors(403))
def get_config_revision(revision: int, session: SessionDep, who: PrincipalDep) -> dict[str, Any]:
    """One configuration change, with the object's state before and after it."""
    moderated = _moderated(session, who)
    row = session.get(AuditRecord, revision)
    if row is None or row.resource_type not in KIND_OF or row.operation not in CHANGES:
        raise NotFound(f"revision {revision} not found")
    if not list(_visible(iter([row]), moderated)):
        raise NotFound(f"revision {revision} not found")
    return _view(row)
