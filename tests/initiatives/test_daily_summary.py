"""Property test: the daily summary of the level history answers what the history answers.

Over random level histories (some entities deleted since, some changes at the same instant, some
after the reader's clock), the summary is brought up to date at a few growing reader times, and
at each: the level moves a chart reads (summed days, the history since, the deleted entities'
changes taken out) equal those computed from the whole history entity by entity, for daily and
weekly grids that start before, inside and after the summed days; and a scorecard's trend and an
initiative's burn-down read from the summary equal those read from the history alone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from catalog.db import make_sessionmaker
from catalog.initiatives import progress
from catalog.models import (
    Blueprint,
    Entity,
    Initiative,
    Scorecard,
    ScorecardLevelChange,
    ScorecardLevelDay,
    ScorecardLevelDaysMark,
)
from catalog.scorecards import daily
from catalog.scorecards.grid import Grid, day_start
from catalog.scorecards.trend import trend

LEVELS = ["L0", "L1", "L2"]
ORIGIN = datetime(2031, 5, 1, tzinfo=UTC)
# entity -> changes as (minutes after ORIGIN, level); "Gone" a level renamed away since
histories = st.lists(
    st.tuples(
        st.booleans(),  # deleted since
        st.lists(
            st.tuples(
                st.integers(-2 * 1440, 20 * 1440).map(lambda m: m - m % 1440 if m % 5 == 0 else m),
                st.sampled_from([*LEVELS, "Gone"]),
            ),
            max_size=5,
        ),
    ),
    max_size=10,
)
# reader times, in minutes after ORIGIN (sorted: the summary only moves forward)
readers = st.lists(st.integers(0, 22 * 1440), min_size=1, max_size=3).map(sorted)


def _store(session: Session, world: list[tuple[bool, list[tuple[int, str]]]]) -> None:
    for model in (ScorecardLevelDay, ScorecardLevelDaysMark, ScorecardLevelChange, Initiative, Entity):
        session.execute(delete(model))
    session.execute(delete(Scorecard))
    session.execute(delete(Blueprint))
    session.add(Blueprint(identifier="svc", title="svc"))
    levels = [{"title": t} for t in LEVELS]
    definition = {"identifier": "sc", "title": "sc", "levels": levels, "rules": []}
    session.add(Scorecard(blueprint="svc", identifier="sc", title="sc", definition=definition))
    for number, (deleted, changes) in enumerate(world):
        if not deleted:
            session.add(Entity(blueprint="svc", identifier=f"e{number}", team=[], properties={}))
        for minutes, level in changes:
            at = ORIGIN + timedelta(minutes=minutes)
            session.add(
                ScorecardLevelChange(
                    blueprint="svc", entity=f"e{number}", scorecard="sc", to_level=level, at=at
                )
            )
            session.flush()  # ids in insertion order: changes at one instant keep it


def _grids(now: datetime) -> list[Grid]:
    start = day_start(ORIGIN.date())
    return [
        Grid(start - timedelta(days=3), timedelta(days=1), now),
        Grid(start + timedelta(days=4), timedelta(days=1), now),
        Grid(start - timedelta(days=1), timedelta(weeks=1), now),
        Grid(start + timedelta(days=2), timedelta(days=1), now - timedelta(days=3)),  # ends in the past
    ]


def _without_zeros(moves: daily.Moves) -> dict[int, dict[str, int]]:
    found = {b: {lv: n for lv, n in levels.items() if n} for b, levels in moves.items()}
    return {b: levels for b, levels in found.items() if levels}


@given(world=histories, times=readers)
@settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_summary_answers_what_the_history_answers(
    engine: Engine, world: list[tuple[bool, list[tuple[int, str]]]], times: list[int]
) -> None:
    dialect = engine.dialect.name
    with make_sessionmaker(engine)() as session:
        _store(session, world)
        sc = session.get(Scorecard, ("svc", "sc"))
        assert sc is not None
        for minutes in times:
            now = ORIGIN + timedelta(minutes=minutes)
            through = daily.summed_through(session, "svc", "sc", now)
            assert through == now - daily.MARGIN
            for grid in _grids(now):
                if grid.count == 0:
                    continue
                from_summary = daily.level_moves(session, "svc", "sc", grid, now)
                from_history = daily.moves(
                    session,
                    "svc",
                    "sc",
                    partial(Grid.bucket, grid, dialect=dialect),
                    until=grid.end,
                    which=daily.Which.EXISTING,
                )
                assert _without_zeros(from_summary) == _without_zeros(from_history)
                summed = trend(session, sc, grid, now=now)
                assert summed == trend(session, sc, grid)
        # the summary has a row per day and level, not per change
        rows = session.scalar(select(func.count()).select_from(ScorecardLevelDay))
        assert rows is not None and rows <= 23 * (len(LEVELS) + 1)
        session.rollback()


@given(world=histories, minutes=st.integers(0, 22 * 1440))
@settings(
    max_examples=12,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_an_initiatives_burn_down_from_the_summary(
    engine: Engine, world: list[tuple[bool, list[tuple[int, str]]]], minutes: int
) -> None:
    with make_sessionmaker(engine)() as session:
        _store(session, world)
        now = ORIGIN + timedelta(minutes=minutes)
        definition: dict[str, Any] = {
            "identifier": "ready",
            "title": "Ready",
            "targets": [{"blueprint": "svc", "scorecard": "sc", "level": "L1"}],
            "starts_at": (ORIGIN - timedelta(days=1)).isoformat(),
            "deadline": (ORIGIN + timedelta(days=30)).isoformat(),
        }
        initiative = Initiative(
            identifier="ready",
            title="Ready",
            definition=definition,
            deadline=ORIGIN + timedelta(days=30),
            reminders=[],
            created_at=ORIGIN,
            updated_at=ORIGIN,
        )
        session.add(initiative)
        session.flush()
        targets = progress.resolve_targets(session, initiative)
        everyone = progress.points(session, initiative, targets, lambda _: None, now)
        assert session.get(ScorecardLevelDaysMark, ("svc", "sc")) is not None  # read from the summary
        grid = progress.burn_down_grid(initiative, now)
        # the same through the history entity by entity (the path of filtered initiatives)
        by_entity = progress._from_history(session, initiative, targets, lambda _: None, grid, now)
        totals = grid.accumulate(by_entity, (0, 0), lambda a, b: (a[0] + b[0], a[1] + b[1]))
        assert [(p["total"], p["passing"]) for p in everyone] == totals
        session.rollback()


pytestmark = pytest.mark.slow
