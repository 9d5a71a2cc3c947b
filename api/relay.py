"""The event relay: delivers the outbox (``catalog.events``) to Temporal.

Runs inside each API process. It takes the oldest undelivered events (on PostgreSQL, rows other
replicas hold are skipped, and so are the later events of an entity whose earlier event another
replica holds: an entity's events never overtake each other, whichever process relays them), turns each into deliveries — arming TTL timers, telling a timer
its teardown run ended, starting automations — delivers them (an entity's in order, up to
``CONCURRENCY`` entities at once) and marks them delivered. Delivery is at least once and every
delivery is idempotent (signal-with-start of a timer to the same deadline; automation workflow ids derived
from the event id), so a crash between delivering and marking starts nothing twice. When
Temporal is down, events wait, in order, and go out when it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from sqlalchemy import event as sa_event
from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from api.errors import ServiceUnavailable
from api.temporal import TemporalGateway
from catalog import events
from catalog.automations import service as automations
from catalog.models import Blueprint, Entity, Event, Run
from catalog.runs.service import TERMINAL
from catalog.sandbox.jq import JqError
from catalog.timefmt import format_instant
from catalog.timers.service import policy_of
from contracts.automations import AutomationInput
from contracts.timers import Arm

log = logging.getLogger("gantry.relay")

Delivery = Callable[[], Coroutine[Any, Any, Any]]
Result = TypeVar("Result")
BATCH = 200
CONCURRENCY = 32  # entities whose events are delivered at once
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
        # (event id, automation) -> the trigger condition's outcome, evaluated once per batch
        self._matched: dict[tuple[int, str], bool | JqError] = {}
        self._wakeup: asyncio.Event | None = None
        self._stopped = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.planners: list[Callable[[Session, Event], list[Delivery]]] = [
            self._timer_deliveries,
            self._run_end_deliveries,
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

    def stop(self) -> None:
        """Finish the batch under way and return from :meth:`run` (the API shutting down); a
        cancellation after this rolls the batch back instead."""
        self._stopped = True
        self.wake()

    async def run(self) -> None:
        self._loop, self._wakeup = asyncio.get_running_loop(), asyncio.Event()
        backoff = 0.0
        while not self._stopped:
            try:
                delivered, failed = await self.relay_batch()
            except Exception:
                log.exception("event relay batch failed")
                delivered, failed = 0, True
            if failed:
                backoff = min(MAX_BACKOFF, max(0.5, backoff * 2))
                await self._idle(backoff)
                continue
            backoff = 0.0
            if delivered < BATCH:
                await self._idle(IDLE_POLL)

    async def _idle(self, seconds: float) -> None:
        """Wait until woken (new events, or :meth:`stop`) or ``seconds`` pass."""
        assert self._wakeup is not None
        self._wakeup.clear()
        if self._stopped:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), seconds)

    async def relay_batch(self) -> tuple[int, bool]:
        """Deliver a batch: each entity's events in order, different entities' concurrently. An
        entity's failed event holds back its later events (they never overtake it) but not
        other entities'. Returns (delivered, any failed).

        The database work runs in worker threads and the deliveries on the event loop, in one
        transaction that keeps the batch's rows locked (PostgreSQL) until they are marked. If it is
        cancelled midway (the API shutting down), the transaction rolls back and the events stay
        undelivered for the next relay."""
        session = self._factory()
        try:
            plans = await _in_thread(self._claim, session)
            outcomes = await _deliver(plans) if plans else {}
            return await _in_thread(self._settle, session, plans, outcomes)
        finally:
            session.close()  # after _settle a no-op; after a failure or cancellation, the rollback

    def _claim(self, session: Session) -> list[tuple[Event, list[Delivery] | Exception]]:
        """The oldest undelivered events, each with its deliveries (or why they can't be planned)."""
        self._listening = {}  # automations by event type, looked up once per batch
        session.begin()
        plans: list[tuple[Event, list[Delivery] | Exception]] = []
        batch = _behind_no_other_relay(session, events.undelivered(session, limit=BATCH))
        self._matched = self._match_conditions(session, batch)
        for event in batch:
            try:
                plans.append((event, self._plan(session, event)))
            except Exception as exc:
                plans.append((event, exc))
        return plans

    def _settle(
        self,
        session: Session,
        plans: list[tuple[Event, list[Delivery] | Exception]],
        outcomes: dict[int, Exception | None],
    ) -> tuple[int, bool]:
        """Mark what was delivered and what failed, and commit."""
        done: list[int] = []
        failed = False
        for event, _ in plans:
            if event.id not in outcomes:
                continue  # behind a failed event of its entity: next time
            error = outcomes[event.id]
            if error is None:
                done.append(event.id)
            elif event.attempts + 1 >= MAX_ATTEMPTS and not isinstance(error, ServiceUnavailable):
                log.error("giving up on event %s after %s attempts: %s", event.id, MAX_ATTEMPTS, error)
                events.give_up(session, event.id, str(error))
            else:  # Temporal being down never makes us give up: the event waits for it
                events.mark_failed(session, event.id, str(error))
                failed = True
        events.mark_delivered(session, done)
        session.commit()
        session.close()
        return len(done), failed

    def _candidates(self, session: Session, event: Event) -> list[Any]:
        """The enabled automations whose trigger names this event's type, blueprint and action."""
        if event.type not in self._listening:
            self._listening[event.type] = automations.listening(session, event.type)
        action = ((event.payload or {}).get("run") or {}).get("action")
        return [
            automation
            for automation in self._listening[event.type]
            if automation.definition["trigger"].get("blueprint") in (None, event.blueprint)
            and automation.definition["trigger"].get("action") in (None, action)
        ]

    def _match_conditions(
        self, session: Session, batch: list[Event]
    ) -> dict[tuple[int, str], bool | JqError]:
        """Every candidate automation's jq condition on the batch's events, evaluated in one call
        to the jq workers (out of this process: a runaway condition cannot freeze the API)."""
        keys: list[tuple[int, str]] = []
        pairs: list[tuple[str | None, dict[str, Any]]] = []
        for event in batch:
            view: dict[str, Any] | None = None
            for automation in self._candidates(session, event):
                view = view if view is not None else events.event_view(event)
                keys.append((event.id, automation.identifier))
                pairs.append((automation.definition["trigger"].get("condition"), view))
        return dict(zip(keys, automations.match_all(pairs), strict=True))

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
                entity_created_at=format_instant(entity.created_at) if entity else "",
                event_id=event.id,
            )
            deliveries.append(
                functools.partial(
                    self._gateway.arm_timer, change, arm, blueprint=event.blueprint, entity=event.entity
                )
            )
        return deliveries

    def _run_end_deliveries(self, session: Session, event: Event) -> list[Delivery]:
        """A timer's on-expiry run ended: tell the timer, which then stops polling for it."""
        run = (event.payload or {}).get("run") or {}
        timer_id = (run.get("trigger") or {}).get("timer")
        if event.type != "RUN_UPDATED" or run.get("status") not in TERMINAL or not timer_id:
            return []
        return [functools.partial(self._gateway.run_ended, str(timer_id), str(run["id"]))]

    def _automation_deliveries(self, session: Session, event: Event) -> list[Delivery]:
        """Every enabled automation the event matches starts ``automation:{id}:{event_id}``."""
        candidates = self._candidates(session, event)
        if not candidates:
            return []
        view = events.event_view(event)
        depth = _depth(session, event)
        deliveries: list[Delivery] = []
        for automation in candidates:
            matched = self._matched.get((event.id, automation.identifier))
            if matched is None:  # planned outside a batch: evaluate it now
                condition = automation.definition["trigger"].get("condition")
                matched = automations.match_all([(condition, view)])[0]
            if isinstance(matched, JqError):
                # Recorded on the event; the event's other deliveries go ahead. A condition that
                # failed (or ran out of CPU time) would fail again, so it is not retried.
                note = f"automation '{automation.identifier}' condition failed: {matched}"
                log.warning("event %s: %s", event.id, note)
                event.last_error = note[:2000]
                continue
            if not matched:
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


def _behind_no_other_relay(session: Session, batch: list[Event]) -> list[Event]:
    """The batch without the events of entities whose earlier event another relay holds.

    On PostgreSQL the claim skips rows other API processes have locked, so it can return an
    entity's later event while another relay still works on its earlier one; delivered now, the
    later would overtake it (a timer re-armed to an older deadline). Such an entity's events
    wait for a later batch, after the other relay has settled. SQLite's claim locks nothing and
    runs in one process: nothing to skip."""
    if session.get_bind().dialect.name != "postgresql":
        return batch
    first: dict[tuple[str | None, str | None], int] = {}
    for event in batch:
        if event.blueprint is not None and event.entity is not None:
            first.setdefault((event.blueprint, event.entity), event.id)
    if not first:
        return batch
    held = select(Event.blueprint, Event.entity, func.min(Event.id)).where(
        Event.delivered_at.is_(None), tuple_(Event.blueprint, Event.entity).in_(list(first))
    )
    earliest = session.execute(held.group_by(Event.blueprint, Event.entity)).all()
    waiting = {(bp, entity) for bp, entity, oldest in earliest if oldest < first[(bp, entity)]}
    if waiting:
        log.debug("%s entities wait for another relay's earlier events", len(waiting))
    return [event for event in batch if (event.blueprint, event.entity) not in waiting]


def _depth(session: Session, event: Event) -> int:
    """How many automation hops led to this event: the depth of the run that caused it."""
    if event.run_id is None:
        return 0
    run = session.get(Run, event.run_id)
    return int((run.trigger or {}).get("depth", 0)) if run is not None else 0


async def _in_thread(fn: Callable[..., Result], *args: Any) -> Result:
    """``fn(*args)`` in a worker thread, waited for even if this task is cancelled meanwhile (the
    cancellation is raised once it returns): the session it works on is never used by two
    threads at once, and the thread never outlives the batch."""
    running = asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await running
        raise


async def _deliver(plans: list[tuple[Event, list[Delivery] | Exception]]) -> dict[int, Exception | None]:
    """Run the planned deliveries: per entity in event order, up to ``CONCURRENCY`` entities at a
    time. The outcome of each event attempted (None: delivered); an entity stops at its first
    failure, so its later events are absent."""
    lanes: dict[
        tuple[str | None, str | None, int | None], list[tuple[Event, list[Delivery] | Exception]]
    ] = {}
    for event, plan in plans:
        key = (event.blueprint, event.entity, None) if event.entity else (None, None, event.id)
        lanes.setdefault(key, []).append((event, plan))
    outcomes: dict[int, Exception | None] = {}
    slots = asyncio.Semaphore(CONCURRENCY)

    async def drive(lane: list[tuple[Event, list[Delivery] | Exception]]) -> None:
        async with slots:
            for event, plan in lane:
                if isinstance(plan, Exception):
                    outcomes[event.id] = plan
                    return
                try:
                    for delivery in plan:
                        await delivery()
                except Exception as exc:
                    outcomes[event.id] = exc
                    return
                outcomes[event.id] = None

    await asyncio.gather(*(drive(lane) for lane in lanes.values()))
    return outcomes
