"""Scorecard trends: the level distribution at the end of each interval, from the level history.

An entity's level at a moment is the ``to_level`` of its latest level change before that moment.
Nothing is replayed in Python: each change becomes +1 for its level and -1 for the level it
left (its predecessor in the entity's history, by a window function), the deltas are summed
per interval in SQL, and only one row per (interval, level) comes back to be accumulated.

Intervals are ``[start, end)``: the point at an interval's end counts the changes made before
it. The entities counted are those that exist now, that the caller may read and, with a team,
that the team owns; an entity that left the scorecard's filter keeps its last level. Over every
entity the moves come from the daily summary (:mod:`catalog.scorecards.daily`), which answers
the same from a row per day and level.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from catalog.errors import FieldError, Invalid
from catalog.models import Entity, Scorecard, ScorecardLevelChange
from catalog.query.compiler import team_overlaps
from catalog.scorecards import daily
from catalog.scorecards.grid import Grid, day_start
from catalog.timefmt import format_instant

__all__ = ["DEFAULT_SPAN", "INTERVALS", "MAX_POINTS", "Grid", "day_start", "trend", "trend_grid"]

INTERVALS = {"day": timedelta(days=1), "week": timedelta(weeks=1)}
DEFAULT_SPAN = timedelta(days=30)
MAX_POINTS = 1000


def trend_grid(start: date | None, stop: date | None, interval: str, today: date) -> Grid:
    """The grid of ``from``/``to`` (ISO dates, both included; default: the last 30 days)."""
    if interval not in INTERVALS:
        raise Invalid("invalid trend", [FieldError("/interval", f"must be one of {', '.join(INTERVALS)}")])
    stop = stop or today
    start = start or stop - DEFAULT_SPAN
    if start > stop:
        raise Invalid("invalid trend", [FieldError("/from", "must not be after to")])
    grid = Grid(day_start(start), INTERVALS[interval], day_start(stop) + timedelta(days=1))
    if grid.count > MAX_POINTS:
        raise Invalid("invalid trend", [FieldError("/from", f"asks for more than {MAX_POINTS} points")])
    return grid


def trend(
    session: Session,
    sc: Scorecard,
    grid: Grid,
    *,
    readable: ColumnElement[bool] | None = None,
    team: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The level distribution of ``sc`` at each point of ``grid``. Over every entity (no
    ``readable`` or ``team``) and given the time ``now``, from the daily summary
    (:mod:`catalog.scorecards.daily`); else from the history, entity by entity."""
    titles = [level["title"] for level in sc.definition["levels"]]
    if now is not None and readable is None and team is None:
        found = daily.level_moves(session, sc.blueprint, sc.identifier, grid, now)
    else:
        found = _history_moves(session, sc, grid, readable=readable, team=team)
    deltas = {
        bucket: {level: count for level, count in levels.items() if level in titles}
        for bucket, levels in found.items()
    }

    def add(running: dict[str, int], delta: dict[str, int]) -> dict[str, int]:
        return {title: running.get(title, 0) + delta.get(title, 0) for title in titles}

    totals = grid.accumulate(deltas, {}, add)
    return {
        "blueprint": sc.blueprint,
        "scorecard": sc.identifier,
        "team": team,
        "interval": "week" if grid.step == INTERVALS["week"] else "day",
        "from": format_instant(grid.origin),
        "to": format_instant(grid.end),
        "levels": titles,
        "points": [
            {"at": format_instant(at), "total": sum(dist.values()), "distribution": dist}
            for at, dist in zip(grid.moments(), totals, strict=True)
        ],
    }


def _history_moves(
    session: Session,
    sc: Scorecard,
    grid: Grid,
    *,
    readable: ColumnElement[bool] | None,
    team: str | None,
) -> dict[int, dict[str, int]]:
    """Per interval and level, the net moves of the entities in scope, from the history."""
    dialect = session.get_bind().dialect.name
    history = ScorecardLevelChange
    conditions = [
        history.blueprint == sc.blueprint,
        history.scorecard == sc.identifier,
        history.at < grid.end,
    ]
    if readable is not None:
        conditions.append(readable)
    if team is not None:
        conditions.append(team_overlaps(Entity.team, [team], dialect))
    changes = (
        select(Entity.id.label("eid"), history.at, history.id.label("hid"), history.to_level.label("level"))
        .join(Entity, sa.and_(Entity.blueprint == history.blueprint, Entity.identifier == history.entity))
        .where(*conditions)
        .subquery()
    )
    window: dict[str, Any] = {"partition_by": changes.c.eid, "order_by": (changes.c.at, changes.c.hid)}
    moves = select(
        grid.bucket(changes.c.at, dialect).label("bucket"),
        changes.c.level,
        func.lag(changes.c.level).over(**window).label("prior"),
    ).subquery()
    entered = select(moves.c.bucket, moves.c.level, func.count()).group_by(moves.c.bucket, moves.c.level)
    left = (
        select(moves.c.bucket, moves.c.prior, func.count())
        .where(moves.c.prior.is_not(None))
        .group_by(moves.c.bucket, moves.c.prior)
    )
    deltas: dict[int, dict[str, int]] = {}
    for sign, stmt in ((1, entered), (-1, left)):
        for bucket, level, count in session.execute(stmt):
            per_level = deltas.setdefault(bucket, {})
            per_level[level] = per_level.get(level, 0) + sign * count
    return deltas
