"""Scorecard trends: the level distribution at the end of each interval, from the level history.

An entity's level at a moment is the ``to_level`` of its latest level change before that moment.
Nothing is replayed in Python: each change becomes +1 for its level and -1 for the level it
left (its predecessor in the entity's history, by a window function), the deltas are summed
per interval in SQL, and only one row per (interval, level) comes back to be accumulated.

Intervals are ``[start, end)``: the point at an interval's end counts the changes made before
it. The entities counted are those that exist now, that the caller may read and, with a team,
that the team owns; an entity that left the scorecard's filter keeps its last level.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Integer, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from catalog.errors import FieldError, Invalid
from catalog.models import Entity, Scorecard, ScorecardLevelChange
from catalog.query.compiler import team_overlaps
from catalog.timefmt import format_instant

INTERVALS = {"day": timedelta(days=1), "week": timedelta(weeks=1)}
DEFAULT_SPAN = timedelta(days=30)
MAX_POINTS = 1000


@dataclass(frozen=True)
class Grid:
    """The points of a chart: ``origin`` + (i + 1) * ``step`` for every interval before ``end``
    (the last one cut at ``end``)."""

    origin: datetime
    step: timedelta
    end: datetime

    @property
    def count(self) -> int:
        if self.end <= self.origin:
            return 0
        return -(-(self.end - self.origin) // self.step)

    def moments(self) -> list[datetime]:
        return [min(self.origin + (i + 1) * self.step, self.end) for i in range(self.count)]

    def bucket(self, column: Any, dialect: str) -> ColumnElement[int]:
        """The interval index of the time ``column`` (-1 before ``origin``), in SQL."""
        seconds = int(self.step.total_seconds())
        origin = int(self.origin.timestamp())
        if dialect == "sqlite":
            # strftime('%s') is whole seconds (floor, after 1970); integer division floors too.
            elapsed: ColumnElement[Any] = sa.cast(func.strftime("%s", column), Integer) - origin
            index: ColumnElement[int] = sa.cast(elapsed / seconds, Integer)
        else:
            elapsed = func.floor(func.extract("epoch", column)) - origin
            index = sa.cast(func.floor(elapsed / seconds), Integer)
        return sa.case((column < self.origin, -1), else_=index)

    def accumulate(self, deltas: dict[int, Any], zero: Any, add: Any) -> list[Any]:
        """The running totals at each point, from per-interval ``deltas`` (-1: before ``origin``)."""
        running = add(zero, deltas.get(-1, zero))
        points = []
        for index in range(self.count):
            running = add(running, deltas.get(index, zero))
            points.append(running)
        return points


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


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
) -> dict[str, Any]:
    """The level distribution of ``sc`` at each point of ``grid``."""
    dialect = session.get_bind().dialect.name
    titles = [level["title"] for level in sc.definition["levels"]]
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
            if level in titles:
                per_level = deltas.setdefault(bucket, {})
                per_level[level] = per_level.get(level, 0) + sign * count

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
