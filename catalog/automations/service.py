"""Automations: when an event matches (its type, blueprint or action, and a jq condition over
the event), invoke an action as a normal run with ``source: AUTOMATION``.

Matching happens in the event relay; the invocation is the durable workflow
``automation:{automation}:{event_id}``, so an event relayed twice never invokes twice. A run an
automation started carries ``trigger.depth``; events its writes cause are one hop deeper, and
an automation is cut off past ``GANTRY_AUTOMATION_MAX_DEPTH`` hops, so it cannot loop forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog import audit
from catalog.audit import Actor
from catalog.base import Strict
from catalog.db import utcnow
from catalog.errors import Conflict, FieldError, Invalid, NotFound
from catalog.events import EVENT_TYPES
from catalog.models import Action, Automation
from catalog.sandbox.jq import JqCompileError, JqError, check_jq, run_jq_batch
from catalog.sandbox.templates import TemplateFailure, references
from catalog.schemas import SLUG
from catalog.timefmt import format_instant


class Trigger(Strict):
    # Its own name in the OpenAPI document: actions have a ``Trigger`` too, and generated
    # clients name their models by title.
    model_config = ConfigDict(title="AutomationTrigger")

    event: str
    blueprint: str | None = None
    # For RUN_CREATED / RUN_UPDATED: only runs of this action.
    action: str | None = None
    condition: str | None = Field(None, max_length=4000)


class Invoke(Strict):
    action: str = Field(pattern=SLUG)
    entity: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)


class AutomationIn(Strict):
    identifier: str = Field(pattern=SLUG)
    title: str = ""
    description: str = ""
    enabled: bool = True
    trigger: Trigger
    invoke: Invoke


def matches(condition: str | None, event: dict[str, Any]) -> bool:
    """The jq condition's first output is truthy (no condition: every event matches). A
    condition that fails on this event (an error, or out of CPU time) does not match."""
    outcome = match_all([(condition, event)])[0]
    return outcome is True


def match_all(pairs: Sequence[tuple[str | None, dict[str, Any]]]) -> list[bool | JqError]:
    """:func:`matches` for many (condition, event) pairs in one call to the jq workers (each
    program has its CPU-time limit there); a failed evaluation is its :class:`JqError`."""
    jobs = [(condition, event) for condition, event in pairs if condition]
    results = iter(run_jq_batch(jobs))
    outcomes: list[bool | JqError] = []
    for condition, _ in pairs:
        if not condition:
            outcomes.append(True)
            continue
        result = next(results)
        if isinstance(result, JqError):
            outcomes.append(result)
        else:
            outcomes.append(bool(result) and result[0] not in (False, None))
    return outcomes


def check(session: Session, body: AutomationIn) -> None:
    errors: list[FieldError] = []
    if body.trigger.event not in EVENT_TYPES:
        errors.append(FieldError("/trigger/event", f"must be one of {', '.join(EVENT_TYPES)}"))
    if body.trigger.condition:
        try:
            check_jq(body.trigger.condition)  # compiled only: evaluating runs in the jq workers
        except JqCompileError as exc:
            errors.append(FieldError("/trigger/condition", f"jq: {exc}"))
    if session.get(Action, body.invoke.action) is None:
        errors.append(FieldError("/invoke/action", f"action '{body.invoke.action}' does not exist"))
    for where, value in (("/invoke/entity", body.invoke.entity), ("/invoke/inputs", body.invoke.inputs)):
        try:
            for ref in references(value):
                if ref.path[0] != "event":
                    errors.append(
                        FieldError(where, f"'{ref.path[0]}' is not defined; automations see 'event'")
                    )
        except TemplateFailure as exc:
            errors.append(FieldError(where, f"template does not parse: {exc}"))
    if errors:
        raise Invalid("invalid automation", errors)


def view(automation: Automation) -> dict[str, Any]:
    return {
        **automation.definition,
        "enabled": automation.enabled,
        "created_at": format_instant(automation.created_at),
        "updated_at": format_instant(automation.updated_at),
        "created_by": automation.created_by,
        "updated_by": automation.updated_by,
    }


def get(session: Session, identifier: str) -> Automation:
    automation = session.get(Automation, identifier)
    if automation is None:
        raise NotFound(f"automation '{identifier}' not found")
    return automation


def list_all(session: Session) -> list[Automation]:
    return list(session.scalars(select(Automation).order_by(Automation.identifier)))


def listening(session: Session, event_type: str) -> list[Automation]:
    stmt = select(Automation).where(Automation.event_type == event_type, Automation.enabled.is_(True))
    return list(session.scalars(stmt.order_by(Automation.identifier)))


def save(
    session: Session, body: AutomationIn, actor: Actor, *, create_only: bool = False
) -> tuple[Automation, bool]:
    check(session, body)
    definition = body.model_dump(mode="json", exclude_none=True)
    automation = session.get(Automation, body.identifier)
    now = utcnow()
    if automation is not None and create_only:
        raise Conflict(f"automation '{body.identifier}' already exists")
    if automation is None:
        automation = Automation(
            identifier=body.identifier,
            enabled=body.enabled,
            event_type=body.trigger.event,
            definition=definition,
            created_at=now,
            updated_at=now,
            created_by=actor.user,
            updated_by=actor.user,
        )
        session.add(automation)
        audit.record(session, actor, "CREATE", "automation", body.identifier, after=definition)
        return automation, True
    before = dict(automation.definition)
    automation.enabled, automation.event_type, automation.definition = (
        body.enabled,
        body.trigger.event,
        definition,
    )
    automation.updated_at, automation.updated_by = now, actor.user
    audit.record(session, actor, "UPDATE", "automation", body.identifier, before=before, after=definition)
    return automation, False


def delete(session: Session, identifier: str, actor: Actor) -> None:
    automation = get(session, identifier)
    audit.record(session, actor, "DELETE", "automation", identifier, before=dict(automation.definition))
    session.delete(automation)
