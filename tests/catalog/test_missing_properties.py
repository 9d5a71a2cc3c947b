"""Every property operator on an entity that does NOT have the property, and on one whose value
is null, on SQLite and PostgreSQL: the table is what the compiler does, so a change shows here.

Negative operators are the negation of their positive twin (catalog.query.compiler NEGATIONS), so a
missing property matches ``!=``, ``notIn``, ``doesNotContain``, ``notBetween``, ``isNotExpired``
and ``isEmpty``, and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from catalog.models import Entity
from catalog.query.compiler import NEGATIONS, OPERATORS, compile_query
from tests.catalog import add_blueprints, add_entity

NOW = datetime(2025, 1, 1, tzinfo=UTC)

# operator → (its value, does an entity WITHOUT the property match?, does a null value match?)
TABLE: dict[str, tuple[Any, bool, bool]] = {
    "=": ("x", False, False),
    "!=": ("x", True, True),
    ">": (1, False, False),
    ">=": (1, False, False),
    "<": (1, False, False),
    "<=": (1, False, False),
    "between": ({"from": 1, "to": 5}, False, False),
    "notBetween": ({"from": 1, "to": 5}, True, True),
    "contains": ("x", False, False),
    "doesNotContain": ("x", True, True),
    "containsAny": (["x", "y"], False, False),
    "beginsWith": ("x", False, False),
    "endsWith": ("x", False, False),
    "in": (["x", "y"], False, False),
    "notIn": (["x", "y"], True, True),
    "isEmpty": (None, True, True),
    "isNotEmpty": (None, False, False),
    "isExpired": (None, False, False),
    "isNotExpired": (None, True, True),
}


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as session:
        add_blueprints(session, "service")
        add_entity(session, "service", "without", properties={"other": "x"})
        add_entity(session, "service", "null", properties={"prop": None})
        session.commit()
        yield session


def test_the_table_covers_every_property_operator() -> None:
    # relatedTo follows the graph: it has no property to be missing.
    assert set(TABLE) == OPERATORS - {"relatedTo"}


def test_negations_are_the_opposite_on_missing_properties() -> None:
    for negative, positive in NEGATIONS.items():
        assert TABLE[negative][1] != TABLE[positive][1], negative
        assert TABLE[negative][2] != TABLE[positive][2], negative


@pytest.mark.parametrize("op", sorted(TABLE))
def test_an_entity_without_the_property(session: Session, op: str) -> None:
    value, missing_matches, null_matches = TABLE[op]
    rule = {"property": "prop", "operator": op} | ({} if value is None else {"value": value})
    condition = compile_query(
        {"combinator": "and", "rules": [rule]}, dialect=session.get_bind().dialect.name, now=NOW
    )
    found = set(session.scalars(sa.select(Entity.identifier).where(condition)))
    expected = {name for name, hit in (("without", missing_matches), ("null", null_matches)) if hit}
    assert found == expected, f"{op}: expected {sorted(expected)}, got {sorted(found)}"
