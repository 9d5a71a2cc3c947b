"""The level history summed per day, so that burn-downs and trends read a row per day and level
instead of every level change.

The history (``ScorecardLevelChange``) has a row per level change. Each change is +1 for the
level the entity moved to and -1 for the level it left (its change before, if any); summed per
(day, level) these are a scorecard's ``ScorecardLevelDay`` rows, and its
``ScorecardLevelDaysMark`` says up to when they sum the history. The number of entities at a
level at the end of a day is the sum of that level's rows up to that day.

A chart (:func:`level_moves`) reads the summed days, then the changes since the mark from the
history itself (those of the last minutes, usually), so what it answers is exactly what the
history says.

The summary is brought up to date as it is read (:func:`summed_through`), in a savepoint of the
reader's transaction: the mark moves from the time read to the new one or nothing is written, so
two readers never both add the same changes. It stays ``MARGIN`` behind the reader's clock: a
change whose time was taken in a transaction that had not committed when the summary passed that
time would be missed, and no write transaction lasts that long.

The summary sums the history as it is, and the history keeps the changes of entities deleted
since. Charts count the entities that exist: they subtract what the deleted ones added (a
query over those entities' changes alone).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import CursorResult, Table, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from catalog.models import Entity, ScorecardLevelChange, ScorecardLevelDay, ScorecardLevelDaysMark
from catalog.scorecards.grid import Grid

DAYS = cast(Table, ScorecardLevelDay.__table__)
MARKS = cast(Table, ScorecardLevelDaysMark.__table__)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
# How far behind the reader's clock the summary stays (longer than any write transaction).
MARGIN = timedelta(minutes=5)
# Up to this many entities' changes are asked for by their identifiers.
LISTED = 5000

# Per interval (a day, or a chart's interval) and level: how many more entities are at it.
Moves = dict[int, dict[str, int]]
Bucket = Callable[[Any], ColumnElement[int]]


class Which(enum.Enum):
    """The entities whose changes count."""

    ALL = "all"
    EXISTING = "existing"
    DELETED = "deleted"


def day_number(moment: datetime) -> int:
    """Days since 1970-01-01 (UTC) of ``moment``."""
    return (moment - EPOCH) // DAY


def day_start(number: int) -> datetime:
    return EPOCH + number * DAY


def _days(dialect: str) -> Bucket:
    days = Grid(EPOCH, DAY, EPOCH)  # only its bucket() is used: the day number of a time
    return lambda column: days.bucket(column, dialect)


def add(into: Moves, moves: Moves, sign: int = 1) -> Moves:
    for bucket, levels in moves.items():
        per_level = into.setdefault(bucket, {})
        for level, count in levels.items():
            per_level[level] = per_level.get(level, 0) + sign * count
    return into


def moves(
    session: Session,
    blueprint: str,
    scorecard: str,
    bucket: Bucket,
    *,
    until: datetime,
    since: datetime | None = None,
    which: Which = Which.ALL,
) -> Moves:
    """The net moves per ``bucket`` of the change's time and level, of the changes in
    ``[since, until)`` (each change's predecessor may be older): one statement, a row per
    (bucket, level) back."""
    history = ScorecardLevelChange
    scorecard_rows = (history.blueprint == blueprint, history.scorecard == scorecard)
    conditions: list[ColumnElement[bool]] = [*scorecard_rows, history.at < until]
    if since is not None:
        recent = aliased(ScorecardLevelChange)
        changed = (
            select(recent.entity)
            .where(
                recent.blueprint == blueprint,
                recent.scorecard == scorecard,
                recent.at >= since,
                recent.at < until,
            )
            .distinct()
        )
        if (narrowed := _narrowed(session, history, changed)) is None:
            return {}
        conditions.append(narrowed)
    if which is Which.DELETED:  # looked up entity by entity, then their changes alone
        known = select(history.entity).where(*scorecard_rows).distinct().subquery()
        exists = (
            select(Entity.id)
            .where(Entity.blueprint == blueprint, Entity.identifier == known.c.entity)
            .exists()
        )
        if (narrowed := _narrowed(session, history, select(known.c.entity).where(~exists))) is None:
            return {}
        conditions.append(narrowed)
    changes = select(
        history.at,
        history.to_level.label("level"),
        func.lag(history.to_level)
        .over(partition_by=history.entity, order_by=(history.at, history.id))
        .label("prior"),
    ).where(*conditions)
    if which is Which.EXISTING:
        changes = changes.join(
            Entity, sa.and_(Entity.blueprint == blueprint, Entity.identifier == history.entity)
        )
    rows = changes.subquery()
    kept = rows.c.at >= since if since is not None else sa.true()
    at = bucket(rows.c.at).label("bucket")
    # One pass: a row per (interval, level, level left), a handful per interval.
    stmt = (
        select(at, rows.c.level, rows.c.prior, func.count())
        .where(kept)
        .group_by(at, rows.c.level, rows.c.prior)
    )
    found: Moves = {}
    for interval, level, prior, count in session.execute(stmt):
        per_level = found.setdefault(int(interval), {})
        per_level[level] = per_level.get(level, 0) + count
        if prior is not None:
            per_level[prior] = per_level.get(prior, 0) - count
    return found


def _narrowed(session: Session, history: Any, entities: Any) -> ColumnElement[bool] | None:
    """The changes of ``entities`` (a query of identifiers): None when there are none; their
    identifiers themselves when they are a few (the history's index finds each one's changes,
    where a subquery may have the database read every change to match them)."""
    found = list(session.scalars(entities.limit(LISTED + 1)))
    if not found:
        return None
    return history.entity.in_(found if len(found) <= LISTED else entities)


# ---- the summary -------------------------------------------------------------------------------


class _Overtaken(Exception):
    """Another reader moved the mark first."""


def _mark(session: Session, blueprint: str, scorecard: str) -> datetime | None:
    through: datetime | None = session.scalar(
        select(MARKS.c.through).where(MARKS.c.blueprint == blueprint, MARKS.c.scorecard == scorecard)
    )
    return through


def summed_through(session: Session, blueprint: str, scorecard: str, now: datetime) -> datetime | None:
    """Sum the history up to ``now`` - ``MARGIN`` into the summary (in a savepoint of the
    session's transaction; the caller commits) and return how far the summary reaches: None when
    it has never been summed and could not be now (another reader is at it, a locked database)."""
    target = now - MARGIN
    old = _mark(session, blueprint, scorecard)
    if old is not None and old >= target:
        return old
    dialect = session.get_bind().dialect.name
    try:
        with session.begin_nested():
            where = (MARKS.c.blueprint == blueprint, MARKS.c.scorecard == scorecard)
            if old is None:
                session.execute(
                    MARKS.insert().values(blueprint=blueprint, scorecard=scorecard, through=target)
                )
            else:
                moved = session.execute(
                    MARKS.update().where(*where, MARKS.c.through == old).values(through=target)
                )
                if cast(CursorResult[Any], moved).rowcount != 1:
                    raise _Overtaken
            summed = moves(session, blueprint, scorecard, _days(dialect), since=old, until=target)
            _add_days(session, blueprint, scorecard, summed, dialect)
    except (_Overtaken, IntegrityError, OperationalError):
        return _mark(session, blueprint, scorecard)
    return target


def _add_days(session: Session, blueprint: str, scorecard: str, summed: Moves, dialect: str) -> None:
    rows = [
        {"blueprint": blueprint, "scorecard": scorecard, "day": day, "level": level, "entities": count}
        for day, levels in summed.items()
        for level, count in levels.items()
        if count
    ]
    if not rows:
        return
    insert = (sqlite_insert if dialect == "sqlite" else postgresql_insert)(DAYS)
    upsert = insert.on_conflict_do_update(
        index_elements=[DAYS.c.blueprint, DAYS.c.scorecard, DAYS.c.day, DAYS.c.level],
        set_={"entities": DAYS.c.entities + insert.excluded.entities},
    )
    session.execute(upsert, rows)


def summed_days(session: Session, blueprint: str, scorecard: str, before: int) -> Moves:
    """The summary's rows of the days before day number ``before``."""
    stmt = select(DAYS.c.day, DAYS.c.level, DAYS.c.entities).where(
        DAYS.c.blueprint == blueprint, DAYS.c.scorecard == scorecard, DAYS.c.day < before
    )
    found: Moves = {}
    for day, level, count in session.execute(stmt):
        found.setdefault(day, {})[level] = count
    return found


def level_moves(session: Session, blueprint: str, scorecard: str, grid: Grid, now: datetime) -> Moves:
    """The net moves per interval of ``grid`` (-1: before it) and level of the entities that
    exist, as :func:`moves` over the whole history would answer them: the summed days, the
    history's changes since, less the changes of entities deleted since (the summary still has
    them).

    Intervals are whole days (or weeks) but the last, so a summed day lies in one interval,
    and when the grid ends after the summary's mark so does the mark's day, summed in part: all
    of the summary is read, and the history from the mark. When the grid ends before the mark
    (a deadline passed, a trend up to a past day), the summary is read up to the grid's last
    day, and that day's changes from the history."""
    dialect = session.get_bind().dialect.name

    def intervals(column: Any) -> ColumnElement[int]:
        return grid.bucket(column, dialect)

    through = summed_through(session, blueprint, scorecard, now)
    if through is None:  # nothing summed: the history alone, in one pass
        return moves(session, blueprint, scorecard, intervals, until=grid.end, which=Which.EXISTING)
    if through <= grid.end:
        cut, before = through, day_number(through) + 1
    else:
        before = day_number(grid.end)
        cut = day_start(before)
    found: Moves = {}
    for day, levels in summed_days(session, blueprint, scorecard, before).items():
        start = day_start(day)
        index = -1 if start < grid.origin else (start - grid.origin) // grid.step
        add(found, {index: levels})
    add(
        found,
        moves(session, blueprint, scorecard, intervals, since=cut, until=grid.end, which=Which.EXISTING),
    )
    add(found, moves(session, blueprint, scorecard, intervals, until=cut, which=Which.DELETED), sign=-1)
    return found
