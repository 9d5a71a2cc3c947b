"""An initiative's progress, in SQL: how many entities in scope meet every target, per owning
team, which ones fail and on what rules, and the burn-down from the level history.

In scope: the entities of a target's blueprint that match the initiative's filter, that its
scorecard grades, and that the caller may read. An entity passes when its level on every target
of its blueprint (that grades it) is at or above the target level. Its failing rules are the
rules at or below the target level that do not pass. The counts are one statement, a pass over
the entities in scope and their results grouped by their owning teams; only a page of failing
entities comes back row by row.

The burn-down (``points``): an entity's standing on a target at a moment is its latest level
in the level history before that moment, summed per day (per week past 100 days) from the start
to the deadline, or now if earlier. When every entity of each targeted blueprint is in scope and
has one target (no filter, nothing hidden from the caller, one target per blueprint), that is a
sum of each scorecard's level counts, read from the daily summary of the history
(``catalog/scorecards/daily.py``: a row per day and level); otherwise it is computed from the
history entity by entity, with the window-function technique of trends
(``catalog/scorecards/trend.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from catalog.errors import FieldError, Invalid
from catalog.initiatives.service import level_titles
from catalog.models import Blueprint, Entity, Initiative, Scorecard, ScorecardLevelChange, ScorecardResult
from catalog.pagination import check_limit, decode_cursor, encode_cursor
from catalog.query.compiler import compile_query
from catalog.scorecards import daily
from catalog.scorecards.grid import Grid, day_start
from catalog.scorecards.service import resolve
from catalog.timefmt import format_instant, parse_instant

# Who may read what, per blueprint: None when every entity of it is readable.
Readable = Callable[[Blueprint], ColumnElement[bool] | None]
DAILY_UP_TO = timedelta(days=100)


@dataclass(frozen=True)
class ResolvedTarget:
    number: int
    blueprint: Blueprint
    scorecard: Scorecard
    index: int  # the target level's position in the scorecard's levels

    @property
    def titles(self) -> list[str]:
        return level_titles(self.scorecard)

    def rules_to_pass(self) -> list[dict[str, Any]]:
        """The rules at or below the target level, in definition order."""
        allowed = set(self.titles[: self.index + 1])
        return [r for r in self.scorecard.definition.get("rules", []) if r["level"] in allowed]


def resolve_targets(session: Session, initiative: Initiative) -> list[ResolvedTarget]:
    """The targets that still make sense (a scorecard or level deleted since counts no more)."""
    found = []
    for number, target in enumerate(initiative.definition["targets"]):
        bp = session.get(Blueprint, target["blueprint"])
        sc = session.get(Scorecard, (target["blueprint"], target["scorecard"]))
        if bp is None or sc is None or target["level"] not in level_titles(sc):
            continue
        found.append(ResolvedTarget(number, bp, sc, level_titles(sc).index(target["level"])))
    return found


def _scope(
    session: Session, initiative: Initiative, target: ResolvedTarget, readable: Readable, now: datetime
) -> list[ColumnElement[bool]]:
    """The conditions on ``Entity`` that put an entity of the target's blueprint in scope."""
    conditions: list[ColumnElement[bool]] = [Entity.blueprint == target.blueprint.identifier]
    query = initiative.definition.get("filter")
    if query:
        dialect = session.get_bind().dialect.name
        conditions.append(compile_query(resolve(session, query), dialect=dialect, now=now, pointer="/filter"))
    clause = readable(target.blueprint)
    if clause is not None:
        conditions.append(clause)
    return conditions


def _standing(
    session: Session, initiative: Initiative, targets: list[ResolvedTarget], readable: Readable, now: datetime
) -> Any:
    """One row per entity in scope: its id, teams and whether it meets every target (1/0).
    When each blueprint has one target an entity has one row to begin with: no grouping, so
    counting it is one pass over the entities and their results."""
    pairs = []
    for target in targets:
        result = aliased(ScorecardResult)  # the filter's scorecard rules use ScorecardResult itself
        pairs.append(
            select(
                Entity.id.label("eid"),
                Entity.team.label("team"),
                sa.case((result.level_index >= target.index, 1), else_=0).label("ok"),
            )
            .join(
                result,
                sa.and_(
                    result.entity_id == Entity.id,
                    result.blueprint == target.blueprint.identifier,
                    result.scorecard == target.scorecard.identifier,
                ),
            )
            .where(*_scope(session, initiative, target, readable, now))
        )
    union = sa.union_all(*pairs).subquery() if len(pairs) > 1 else pairs[0].subquery()
    if len({t.blueprint.identifier for t in targets}) == len(targets):
        return union
    return (
        select(union.c.eid, union.c.team, func.min(union.c.ok).label("ok"))
        .group_by(union.c.eid, union.c.team)
        .subquery()
    )


def _counts(session: Session, standing: Any) -> tuple[int, int, list[dict[str, Any]]]:
    """(total, passing, per team) in one pass: counted per set of owning teams in SQL (a few
    rows: entities mostly share their teams), then per team here. An entity with no team counts
    under the team None."""
    total = passing = 0
    teams: dict[str | None, list[int]] = {}
    stmt = select(standing.c.team, func.count(), func.sum(standing.c.ok)).group_by(standing.c.team)
    for owners, count, ok in session.execute(stmt):
        ok = int(ok or 0)
        total, passing = total + count, passing + ok
        for team in sorted(set(owners or [])) or [None]:
            counted = teams.setdefault(team, [0, 0])
            counted[0] += count
            counted[1] += ok
    return (
        total,
        passing,
        [
            {"team": team, "total": count, "passing": ok}
            for team, (count, ok) in sorted(teams.items(), key=lambda t: (t[0] is None, t[0] or ""))
        ],
    )


def progress(
    session: Session,
    initiative: Initiative,
    readable: Readable,
    *,
    now: datetime,
    limit: int = 100,
    cursor: str | None = None,
    with_points: bool = True,
) -> dict[str, Any]:
    """``{"total", "passing", "teams", "failing", "points", "next_cursor"}``: ``failing`` is one
    page (entity order: blueprint, identifier) resumed after ``cursor``; ``points`` (the
    burn-down, the costliest part) only ``with_points``."""
    check_limit(limit)
    after = _cursor(cursor)
    targets = resolve_targets(session, initiative)
    empty = {"total": 0, "passing": 0, "teams": [], "failing": [], "next_cursor": None}
    if not targets:
        return {**empty, "points": []}
    standing = _standing(session, initiative, targets, readable, now)
    total, passing, teams = _counts(session, standing)
    failing, next_cursor = _failing_page(session, standing, targets, limit, after)
    return {
        "total": total,
        "passing": passing,
        "teams": teams,
        "failing": failing,
        "next_cursor": next_cursor,
        "points": points(session, initiative, targets, readable, now) if with_points else [],
    }


def _cursor(cursor: str | None) -> tuple[str, str] | None:
    if cursor is None:
        return None
    key = decode_cursor(cursor, size=2)
    if not all(isinstance(part, str) for part in key):
        raise Invalid("invalid cursor", [FieldError("/cursor", "not a cursor returned by this API")])
    return key[0], key[1]


def _failing_page(
    session: Session, standing: Any, targets: list[ResolvedTarget], limit: int, after: tuple[str, str] | None
) -> tuple[list[dict[str, Any]], str | None]:
    stmt = (
        select(Entity.id, Entity.blueprint, Entity.identifier, Entity.team)
        .join(standing, standing.c.eid == Entity.id)
        .where(standing.c.ok == 0)
        .order_by(Entity.blueprint, Entity.identifier)
    )
    if after is not None:
        stmt = stmt.where(sa.tuple_(Entity.blueprint, Entity.identifier) > sa.tuple_(*after))
    rows = session.execute(stmt.limit(limit + 1)).all()
    page = rows[:limit]
    results = session.execute(
        select(
            ScorecardResult.entity_id,
            ScorecardResult.scorecard,
            ScorecardResult.level_index,
            ScorecardResult.rules,
        ).where(ScorecardResult.entity_id.in_([row[0] for row in page]))
    ).all()
    graded = {(r[0], r[1]): (r[2], r[3]) for r in results}
    failing = []
    for entity_id, blueprint, identifier, team in page:
        rules = []
        for target in targets:
            if target.blueprint.identifier != blueprint:
                continue
            found = graded.get((entity_id, target.scorecard.identifier))
            if found is None or found[0] >= target.index:
                continue
            rules += [
                {
                    "scorecard": target.scorecard.identifier,
                    "identifier": rule["identifier"],
                    "title": rule.get("title") or rule["identifier"],
                    "level": rule["level"],
                }
                for rule in target.rules_to_pass()
                if not found[1].get(rule["identifier"])
            ]
        failing.append(
            {"entity": identifier, "blueprint": blueprint, "team": list(team or []), "rules": rules}
        )
    next_cursor = encode_cursor([page[-1][1], page[-1][2]]) if len(rows) > limit else None
    return failing, next_cursor


# ---- the burn-down -----------------------------------------------------------------------------


def burn_down_grid(initiative: Initiative, now: datetime) -> Grid:
    """Daily points from the start's day to the deadline (or now, if earlier); weekly past 100 days."""
    start = parse_instant(initiative.definition["starts_at"]) or initiative.created_at
    end = min(initiative.deadline, now)
    origin = day_start(start.date())
    step = timedelta(days=1) if end - origin <= DAILY_UP_TO else timedelta(weeks=1)
    return Grid(origin, step, end)


def points(
    session: Session,
    initiative: Initiative,
    targets: list[ResolvedTarget],
    readable: Readable,
    now: datetime,
) -> list[dict[str, Any]]:
    grid = burn_down_grid(initiative, now)
    if grid.count == 0:
        return []
    if _summable(initiative, targets, readable):
        per_bucket = _summed(session, targets, grid, now)
    else:
        per_bucket = _from_history(session, initiative, targets, readable, grid, now)
    totals = grid.accumulate(per_bucket, (0, 0), lambda a, b: (a[0] + b[0], a[1] + b[1]))
    return [
        {"at": format_instant(at), "total": total, "passing": passing}
        for at, (total, passing) in zip(grid.moments(), totals, strict=True)
    ]


def _summable(initiative: Initiative, targets: list[ResolvedTarget], readable: Readable) -> bool:
    """Whether the burn-down is a sum of per-scorecard counts: every entity of each targeted
    blueprint is in scope (no filter, all readable) and has one target (its blueprint's)."""
    blueprints = [t.blueprint for t in targets]
    return (
        not initiative.definition.get("filter")
        and len({bp.identifier for bp in blueprints}) == len(targets)
        and all(readable(bp) is None for bp in blueprints)
    )


def _summed(
    session: Session, targets: list[ResolvedTarget], grid: Grid, now: datetime
) -> dict[int, tuple[int, int]]:
    """Per interval, how many entities came into the count and how many more pass, from each
    target's level moves (the daily summary, :mod:`catalog.scorecards.daily`): every level
    counts, those at or above the target pass."""
    per_bucket: dict[int, tuple[int, int]] = {}
    for target in targets:
        meeting = set(target.titles[target.index :])
        found = daily.level_moves(
            session, target.blueprint.identifier, target.scorecard.identifier, grid, now
        )
        for bucket, levels in found.items():
            total, passing = per_bucket.get(bucket, (0, 0))
            per_bucket[bucket] = (
                total + sum(levels.values()),
                passing + sum(count for level, count in levels.items() if level in meeting),
            )
    return per_bucket


def _from_history(
    session: Session,
    initiative: Initiative,
    targets: list[ResolvedTarget],
    readable: Readable,
    grid: Grid,
    now: datetime,
) -> dict[int, tuple[int, int]]:
    """The same per interval from the history entity by entity, for any scope."""
    dialect = session.get_bind().dialect.name
    history = ScorecardLevelChange
    parts = []
    for target in targets:
        index = sa.case(
            {title: position for position, title in enumerate(target.titles)},
            value=history.to_level,
            else_=-1,
        )
        parts.append(
            select(
                history.blueprint.label("bp"),
                history.entity.label("eid"),
                history.at,
                history.id.label("hid"),
                sa.literal(target.number).label("target"),
                sa.case((index >= target.index, 1), else_=0).label("ok"),
            )
            .join(Entity, sa.and_(Entity.blueprint == history.blueprint, Entity.identifier == history.entity))
            .where(
                history.blueprint == target.blueprint.identifier,
                history.scorecard == target.scorecard.identifier,
                history.at < grid.end,
                *_scope(session, initiative, target, readable, now),
            )
        )
    rows = sa.union_all(*parts).subquery() if len(parts) > 1 else parts[0].subquery()
    if len({t.blueprint.identifier for t in targets}) == len(targets):
        summed = _one_target_each(rows, grid, dialect)
    else:
        summed = _several_targets(rows, grid, dialect)
    return {bucket: (int(t or 0), int(p or 0)) for bucket, t, p in session.execute(summed)}


def _one_target_each(rows: Any, grid: Grid, dialect: str) -> Any:
    """Per interval, how many entities came into the count and how many more pass, when each
    entity has one target (its blueprint's): its standing is that target's."""
    pair: dict[str, Any] = {"partition_by": (rows.c.bp, rows.c.eid), "order_by": (rows.c.at, rows.c.hid)}
    previous = func.lag(rows.c.ok).over(**pair)
    moved = select(
        grid.bucket(rows.c.at, dialect).label("bucket"),
        sa.case((previous.is_(None), 1), else_=0).label("d_total"),
        (rows.c.ok - func.coalesce(previous, 0)).label("d_passing"),
    ).subquery()
    return select(moved.c.bucket, func.sum(moved.c.d_total), func.sum(moved.c.d_passing)).group_by(
        moved.c.bucket
    )


def _several_targets(rows: Any, grid: Grid, dialect: str) -> Any:
    """The same when an entity may have several targets: it passes when every target it has a
    level on is met."""
    # 1. per (entity, target): how its standing moved, and whether it was graded for the first time
    pair: dict[str, Any] = {
        "partition_by": (rows.c.bp, rows.c.eid, rows.c.target),
        "order_by": (rows.c.at, rows.c.hid),
    }
    previous = func.lag(rows.c.ok).over(**pair)
    moved = select(
        rows.c.bp,
        rows.c.eid,
        rows.c.at,
        rows.c.hid,
        (rows.c.ok - func.coalesce(previous, 0)).label("d_ok"),
        sa.case((previous.is_(None), 1), else_=0).label("d_graded"),
    ).subquery()
    # 2. per entity: targets met and targets graded so far
    entity: dict[str, Any] = {
        "partition_by": (moved.c.bp, moved.c.eid),
        "order_by": (moved.c.at, moved.c.hid),
    }
    running = select(
        moved.c.bp,
        moved.c.eid,
        moved.c.at,
        moved.c.hid,
        func.sum(moved.c.d_ok).over(**entity).label("met"),
        func.sum(moved.c.d_graded).over(**entity).label("graded"),
    ).subquery()
    state = select(
        running.c.bp,
        running.c.eid,
        running.c.at,
        running.c.hid,
        sa.case((running.c.graded > 0, 1), else_=0).label("counted"),
        sa.case((sa.and_(running.c.graded > 0, running.c.met == running.c.graded), 1), else_=0).label("ok"),
    ).subquery()
    # 3. per entity: how its being counted and passing moved; summed per interval
    again: dict[str, Any] = {"partition_by": (state.c.bp, state.c.eid), "order_by": (state.c.at, state.c.hid)}
    deltas = select(
        grid.bucket(state.c.at, dialect).label("bucket"),
        (state.c.counted - func.coalesce(func.lag(state.c.counted).over(**again), 0)).label("d_total"),
        (state.c.ok - func.coalesce(func.lag(state.c.ok).over(**again), 0)).label("d_passing"),
    ).subquery()
    return select(deltas.c.bucket, func.sum(deltas.c.d_total), func.sum(deltas.c.d_passing)).group_by(
        deltas.c.bucket
    )


def report(
    session: Session, initiative: Initiative, now: datetime, *, max_failing: int = 1000
) -> dict[str, Any]:
    """The final report: the progress over every entity in scope (the first ``max_failing``
    failing ones listed), stamped with the deadline it is for."""
    found = progress(session, initiative, lambda _: None, now=now, limit=max_failing)
    return {
        "deadline": initiative.definition["deadline"],
        "at": format_instant(now),
        "total": found["total"],
        "passing": found["passing"],
        "teams": found["teams"],
        "failing": found["failing"],
        "failing_truncated": found["next_cursor"] is not None,
        "points": found["points"],
    }
