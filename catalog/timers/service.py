"""TTL timers: a ``format: timer`` property that is set has a durable workflow
``timer:{blueprint}:{entity}:{property}`` that reminds, can be extended within the blueprint's
policy, and on expiry triggers the cleanup. This module keeps the catalog's record of each timer
(``GET /v1/timers``) in step with entity writes; the workflow lives in ``workflows/timer.py``.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from pydantic import Field, ValidationError
from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from catalog import events
from catalog.audit import Actor
from catalog.base import Strict
from catalog.blueprints.properties import parse_time
from catalog.changes.state import EntityChange
from catalog.db import utcnow
from catalog.durations import parse_duration
from catalog.errors import FieldError, Invalid, NotFound, pointer
from catalog.identity.permissions import Principal, read_scope
from catalog.models import Blueprint, Entity, Timer
from catalog.pagination import Page, check_limit, decode_cursor, encode_cursor
from catalog.timefmt import canonical_times, format_instant, format_optional
from catalog.timers.rules import reminder_times
from contracts.timers import TimerNews


class OnExpiry(Strict):
    action: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,99}$")


class TimerPolicy(Strict):
    max_ttl: str | None = None
    max_extension: str | None = None
    remind_before: list[str] = Field(default_factory=list, max_length=5)
    on_expiry: OnExpiry | None = None
    # A ``format: user`` property naming the owner to remind (default: the entity's team members).
    owner_property: str | None = None


def timer_id(blueprint: str, entity: str, prop: str) -> str:
    return f"timer:{blueprint}:{entity}:{prop}"


def check_policies(timers: dict[str, Any], properties: dict[str, Any]) -> list[FieldError]:
    """Problems in a blueprint's ``timers`` block, by pointer."""
    errors: list[FieldError] = []
    for name, raw in timers.items():
        where = pointer("timers", name)
        if (properties.get(name) or {}).get("format") != "timer":
            errors.append(FieldError(where, "timers apply to 'format: timer' properties"))
            continue
        try:
            policy = TimerPolicy.model_validate(raw)
        except ValidationError as exc:
            errors += [FieldError(where + pointer(*e["loc"]), e["msg"]) for e in exc.errors()]
            continue
        durations = [("max_ttl", policy.max_ttl), ("max_extension", policy.max_extension)]
        durations += [(f"remind_before/{i}", v) for i, v in enumerate(policy.remind_before)]
        for field_name, value in durations:
            if value is None:
                continue
            try:
                parse_duration(value)
            except ValueError as exc:
                errors.append(FieldError(f"{where}/{field_name}", str(exc)))
        owner = policy.owner_property
        if owner is not None and (properties.get(owner) or {}).get("format") != "user":
            errors.append(FieldError(f"{where}/owner_property", "must name a 'format: user' property"))
    return errors


def policy_of(bp: Blueprint, prop: str) -> dict[str, Any]:
    return TimerPolicy.model_validate(bp.timers.get(prop) or {}).model_dump(mode="json")


def timer_properties(bp: Blueprint) -> list[str]:
    return [n for n, d in bp.schema.get("properties", {}).items() if d.get("format") == "timer"]


def check_max_ttl(bp: Blueprint, values: dict[str, Any], created_at: datetime, base: str) -> list[FieldError]:
    """A timer may not be set further than ``max_ttl`` from the entity's creation."""
    errors = []
    for prop in timer_properties(bp):
        limit = (bp.timers.get(prop) or {}).get("max_ttl")
        deadline = parse_time(values[prop]) if isinstance(values.get(prop), str) else None
        if limit and deadline and deadline > created_at + parse_duration(limit):
            errors.append(
                FieldError(
                    f"{base}/properties" + pointer(prop), f"is beyond the blueprint's max_ttl of {limit}"
                )
            )
    return errors


def extension_problems(
    session: Session, bp: Blueprint, writes: list[tuple[str, dict[str, Any], dict[str, Any], str]]
) -> dict[str, list[FieldError]]:
    """Direct writes (``(entity, before, after, base)`` properties) that push an active timer past
    its first deadline plus ``max_extension``: what the extend endpoint would refuse, by entity.

    Callers who are neither moderators nor admins are held to it, so a PATCH of the property is
    no way around the policy. Arming a timer afresh is bounded by ``max_ttl`` alone."""
    limits = {
        prop: parse_duration(policy["max_extension"])
        for prop in timer_properties(bp)
        if (policy := bp.timers.get(prop) or {}).get("max_extension")
    }
    moved = [
        (entity, prop, deadline, base)
        for entity, before, after, base in writes
        for prop in limits
        if before.get(prop) != after.get(prop)
        and isinstance(after.get(prop), str)
        and (deadline := parse_time(after[prop])) is not None
    ]
    if not moved:
        return {}
    ids = [timer_id(bp.identifier, entity, prop) for entity, prop, _, _ in moved]
    active = {
        t.id: t for t in session.scalars(select(Timer).where(Timer.id.in_(ids), Timer.state == "active"))
    }
    problems: dict[str, list[FieldError]] = {}
    for entity, prop, deadline, base in moved:
        timer = active.get(timer_id(bp.identifier, entity, prop))
        if timer is None or timer.original_deadline is None:
            continue
        if deadline > timer.original_deadline + limits[prop]:
            limit = bp.timers[prop]["max_extension"]
            problems.setdefault(entity, []).append(
                FieldError(
                    f"{base}/properties" + pointer(prop),
                    f"may move at most max_extension {limit} past the first deadline"
                    f" {format_instant(timer.original_deadline)}",
                )
            )
    return problems


def sync(session: Session, bp: Blueprint, changes: list[EntityChange]) -> dict[str, list[dict[str, Any]]]:
    """Bring timer records in step with the changes of ``bp``'s entities. Returns, per entity,
    the timer changes to relay to Temporal."""
    props = timer_properties(bp)
    if not props:
        return {}
    now = utcnow()
    wanted = {timer_id(bp.identifier, c.identifier, p): c for c in changes for p in props}
    existing = {t.id: t for t in session.scalars(select(Timer).where(Timer.id.in_(list(wanted))))}
    relay: dict[str, list[dict[str, Any]]] = {}
    for change in changes:
        entity = change.identifier
        before, after = change.properties()
        for prop in props:
            old = (before or {}).get(prop)
            new = (after or {}).get(prop)
            if old == new and (new is None or timer_id(bp.identifier, entity, prop) in existing):
                continue
            key = timer_id(bp.identifier, entity, prop)
            record = existing.get(key)
            deadline = parse_time(new) if isinstance(new, str) else None
            if deadline is None:
                if record is not None and record.state == "active":
                    record.state, record.deadline, record.next_reminder, record.updated_at = (
                        "cleared",
                        None,
                        None,
                        now,
                    )
                relay.setdefault(entity, []).append({"id": key, "property": prop, "deadline": None})
                continue
            if record is None:
                record = Timer(
                    id=key,
                    blueprint=bp.identifier,
                    entity=entity,
                    property=prop,
                    armed_at=now,
                    original_deadline=deadline,
                    extensions=[],
                    reminders=[],
                )
                session.add(record)
                existing[key] = record
            elif record.state != "active":
                record.armed_at, record.original_deadline, record.extensions, record.reminders = (
                    now,
                    deadline,
                    [],
                    [],
                )
                record.expired_at, record.on_expiry_run, record.teardown, record.error = (
                    None,
                    None,
                    None,
                    None,
                )
            record.state, record.deadline, record.updated_at = "active", deadline, now
            record.next_reminder = next_reminder(bp, prop, deadline, now)
            relay.setdefault(entity, []).append({"id": key, "property": prop, "deadline": new})
    return relay


def next_reminder(bp: Blueprint, prop: str, deadline: datetime, now: datetime) -> datetime | None:
    upcoming = reminder_times(deadline, (bp.timers.get(prop) or {}).get("remind_before", []), now)
    return upcoming[0] if upcoming else None


def record_report(session: Session, timer: Timer, report: TimerNews, actor: Actor) -> None:
    """Apply a timer workflow's news to its record: a re-arm's deadline and extensions, a
    reminder (with its ``REMINDER`` log line), a clear, the expiry (which emits ``TIMER_EXPIRED``
    in the same transaction, once) and the cleanup's progress."""
    now = utcnow()
    if report.deadline:
        timer.deadline = parse_time(report.deadline) or timer.deadline
    if report.extensions is not None:
        timer.extensions = [dataclasses.asdict(e) for e in report.extensions]
    if report.next_reminder is not None:
        at = report.next_reminder.at
        timer.next_reminder = parse_time(at) if at else None
    if report.reminder is not None:
        reminder = dataclasses.asdict(report.reminder)
        line = f"REMINDER: {timer.entity}'s {timer.property} expires at {reminder['deadline']}"
        timer.reminders = [*timer.reminders, {**reminder, "log": line}]
    if report.state == "cleared" and timer.state == "active":
        timer.state, timer.next_reminder = "cleared", None
    if report.expired and timer.state != "expired":
        timer.state, timer.expired_at, timer.next_reminder = "expired", now, None
        deadline = format_optional(timer.deadline)
        events.emit(
            session,
            [
                events.event_row(
                    "TIMER_EXPIRED",
                    actor,
                    blueprint=timer.blueprint,
                    entity=timer.entity,
                    payload={"timer": {"id": timer.id, "property": timer.property, "deadline": deadline}},
                    at=now,
                )
            ],
        )
    for name in ("teardown", "on_expiry_run", "error"):
        value = getattr(report, name)
        if value is not None:
            setattr(timer, name, value)
    timer.updated_at = now


def get_timer(session: Session, blueprint: str, entity: str, prop: str) -> Timer:
    timer = session.get(Timer, timer_id(blueprint, entity, prop))
    if timer is None:
        raise NotFound(f"entity '{entity}' of '{blueprint}' has no timer '{prop}'")
    return timer


# Times the timer workflow reports in extensions and reminders (earlier workers: ``+00:00``).
WORKFLOW_TIMES = frozenset({"at", "deadline"})


def timer_view(timer: Timer) -> dict[str, Any]:
    return {
        "id": timer.id,
        "workflow_id": timer.id,
        "blueprint": timer.blueprint,
        "entity": timer.entity,
        "property": timer.property,
        "state": timer.state,
        "deadline": format_optional(timer.deadline),
        "original_deadline": format_optional(timer.original_deadline),
        "armed_at": format_optional(timer.armed_at),
        "extensions": canonical_times(timer.extensions, WORKFLOW_TIMES),
        "reminders": canonical_times(timer.reminders, WORKFLOW_TIMES),
        "next_reminder": format_optional(timer.next_reminder),
        "expired_at": format_optional(timer.expired_at),
        "on_expiry_run": timer.on_expiry_run,
        "teardown": timer.teardown,
        "error": timer.error,
    }


def list_timers(
    session: Session,
    *,
    state: str | None = None,
    expires_before: datetime | None = None,
    blueprint: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
    who: Principal | None = None,
) -> Page[Timer]:
    """Soonest deadline first; only the timers of entities ``who`` may read (filtered before
    paging). A timer whose entity is gone stays visible where every entity is readable."""
    check_limit(limit)
    if state is not None and state not in ("active", "expired", "cleared"):
        raise Invalid("invalid filter", [FieldError("/state", "must be active, expired or cleared")])
    stmt = select(Timer)
    if state is not None:
        stmt = stmt.where(Timer.state == state)
    if blueprint is not None:
        stmt = stmt.where(Timer.blueprint == blueprint)
    if expires_before is not None:
        stmt = stmt.where(Timer.deadline < expires_before)
    scope = None if who is None else read_scope(session, who, session.get_bind().dialect.name)
    if scope is not None:
        open_blueprints, readable = scope
        entity = exists().where(
            Entity.blueprint == Timer.blueprint, Entity.identifier == Timer.entity, readable
        )
        stmt = stmt.where(or_(Timer.blueprint.in_(open_blueprints), entity))
    if cursor:
        (offset,) = decode_cursor(cursor, size=1)
        if not isinstance(offset, int) or offset < 0:
            raise Invalid("invalid cursor", [FieldError("/cursor", "not a cursor returned by this API")])
    else:
        offset = 0
    rows = list(session.scalars(stmt.order_by(Timer.deadline, Timer.id).offset(offset).limit(limit + 1)))
    return Page(rows[:limit], encode_cursor([offset + limit]) if len(rows) > limit else None)
