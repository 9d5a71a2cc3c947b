"""Scorecards: levels and rules that grade a blueprint's entities, and the grading itself.

An entity holds a level when every rule of that level and of all lower levels passes; the first
level is the floor and has no rules. Rules and the optional ``filter`` are queries of the one
query compiler, so grading is SQL: one statement per scorecard selects, for every graded
entity, whether each rule holds. Results are stored; a level change is recorded in the level
history and emitted as ``SCORECARD_LEVEL_CHANGED`` in the same transaction as the write that
caused it.

An approved exemption (:mod:`catalog.scorecards.exempt`) excuses one failing rule of one
entity: the rule counts as passed, and the result, the entity's scorecard and the level history
name it as ``EXEMPT`` with its reason and expiry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from pydantic import Field
from sqlalchemy import Table, delete, select
from sqlalchemy.orm import Session

from catalog import audit, events
from catalog.audit import Actor
from catalog.base import Strict
from catalog.db import CHUNK, utcnow
from catalog.errors import Conflict, FieldError, Invalid, NotFound
from catalog.models import (
    Blueprint,
    Entity,
    Scorecard,
    ScorecardExemption,
    ScorecardLevelChange,
    ScorecardResult,
)
from catalog.pagination import check_limit, decode_cursor, encode_cursor
from catalog.query.compiler import (
    Context,
    RuleKind,
    compile_query,
    json_value,
    register_rule_kind,
    validate_query,
)
from catalog.schemas import SLUG
from catalog.scorecards import exempt as exemptions
from catalog.timefmt import format_instant

RESULTS = cast(Table, ScorecardResult.__table__)
CHANGES = cast(Table, ScorecardLevelChange.__table__)


class Level(Strict):
    title: str = Field(min_length=1, max_length=100)
    color: str | None = None


class Rule(Strict):
    identifier: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,99}$")
    title: str = ""
    description: str = ""
    level: str
    query: dict[str, Any]


class ScorecardIn(Strict):
    identifier: str = Field(pattern=SLUG)
    title: str = Field(min_length=1, max_length=256)
    description: str = ""
    filter: dict[str, Any] | None = None
    levels: list[Level] = Field(min_length=1, max_length=20)
    rules: list[Rule] = Field(default_factory=list, max_length=100)


# ---- definitions -------------------------------------------------------------------------


def scorecard_view(sc: Scorecard) -> dict[str, Any]:
    return {
        **sc.definition,
        "blueprint": sc.blueprint,
        "created_at": format_instant(sc.created_at),
        "updated_at": format_instant(sc.updated_at),
        "created_by": sc.created_by,
        "updated_by": sc.updated_by,
    }


def list_scorecards(session: Session, blueprint: str) -> list[Scorecard]:
    stmt = select(Scorecard).where(Scorecard.blueprint == blueprint).order_by(Scorecard.identifier)
    return list(session.scalars(stmt))


def get_scorecard(session: Session, blueprint: str, identifier: str) -> Scorecard:
    sc = session.get(Scorecard, (blueprint, identifier))
    if sc is None:
        raise NotFound(f"scorecard '{identifier}' of blueprint '{blueprint}' not found")
    return sc


def check(body: ScorecardIn) -> None:
    errors: list[FieldError] = []
    titles = [level.title for level in body.levels]
    errors += [
        FieldError(f"/levels/{i}/title", "is used twice") for i, t in enumerate(titles) if t in titles[:i]
    ]
    seen: set[str] = set()
    for index, rule in enumerate(body.rules):
        where = f"/rules/{index}"
        if rule.identifier in seen:
            errors.append(FieldError(f"{where}/identifier", "is used twice"))
        seen.add(rule.identifier)
        if rule.level not in titles:
            errors.append(FieldError(f"{where}/level", f"must be one of {', '.join(titles)}"))
        elif rule.level == titles[0]:
            errors.append(FieldError(f"{where}/level", f"'{titles[0]}' is the floor: it has no rules"))
        errors += _query_problems(rule.query, f"{where}/query")
    if body.filter is not None:
        errors += _query_problems(body.filter, "/filter")
    if errors:
        raise Invalid("invalid scorecard", errors)


def _query_problems(query: dict[str, Any], pointer: str) -> list[FieldError]:
    if "scorecard" in str(query) and _mentions_scorecard(query):
        return [FieldError(pointer, "scorecard rules cannot depend on scorecards")]
    try:
        validate_query(query, pointer=pointer)
    except Invalid as exc:
        return list(exc.details)
    return []


def _mentions_scorecard(query: Any) -> bool:
    if isinstance(query, dict):
        return "scorecard" in query or any(_mentions_scorecard(v) for v in query.values())
    if isinstance(query, list):
        return any(_mentions_scorecard(v) for v in query)
    return False


def save(
    session: Session, bp: Blueprint, body: ScorecardIn, actor: Actor, *, create_only: bool = False
) -> tuple[Scorecard, bool]:
    """Create or replace a scorecard, then regrade every entity of its blueprint."""
    check(body)
    definition = body.model_dump(mode="json", exclude_none=True)
    sc = session.get(Scorecard, (bp.identifier, body.identifier))
    now = utcnow()
    created = sc is None
    if sc is not None and create_only:
        raise Conflict(f"scorecard '{body.identifier}' already exists")
    if sc is None:
        sc = Scorecard(
            blueprint=bp.identifier,
            identifier=body.identifier,
            title=body.title,
            definition=definition,
            version=1,
            created_at=now,
            updated_at=now,
            created_by=actor.user,
            updated_by=actor.user,
        )
        session.add(sc)
        audit.record(
            session, actor, "CREATE", "scorecard", sc.identifier, blueprint=bp.identifier, after=definition
        )
    else:
        before = dict(sc.definition)
        sc.title, sc.definition, sc.version = body.title, definition, sc.version + 1
        sc.updated_at, sc.updated_by = now, actor.user
        audit.record(
            session,
            actor,
            "UPDATE",
            "scorecard",
            sc.identifier,
            blueprint=bp.identifier,
            before=before,
            after=definition,
        )
    session.flush()
    grade(session, bp, None, actor, only=[sc])
    if session.get_bind().dialect.name == "postgresql":
        # Fresh statistics: without them every later single-entity lookup scans the new results.
        session.execute(sa.text("ANALYZE scorecard_results"))
    return sc, created


def delete_scorecard(session: Session, blueprint: str, identifier: str, actor: Actor) -> None:
    sc = get_scorecard(session, blueprint, identifier)
    session.execute(
        delete(ScorecardResult).where(
            ScorecardResult.blueprint == blueprint, ScorecardResult.scorecard == identifier
        )
    )
    # Its exemptions go with it: a scorecard made again under the name starts without any.
    session.execute(
        delete(ScorecardExemption).where(
            ScorecardExemption.blueprint == blueprint, ScorecardExemption.scorecard == identifier
        )
    )
    audit.record(
        session, actor, "DELETE", "scorecard", identifier, blueprint=blueprint, before=dict(sc.definition)
    )
    session.delete(sc)


# ---- grading -----------------------------------------------------------------------------


def grade(
    session: Session,
    bp: Blueprint,
    entity_ids: list[int] | None,
    actor: Actor,
    *,
    only: list[Scorecard] | None = None,
) -> int:
    """Grade the given entities (None: all of the blueprint) on its scorecards; returns how
    many levels changed."""
    scorecards = only if only is not None else list_scorecards(session, bp.identifier)
    if not scorecards or entity_ids == []:
        return 0
    changed = 0
    chunks = [entity_ids[i : i + CHUNK] for i in range(0, len(entity_ids), CHUNK)] if entity_ids else [None]
    for sc in scorecards:
        for chunk in chunks:
            changed += _grade_chunk(session, bp, sc, chunk, actor)
    return changed


@dataclass(frozen=True, slots=True)
class _Grade:
    """An entity's standing on one scorecard: its level (title and position), each rule (an
    exempted one as passed) and the exemptions that excuse its failing rules."""

    level: str
    index: int
    rules: dict[str, bool]
    exempt: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Graded:
    """One graded entity: its grade now, and the stored one (None: never graded)."""

    entity_id: int
    identifier: str
    grade: _Grade
    stored: _Grade | None

    @property
    def level_changed(self) -> bool:
        return self.stored is None or self.stored.level != self.grade.level


def _grade_chunk(session: Session, bp: Blueprint, sc: Scorecard, ids: list[int] | None, actor: Actor) -> int:
    now = utcnow()
    # Core rows, fetched at once (the connection, not the ORM session): no per-row ORM
    # bookkeeping or driver fetches on big regrades.
    connection = session.connection()
    grades = _grades(connection, bp, sc, ids, now)
    stored = _stored_grades(connection, bp, sc, ids)
    graded = [
        _Graded(entity_id, identifier, grade, stored.get(entity_id))
        for entity_id, (identifier, grade) in grades.items()
    ]
    gone = [entity_id for entity_id in stored if entity_id not in grades]
    return _store(session, bp, sc, graded, gone, actor, now)


def _grades(
    connection: Any, bp: Blueprint, sc: Scorecard, ids: list[int] | None, now: datetime
) -> dict[int, tuple[str, _Grade]]:
    """Each graded entity's (identifier, grade), by id: one statement evaluates every rule."""
    definition = sc.definition
    dialect = connection.dialect.name
    levels = [level["title"] for level in definition["levels"]]
    rules = definition.get("rules", [])
    columns = [
        sa.case((compile_query(r["query"], dialect=dialect, now=now, pointer="/rule"), 1), else_=0).label(
            f"r{i}"
        )
        for i, r in enumerate(rules)
    ]
    stmt = select(Entity.id, Entity.identifier, *columns).where(Entity.blueprint == bp.identifier)
    if definition.get("filter"):
        stmt = stmt.where(compile_query(definition["filter"], dialect=dialect, now=now, pointer="/filter"))
    if ids is not None:
        stmt = stmt.where(Entity.id.in_(ids))
    names = [r["identifier"] for r in rules]
    # For each level above the floor, the positions of its rules in ``names``.
    needs = [[i for i, r in enumerate(rules) if r["level"] == title] for title in levels[1:]]
    position = {name: i for i, name in enumerate(names)}
    excused = exemptions.active(connection, bp.identifier, sc.identifier, ids, now)
    grades: dict[int, tuple[str, _Grade]] = {}
    for row in connection.execute(stmt).all():
        passed = [bool(value) for value in row[2:]]
        exempt: dict[str, dict[str, Any]] = {}
        if row[0] in excused:
            exempt = {n: e for n, e in excused[row[0]].items() if n in position and not passed[position[n]]}
            passed = [p or n in exempt for p, n in zip(passed, names, strict=True)]
        index = _level_index(needs, passed)
        grades[row[0]] = (
            row[1],
            _Grade(levels[index], index, dict(zip(names, passed, strict=True)), exempt),
        )
    return grades


def _stored_grades(connection: Any, bp: Blueprint, sc: Scorecard, ids: list[int] | None) -> dict[int, _Grade]:
    stmt = select(
        ScorecardResult.entity_id,
        ScorecardResult.level,
        ScorecardResult.level_index,
        ScorecardResult.rules,
        ScorecardResult.exempt,
    ).where(ScorecardResult.blueprint == bp.identifier, ScorecardResult.scorecard == sc.identifier)
    if ids is not None:
        stmt = stmt.where(ScorecardResult.entity_id.in_(ids))
    return {row[0]: _Grade(row[1], row[2], row[3], row[4] or {}) for row in connection.execute(stmt).all()}


def _level_index(needs: list[list[int]], passed: list[bool]) -> int:
    """The highest level whose rules, and those of every level below it, all pass (``needs``:
    the positions of each level's rules in ``passed``, floor excluded)."""
    held = 0
    for index, positions in enumerate(needs, start=1):
        if not all(passed[i] for i in positions):
            break
        held = index
    return held


def _store(
    session: Session,
    bp: Blueprint,
    sc: Scorecard,
    graded: list[_Graded],
    gone: list[int],
    actor: Actor,
    now: datetime,
) -> int:
    """Store the grades that changed, drop those of entities no longer graded (the filter), and
    record each level change (history; an event when a stored level moved). Returns how many
    levels moved."""
    inserts = [_result_row(bp, sc, g, now) for g in graded if g.stored is None]
    updates = [_update_params(bp, sc, g, now) for g in graded if g.stored is not None and g.stored != g.grade]
    if inserts:
        session.execute(RESULTS.insert(), inserts)
    if updates:
        session.execute(_UPDATE_RESULT, updates)
    for start in range(0, len(gone), CHUNK):
        session.execute(
            delete(ScorecardResult).where(
                ScorecardResult.blueprint == bp.identifier,
                ScorecardResult.scorecard == sc.identifier,
                ScorecardResult.entity_id.in_(gone[start : start + CHUNK]),
            )
        )
    history = [_history_row(bp, sc, g, now) for g in graded if g.level_changed]
    if history:
        session.execute(CHANGES.insert(), history)
    level_events = [
        _level_event(bp, sc, g, actor, now) for g in graded if g.stored is not None and g.level_changed
    ]
    events.emit(session, level_events)
    return len(level_events)


# Only the bound names: extra keys would add their columns (the key) to the SET clause.
_UPDATE_RESULT = (
    RESULTS.update()
    .where(
        RESULTS.c.entity_id == sa.bindparam("b_entity"),
        RESULTS.c.blueprint == sa.bindparam("b_blueprint"),
        RESULTS.c.scorecard == sa.bindparam("b_scorecard"),
    )
    .values(
        level=sa.bindparam("level"),
        level_index=sa.bindparam("level_index"),
        rules=sa.bindparam("rules"),
        exempt=sa.bindparam("exempt"),
        updated_at=sa.bindparam("updated_at"),
    )
)


def _result_row(bp: Blueprint, sc: Scorecard, graded: _Graded, now: datetime) -> dict[str, Any]:
    return {
        "entity_id": graded.entity_id,
        "blueprint": bp.identifier,
        "scorecard": sc.identifier,
        "level": graded.grade.level,
        "level_index": graded.grade.index,
        "rules": graded.grade.rules,
        "exempt": graded.grade.exempt or None,
        "updated_at": now,
    }


def _update_params(bp: Blueprint, sc: Scorecard, graded: _Graded, now: datetime) -> dict[str, Any]:
    """The result row as the UPDATE's parameters: its key columns bound as ``b_*``."""
    row = _result_row(bp, sc, graded, now)
    keys = {"b_entity": row.pop("entity_id"), "b_blueprint": row.pop("blueprint")}
    return {**keys, "b_scorecard": row.pop("scorecard"), **row}


def _history_row(bp: Blueprint, sc: Scorecard, graded: _Graded, now: datetime) -> dict[str, Any]:
    return {
        "blueprint": bp.identifier,
        "entity": graded.identifier,
        "scorecard": sc.identifier,
        "from_level": graded.stored.level if graded.stored else None,
        "to_level": graded.grade.level,
        "at": now,
        "exempt": graded.grade.exempt or None,
    }


def _level_event(
    bp: Blueprint, sc: Scorecard, graded: _Graded, actor: Actor, now: datetime
) -> dict[str, Any]:
    assert graded.stored is not None  # only a stored level can rise or drop
    direction = "RAISED" if graded.grade.index > graded.stored.index else "DROPPED"
    change: dict[str, Any] = {
        "identifier": sc.identifier,
        "from": graded.stored.level,
        "to": graded.grade.level,
        "direction": direction,
    }
    # Named only when exemptions are involved: the rules excused now, and those whose exemption
    # ended with this change (expired, revoked, or no longer needed).
    if graded.grade.exempt:
        change["exempt"] = sorted(graded.grade.exempt)
    if ended := sorted(set(graded.stored.exempt) - set(graded.grade.exempt)):
        change["exemptions_ended"] = ended
    return events.event_row(
        "SCORECARD_LEVEL_CHANGED",
        actor,
        blueprint=bp.identifier,
        entity=graded.identifier,
        at=now,
        payload={"scorecard": change},
    )


# ---- reading -----------------------------------------------------------------------------


def for_entities(session: Session, entity_ids: list[int]) -> dict[int, dict[str, Any]]:
    """``entity.scorecards`` for each entity: level and each rule's status."""
    if not entity_ids:
        return {}
    rows = list(
        session.execute(select(ScorecardResult).where(ScorecardResult.entity_id.in_(entity_ids))).scalars()
    )
    if not rows:
        return {}
    definitions = {
        (s.blueprint, s.identifier): s.definition
        for s in session.scalars(
            select(Scorecard).where(Scorecard.blueprint.in_({r.blueprint for r in rows}))
        )
    }
    found: dict[int, dict[str, Any]] = {}
    for r in rows:
        definition = definitions.get((r.blueprint, r.scorecard), {})
        exempt = r.exempt or {}
        found.setdefault(r.entity_id, {})[r.scorecard] = {
            "level": r.level,
            "rules": [_rule_status(rule, r.rules, exempt) for rule in definition.get("rules", [])],
        }
    return found


def _rule_status(rule: dict[str, Any], passed: dict[str, bool], exempt: dict[str, Any]) -> dict[str, Any]:
    """One rule on an entity's scorecard: SUCCESS, FAILURE, or EXEMPT with its exemption."""
    name = rule["identifier"]
    status = {"identifier": name, "level": rule["level"]}
    if name in exempt:
        return {**status, "status": "EXEMPT", "exemption": exempt[name]}
    return {**status, "status": "SUCCESS" if passed.get(name) else "FAILURE"}


def results(
    session: Session,
    sc: Scorecard,
    *,
    limit: int,
    cursor: str | None = None,
    readable: sa.ColumnElement[bool] | None = None,
) -> dict[str, Any]:
    """Per-entity levels (a page in entity identifier order, resumed after ``cursor``), the
    distribution of levels, and each rule's pass rate, over the entities matching ``readable``
    (the caller's read permission; None: every entity). The distribution and pass rates cover
    every readable entity, not only the page.

    The identifier is unique within the blueprint, so it alone is the keyset: a page does not
    shift when entities are graded or deleted between two requests, as an offset would."""
    check_limit(limit)
    # The entity's blueprint is the scorecard's: said so, the (blueprint, identifier) index
    # serves the order and the page stops after ``limit`` rows instead of sorting every result.
    stmt = (
        select(Entity.identifier, ScorecardResult.level, ScorecardResult.rules, ScorecardResult.exempt)
        .join(Entity, Entity.id == ScorecardResult.entity_id)
        .where(ScorecardResult.blueprint == sc.blueprint, ScorecardResult.scorecard == sc.identifier)
        .where(Entity.blueprint == sc.blueprint)
        .where(readable if readable is not None else sa.true())
        .order_by(Entity.identifier)
    )
    if cursor is not None:
        (after,) = decode_cursor(cursor, size=1)
        if not isinstance(after, str):
            raise Invalid("invalid cursor", [FieldError("/cursor", "not a cursor returned by this API")])
        stmt = stmt.where(Entity.identifier > after)
    page = session.execute(stmt.limit(limit + 1)).all()
    return {
        **summary(session, sc, readable=readable),
        "items": [
            {"entity": row[0], "level": row[1], "rules": row[2], "exempt": row[3] or {}}
            for row in page[:limit]
        ],
        "next_cursor": encode_cursor([page[limit - 1][0]]) if len(page) > limit else None,
    }


def summary(
    session: Session, sc: Scorecard, *, readable: sa.ColumnElement[bool] | None = None
) -> dict[str, Any]:
    """:func:`results` without its page of entities: the total, the distribution of levels and
    each rule's pass rate over the entities matching ``readable`` (None: every entity)."""
    rules = sc.definition.get("rules", [])
    total, distribution, passed, excused = _aggregates(session, sc, rules, readable)
    return {
        "scorecard": sc.identifier,
        "blueprint": sc.blueprint,
        "total": total,
        "distribution": {
            level["title"]: distribution.get(level["title"], 0) for level in sc.definition["levels"]
        },
        "rules": [
            {
                "identifier": r["identifier"],
                "level": r["level"],
                "passed": passed[r["identifier"]],
                "exempt": excused[r["identifier"]],
                "pass_rate": round(passed[r["identifier"]] / total, 4) if total else None,
            }
            for r in rules
        ],
    }


def _aggregates(
    session: Session, sc: Scorecard, rules: list[dict[str, Any]], readable: sa.ColumnElement[bool] | None
) -> tuple[int, dict[str, int], dict[str, int], dict[str, int]]:
    """Over the scorecard's readable results: how many, how many per level, and per rule how many
    pass (an exempted rule counts as passed) and how many are exempt. Two grouped statements;
    no result row reaches Python."""
    dialect = session.get_bind().dialect.name
    where = [ScorecardResult.blueprint == sc.blueprint, ScorecardResult.scorecard == sc.identifier]
    source: Any = ScorecardResult
    if readable is not None:
        source = sa.join(ScorecardResult, Entity, Entity.id == ScorecardResult.entity_id)
        where.append(readable)
    levels = (
        select(ScorecardResult.level, sa.func.count())
        .select_from(source)
        .where(*where)
        .group_by(ScorecardResult.level)
    )
    distribution = {level: count for level, count in session.execute(levels).all()}
    columns: list[sa.ColumnElement[Any]] = []
    for rule in rules:
        name = rule["identifier"]
        columns.append(_count_where(rule_passed(dialect, name)))
        columns.append(_count_where(rule_exempt(dialect, name)))
    counts: list[int] = []
    if columns and distribution:
        counts = [
            int(n or 0) for n in session.execute(select(*columns).select_from(source).where(*where)).one()
        ]
    passed = {r["identifier"]: counts[2 * i] if counts else 0 for i, r in enumerate(rules)}
    excused = {r["identifier"]: counts[2 * i + 1] if counts else 0 for i, r in enumerate(rules)}
    return sum(distribution.values()), distribution, passed, excused


def _count_where(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
    return sa.func.sum(sa.case((condition, 1), else_=0))


def rule_passed(dialect: str, rule: str) -> sa.ColumnElement[bool]:
    """A stored result passes ``rule`` (true in its ``rules``; an exempted rule is stored true).
    Never NULL: a rule missing from the result is false, so ``NOT`` of it selects the failing."""
    return sa.func.coalesce(json_value(dialect, ScorecardResult.rules, rule).equals(True), sa.false())


def rule_exempt(dialect: str, rule: str) -> sa.ColumnElement[bool]:
    """A stored result names ``rule`` among its exemptions (never NULL, as :func:`rule_passed`)."""
    return sa.func.coalesce(
        json_value(dialect, ScorecardResult.exempt, rule).type_is(*JSON_KINDS), sa.false()
    )


JSON_KINDS = ("string", "number", "boolean", "array", "object", "null")


def history(session: Session, blueprint: str, entity: str) -> list[dict[str, Any]]:
    stmt = (
        select(ScorecardLevelChange)
        .where(ScorecardLevelChange.blueprint == blueprint, ScorecardLevelChange.entity == entity)
        .order_by(ScorecardLevelChange.id)
    )
    return [
        {
            "scorecard": c.scorecard,
            "from": c.from_level,
            "to": c.to_level,
            "at": format_instant(c.at),
            "exempt": c.exempt or {},
        }
        for c in session.scalars(stmt)
    ]


# ---- the scorecard rule of the query language --------------------------------------------

SCORECARD_OPERATORS = {"=", "!=", ">", ">=", "<", "<="}


def resolve(session: Session, query: Any) -> Any:
    """Replace each scorecard rule's level title by its position (``level_index``), so the
    compiler can compare levels; 422 for an unknown scorecard or level."""
    if isinstance(query, list):
        return [resolve(session, q) for q in query]
    if not isinstance(query, dict):
        return query
    if "scorecard" not in query:
        return {k: resolve(session, v) if k == "rules" else v for k, v in query.items()}
    definitions = list(session.scalars(select(Scorecard).where(Scorecard.identifier == query["scorecard"])))
    if not definitions:
        raise Invalid(
            "invalid query", [FieldError("/query", f"there is no scorecard '{query['scorecard']}'")]
        )
    titles = [level["title"] for level in definitions[0].definition["levels"]]
    if query.get("value") not in titles:
        raise Invalid(
            "invalid query",
            [
                FieldError(
                    "/query",
                    f"'{query.get('value')}' is not a level of '{query['scorecard']}': {', '.join(titles)}",
                )
            ],
        )
    return {**query, "level_index": titles.index(query["value"])}


def _validate_scorecard_rule(rule: dict[str, Any], ptr: str) -> list[FieldError]:
    errors = [
        FieldError(f"{ptr}/{k}", "is not a key of a scorecard rule")
        for k in rule
        if k not in ("scorecard", "operator", "value", "level_index")
    ]
    if not isinstance(rule.get("scorecard"), str):
        errors.append(FieldError(f"{ptr}/scorecard", "must be a scorecard identifier"))
    if rule.get("operator") not in SCORECARD_OPERATORS:
        errors.append(
            FieldError(f"{ptr}/operator", f"must be one of {' '.join(sorted(SCORECARD_OPERATORS))}")
        )
    if not isinstance(rule.get("value"), str):
        errors.append(FieldError(f"{ptr}/value", "must be a level title"))
    return errors


def _compile_scorecard_rule(rule: dict[str, Any], _: Context) -> sa.ColumnElement[bool]:
    if "level_index" not in rule:
        raise Invalid("invalid query", [FieldError("/query", "scorecard rules need their levels resolved")])
    index = ScorecardResult.level_index
    compare = {
        "=": index == rule["level_index"],
        "!=": index != rule["level_index"],
        ">": index > rule["level_index"],
        ">=": index >= rule["level_index"],
        "<": index < rule["level_index"],
        "<=": index <= rule["level_index"],
    }[rule["operator"]]
    return sa.exists().where(
        ScorecardResult.entity_id == Entity.id, ScorecardResult.scorecard == rule["scorecard"], compare
    )


register_rule_kind("scorecard", RuleKind(_validate_scorecard_rule, _compile_scorecard_rule))
