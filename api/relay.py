"""The event relay: delivers the outbox (``catalog.events``) to Temporal.

Runs inside each API process. It takes the oldest undelivered events (on PostgreSQL, rows other
replicas hold are skipped), turns each into deliveries — arming TTL timers, starting
automations — and marks it delivered. Delivery is at least once and every delivery is
idempotent (signal-with-start of a timer to the same deadline; automation workflow ids derived
from the event id), so a crash between delivering and marking starts nothing twice. When
Temporal is down, events wait, in order, and go out when it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import anyio.from_thread
import anyio.to_thread
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session, sessionmaker

from api.temporal import TemporalGateway
from catalog import automations, events
from catalog.models import Blueprint, Entity, Event, Run
from catalog.timers import policy_of
from workflows.automation import AutomationInput
from workflows.timer import Arm

log = logging.getLogger("gantry.relay")

Delivery = Callable[[], Coroutine[Any, Any, Any]]
BATCH = 200
MAX_ATTEMPTS = 20
IDLE_POLL = 1.0
MAX_BACKOFF = 30.0


class EventRelay:
    def __init__(
        self, factory: sessionmaker[Session], gateway: TemporalGateway, *, max_depth: int = 3
    ) -> None:
        self._factory = factory
        self._gateway = gateway
        self._max_depth = max_depth
        self._listening: dict[str, list[Any]] = {}
        self._wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.planners: list[Callable[[Session, Event], list[Delivery]]] = [
            self._timer_deliveries,
            self._automation_deliveries,
        ]
        sa_event.listen(factory, "after_commit", self._after_commit)

    def _after_commit(self, session: Session) -> None:
        if session.info.pop(events.EMITTED, False):
            self.wake()

    def wake(self) -> None:
        """Deliver soon (thread-safe: called after any commit that emitted events)."""
        if self._loop is not None and self._wakeup is not None:
            self._loop.call_soon_threadsafe(self._wakeup.set)

    async def run(self) -> None:
        self._loop, self._wakeup = asyncio.get_running_loop(), asyncio.Event()
        backoff = 0.0
        while True:
            try:
                delivered, failed = await anyio.to_thread.run_sync(self.relay_batch)
            except Exception:
                log.exception("event relay batch failed")
                delivered, failed = 0, True
            if failed:
                backoff = min(MAX_BACKOFF, max(0.5, backoff * 2))
                await asyncio.sleep(backoff)
                continue
            backoff = 0.0
            if delivered < BATCH:
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), IDLE_POLL)

    def relay_batch(self) -> tuple[int, bool]:
        """Deliver a batch in order; stop at the first failure so later events of the same
        entity never overtake it. Runs in a worker thread. Returns (delivered, failed)."""
        self._listening = {}  # automations by event type, looked up once per batch
        with self._factory() as session, session.begin():
            batch = events.undelivered(session, limit=BATCH)
            done: list[int] = []
            for event in batch:
                try:
                    for delivery in self._plan(session, event):
                        anyio.from_thread.run(delivery)
                except Exception as exc:
                    if event.attempts + 1 >= MAX_ATTEMPTS:
                        log.error("giving up on event %s after %s attempts: %s", event.id, MAX_ATTEMPTS, exc)
                        events.mark_failed(session, event.id, f"gave up: {exc}")
                        done.append(event.id)
                        continue
                    events.mark_failed(session, event.id, str(exc))
                    events.mark_delivered(session, done)
                    return len(done), True
                done.append(event.id)
            events.mark_delivered(session, done)
            return len(done), False

    def _plan(self, session: Session, event: Event) -> list[Delivery]:
        return [delivery for planner in self.planners for delivery in planner(session, event)]

    def _timer_deliveries(self, session: Session, event: Event) -> list[Delivery]:
        changes = (event.payload or {}).get("timers") or []
        if not changes or event.blueprint is None or event.entity is None:
            return []
        blueprint = session.get(Blueprint, event.blueprint)
        entity = (
            session.query(Entity).filter_by(blueprint=event.blueprint, identifier=event.entity).one_or_none()
        )
        deliveries: list[Delivery] = []
        for change in changes:
            arm = Arm(
                deadline=change["deadline"],
                policy=policy_of(blueprint, change["property"]) if blueprint else {},
                entity_created_at=entity.created_at.isoformat() if entity else "",
                event_id=event.id,
            )
            deliveries.append(
                functools.partial(
                    self._gateway.arm_timer, change, arm, blueprint=event.blueprint, entity=event.entity
                )
            )
        return deliveries

    def _automation_deliveries(self, session: Session, event: Event) -> list[Delivery]:
        """Every enabled automation the event matches starts ``automation:{id}:{event_id}``."""
        if event.type not in self._listening:
            self._listening[event.type] = automations.listening(session, event.type)
        listening = self._listening[event.type]
        if not listening:
            return []
        view = events.event_view(event)
        depth = _depth(session, event)
        deliveries: list[Delivery] = []
        for automation in listening:
            trigger = automation.definition["trigger"]
            if trigger.get("blueprint") not in (None, event.blueprint):
                continue
            if trigger.get("action") not in (None, (view.get("run") or {}).get("action")):
                continue
            if not automations.matches(trigger.get("condition"), view):
                continue
            if depth + 1 > self._max_depth:
                note = (
                    f"automation '{automation.identifier}' cut off: event {event.id} is {depth} automation "
                    f"hops deep (GANTRY_AUTOMATION_MAX_DEPTH={self._max_depth})"
                )
                log.warning(note)
                event.last_error = note
                continue
            deliveries.append(
                functools.partial(
                    self._gateway.start_automation,
                    f"automation:{automation.identifier}:{event.id}",
                    "AutomationRun",
                    AutomationInput(automation=automation.definition, event=view, depth=depth + 1),
                    f"{automation.identifier} on {event.type} {event.entity or ''}".strip(),
                )
            )
        return deliveries


def _depth(session: Session, event: Event) -> int:
    """How many automation hops led to this event: the depth of the run that caused it."""
    if event.run_id is None:
        return 0
    run = session.get(Run, event.run_id)
    return int((run.trigger or {}).get("depth", 0)) if run is not None else 0
