"""The audit log: every write appends who, when, what and the before/after, in the write's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from catalog.db import utcnow
from catalog.errors import FieldError, Invalid
from catalog.models import AuditRecord
from catalog.pagination import Page, check_limit, decode_cursor, encode_cursor
from catalog.timefmt import format_instant


@dataclass(frozen=True)
class Actor:
    """Who is writing: a user identifier (``agent:{name}`` for an agent token), the action run on
    whose behalf (if any), and for an agent the user who owns it and answers for it."""

    user: str
    run_id: str | None = None
    on_behalf_of: str | None = None


def record(
    session: Session,
    actor: Actor,
    operation: str,
    resource_type: str,
    identifier: str,
    *,
    blueprint: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditRecord(
            at=utcnow(),
            actor=actor.user,
            on_behalf_of=actor.on_behalf_of,
            run_id=actor.run_id,
            operation=operation,
            resource_type=resource_type,
            identifier=identifier,
            blueprint=blueprint,
            before=before,
            after=after,
        )
    )


def record_many(session: Session, rows: list[dict[str, Any]]) -> None:
    """Bulk form of :func:`record`: rows with the same keys as its arguments."""
    if rows:
        session.execute(cast(Table, AuditRecord.__table__).insert(), rows)


def audit_row(
    actor: Actor,
    operation: str,
    resource_type: str,
    identifier: str,
    *,
    blueprint: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "at": utcnow(),
        "actor": actor.user,
        "on_behalf_of": actor.on_behalf_of,
        "run_id": actor.run_id,
        "operation": operation,
        "resource_type": resource_type,
        "identifier": identifier,
        "blueprint": blueprint,
        "before": before,
        "after": after,
    }


def list_records(
    session: Session,
    *,
    resource_type: str | None = None,
    blueprint: str | None = None,
    identifier: str | None = None,
    run_id: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> Page[AuditRecord]:
    """Newest first."""
    check_limit(limit)
    stmt = select(AuditRecord)
    filters = {
        AuditRecord.resource_type: resource_type,
        AuditRecord.blueprint: blueprint,
        AuditRecord.identifier: identifier,
        AuditRecord.run_id: run_id,
        AuditRecord.actor: actor,
    }
    for column, value in filters.items():
        if value is not None:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(AuditRecord.at >= since)
    if until is not None:
        stmt = stmt.where(AuditRecord.at < until)
    if cursor:
        (last_id,) = decode_cursor(cursor, size=1)
        if not isinstance(last_id, int):
            raise Invalid("invalid cursor", [FieldError("/cursor", "not a cursor returned by this API")])
        stmt = stmt.where(AuditRecord.id < last_id)
    rows = list(session.scalars(stmt.order_by(AuditRecord.id.desc()).limit(limit + 1)))
    next_cursor = encode_cursor([rows[limit - 1].id]) if len(rows) > limit else None
    return Page(rows[:limit], next_cursor)


def audit_to_dict(row: AuditRecord) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": format_instant(row.at),
        "actor": row.actor,
        "on_behalf_of": row.on_behalf_of,
        "operation": row.operation,
        "resource_type": row.resource_type,
        "identifier": row.identifier,
        "blueprint": row.blueprint,
        "run_id": row.run_id,
        "before": row.before,
        "after": row.after,
    }
