"""The event relay's delivery rules, on both databases: each entity's events in order, different
entities' at once, a failure holding back only its own entity, Temporal being down never making
it give up. Temporal is replaced at its one boundary (``TemporalGateway``) by a recorder, so the
test can fail a chosen delivery and watch how many are in flight."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import Engine, select

from api.errors import ServiceUnavailable
from api.relay import CONCURRENCY, MAX_ATTEMPTS, EventRelay
from catalog import events
from catalog.audit import Actor
from catalog.db import make_sessionmaker
from catalog.models import Event
from contracts.timers import Arm
from devtools.testing import eventually_async


@dataclass
class Recorder:
    """Records each timer arming in the order it went out; ``fail`` names deadlines to refuse."""

    armed: list[tuple[str, str | None]] = field(default_factory=list)
    fail: dict[str | None, Exception] = field(default_factory=dict)
    in_flight: int = 0
    most_in_flight: int = 0
    hang: bool = False  # deliveries never answer (Temporal stuck)
    ended: list[tuple[str, str]] = field(default_factory=list)

    async def run_ended(self, timer_id: str, run_id: str) -> None:
        self.ended.append((timer_id, run_id))

    async def arm_timer(self, timer: dict[str, Any], arm: Arm, *, blueprint: str, entity: str) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            # A delay is the behaviour here, not synchronisation: a round trip to Temporal keeps
            # deliveries in flight together (``most_in_flight``), and ``hang`` is Temporal stuck.
            await asyncio.sleep(0.01)
            while self.hang:
                await asyncio.sleep(0.01)
            if arm.deadline in self.fail:
                raise self.fail[arm.deadline]
            self.armed.append((entity, arm.deadline))
        finally:
            self.in_flight -= 1


def timer_event(entity: str, deadline: str) -> dict[str, Any]:
    """An entity write's event with one timer change to relay (no blueprint row: empty policy)."""
    change = {"id": f"timer:env:{entity}:expires_at", "property": "expires_at", "deadline": deadline}
    return events.event_row(
        "ENTITY_UPDATED", Actor("alice"), blueprint="env", entity=entity, payload={"timers": [change]}
    )


def setup(engine: Engine, rows: list[dict[str, Any]]) -> tuple[EventRelay, Recorder]:
    factory = make_sessionmaker(engine)
    with factory() as session, session.begin():
        events.emit(session, rows)
    recorder = Recorder()
    return EventRelay(factory, recorder, max_depth=3), recorder  # type: ignore[arg-type]


def outbox(engine: Engine) -> dict[str, tuple[bool, int, str | None]]:
    """Each event's deadline → (delivered, attempts, last error)."""
    with make_sessionmaker(engine)() as session:
        return {
            (e.payload or {})["timers"][0]["deadline"]: (e.delivered_at is not None, e.attempts, e.last_error)
            for e in session.scalars(select(Event))
        }


async def test_each_entitys_events_go_in_order_and_entities_go_at_once(engine: Engine) -> None:
    rows = [timer_event(f"env-{i % 40}", f"2030-01-01T00:00:{i // 40:02d}+00:00") for i in range(120)]
    relay, recorder = setup(engine, rows)

    delivered, failed = await relay.relay_batch()

    assert (delivered, failed) == (120, False)
    for i in range(40):
        mine = [deadline for entity, deadline in recorder.armed if entity == f"env-{i}"]
        assert mine == [f"2030-01-01T00:00:0{n}+00:00" for n in range(3)]
    assert 1 < recorder.most_in_flight <= CONCURRENCY
    assert all(done for done, _, _ in outbox(engine).values())


async def test_a_failure_holds_back_its_entity_only(engine: Engine) -> None:
    rows = [
        timer_event("env-a", "2030-01-01T00:00:01+00:00"),
        timer_event("env-b", "2030-01-01T00:00:02+00:00"),
        timer_event("env-a", "2030-01-01T00:00:03+00:00"),
        timer_event("env-b", "2030-01-01T00:00:04+00:00"),
    ]
    relay, recorder = setup(engine, rows)
    recorder.fail["2030-01-01T00:00:01+00:00"] = RuntimeError("workflow id refused")

    delivered, failed = await relay.relay_batch()

    assert (delivered, failed) == (2, True)
    assert recorder.armed == [("env-b", "2030-01-01T00:00:02+00:00"), ("env-b", "2030-01-01T00:00:04+00:00")]
    state = outbox(engine)
    assert state["2030-01-01T00:00:01+00:00"] == (False, 1, "workflow id refused")
    assert state["2030-01-01T00:00:03+00:00"] == (False, 0, None)  # never tried: it must not overtake

    recorder.fail.clear()  # the next batch delivers env-a's two, in order
    assert await relay.relay_batch() == (2, False)
    assert recorder.armed[2:] == [
        ("env-a", "2030-01-01T00:00:01+00:00"),
        ("env-a", "2030-01-01T00:00:03+00:00"),
    ]


async def test_temporal_down_never_makes_it_give_up_but_a_bad_event_is_given_up(engine: Engine) -> None:
    rows = [
        timer_event("env-a", "2030-01-01T00:00:01+00:00"),
        timer_event("env-b", "2030-01-01T00:00:02+00:00"),
    ]
    relay, recorder = setup(engine, rows)
    recorder.fail["2030-01-01T00:00:01+00:00"] = ServiceUnavailable("Temporal unreachable")
    recorder.fail["2030-01-01T00:00:02+00:00"] = RuntimeError("bad arguments")

    for _ in range(MAX_ATTEMPTS):
        await relay.relay_batch()

    state = outbox(engine)
    assert state["2030-01-01T00:00:01+00:00"] == (False, MAX_ATTEMPTS, "Temporal unreachable")
    assert state["2030-01-01T00:00:02+00:00"] == (True, MAX_ATTEMPTS, "gave up: bad arguments")
    recorder.fail.clear()
    assert await relay.relay_batch() == (1, False)
    assert recorder.armed == [("env-a", "2030-01-01T00:00:01+00:00")]


async def test_a_batch_cancelled_midway_leaves_its_events_for_the_next(engine: Engine) -> None:
    """The API shutting down while a delivery hangs: the transaction rolls back, nothing stays
    locked (PostgreSQL's SKIP LOCKED would hide locked rows from the next relay) or is lost."""
    rows = [timer_event(f"env-{i}", f"2030-01-01T00:00:0{i}+00:00") for i in range(3)]
    relay, recorder = setup(engine, rows)
    recorder.hang = True
    batch = asyncio.create_task(relay.relay_batch())
    await eventually_async(lambda: recorder.in_flight >= 3, what="three deliveries in flight")
    batch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await batch

    assert not any(done for done, _, _ in outbox(engine).values())
    recorder.hang = False
    assert await relay.relay_batch() == (3, False)


async def test_stop_ends_the_relay_even_when_the_cancel_lands_in_a_worker_thread(engine: Engine) -> None:
    """The API's shutdown: ``stop()`` then ``cancel()`` while the relay reads the outbox in a
    worker thread: the relay waits for the thread (nothing else touches its session meanwhile),
    rolls back and returns; the event is left for the next relay."""
    relay, _ = setup(engine, [timer_event("env-a", "2030-01-01T00:00:01+00:00")])
    claim = relay._claim
    in_thread, release = threading.Event(), threading.Event()

    def held_claim(session: Any) -> Any:
        in_thread.set()
        release.wait(10)  # held in the thread until the cancel has landed
        return claim(session)

    relay._claim = held_claim  # type: ignore[method-assign]
    running = asyncio.create_task(relay.run())
    await eventually_async(in_thread.is_set, what="the relay to read the outbox in its thread")
    relay.stop()
    running.cancel()  # lands now, while the read is held in its thread
    release.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(running, 5)
    assert running.done()
    assert outbox(engine) == {"2030-01-01T00:00:01+00:00": (False, 0, None)}


async def test_stop_ends_an_idle_relay_at_once(engine: Engine) -> None:
    relay, _ = setup(engine, [])
    batches: list[tuple[int, bool]] = []
    relay_batch = relay.relay_batch

    async def counted() -> tuple[int, bool]:
        batches.append(await relay_batch())
        return batches[-1]

    relay.relay_batch = counted  # type: ignore[method-assign]
    running = asyncio.create_task(relay.run())
    # A batch that found nothing goes straight to idling, in the same step of the task: once
    # it is counted, the relay is idle, waiting for events.
    await eventually_async(lambda: batches == [(0, False)], what="the relay to go idle")
    relay.stop()
    await asyncio.wait_for(running, 0.5)


async def test_a_teardown_runs_end_is_told_to_its_timer(engine: Engine) -> None:
    def run_event(run_id: str, status: str, trigger: dict[str, Any] | None) -> dict[str, Any]:
        run = {"id": run_id, "action": "destroy", "status": status, "trigger": trigger}
        return events.event_row("RUN_UPDATED", Actor("gantry-service"), payload={"run": run})

    timer = {"timer": "timer:env:env-a:expires_at"}
    rows = [
        run_event("r_1", "IN_PROGRESS", timer),  # not ended yet
        run_event("r_1", "FAILURE", timer),
        run_event("r_2", "SUCCESS", None),  # not a timer's run
        run_event("r_3", "SUCCESS", {"automation": "welcome", "event_id": 1, "depth": 1}),
    ]
    relay, recorder = setup(engine, rows)

    assert await relay.relay_batch() == (4, False)
    assert recorder.ended == [("timer:env:env-a:expires_at", "r_1")]
