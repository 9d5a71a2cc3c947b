"""The points of a chart over time: a grid of intervals from an origin, and the interval of a
time in SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Integer, func
from sqlalchemy.sql.elements import ColumnElement


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
