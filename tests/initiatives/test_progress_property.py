"""Property test: an initiative's progress (counts, teams, failing entities and rules, burn-down)
and a scorecard's trend equal a plain-Python reference over random entities, grades and level
histories, for an admin and for a member whose reads are narrowed to their teams' entities.

The reference is written from the contract, not from the SQL: an entity is in scope when its
blueprint is targeted, it matches the filter, the caller may read it and a target's scorecard
grades it; it passes when its level on every such target is at or above the target level; its
failing rules are the rules at or below a missed target's level that fail. A level at a moment
is the latest level change before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete
from sqlalchemy.orm import Session

from catalog.audit import Actor
from catalog.db import make_sessionmaker
from catalog.entities.search import readable_condition
from catalog.identity.permissions import Principal
from catalog.initiatives import progress, service
from catalog.initiatives.service import InitiativeIn
from catalog.models import (
    Blueprint,
    Entity,
    EntityTeam,
    Initiative,
    Scorecard,
    ScorecardLevelChange,
    ScorecardResult,
)
from catalog.scorecards.trend import Grid, day_start, trend

TEAMS = ["t0", "t1", "t2"]
START = datetime(2030, 3, 10, 15, 30, tzinfo=UTC)
NOW = START + timedelta(days=9, hours=5)
DEADLINE = START + timedelta(days=30)
# blueprint -> scorecard -> (levels, rules as (identifier, level))
CARDS: dict[str, dict[str, tuple[list[str], list[tuple[str, str]]]]] = {
    "svc": {
        "a": (["L0", "L1", "L2", "L3"], [("ra1", "L1"), ("ra2", "L2"), ("ra3", "L3"), ("ra4", "L3")]),
        "b": (["L0", "L1", "L2"], [("rb1", "L1"), ("rb2", "L2")]),
    },
    "db": {"a": (["L0", "L1", "L2"], [("rd1", "L1"), ("rd2", "L2")])},
}
TARGETS = [("svc", "a"), ("svc", "b"), ("db", "a")]


@dataclass(frozen=True)
class Graded:
    rules: dict[str, bool]
    history: list[tuple[int, str]]  # (minutes after START's day began, level title)


@dataclass(frozen=True)
class Thing:
    blueprint: str
    teams: list[str]
    tier: int
    grades: dict[str, Graded | None]  # per scorecard of its blueprint


def _graded(blueprint: str, scorecard: str) -> st.SearchStrategy[Graded | None]:
    levels, rules = CARDS[blueprint][scorecard]
    titles = [*levels, "Retired"]  # a level renamed away since: it counts as no level
    minutes = st.integers(-3 * 1440, 12 * 1440).map(lambda m: m - m % 720 if m % 7 == 0 else m)
    history = st.lists(st.tuples(minutes, st.sampled_from(titles)), max_size=4)
    passed = st.fixed_dictionaries({rule: st.booleans() for rule, _ in rules})
    return st.one_of(st.none(), st.builds(Graded, passed, history))


def _thing(blueprint: str) -> st.SearchStrategy[Thing]:
    grades = st.fixed_dictionaries({sc: _graded(blueprint, sc) for sc in CARDS[blueprint]})
    teams = st.lists(st.sampled_from(TEAMS), max_size=2, unique=True)
    return st.builds(Thing, st.just(blueprint), teams, st.integers(0, 3), grades)


worlds = st.fixed_dictionaries(
    {
        "things": st.lists(st.one_of(_thing("svc"), _thing("db")), max_size=8),
        "targets": st.lists(st.sampled_from(TARGETS), min_size=1, max_size=3, unique=True).flatmap(
            lambda chosen: st.tuples(
                *[st.tuples(st.just(t), st.sampled_from(CARDS[t[0]][t[1]][0])) for t in chosen]
            )
        ),
        "min_tier": st.one_of(st.none(), st.integers(0, 3)),
        "member_teams": st.lists(st.sampled_from(TEAMS), max_size=2, unique=True),
        "as_member": st.booleans(),
        "limit": st.integers(1, 4),
    }
)


def _level_of(levels: list[str], rules: list[tuple[str, str]], passed: dict[str, bool]) -> int:
    held = 0
    for index, title in enumerate(levels[1:], start=1):
        if not all(passed[r] for r, level in rules if level == title):
            break
        held = index
    return held


def _store(session: Session, world: dict[str, Any]) -> list[tuple[Entity, Thing]]:
    for model in (ScorecardLevelChange, ScorecardResult, Initiative, Entity, Scorecard, Blueprint):
        session.execute(delete(model))
    # svc: a member reads only their teams' entities; db: everyone reads everything
    session.add(Blueprint(identifier="svc", title="svc", permissions={"read": {"owned_by_team": True}}))
    session.add(Blueprint(identifier="db", title="db"))
    for blueprint, cards in CARDS.items():
        for sc, (levels, rules) in cards.items():
            definition = {
                "identifier": sc,
                "title": sc,
                "levels": [{"title": t} for t in levels],
                "rules": [{"identifier": r, "title": r.upper(), "level": lv, "query": {}} for r, lv in rules],
            }
            session.add(Scorecard(blueprint=blueprint, identifier=sc, title=sc, definition=definition))
    session.flush()
    stored = []
    origin = day_start(START.date())
    for number, thing in enumerate(world["things"]):
        entity = Entity(
            blueprint=thing.blueprint,
            identifier=f"e{number}",
            team=thing.teams,
            properties={"tier": thing.tier},
        )
        session.add(entity)
        session.flush()
        # stored without the write pipeline: the owner rows it keeps beside Entity.team too (the
        # read filter finds a team's entities through them)
        session.add_all(EntityTeam(entity_id=entity.id, team=team) for team in thing.teams)
        stored.append((entity, thing))
        for sc, graded in thing.grades.items():
            if graded is None:
                continue
            levels, rules = CARDS[thing.blueprint][sc]
            index = _level_of(levels, rules, graded.rules)
            session.add(
                ScorecardResult(
                    entity_id=entity.id,
                    blueprint=thing.blueprint,
                    scorecard=sc,
                    level=levels[index],
                    level_index=index,
                    rules=graded.rules,
                )
            )
            for minutes, title in graded.history:
                at = origin + timedelta(minutes=minutes, milliseconds=250 * (minutes % 3))
                session.add(
                    ScorecardLevelChange(
                        blueprint=thing.blueprint,
                        entity=entity.identifier,
                        scorecard=sc,
                        to_level=title,
                        at=at,
                    )
                )
                session.flush()  # ids in insertion order: ties at one instant keep it
    return stored


def _initiative(session: Session, world: dict[str, Any]) -> Initiative:
    body = InitiativeIn(
        identifier="ready",
        title="Ready",
        targets=[{"blueprint": b, "scorecard": s, "level": level} for (b, s), level in world["targets"]],
        filter=None
        if world["min_tier"] is None
        else {
            "combinator": "and",
            "rules": [{"property": "tier", "operator": ">=", "value": world["min_tier"]}],
        },
        starts_at=START.isoformat(),
        deadline=DEADLINE.isoformat(),
    )
    initiative, _ = service.save(session, body, Actor("admin"), Principal("admin", "admin"))
    return initiative


# ---- the reference -----------------------------------------------------------------------------


def _readable(thing: Thing, world: dict[str, Any]) -> bool:
    if not world["as_member"] or thing.blueprint == "db":
        return True
    return bool(set(thing.teams) & set(world["member_teams"]))


def _in_filter(thing: Thing, world: dict[str, Any]) -> bool:
    return world["min_tier"] is None or thing.tier >= world["min_tier"]


def _targets_of(thing: Thing, world: dict[str, Any]) -> list[tuple[str, int]]:
    """(scorecard, target level index) of each target on the thing's blueprint."""
    return [(s, CARDS[b][s][0].index(level)) for (b, s), level in world["targets"] if b == thing.blueprint]


def reference(
    stored: list[tuple[Entity, Thing]], world: dict[str, Any], moments: list[datetime]
) -> dict[str, Any]:
    total = passing = 0
    teams: dict[str | None, list[int]] = {}
    failing = []
    counted = [[0, 0] for _ in moments]
    origin = day_start(START.date())
    for entity, thing in stored:
        if not (_readable(thing, world) and _in_filter(thing, world)):
            continue
        targets = _targets_of(thing, world)
        pairs = []
        for sc, wanted in targets:
            graded = thing.grades.get(sc)
            if graded is not None:
                levels, rules = CARDS[thing.blueprint][sc]
                pairs.append((sc, wanted, _level_of(levels, rules, graded.rules), graded))
        for point, moment in enumerate(moments):
            standing = []
            for sc, wanted in targets:
                graded = thing.grades.get(sc)
                before = [
                    title
                    for minutes, title in (graded.history if graded else [])
                    if origin + timedelta(minutes=minutes, milliseconds=250 * (minutes % 3)) < moment
                ]
                if before:
                    last = max(
                        (origin + timedelta(minutes=m, milliseconds=250 * (m % 3)), i, t)
                        for i, (m, t) in enumerate(graded.history if graded else [])
                        if origin + timedelta(minutes=m, milliseconds=250 * (m % 3)) < moment
                    )[2]
                    levels = CARDS[thing.blueprint][sc][0]
                    standing.append((levels.index(last) if last in levels else -1) >= wanted)
            if standing:
                counted[point][0] += 1
                counted[point][1] += all(standing)
        if not pairs:
            continue
        ok = all(level >= wanted for _, wanted, level, _ in pairs)
        total += 1
        passing += ok
        owners: list[str | None] = list(thing.teams) or [None]
        for team in owners:
            teams.setdefault(team, [0, 0])
            teams[team][0] += 1
            teams[team][1] += ok
        if not ok:
            rules = []
            for sc, wanted, level, graded in pairs:
                if level >= wanted:
                    continue
                levels, card_rules = CARDS[thing.blueprint][sc]
                rules += [
                    (sc, r) for r, lv in card_rules if levels.index(lv) <= wanted and not graded.rules[r]
                ]
            failing.append((thing.blueprint, entity.identifier, sorted(thing.teams), rules))
    return {
        "total": total,
        "passing": passing,
        "teams": sorted(((t, n, p) for t, (n, p) in teams.items()), key=lambda x: (x[0] is None, x[0] or "")),
        "failing": sorted(failing, key=lambda f: (f[0], f[1])),
        "points": [tuple(c) for c in counted],
    }


def trend_reference(
    stored: list[tuple[Entity, Thing]], world: dict[str, Any], grid: Grid, team: str | None
) -> list[dict[str, int]]:
    levels = CARDS["svc"]["a"][0]
    origin = day_start(START.date())
    found = []
    for moment in grid.moments():
        distribution = dict.fromkeys(levels, 0)
        for _, thing in stored:
            graded = thing.grades.get("a")
            if thing.blueprint != "svc" or graded is None or not _readable(thing, world):
                continue
            if team is not None and team not in thing.teams:
                continue
            before = [
                (origin + timedelta(minutes=m, milliseconds=250 * (m % 3)), i, t)
                for i, (m, t) in enumerate(graded.history)
                if origin + timedelta(minutes=m, milliseconds=250 * (m % 3)) < moment
            ]
            if before and max(before)[2] in distribution:
                distribution[max(before)[2]] += 1
        found.append(distribution)
    return found


# ---- the property ------------------------------------------------------------------------------


def _all_failing(
    session: Session, initiative: Initiative, readable: Any, limit: int
) -> tuple[dict[str, Any], list[Any]]:
    first = progress.progress(session, initiative, readable, now=NOW, limit=limit)
    failing, answer = list(first["failing"]), first
    while answer["next_cursor"]:
        answer = progress.progress(
            session, initiative, readable, now=NOW, limit=limit, cursor=answer["next_cursor"]
        )
        failing += answer["failing"]
    return first, failing


@given(world=worlds)
@settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_progress_and_trend_match_the_reference(engine: Engine, world: dict[str, Any]) -> None:
    with make_sessionmaker(engine)() as session:
        stored = _store(session, world)
        initiative = _initiative(session, world)
        who = (
            Principal("m", "member", teams=frozenset(world["member_teams"]))
            if world["as_member"]
            else Principal("admin", "admin")
        )
        dialect = engine.dialect.name

        def readable(bp: Blueprint) -> Any:
            return readable_condition(session, who, dialect, [bp])

        answer, failing = _all_failing(session, initiative, readable, world["limit"])
        grid = progress.burn_down_grid(initiative, NOW)
        expected = reference(stored, world, grid.moments())
        assert (answer["total"], answer["passing"]) == (expected["total"], expected["passing"])
        assert [(t["team"], t["total"], t["passing"]) for t in answer["teams"]] == expected["teams"]
        got = [
            (
                f["blueprint"],
                f["entity"],
                sorted(f["team"]),
                [(r["scorecard"], r["identifier"]) for r in f["rules"]],
            )
            for f in failing
        ]
        assert got == expected["failing"]
        assert [(p["total"], p["passing"]) for p in answer["points"]] == expected["points"]
        assert len(answer["points"]) == 10  # the start's day through now, a point per day

        sc = session.get(Scorecard, ("svc", "a"))
        assert sc is not None
        for team in (None, "t1"):
            for step in (timedelta(days=1), timedelta(weeks=1)):
                trend_grid = Grid(day_start(START.date()) - timedelta(days=4), step, NOW)
                charted = trend(session, sc, trend_grid, readable=readable(sc_blueprint(session)), team=team)
                assert [p["distribution"] for p in charted["points"]] == trend_reference(
                    stored, world, trend_grid, team
                )
        session.rollback()


def sc_blueprint(session: Session) -> Blueprint:
    bp = session.get(Blueprint, "svc")
    assert bp is not None
    return bp


pytestmark = pytest.mark.slow
