"""jq programs run in worker processes under a CPU-time limit: a runaway one fails alone, with
a typed error, and never holds the calling process (SQLite and PostgreSQL for the relay)."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, select

from api.relay import EventRelay
from catalog import events
from catalog.audit import Actor
from catalog.automations.service import matches
from catalog.db import make_sessionmaker
from catalog.models import Automation, Event
from catalog.sandbox.jq import (
    JqCompileError,
    JqRuntimeError,
    JqTimeout,
    check_jq,
    run_jq,
    run_jq_batch,
)

RUNAWAY = "last(range(1e12)) > 0"


def test_outputs_and_typed_errors() -> None:
    assert run_jq(".a + 1", {"a": 41}) == [42]
    assert run_jq(".[]", [1, 2, 3]) == [1, 2, 3]
    with pytest.raises(JqRuntimeError, match="boom"):
        run_jq('error("boom")', None)
    with pytest.raises(JqCompileError):
        run_jq("[[", None)
    with pytest.raises(JqTimeout, match="CPU time"):
        run_jq(RUNAWAY, None, timeout=0.2)


def test_a_runaway_program_fails_alone_in_its_batch() -> None:
    results = run_jq_batch([(".x", {"x": 1}), (RUNAWAY, {}), (".y", {"y": 2})], timeout=0.2)
    assert results[0] == [1] and results[2] == [2]
    assert isinstance(results[1], JqTimeout)
    assert run_jq(".", "still working") == ["still working"]  # the pool replaced its worker


def test_programs_cannot_read_the_environment_of_the_caller() -> None:
    os.environ["GANTRY_JQ_TEST_SECRET"] = "s3cret"
    try:
        assert run_jq("env.GANTRY_JQ_TEST_SECRET", None) == [None]
        assert run_jq('$ENV | has("GANTRY_JQ_TEST_SECRET")', None) == [False]
    finally:
        del os.environ["GANTRY_JQ_TEST_SECRET"]


def test_memory_hungry_program_is_stopped() -> None:
    with pytest.raises((JqTimeout, JqRuntimeError)):
        run_jq("[range(1e9)] | length", None)


def test_compiling_never_evaluates() -> None:
    check_jq(RUNAWAY)  # returns at once: compiled, not run
    with pytest.raises(JqCompileError):
        check_jq("if then")
    assert matches(None, {}) is True
    assert matches('.type == "A"', {"type": "A"}) is True
    assert matches(RUNAWAY, {}) is False


class Starter:
    def __init__(self) -> None:
        self.started: list[str] = []

    async def start_automation(self, workflow_id: str, *_: Any) -> None:
        self.started.append(workflow_id)


def _automation(identifier: str, condition: str) -> Automation:
    now = datetime.now(UTC)
    definition = {
        "identifier": identifier,
        "trigger": {"event": "ENTITY_CREATED", "condition": condition},
        "invoke": {"action": "welcome"},
    }
    return Automation(
        identifier=identifier,
        enabled=True,
        event_type="ENTITY_CREATED",
        definition=definition,
        created_at=now,
        updated_at=now,
        created_by="admin",
        updated_by="admin",
    )


async def test_a_runaway_condition_fails_its_match_and_never_freezes_the_relay(engine: Engine) -> None:
    factory = make_sessionmaker(engine)
    with factory() as session, session.begin():
        session.add(_automation("runaway", RUNAWAY))
        session.add(_automation("welcome", '.entity == "checkout"'))
        events.emit(
            session, [events.event_row("ENTITY_CREATED", Actor("alice"), blueprint="svc", entity="checkout")]
        )
    starter = Starter()
    relay = EventRelay(factory, starter, max_depth=3)  # type: ignore[arg-type]
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:  # the ticks measure the loop's responsiveness: the sleep is the clock
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    delivered, failed = await relay.relay_batch()
    ticker.cancel()
    assert (delivered, failed) == (1, False)
    assert len(starter.started) == 1 and starter.started[0].startswith("automation:welcome:")
    # The loop kept running while the runaway burnt its second of CPU in a worker process.
    assert ticks >= 20
    with factory() as session:
        event = session.scalars(select(Event)).one()
    assert event.delivered_at is not None
    assert "automation 'runaway' condition failed" in (event.last_error or "")
    assert "CPU time" in (event.last_error or "")
