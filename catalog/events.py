"""The event outbox: changes worth reacting to, written in the transaction of the change.

A relay (``api/relay.py``) delivers undelivered events to Temporal in id order (so in order per
entity) and marks them delivered; deliveries are idempotent (workflow ids derived from the
event), so an event relayed twice after a crash starts nothing twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from catalog.audit import Actor
from catalog.changes.state import EntityChange
from catalog.db import utcnow
from catalog.errors import FieldError, Invalid
from catalog.models import Event
from catalog.pagination import Page, check_limit, decode_cursor, encode_cursor
from catalog.timefmt import format_instant, format_optional

EVENT_TYPES = (
    "ENTITY_CREATED",
    "ENTITY_UPDATED",
    "ENTITY_DELETED",
    "TIMER_EXPIRED",
    "SCORECARD_LEVEL_CHANGED",
    "RUN_CREATED",
    "RUN_UPDATED",
    "INITIATIVE_REMINDER",
    "INITIATIVE_DEADLINE_PASSED",
)
EVENTS = cast(Table, Event.__table__)
# Set in a session's info when it added events: after its commit the relay is woken.
EMITTED = "gantry_events_emitted"


def event_row(
    type_: str,
    actor: Actor,
    *,
    blueprint: str | None = None,
    entity: str | None = None,
    diff: dict[str, Any] | None = None,
    payload: dict[str, Any] | None = None,
    run_id: str | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    return {
        "type": type_,
        "at": at or utcnow(),
        "actor": actor.user,
        "blueprint": blueprint,
        "entity": entity,
        "run_id": run_id or actor.run_id,
        "diff": diff,
        "payload": payload,
        "depth": 0,
        "delivered_at": None,
        "attempts": 0,
        "last_error": None,
    }


def entity_event(change: EntityChange, relayed_timers: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The outbox row of an entity change, with the timer changes the relay passes on."""
    return event_row(
        change.kind.event_type,
        change.actor,
        blueprint=change.blueprint,
        entity=change.identifier,
        diff={"before": change.before, "after": change.after},
        payload={"timers": relayed_timers} if relayed_timers is not None else None,
        at=change.at,
    )


def emit(session: Session, rows: list[dict[str, Any]]) -> None:
    """Add events to the session's transaction."""
    if rows:
        session.execute(EVENTS.insert(), rows)
        session.info[EMITTED] = True


def add(session: Session, row: dict[str, Any]) -> None:
    """Add one event to the session; it is written when the session flushes (at commit)."""
    session.add(Event(**row))
    session.info[EMITTED] = True


def event_view(event: Event) -> dict[str, Any]:
    payload = event.payload or {}
    view: dict[str, Any] = {
        "id": event.id,
        "type": event.type,
        "at": format_instant(event.at),
        "actor": event.actor,
        "blueprint": event.blueprint,
        "entity": event.entity,
        "run_id": event.run_id,
        "diff": event.diff,
        "delivered": event.delivered_at is not None,
        "delivered_at": format_optional(event.delivered_at),
        "attempts": event.attempts,
        "last_error": event.last_error,
    }
    view.update({k: v for k, v in payload.items() if k not in view})
    return view


def list_events(
    session: Session,
    *,
    type_: str | None = None,
    blueprint: str | None = None,
    entity: str | None = None,
    delivered: bool | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> Page[Event]:
    """Newest first."""
    check_limit(limit)
    if type_ is not None and type_ not in EVENT_TYPES:
        raise Invalid("invalid filter", [FieldError("/type", f"must be one of {', '.join(EVENT_TYPES)}")])
    stmt = select(Event)
    for column, value in ((Event.type, type_), (Event.blueprint, blueprint), (Event.entity, entity)):
        if value is not None:
            stmt = stmt.where(column == value)
    if delivered is not None:
        stmt = stmt.where(Event.delivered_at.is_not(None) if delivered else Event.delivered_at.is_(None))
    if cursor:
        (last,) = decode_cursor(cursor, size=1)
        if not isinstance(last, int):
            raise Invalid("invalid cursor", [FieldError("/cursor", "not a cursor returned by this API")])
        stmt = stmt.where(Event.id < last)
    rows = list(session.scalars(stmt.order_by(Event.id.desc()).limit(limit + 1)))
    return Page(rows[:limit], encode_cursor([rows[limit - 1].id]) if len(rows) > limit else None)


def undelivered(session: Session, *, limit: int = 100) -> list[Event]:
    """The oldest undelivered events; PostgreSQL rows are locked so relays in other API
    replicas skip them."""
    stmt = select(Event).where(Event.delivered_at.is_(None)).order_by(Event.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(session.scalars(stmt))


def mark_delivered(session: Session, ids: list[int]) -> None:
    if ids:
        session.execute(
            update(Event).where(Event.id.in_(ids)).values(delivered_at=utcnow(), attempts=Event.attempts + 1)
        )


def mark_failed(session: Session, event_id: int, error: str) -> None:
    session.execute(
        update(Event).where(Event.id == event_id).values(attempts=Event.attempts + 1, last_error=error[:2000])
    )


def give_up(session: Session, event_id: int, error: str) -> None:
    """Stop retrying an event that cannot be delivered: it counts as delivered, with the reason."""
    session.execute(
        update(Event)
        .where(Event.id == event_id)
        .values(delivered_at=utcnow(), attempts=Event.attempts + 1, last_error=f"gave up: {error}"[:2000])
    )
