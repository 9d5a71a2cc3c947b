"""Scorecard and event-relay benchmark: grading against hand-written SQL, its cost on writes, and
how fast the relay delivers the outbox to Temporal.

``python -m bench.scorecards [--entities 100000] [--events 2000] [--db sqlite|postgres|both]``

For each database (a temporary SQLite file; a fresh PostgreSQL database, dropped afterwards):

- bulk upsert through ``catalog.entities.service.write_entities`` (batches of 1000, one transaction
  each) of ``--entities`` entities, then of an update of all of them that moves every entity's
  level, once on a blueprint without a scorecard and once on one with a 5-rule scorecard: the
  difference is what grading (the scorecards stage of ``catalog.changes.pipeline.apply_changes``) costs a write;
- a full regrade, ``scorecards.grade(session, bp, None, actor)`` in its own transaction, on an
  empty results table and again with nothing changed, against one hand-written SELECT that
  computes the same 5 rules and the level with CASE over the same table (rows fetched);
- an initiative's progress (``catalog.initiatives.progress``: counts, per-team counts, the
  first page of failing entities with their rules) on the graded entities, against one
  hand-written query computing the same counts; its 30-day burn-down on the level history as
  written (every change in the last minutes), then with the history spread over the 30 days:
  the first read (which sums it into the daily summary), later reads, and the same points from
  the history entity by entity as baseline;
- the event relay (``api.relay.EventRelay.relay_batch``) against a real Temporal dev server
  (the pip-installed binary): ``--events`` entity updates are written to the outbox first, then
  drained with no automation (delivery bookkeeping only) and with one matching automation (each
  event starts an ``automation:*`` workflow); events/s and the lag from an event's ``at`` to its
  ``delivered_at``. Then the relay's own loop runs while updates arrive one at a time (20/s):
  the lag a user sees.

It prints one table and writes it as markdown to ``bench/results/scorecards.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Engine, Table, bindparam, delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from api.relay import EventRelay
from api.temporal import TemporalGateway
from bench.catalog import (
    ADMIN,
    BATCH,
    BLUEPRINT,
    fresh_database,
    make_entities,
    prepare_catalog,
)
from catalog.automations.service import AutomationIn
from catalog.automations.service import save as save_automation
from catalog.blueprints.service import get_blueprint
from catalog.db import make_engine, make_sessionmaker, transaction, utcnow
from catalog.entities.service import Mode, write_entities
from catalog.identity.permissions import Principal
from catalog.initiatives import progress
from catalog.initiatives import service as initiatives
from catalog.initiatives.service import InitiativeIn
from catalog.models import (
    Event,
    ScorecardLevelChange,
    ScorecardLevelDay,
    ScorecardLevelDaysMark,
    ScorecardResult,
)
from catalog.runs.actions import ActionIn, save_action
from catalog.scorecards import service as scorecards
from config import Settings

RESULTS = Path(__file__).parent / "results" / "scorecards.md"
SCORECARD = "readiness"
LEVELS = ["Basic", "Bronze", "Silver", "Gold"]
# The 5 rules; each has its hand-written twin in HAND_WRITTEN below.
SCORECARD_BODY: dict[str, Any] = {
    "identifier": SCORECARD,
    "title": "Readiness",
    "levels": [{"title": title} for title in LEVELS],
    "rules": [
        {"identifier": "has_owner", "level": "Bronze",
         "query": {"combinator": "and", "rules": [{"property": "$team", "operator": "isNotEmpty"}]}},
        {"identifier": "has_repo", "level": "Bronze",
         "query": {"combinator": "and", "rules": [{"property": "repo", "operator": "isNotEmpty"}]}},
        {"identifier": "has_contact", "level": "Silver",
         "query": {"combinator": "and", "rules": [{"property": "contact", "operator": "isNotEmpty"}]}},
        {"identifier": "is_active", "level": "Silver",
         "query": {"combinator": "and", "rules": [{"property": "active", "operator": "=", "value": True}]}},
        {"identifier": "low_tier", "level": "Gold",
         "query": {"combinator": "and", "rules": [{"property": "tier", "operator": "<=", "value": 2}]}},
    ],
}  # fmt: skip

# The same 5 rules and the level as one SELECT with CASE, as one would write it by hand.
RULES_SQL = {
    "postgresql": [
        "coalesce(jsonb_array_length(team) > 0, false)",
        "coalesce(properties->>'repo' <> '', false)",
        "coalesce(properties->>'contact' <> '', false)",
        "coalesce(properties->'active' = 'true'::jsonb, false)",
        "coalesce((properties->>'tier')::numeric <= 2, false)",
    ],
    "sqlite": [
        "coalesce(json_array_length(team) > 0, 0)",
        "coalesce(json_extract(properties, '$.repo') <> '', 0)",
        "coalesce(json_extract(properties, '$.contact') <> '', 0)",
        "coalesce(json_type(properties, '$.active') = 'true', 0)",
        "coalesce(json_extract(properties, '$.tier') <= 2, 0)",
    ],
}
HAND_WRITTEN = """
SELECT id, identifier, r0, r1, r2, r3, r4,
       CASE WHEN NOT (r0 AND r1) THEN 0 WHEN NOT (r2 AND r3) THEN 1 WHEN NOT r4 THEN 2 ELSE 3 END AS level
FROM (SELECT id, identifier, {r0} AS r0, {r1} AS r1, {r2} AS r2, {r3} AS r3, {r4} AS r4
      FROM entities WHERE blueprint = '{blueprint}') AS graded
"""
NOOP_ACTION: dict[str, Any] = {
    "identifier": "bench_noop",
    "title": "Bench no-op",
    "blueprint": BLUEPRINT,
    "trigger": {"operation": "DAY-2"},
    "steps": [{"id": "call", "uses": "http.request", "with": {"url": "http://127.0.0.1:9/never"}}],
}
AUTOMATION: dict[str, Any] = {
    "identifier": "bench_on_update",
    "trigger": {
        "event": "ENTITY_UPDATED",
        "blueprint": BLUEPRINT,
        "condition": ".diff.after.properties.tier >= 1",
    },
    "invoke": {"action": "bench_noop", "entity": "{{ event.entity }}"},
}
LIVE_WRITES = 100
LIVE_PACE = 0.05  # seconds between live writes: 20 writes/s


@dataclass
class Row:
    measurement: str
    db: str
    ours: str
    baseline: str
    ratio: str
    target: str
    met: bool | None = None


# ---- helpers ---------------------------------------------------------------------------------


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def flipped(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same entities with ``active`` inverted: every entity changes level (Bronze <-> higher)."""
    return [
        {**e, "properties": {**e["properties"], "active": not e["properties"]["active"]}} for e in entities
    ]


def write_all(engine: Engine, entities: list[dict[str, Any]]) -> float:
    """Entities per second written by ``write_entities`` (UPSERT), one transaction per batch."""
    factory = make_sessionmaker(engine)
    analyzed_at = 0
    started = time.perf_counter()
    for start in range(0, len(entities), BATCH):
        with transaction(factory) as session:
            results = write_entities(
                session, BLUEPRINT, entities[start : start + BATCH], mode=Mode.UPSERT, actor=ADMIN, bulk=True
            )
        failed = [r for r in results if r.error is not None]
        if failed:
            raise RuntimeError(f"bench entity refused: {failed[0].identifier}: {failed[0].error}")
        written = start + BATCH
        if engine.dialect.name == "postgresql" and written >= 2 * analyzed_at:
            analyze_all(engine)
            analyzed_at = written
    return len(entities) / (time.perf_counter() - started)


def add_scorecard(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        bp = get_blueprint(session, BLUEPRINT)
        scorecards.save(session, bp, scorecards.ScorecardIn.model_validate(SCORECARD_BODY), ADMIN)


def analyze_all(engine: Engine) -> None:
    """Refresh the planner's statistics of every table, as autovacuum would (the test server runs
    without it). ``scorecard_results`` matters most: without statistics PostgreSQL looks an entity's
    result up through the (blueprint, scorecard, level_index) index and filters every row of the
    scorecard, so each graded write scans all results."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


# ---- (a) + (b): grading ----------------------------------------------------------------------


def run_grading(kind: str, count: int, workdir: Path) -> list[Row]:
    entities = make_entities(count)
    rates: dict[bool, tuple[float, float]] = {}
    regrades: dict[str, float] = {}
    hand = 0.0
    for with_scorecard in (False, True):
        with fresh_database(kind, workdir) as url:
            prepare_catalog(url)
            engine = make_engine(url)
            try:
                factory = make_sessionmaker(engine)
                if with_scorecard:
                    add_scorecard(factory)
                created = write_all(engine, entities)
                updated = write_all(engine, flipped(entities))
                rates[with_scorecard] = (created, updated)
                print(
                    f"[{kind}] bulk {'with' if with_scorecard else 'without'} scorecard: "
                    f"create {created:,.0f}/s, update {updated:,.0f}/s",
                    file=sys.stderr,
                )
                if with_scorecard:
                    analyze_all(engine)
                    regrades, hand = regrade_and_baseline(engine, factory)
                    progress_rows = initiative_progress(kind, engine, factory)
            finally:
                engine.dispose()

    rows = []
    for index, label in enumerate(("create", "update, every level moves")):
        ours, bare = rates[True][index], rates[False][index]
        extra = bare / ours - 1  # extra time per entity that grading costs
        rows.append(
            Row(f"bulk upsert ({label})", kind, f"{ours:,.0f} entities/s", f"{bare:,.0f} entities/s",
                f"{ours / bare:.2f}x ({extra:+.0%} time)", "< 20% slower", extra < 0.20)
        )  # fmt: skip
    for label, seconds in regrades.items():
        ratio = seconds / hand
        met = ratio < 2 and (seconds < 1 or kind != "postgres")
        target = "< 2x, < 1 s" if kind == "postgres" else "< 2x"
        rows.append(Row(label, kind, f"{seconds:.3f} s", f"{hand:.3f} s", f"{ratio:.2f}x", target, met))
    return [*rows, *progress_rows]


def regrade_and_baseline(engine: Engine, factory: sessionmaker[Session]) -> tuple[dict[str, float], float]:
    """Median seconds of 3 full regrades on an empty results table, of 3 with nothing changed,
    and of 3 runs of the hand-written SELECT (rows fetched)."""
    fresh, unchanged = [], []
    for _ in range(3):
        with transaction(factory) as session:
            session.execute(delete(ScorecardResult))
        analyze_all(engine)
        fresh.append(timed(lambda: regrade(factory)))
        unchanged.append(timed(lambda: regrade(factory)))
    sql = HAND_WRITTEN.format(
        blueprint=BLUEPRINT, **{f"r{i}": r for i, r in enumerate(RULES_SQL[engine.dialect.name])}
    )
    by_hand: list[list[Any]] = []

    def select_by_hand() -> None:
        with engine.connect() as conn:
            by_hand.append(list(conn.exec_driver_sql(sql).all()))

    hand = statistics.median(timed(select_by_hand) for _ in range(3))
    check_same_levels(factory, by_hand[-1])
    return {
        "full regrade (empty results)": statistics.median(fresh),
        "full regrade (nothing changed)": statistics.median(unchanged),
    }, hand


def regrade(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        scorecards.grade(session, get_blueprint(session, BLUEPRINT), None, ADMIN)


def check_same_levels(factory: sessionmaker[Session], by_hand: list[Any]) -> None:
    """The baseline must grade as the catalog does, or the comparison means nothing."""
    with factory() as session:
        stored = dict(
            session.execute(
                select(ScorecardResult.entity_id, ScorecardResult.level_index).where(
                    ScorecardResult.scorecard == SCORECARD
                )
            ).all()
        )
    hand = {row[0]: row[-1] for row in by_hand}
    if stored != hand:
        wrong = next(k for k in hand if stored.get(k) != hand[k])
        raise RuntimeError(
            f"the hand-written SQL grades entity {wrong} {hand[wrong]}, the catalog {stored.get(wrong)}"
        )


# ---- initiative progress ---------------------------------------------------------------------

INITIATIVE_LEVEL = "Silver"
# The counts of an initiative's progress (overall, then per owning team) by hand: entities graded
# on the scorecard, and those at or above the target level.
PROGRESS_SQL = {
    "postgresql": "jsonb_array_elements_text(e.team)",
    "sqlite": "json_each(e.team)",
}
PROGRESS_BY_HAND = """
SELECT NULL AS team, count(*), sum(CASE WHEN r.level_index >= {index} THEN 1 ELSE 0 END)
FROM entities e JOIN scorecard_results r
  ON r.entity_id = e.id AND r.blueprint = '{blueprint}' AND r.scorecard = '{scorecard}'
WHERE e.blueprint = '{blueprint}'
UNION ALL
SELECT t.value, count(*), sum(CASE WHEN r.level_index >= {index} THEN 1 ELSE 0 END)
FROM entities e JOIN scorecard_results r
  ON r.entity_id = e.id AND r.blueprint = '{blueprint}' AND r.scorecard = '{scorecard}'
  LEFT JOIN {teams} AS t ON true
WHERE e.blueprint = '{blueprint}'
GROUP BY t.value
"""


def initiative_progress(kind: str, engine: Engine, factory: sessionmaker[Session]) -> list[Row]:
    """An initiative on the graded entities, as an admin sees it. Its progress without the
    burn-down (counts, per-team counts, the first page of failing entities with their rules)
    against one hand-written query computing the counts (both must agree). Then the 30-day
    burn-down (median of 3 each): on the level history as the bench wrote it (every change in
    the last minutes: read from the history, the daily summary has no whole day yet), then with
    the same history spread over the 30 days (as a month of changes would be): the first read,
    which sums the history into the daily summary, the reads after it, and the same points
    computed from the history entity by entity (the path of filtered initiatives) as baseline."""
    now = utcnow()
    body = InitiativeIn(
        identifier="bench",
        title="Bench",
        targets=[{"blueprint": BLUEPRINT, "scorecard": SCORECARD, "level": INITIATIVE_LEVEL}],
        starts_at=(now - timedelta(days=30)).isoformat(),
        deadline=(now + timedelta(days=30)).isoformat(),
    )
    with transaction(factory) as session:
        initiatives.save(session, body, ADMIN, Principal(ADMIN.user, "admin"))
    answers: list[dict[str, Any]] = []
    burn_downs: list[list[dict[str, Any]]] = []

    def counts() -> None:
        with factory() as session:
            initiative = initiatives.get(session, "bench")
            answers.append(
                progress.progress(session, initiative, lambda _: None, now=utcnow(), with_points=False)
            )

    def burn_down() -> None:
        with factory() as session:
            initiative = initiatives.get(session, "bench")
            targets = progress.resolve_targets(session, initiative)
            burn_downs.append(progress.points(session, initiative, targets, lambda _: None, utcnow()))
            session.commit()  # the summary, as the route commits it

    def by_entity() -> None:
        with factory() as session:
            initiative = initiatives.get(session, "bench")
            targets = progress.resolve_targets(session, initiative)
            moment = utcnow()
            grid = progress.burn_down_grid(initiative, moment)
            found = progress._from_history(session, initiative, targets, lambda _: None, grid, moment)
            totals = grid.accumulate(found, (0, 0), lambda a, b: (a[0] + b[0], a[1] + b[1]))
            burn_downs.append([{"total": t, "passing": p} for t, p in totals])

    sql = PROGRESS_BY_HAND.format(
        index=LEVELS.index(INITIATIVE_LEVEL),
        blueprint=BLUEPRINT,
        scorecard=SCORECARD,
        teams=PROGRESS_SQL[engine.dialect.name],
    )
    by_hand: list[list[Any]] = []

    def hand() -> None:
        with engine.connect() as conn:
            by_hand.append(list(conn.exec_driver_sql(sql).all()))

    seconds = statistics.median(timed(counts) for _ in range(3))
    baseline = statistics.median(timed(hand) for _ in range(3))
    check_same_progress(answers[-1], by_hand[-1])
    recent = statistics.median(timed(burn_down) for _ in range(3))
    rows = spread_history(factory, timedelta(days=30))
    first = timed(burn_down)
    summed = statistics.median(timed(burn_down) for _ in range(3))
    entity_by_entity = statistics.median(timed(by_entity) for _ in range(3))
    check_same_points(burn_downs[-4], burn_downs[-1])
    ratio = seconds / baseline
    print(
        f"[{kind}] initiative progress {seconds:.3f} s (by hand {baseline:.3f} s); burn-down: history of "
        f"the last minutes {recent:.3f} s, over 30 days {summed:.3f} s (first read {first:.3f} s, "
        f"entity by entity {entity_by_entity:.3f} s) over {rows:,} level changes",
        file=sys.stderr,
    )
    return [
        Row("initiative progress (counts, teams, failing page)", kind, f"{seconds:.3f} s", f"{baseline:.3f} s",
            f"{ratio:.2f}x", "< 2x, <= 1 s", ratio < 2 and seconds <= 1),
        Row(f"initiative burn-down, {rows:,} changes over 30 days", kind, f"{summed:.3f} s",
            f"{entity_by_entity:.3f} s", f"{summed / entity_by_entity:.2f}x", "<= 1 s", summed <= 1),
        Row("  the first read (sums 30 days into the summary)", kind, f"{first:.3f} s", "", "", "—"),
        Row("  every change minutes old (a mass regrade just now)", kind, f"{recent:.3f} s", "", "", "—"),
    ]  # fmt: skip


def spread_history(factory: sessionmaker[Session], span: timedelta) -> int:
    """Move the level history's changes back in time, spread evenly over ``span`` before now in
    their order (the last one stays), and drop the daily summary made from their old times.
    Returns how many changes there are."""
    table = cast(Table, ScorecardLevelChange.__table__)
    with transaction(factory) as session:
        ids = list(session.scalars(select(ScorecardLevelChange.id).order_by(ScorecardLevelChange.id)))
        if not ids:
            return 0
        latest = session.scalar(select(ScorecardLevelChange.at).order_by(ScorecardLevelChange.id.desc()))
        assert latest is not None
        step = span / len(ids)
        moved = [{"b_id": row_id, "at": latest - (len(ids) - 1 - i) * step} for i, row_id in enumerate(ids)]
        stmt = update(table).where(table.c.id == bindparam("b_id")).values(at=bindparam("at"))
        for start in range(0, len(moved), 10_000):
            session.execute(stmt, moved[start : start + 10_000])
        session.execute(delete(ScorecardLevelDay))
        session.execute(delete(ScorecardLevelDaysMark))
    return len(ids)


def check_same_points(summed: list[dict[str, Any]], by_entity: list[dict[str, Any]]) -> None:
    """The burn-down from the summary must be the one from the history, or the figure means nothing."""
    ours = [(p["total"], p["passing"]) for p in summed]
    theirs = [(p["total"], p["passing"]) for p in by_entity]
    if ours != theirs:
        raise RuntimeError(f"the burn-down from the summary {ours} disagrees with the history's {theirs}")


def check_same_progress(found: dict[str, Any], rows: list[Any]) -> None:
    """The baseline must count as the catalog does, or the comparison means nothing."""
    overall = [(r[1], int(r[2] or 0)) for r in rows if r[0] is None]
    teams = sorted((r[0], r[1], int(r[2] or 0)) for r in rows if r[0] is not None)
    ours = sorted((t["team"], t["total"], t["passing"]) for t in found["teams"] if t["team"])
    if overall[0] != (found["total"], found["passing"]) or teams != ours:
        raise RuntimeError(f"progress {found['total']}/{found['passing']} {ours} disagrees with {rows}")


# ---- (c): the event relay --------------------------------------------------------------------


def run_relay(kind: str, count: int, workdir: Path) -> list[Row]:
    with fresh_database(kind, workdir) as url:
        prepare_catalog(url)
        engine = make_engine(url)
        try:
            return asyncio.run(_relay(kind, engine, count, workdir))
        finally:
            engine.dispose()


async def _relay(kind: str, engine: Engine, count: int, workdir: Path) -> list[Row]:
    from devtools.temporal import start_dev_server  # the pip-installed server, never a download

    factory = make_sessionmaker(engine)
    entities = make_entities(count)
    write_all(engine, entities)
    mark_all_delivered(factory)
    rows: list[Row] = []
    async with start_dev_server() as env:
        settings = Settings.model_validate({"data_dir": workdir, "task_queue": f"bench-{kind}"})
        relay = EventRelay(factory, TemporalGateway(settings, client=env.client))
        for label, batch in (("no automation", flipped(entities)), ("1 automation", entities)):
            if label == "1 automation":
                add_automation(factory)
            first = last_event_id(factory) + 1
            write_all(engine, batch)
            analyze_all(engine)
            seconds = await drain(relay)
            lags = lags_since(factory, first)
            print(f"[{kind}] relay {label}: {len(lags) / seconds:,.0f} events/s", file=sys.stderr)
            rows += [
                Row(f"relay drain, {label}", kind, f"{len(lags) / seconds:,.0f} events/s", "—", "—", "—"),
                Row(f"relay drain lag p50 / p95, {label}", kind,
                    f"{pct(lags, 50):,.0f} / {pct(lags, 95):,.0f} ms", "—", "—",
                    f"(backlog of {len(lags):,} written first)"),
            ]  # fmt: skip
        lags = await live(relay, factory, entities)
        rows.append(
            Row("relay live lag p50 / p95, 1 automation", kind,
                f"{pct(lags, 50):,.0f} / {pct(lags, 95):,.0f} ms", "—", "—",
                f"(single writes at {1 / LIVE_PACE:.0f}/s)")
        )  # fmt: skip
    return rows


def mark_all_delivered(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        session.execute(update(Event).where(Event.delivered_at.is_(None)).values(delivered_at=utcnow()))


def add_automation(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        save_action(session, ActionIn.model_validate(NOOP_ACTION), ADMIN)
    with transaction(factory) as session:
        save_automation(session, AutomationIn.model_validate(AUTOMATION), ADMIN)


def last_event_id(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return int(session.scalar(select(Event.id).order_by(Event.id.desc()).limit(1)) or 0)


async def drain(relay: EventRelay) -> float:
    """Seconds for ``relay_batch`` to deliver everything undelivered."""
    started = time.perf_counter()
    while True:
        delivered, failed = await relay.relay_batch()
        if failed:
            raise RuntimeError("the relay failed to deliver an event")
        if delivered == 0:
            return time.perf_counter() - started


def lags_since(factory: sessionmaker[Session], first: int) -> list[float]:
    """Milliseconds from each event's ``at`` to its ``delivered_at``."""
    with factory() as session:
        rows = session.execute(select(Event.at, Event.delivered_at).where(Event.id >= first)).all()
    lags = [(delivered - at).total_seconds() * 1000 for at, delivered in rows if delivered is not None]
    if len(lags) != len(rows):
        raise RuntimeError(f"{len(rows) - len(lags)} events were not delivered")
    return lags


async def live(
    relay: EventRelay, factory: sessionmaker[Session], entities: list[dict[str, Any]]
) -> list[float]:
    """The relay's own loop (woken after each commit) while single updates arrive at a pace."""
    first = last_event_id(factory) + 1
    loop = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.5)

        def write_slowly() -> None:
            for entity in flipped(entities[:LIVE_WRITES]):
                with transaction(factory) as session:
                    write_entities(session, BLUEPRINT, [entity], mode=Mode.UPSERT, actor=ADMIN)
                time.sleep(LIVE_PACE)

        await asyncio.to_thread(write_slowly)
        deadline = time.monotonic() + 60
        while undelivered_since(factory, first) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
    return lags_since(factory, first)


def undelivered_since(factory: sessionmaker[Session], first: int) -> bool:
    with factory() as session:
        stmt = select(Event.id).where(Event.id >= first, Event.delivered_at.is_(None)).limit(1)
        return session.scalar(stmt) is not None


def pct(samples: list[float], percent: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[percent - 1]


# ---- report ----------------------------------------------------------------------------------


def render(rows: list[Row], count: int, events: int) -> str:
    header = ["measurement", "db", "ours", "baseline", "ratio", "target"]
    body = []
    for row in rows:
        verdict = "" if row.met is None else (" ✓" if row.met else " ✗ MISSED")
        body.append([row.measurement, row.db, row.ours, row.baseline, row.ratio, row.target + verdict])
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    title = (
        f"Scorecard benchmark, {count:,} entities, a 5-rule scorecard, {events:,} relayed events per "
        f"drain ({utcnow():%Y-%m-%d %H:%M} UTC)"
    )
    baselines = (
        "Baselines: the same bulk upsert on a blueprint without scorecard (bulk); one hand-written "
        "SELECT computing the 5 rules and the level with CASE, rows fetched (regrade). Regrades run "
        "in their own transaction, commit included (median of 3). Relay: relay_batch against a "
        "Temporal dev server, no worker polling (delivery = the workflow start)."
    )
    return "\n".join([title, "", line(header), rule, *(line(r) for r in body), "", baselines]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scorecards", description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=100_000, help="entities to grade (default 100000)")
    parser.add_argument("--events", type=int, default=2000, help="events per relay drain (default 2000)")
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--skip-relay", action="store_true", help="grading only (no Temporal server)")
    args = parser.parse_args(argv)
    if args.entities < BATCH or args.events < LIVE_WRITES:
        parser.error(f"--entities must be at least {BATCH}, --events at least {LIVE_WRITES}")
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="gantry-bench-") as workdir:
        for kind in kinds:
            rows += run_grading(kind, args.entities, Path(workdir))
            if not args.skip_relay:
                rows += run_relay(kind, args.events, Path(workdir))
    table = render(rows, args.entities, args.events)
    print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(table)
    return 0 if all(r.met is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
