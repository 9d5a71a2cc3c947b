"""The search's SQL is planner-friendly, and its typed forms answer what the guarded forms answer.

- Where a blueprint declares a property's type, the compiler drops the runtime type guards
  (``compile_query(types=...)``): every operator on every declared type must select the same
  entities as the guarded form, and a typed sort must page in the same order.
- The benchmark's query shapes (``bench.catalog.SEARCH_SHAPES``) are read from an index in their
  order: no sort of the matching set (PostgreSQL ``EXPLAIN``, SQLite ``EXPLAIN QUERY PLAN``);
  a member's read filter reads ``entity_teams`` by its team index.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from bench.catalog import BLUEPRINT, BLUEPRINT_BODY, SEARCH_SHAPES, TEAM, make_entities
from catalog.audit import Actor
from catalog.blueprints.service import create_blueprint
from catalog.entities.search import search_entities
from catalog.entities.service import Mode, write_entities
from catalog.identity.permissions import MEMBER, Principal
from catalog.identity.service import create_team
from catalog.models import Blueprint, Entity
from catalog.query.compiler import compile_query, declared_types
from catalog.schemas import BlueprintIn, TeamIn
from tests.catalog import add_entity

NOW = datetime(2025, 1, 1, tzinfo=UTC)
SCHEMA = {
    "properties": {
        "name": {"type": "string"},
        "tier": {"type": "integer"},
        "score": {"type": "number"},
        "active": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "due": {"type": "string", "format": "date-time"},
    }
}
# Values of the declared types, ties and gaps included; None leaves the property out.
ROWS: list[dict[str, Any]] = [
    {
        "name": "b",
        "tier": 1,
        "score": 2.5,
        "active": True,
        "tags": ["x", "y"],
        "due": "2024-06-01T00:00:00.000Z",
    },
    {"name": "B", "tier": 3, "score": -1, "active": False, "tags": [], "due": "2026-01-01T00:00:00.000Z"},
    {"name": "", "tier": 2, "score": 2.5, "tags": ["y"]},
    {"name": "ab", "tier": 1, "active": True, "due": "2024-12-31T23:59:59.000Z"},
    {"tier": 10, "score": 100, "tags": ["x"]},
    {"name": "é", "score": 0, "active": False},
    {},
    {"name": "b", "tier": 2, "score": 7, "tags": ["z"], "due": "2025-01-01T00:00:00.000Z"},
]
RULES: list[dict[str, Any]] = [
    {"property": p, "operator": op, "value": v}
    for p, op, v in [
        ("name", "=", "b"), ("name", "!=", "b"), ("name", "=", 1), ("name", "<", "b"), ("name", ">=", "B"),
        ("name", "between", {"from": "a", "to": "b"}), ("name", "notBetween", {"from": "a", "to": "b"}),
        ("name", "in", ["b", "", 3]), ("name", "notIn", ["b"]), ("name", "contains", "b"),
        ("name", "doesNotContain", "b"), ("name", "beginsWith", "a"), ("name", "endsWith", "b"),
        ("name", "contains", 1), ("name", "<", 5),
        ("tier", "=", 1), ("tier", "!=", 1), ("tier", "<=", 2), ("tier", ">", 1.5), ("tier", "=", "1"),
        ("tier", "<", "z"), ("tier", "between", {"from": 2, "to": 10}), ("tier", "in", [1, 10, "2"]),
        ("tier", "notIn", [1]), ("tier", "contains", "1"), ("tier", "contains", 1), ("tier", "beginsWith", "1"),
        ("score", ">=", 2.5), ("score", "<", 0), ("score", "=", 2.5), ("score", "notBetween", {"from": 0, "to": 7}),
        ("active", "=", True), ("active", "!=", True), ("active", "in", [False]),
        ("tags", "contains", "x"), ("tags", "doesNotContain", "x"), ("tags", "containsAny", ["z", "y"]),
        ("tags", "contains", 1), ("tags", "=", "x"),
        ("due", "<", "2025-01-01T01:00:00+01:00"), ("due", "between", {"from": "2024-07-01", "to": "2025-06-01"}),
    ]
] + [
    {"property": p, "operator": op}
    for p in ("name", "tier", "score", "tags", "due")
    for op in ("isEmpty", "isNotEmpty", "isExpired", "isNotExpired")
]  # fmt: skip


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as session:
        session.add(Blueprint(identifier="service", title="Service", schema=SCHEMA))
        session.flush()
        for i, properties in enumerate(ROWS):
            add_entity(session, "service", f"e{i}", properties=properties)
        session.commit()
        yield session


def _matches(session: Session, rule: dict[str, Any], types: dict[str, str] | None) -> list[str]:
    dialect = session.get_bind().dialect.name
    condition = compile_query({"combinator": "and", "rules": [rule]}, dialect=dialect, now=NOW, types=types)
    return sorted(session.scalars(sa.select(Entity.identifier).where(condition)))


def test_typed_rules_select_what_guarded_rules_select(session: Session) -> None:
    types = declared_types([SCHEMA])
    assert types == {"name": "string", "tier": "number", "score": "number", "tags": "array", "due": "string"}
    for rule in RULES:
        assert _matches(session, rule, types) == _matches(session, rule, None), rule


@pytest.mark.parametrize("prop", ["name", "tier", "score", "due"])
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_typed_sorts_page_like_guarded_sorts(session: Session, prop: str, order: str) -> None:
    typed = {"combinator": "and", "rules": [{"property": "$blueprint", "operator": "=", "value": "service"}]}
    untyped = {"combinator": "and", "rules": []}  # spans every blueprint: no declared types apply
    sort = [{"property": prop, "order": order}]
    assert _walk(session, typed, sort) == _walk(session, untyped, sort)


def _walk(session: Session, query: dict[str, Any], sort: list[dict[str, str]]) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        page = search_entities(session, query=query, sort=sort, limit=3, cursor=cursor, now=NOW)
        seen += [e.identifier for e in page.items]
        if (cursor := page.next_cursor) is None:
            return seen


# ---- plans -------------------------------------------------------------------------------------

MEMBER_OF_ONE = Principal("bench-member", MEMBER, teams=frozenset({"team-0"}))


def _load(engine: Engine, count: int) -> None:
    """``count`` entities of the benchmark's blueprint through the write pipeline, over 20 teams
    (owners only may read them), and fresh planner statistics."""
    actor = Actor("admin")
    body = {**BLUEPRINT_BODY, "permissions": {"read": {"owned_by_team": True}}}
    entities = make_entities(count)
    with Session(engine) as session, session.begin():
        for k in range(20):
            create_team(session, TeamIn(identifier=f"team-{k}", title=f"Team {k}"), actor)
        create_team(session, TeamIn(identifier=TEAM, title="Bench"), actor)
        create_blueprint(session, BlueprintIn.model_validate(body), actor)
        for i, entity in enumerate(entities):
            entity["team"] = [f"team-{(i // 4) % 20}"]  # independent of the language (i % 4)
        results = write_entities(session, BLUEPRINT, entities, mode=Mode.UPSERT, actor=actor, bulk=True)
        assert all(r.error is None for r in results)
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")


def _statements(engine: Engine, body: dict[str, Any], who: Principal | None) -> list[tuple[str, Any]]:
    """The SQL of the search's first page and of the page after it (when there is one)."""
    captured: list[tuple[str, Any]] = []

    def grab(_conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
        if "FROM entities" in statement and "ORDER BY" in statement:
            captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", grab)
    try:
        with Session(engine) as session:
            kwargs = {
                "query": body["query"],
                "sort": body.get("sort", []),
                "limit": 20,
                "now": NOW,
                "who": who,
            }
            first = search_entities(session, cursor=None, **kwargs)
            assert first.items
            if first.next_cursor is not None:
                search_entities(session, cursor=first.next_cursor, **kwargs)
    finally:
        event.remove(engine, "before_cursor_execute", grab)
    assert len(captured) == (1 if first.next_cursor is None else 2)
    return captured


def _plan(engine: Engine, statement: str, parameters: Any) -> str:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return "\n".join(
                r[-1] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            )
        # Small tables: make the planner show the plan it takes on a large one, where reading
        # the whole table costs more than walking an index.
        conn.exec_driver_sql("SET enable_seqscan = off")
        conn.exec_driver_sql("SET enable_bitmapscan = off")
        return "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters))


def _with_descending(body: dict[str, Any]) -> list[dict[str, Any]]:
    sort = body.get("sort")
    if not sort:
        return [body]
    return [body, {**body, "sort": [{**sort[0], "order": "desc"}]}]


INDEXED_SHAPES = [s for s in SEARCH_SHAPES if s.name != "by property desc"]


def test_the_benchmark_shapes_read_an_index_in_their_order(engine: Engine) -> None:
    _load(engine, 600)  # every shape has a second page
    sqlite = engine.dialect.name == "sqlite"
    for shape in INDEXED_SHAPES:
        for body in _with_descending(shape.body):
            for statement, parameters in _statements(engine, body, None):
                plan = _plan(engine, statement, parameters)
                where = f"{shape.name} {body.get('sort')}:\n{plan}"
                if sqlite:
                    assert "TEMP B-TREE" not in plan, where
                    assert "USING INDEX" in plan or "PRIMARY KEY" in plan, where
                else:
                    # An incremental sort of rows the index already ordered (descending
                    # identifiers, ascending ids) sorts one row per identifier, not the set.
                    assert not re.search(r"(^|->)\s*Sort\s+\(cost", plan, re.MULTILINE), where
                    assert "Index Scan" in plan, where


def test_a_members_search_reads_the_team_index(engine: Engine) -> None:
    _load(engine, 600)
    for shape in SEARCH_SHAPES:
        for statement, parameters in _statements(engine, shape.body, MEMBER_OF_ONE):
            plan = _plan(engine, statement, parameters)
            assert "ix_entity_teams_team" in plan, f"{shape.name}:\n{plan}"
            assert "json_each(entities.team" not in statement and "entities.team @>" not in statement
