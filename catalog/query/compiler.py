"""The catalog's one query compiler (README: Query language), used by search, scorecards and conditions.

A query compiles to one SQLAlchemy boolean expression over ``Entity``: nothing is filtered in
Python. User strings are always bound parameters, never SQL text.

Shape: a group ``{"combinator": "and"|"or", "rules": [...]}`` whose rules are groups or rules.
An empty ``and`` matches everything, an empty ``or`` nothing. Rule kinds live in ``RULE_KINDS``
(one validator and one compiler each), so a new kind such as scorecard rules is one more entry.

Semantics shared by both dialects:

- Values compare by JSON type: a number only ever equals or orders against numbers, a string
  against strings (by code point, never by locale), a boolean only equals booleans. Strings that
  are RFC 3339 date-times (``2024-06-01T12:00:00+02:00``) are first rewritten to the catalog's
  stored form ``YYYY-MM-DDTHH:MM:SS.sssZ``, so they compare as instants.
- ``between``/``notBetween`` are inclusive. ``contains`` is a case-sensitive substring test on
  strings and an element test on arrays; ``containsAny`` and ``in`` take lists of up to 100.
- ``isEmpty`` holds for a missing property, null, ``""``, ``[]`` and ``{}``. ``isExpired`` holds
  for a string value earlier than ``now``.
- Every negative operator is exactly the negation of its positive twin (``!=`` of ``=``,
  ``notIn`` of ``in``, ``doesNotContain`` of ``contains``, ``notBetween`` of ``between``,
  ``isNotEmpty`` of ``isEmpty``, ``isNotExpired`` of ``isExpired``). So a missing property, or
  a value of another type, matches ``!=``, ``notIn``, ``doesNotContain``, ``notBetween`` and
  ``isNotExpired`` (as in Port: missing is "not expired").
- Where the query keeps to blueprints that declare a property's type (``$blueprint`` ``=`` or
  ``in`` at its top level, and the same type in each), the property is compiled without runtime
  type guards: values of a declared type are all of that type (the catalog validates every write
  and refuses a type change while entities exist), so ``tier <= 2`` on an integer property is
  ``(properties->>'tier')::numeric <= 2`` on PostgreSQL, which the planner estimates (and an
  expression index could serve), where a guard made it misjudge how many rows match. Results
  are the same either way. ``declared_types`` and ``query_blueprints`` say what applies.
- ``$team`` element tests read ``entity_teams`` (one row per owning team, kept by the write
  pipeline) by index instead of each entity's JSON array.
- Relation rules ``{"relation": R, "operator": ..., "value": ...}`` test the entity's own edges.
- ``{"operator": "relatedTo", "blueprint": B, "value": X-or-list, "direction": D}`` follows
  edges transitively (at most ``MAX_GRAPH_DEPTH`` hops). ``upstream`` (the default, as in Port)
  matches the entities X points at: for service ``payments`` its system and that system's
  domain. ``downstream`` matches the entities pointing at X: for system ``billing`` its services
  and whatever points at them. X itself never matches unless the graph has a cycle.
  ``"required": true`` follows only edges of required relations.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import QueryableAttribute, Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from catalog.errors import FieldError, Invalid
from catalog.models import Entity, EntityRelation, EntityTeam
from catalog.timefmt import format_instant

MAX_DEPTH = 10
MAX_RULES = 200
MAX_VALUES = 100
MAX_GRAPH_DEPTH = 10

# Port's identifier rule, for blueprints, properties and relations (catalog.schemas.BLUEPRINT_ID;
# the query layer may not import it). A name reaches SQL only as a bound parameter, and on SQLite
# inside a quoted JSON path key (``$."a=b"``), which no character of the rule can close.
PROPERTY_NAME = re.compile(r"^[A-Za-z0-9@_=-]{1,100}$")
BLUEPRINT_ID = PROPERTY_NAME
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|z|[+-]\d{2}:\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

NEGATIONS = {
    "!=": "=",
    "notBetween": "between",
    "doesNotContain": "contains",
    "notIn": "in",
    "isNotEmpty": "isEmpty",
    "isNotExpired": "isExpired",
}
_POSITIVE_OPERATORS = ["=", ">", ">=", "<", "<=", "between", "contains", "containsAny", "beginsWith"]
OPERATORS = frozenset(
    [*_POSITIVE_OPERATORS, "endsWith", "in", "isEmpty", "isExpired", "relatedTo", *NEGATIONS]
)
_ORDERED = {"=": operator.eq, ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}

Rule = dict[str, Any]
Predicate = ColumnElement[bool]


@dataclass(frozen=True)
class Context:
    """What a compiler needs besides the rule: the SQL dialect and the time rules compare to."""

    dialect: str
    now: datetime
    # Property -> "string" | "number" | "array": the type every value of the property has.
    types: Mapping[str, str] = field(default_factory=dict)

    @property
    def now_text(self) -> str:
        return format_instant(self.now)


@dataclass(frozen=True)
class RuleKind:
    """One kind of leaf rule: ``validate`` lists what is wrong, ``compile`` builds the SQL."""

    validate: Callable[[Rule, str], list[FieldError]]
    compile: Callable[[Rule, Context], Predicate]


# Keyed by the key that marks the kind in a rule ("property", "relation"); "relatedTo" is
# keyed by its operator instead. A scorecard rule kind registers under "scorecard".
RULE_KINDS: dict[str, RuleKind] = {}


def register_rule_kind(key: str, kind: RuleKind) -> None:
    RULE_KINDS[key] = kind


# -- public API -------------------------------------------------------------------------------


def validate_query(query: Any, *, pointer: str = "/query") -> None:
    """Raise ``Invalid`` naming every failing part of ``query`` by JSON pointer."""
    errors: list[FieldError] = []
    count = _check_group(query, pointer, 1, errors)
    if count > MAX_RULES:
        errors.append(FieldError(pointer, f"has {count} rules; at most {MAX_RULES} are allowed"))
    if errors:
        raise Invalid("invalid query", errors)


def compile_query(
    query: dict[str, Any],
    *,
    dialect: str,
    now: datetime,
    pointer: str = "/query",
    types: Mapping[str, str] | None = None,
) -> Predicate:
    """The SQL condition selecting the entities that match ``query`` (validated first).

    ``types`` (from ``declared_types``) names the properties whose every value is known to be a
    string or a number: those compile without type guards."""
    if dialect not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported dialect {dialect!r}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    validate_query(query, pointer=pointer)
    return _compile_group(query, Context(dialect, now, types or {}))


def query_blueprints(query: Any) -> set[str] | None:
    """The blueprints a (valid) query keeps to through ``$blueprint`` ``=``/``in`` rules ANDed at
    its top level; None when it may match entities of any blueprint."""
    if not isinstance(query, dict) or query.get("combinator") != "and":
        return None
    kept: set[str] | None = None
    for rule in query.get("rules", []):
        if "combinator" in rule:
            names = query_blueprints(rule)
        elif rule.get("property") == "$blueprint" and rule.get("operator") in ("=", "in"):
            names = set(_as_list(rule.get("value")))
        else:
            continue
        if names is not None:
            kept = names if kept is None else kept & names
    return kept


# A declared JSON Schema type whose values a typed comparison can rely on, by how they compare.
_TYPED = {"string": "string", "number": "number", "integer": "number", "array": "array"}


def declared_types(schemas: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Property -> "string" | "number" | "array" for the properties every one of ``schemas``
    (blueprint schemas) declares with that one type."""
    found: dict[str, str] | None = None
    for schema in schemas:
        mine = {
            name: _TYPED[definition["type"]]
            for name, definition in (schema.get("properties") or {}).items()
            if isinstance(definition, dict) and definition.get("type") in _TYPED
        }
        found = mine if found is None else {k: v for k, v in found.items() if mine.get(k) == v}
    return found or {}


def entity_matches(session: Session, entity_id: int, query: dict[str, Any], *, now: datetime) -> bool:
    """Whether the entity with primary key ``entity_id`` matches ``query`` (action conditions)."""
    condition = compile_query(query, dialect=session.get_bind().dialect.name, now=now)
    return bool(session.scalar(sa.select(sa.exists().where(Entity.id == entity_id, condition))))


def team_overlaps(column: Any, teams: Sequence[str], dialect: str) -> Predicate:
    """Rows whose JSON array ``column`` (an entity's ``team``) holds any of ``teams``."""
    return _any([json_value(dialect, column, None).has_element(t) for t in teams])


def owned_by_any(teams: Sequence[str]) -> Predicate:
    """Entities owned by any of ``teams`` (``entity_teams``, served by its team index)."""
    if not teams:
        return sa.false()
    owned = sa.select(EntityTeam.entity_id).where(EntityTeam.team.in_(list(teams)))
    return Entity.id.in_(owned)


def canonical_value(value: Any) -> Any:
    """``value`` with an RFC 3339 date-time string rewritten to the stored form."""
    if isinstance(value, str) and _RFC3339.match(value):
        try:
            return format_instant(datetime.fromisoformat(value.upper()))
        except ValueError:
            return value
    return value


def binary_text(expr: ColumnElement[Any] | QueryableAttribute[Any], dialect: str) -> ColumnElement[Any]:
    """``expr`` compared by code point on both dialects (SQLite's default; "C" on PostgreSQL)."""
    if dialect == "postgresql":
        return sa.collate(expr, "C")
    return expr if isinstance(expr, ColumnElement) else expr.expression


# -- groups -----------------------------------------------------------------------------------


def _check_group(group: Any, ptr: str, depth: int, errors: list[FieldError]) -> int:
    """Appends the group's errors and returns how many rules it holds, nested ones included."""
    if not isinstance(group, dict):
        errors.append(FieldError(ptr, 'must be a group {"combinator": "and"|"or", "rules": [...]}'))
        return 0
    if depth > MAX_DEPTH:
        errors.append(FieldError(ptr, f"groups are nested deeper than {MAX_DEPTH} levels"))
        return 0
    errors.extend(_unknown_keys(group, ptr, {"combinator", "rules"}))
    if group.get("combinator") not in ("and", "or"):
        errors.append(FieldError(f"{ptr}/combinator", "must be 'and' or 'or'"))
    rules = group.get("rules")
    if not isinstance(rules, list):
        errors.append(FieldError(f"{ptr}/rules", "must be a list of rules"))
        return 0
    count = len(rules)
    for i, rule in enumerate(rules):
        rule_ptr = f"{ptr}/rules/{i}"
        if isinstance(rule, dict) and "combinator" in rule:
            count += _check_group(rule, rule_ptr, depth + 1, errors)
        elif not isinstance(rule, dict):
            errors.append(FieldError(rule_ptr, "must be an object"))
        elif (kind := _kind_of(rule)) is None:
            errors.append(FieldError(rule_ptr, "a rule needs 'property', 'relation' or operator 'relatedTo'"))
        else:
            errors.extend(kind.validate(rule, rule_ptr))
    return count


def _kind_of(rule: Rule) -> RuleKind | None:
    if rule.get("operator") == "relatedTo":
        return RULE_KINDS["relatedTo"]
    return next((kind for key, kind in RULE_KINDS.items() if key in rule), None)


def _compile_group(group: Rule, ctx: Context) -> Predicate:
    parts = [_compile_group(r, ctx) if "combinator" in r else _compile_rule(r, ctx) for r in group["rules"]]
    if group["combinator"] == "and":
        return sa.and_(sa.true(), *parts)
    return sa.or_(sa.false(), *parts)


def _compile_rule(rule: Rule, ctx: Context) -> Predicate:
    kind = _kind_of(rule)
    assert kind is not None  # validated
    positive = NEGATIONS.get(rule.get("operator", ""))
    if positive is None:
        return kind.compile(rule, ctx)
    # NOT over a NULL is NULL: make the positive definite so "missing" matches the negation.
    return sa.not_(sa.func.coalesce(kind.compile({**rule, "operator": positive}, ctx), sa.false()))


# -- values -----------------------------------------------------------------------------------


def _is_number(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    return math.isfinite(v) and -(2**63) <= v < 2**63


def _is_string(v: Any) -> bool:
    return isinstance(v, str)


def _is_scalar(v: Any) -> bool:
    return isinstance(v, str | bool) or _is_number(v)


def _is_orderable(v: Any) -> bool:
    return isinstance(v, str) or _is_number(v)


def _is_instant(v: Any) -> bool:
    return _parse_instant(v) is not None


def _parse_instant(v: Any) -> datetime | None:
    """A timezone-aware datetime from an RFC 3339 date-time or a date (midnight UTC)."""
    if not isinstance(v, str):
        return None
    try:
        if _DATE.match(v):
            return datetime.combine(date.fromisoformat(v), datetime.min.time(), UTC)
        if _RFC3339.match(v):
            return datetime.fromisoformat(v.upper())
    except ValueError:
        return None
    return None


@dataclass(frozen=True)
class Subject:
    """What a rule talks about: the operators it allows and the values they accept."""

    name: str
    operators: frozenset[str]  # positive operators; their negations come along
    scalar: Callable[[Any], bool]
    ordered: Callable[[Any], bool]
    describe: str  # what one value must be, for error messages


def _value_problem(op: str, value: Any, subject: Subject) -> str | None:
    """Why ``value`` does not fit positive operator ``op`` for ``subject``, or None."""
    if op in ("isEmpty", "isExpired"):
        return None if value is None else "takes no value"
    if op in ("=", "contains"):
        return None if subject.scalar(value) else f"must be {subject.describe}"
    if op in _ORDERED:
        return None if subject.ordered(value) else f"must be {subject.describe} that can be ordered"
    if op in ("beginsWith", "endsWith"):
        return None if isinstance(value, str) else "must be a string"
    if op in ("in", "containsAny"):
        if not isinstance(value, list) or len(value) > MAX_VALUES:
            return f"must be a list of at most {MAX_VALUES} values"
        bad = next((i for i, v in enumerate(value) if not subject.scalar(v)), None)
        return None if bad is None else f"item {bad} must be {subject.describe}"
    if op == "between":
        if not isinstance(value, dict) or set(value) != {"from", "to"}:
            return 'must be an object {"from": x, "to": y}'
        low, high = value["from"], value["to"]
        same_kind = isinstance(low, str) == isinstance(high, str)
        if not (subject.ordered(low) and subject.ordered(high) and same_kind):
            return f"'from' and 'to' must both be {subject.describe} of the same type"
    return None


def _check_operator_and_value(rule: Rule, ptr: str, subject: Subject) -> list[FieldError]:
    op = rule.get("operator")
    if "operator" not in rule:
        return [FieldError(f"{ptr}/operator", "is required")]
    if op not in OPERATORS:
        return [FieldError(f"{ptr}/operator", f"unknown operator {op!r}")]
    positive = NEGATIONS.get(op, op)
    if positive not in subject.operators:
        return [FieldError(f"{ptr}/operator", f"{op!r} does not apply to {subject.name}")]
    needs_value = positive not in ("isEmpty", "isExpired")
    if needs_value and "value" not in rule:
        return [FieldError(f"{ptr}/value", f"is required by {op!r}")]
    problem = _value_problem(positive, rule.get("value"), subject)
    return [FieldError(f"{ptr}/value", problem)] if problem else []


def _unknown_keys(rule: Rule, ptr: str, allowed: set[str]) -> list[FieldError]:
    return [FieldError(f"{ptr}/{key}", "unknown key") for key in rule if key not in allowed]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# -- JSON values on each dialect ----------------------------------------------------------------


class JsonValue(Protocol):
    """One JSON value of an entity (a property, or a whole JSON column such as ``team``)."""

    def type_is(self, *kinds: str) -> Predicate: ...  # "string" "number" "boolean" "array" "object" "null"
    def text(self) -> ColumnElement[Any]: ...  # the string, when type_is("string")
    def number(self) -> ColumnElement[Any]: ...  # the number, when type_is("number")
    def compare(self, op: str, value: Any) -> Predicate: ...  # = > >= < <= on a number or string
    def equals(self, value: Any) -> Predicate: ...
    def has_element(self, value: Any) -> Predicate: ...
    def is_empty(self) -> Predicate: ...
    def scalar(self, kind: str) -> ColumnElement[Any]: ...  # the value of a declared "string"/"number"


_SQLITE_TYPES = {
    "string": ["text"],
    "number": ["integer", "real"],
    "boolean": ["true", "false"],
    "array": ["array"],
    "object": ["object"],
    "null": ["null"],
}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "string" if isinstance(value, str) else "number"


def sqlite_json_path(name: str) -> str:
    """The JSON1 path of top-level key ``name``, quoted: ``-``, ``@`` or ``=`` in a bare key are
    read by SQLite as path syntax or refused; a name that could close the quotes is refused."""
    if not PROPERTY_NAME.match(name):
        raise ValueError(f"{name!r} is not a property name")
    return f'$."{name}"'


class SqliteJson:
    """JSON1: ``json_type`` tells the type (NULL when missing), ``json_extract`` the SQL value."""

    def __init__(self, column: Any, name: str | None) -> None:
        self.column = column
        self.path = "$" if name is None else sqlite_json_path(name)

    def _type(self) -> ColumnElement[Any]:
        return sa.func.json_type(self.column, self.path)

    def type_is(self, *kinds: str) -> Predicate:
        return self._type().in_([t for kind in kinds for t in _SQLITE_TYPES[kind]])

    def text(self) -> ColumnElement[Any]:
        return sa.func.json_extract(self.column, self.path)

    number = text

    def compare(self, op: str, value: Any) -> Predicate:
        return sa.and_(self.type_is(_kind(value)), _ORDERED[op](self.text(), value))

    def equals(self, value: Any) -> Predicate:
        if isinstance(value, bool):
            return self._type() == ("true" if value else "false")
        return self.compare("=", value)

    def has_element(self, value: Any) -> Predicate:
        each = sa.func.json_each(self.column, self.path).table_valued("value", "type")
        if isinstance(value, bool):
            match = each.c.type == ("true" if value else "false")
        else:
            match = sa.and_(each.c.type.in_(_SQLITE_TYPES[_kind(value)]), each.c.value == value)
        return sa.and_(self.type_is("array"), sa.exists().select_from(each).where(match))

    def is_empty(self) -> Predicate:
        kind = self._type()
        return sa.or_(
            kind.is_(None),
            kind == "null",
            sa.and_(kind == "text", self.text() == ""),
            sa.and_(kind == "array", sa.func.json_array_length(self.column, self.path) == 0),
            sa.and_(kind == "object", self.text() == "{}"),
        )

    def scalar(self, kind: str) -> ColumnElement[Any]:
        return self.text()


def _jsonb(value: Any) -> ColumnElement[Any]:
    return sa.cast(sa.literal(json.dumps(value)), JSONB)


class PostgresJson:
    """JSONB: equality and elements by containment (``@>``, served by the GIN index)."""

    def __init__(self, column: Any, name: str | None) -> None:
        self.document = sa.type_coerce(column, JSONB)
        self.name = name
        self.value: ColumnElement[Any] = self.document
        if name is None:
            return
        if not PROPERTY_NAME.match(name):
            raise ValueError(f"{name!r} is not a property name")
        # The key is SQL text, not a parameter, so the expression is the same in every
        # statement: a prepared statement's generic plan and an expression index can match it.
        # PROPERTY_NAME allows no quote.
        key = sa.literal_column(f"'{name}'", sa.Text)
        self.value = self.document.op("->", return_type=JSONB)(key)
        self._text = self.document.op("->>", return_type=sa.Text)(key)

    def _contains(self, fragment: Any) -> Predicate:
        wrapped = fragment if self.name is None else {self.name: fragment}
        return self.document.op("@>", return_type=sa.Boolean)(_jsonb(wrapped))

    def type_is(self, *kinds: str) -> Predicate:
        return sa.func.jsonb_typeof(self.value).in_(kinds)

    def text(self) -> ColumnElement[Any]:
        return self._text if self.name is not None else sa.cast(self.value, sa.Text)

    def number(self) -> ColumnElement[Any]:
        return sa.case((self.type_is("number"), sa.cast(self.text(), sa.Numeric)))

    def compare(self, op: str, value: Any) -> Predicate:
        if isinstance(value, str):
            return sa.and_(
                self.type_is("string"), _ORDERED[op](binary_text(self.text(), "postgresql"), value)
            )
        return sa.and_(self.type_is("number"), _ORDERED[op](self.value, _jsonb(value)))

    def equals(self, value: Any) -> Predicate:
        if self.name is None:
            return self.value == _jsonb(value)
        return self._contains(value)

    def has_element(self, value: Any) -> Predicate:
        return self._contains([value])

    def is_empty(self) -> Predicate:
        empties: tuple[Any, ...] = (None, "", [], {})
        return sa.or_(self.value.is_(None), self.value.in_([_jsonb(v) for v in empties]))

    def scalar(self, kind: str) -> ColumnElement[Any]:
        return sa.cast(self.text(), sa.Numeric) if kind == "number" else self.text()


def json_value(dialect: str, column: Any, name: str | None) -> JsonValue:
    """Property ``name`` of JSON ``column`` (the whole column when ``name`` is None)."""
    return PostgresJson(column, name) if dialect == "postgresql" else SqliteJson(column, name)


# -- text helpers shared by properties and meta-properties -------------------------------------


def _text_match(op: str, text: ColumnElement[Any], value: str, dialect: str) -> Predicate:
    """Case-sensitive substring tests; LIKE on PostgreSQL (escaped), instr/substr on SQLite."""
    if dialect == "postgresql":
        if op == "contains":
            return text.contains(value, autoescape=True)
        if op == "beginsWith":
            return text.startswith(value, autoescape=True)
        return text.endswith(value, autoescape=True)
    # SQLite's LIKE ignores ASCII case; instr and substr compare exactly.
    if op == "contains":
        return sa.func.instr(text, value) > 0
    if op == "beginsWith":
        return sa.func.instr(text, value) == 1
    tail = sa.func.substr(text, sa.func.length(text) - len(value) + 1)
    return sa.and_(sa.func.length(text) >= len(value), tail == value)


def _between(compare: Callable[[str, Any], Predicate], value: dict[str, Any]) -> Predicate:
    return sa.and_(compare(">=", canonical_value(value["from"])), compare("<=", canonical_value(value["to"])))


def _any(parts: Sequence[Predicate]) -> Predicate:
    return sa.or_(sa.false(), *parts)


# -- property rules ---------------------------------------------------------------------------

_ALL_POSITIVE = frozenset(OPERATORS - set(NEGATIONS) - {"relatedTo"})
PROPERTIES = Subject("a property", _ALL_POSITIVE, _is_scalar, _is_orderable, "a string, number or boolean")
TEXT_META = frozenset(["=", ">", ">=", "<", "<=", "between", "contains", "beginsWith", "endsWith", "in"])
META_SUBJECTS = {
    "$identifier": Subject("$identifier", TEXT_META, _is_string, _is_string, "a string"),
    "$blueprint": Subject("$blueprint", TEXT_META, _is_string, _is_string, "a string"),
    "$title": Subject("$title", TEXT_META | {"isEmpty"}, _is_string, _is_string, "a string"),
    "$team": Subject(
        "$team", frozenset(["contains", "containsAny", "isEmpty"]), _is_string, _is_string, "a string"
    ),
    "$created_at": Subject(
        "$created_at", frozenset([*_ORDERED, "between", "isExpired"]), _is_instant, _is_instant, "a date-time"
    ),
    "$updated_at": Subject(
        "$updated_at", frozenset([*_ORDERED, "between", "isExpired"]), _is_instant, _is_instant, "a date-time"
    ),
}
_META_COLUMNS = {
    "$identifier": Entity.identifier,
    "$blueprint": Entity.blueprint,
    "$title": Entity.title,
    "$created_at": Entity.created_at,
    "$updated_at": Entity.updated_at,
}


def _validate_property_rule(rule: Rule, ptr: str) -> list[FieldError]:
    errors = _unknown_keys(rule, ptr, {"property", "operator", "value"})
    name = rule["property"]
    if not isinstance(name, str) or not (PROPERTY_NAME.match(name) or name in META_SUBJECTS):
        reason = "must be a property name (letters, digits, @ _ = -) or one of " + " ".join(META_SUBJECTS)
        return [*errors, FieldError(f"{ptr}/property", reason)]
    return errors + _check_operator_and_value(rule, ptr, META_SUBJECTS.get(name, PROPERTIES))


def _compile_property_rule(rule: Rule, ctx: Context) -> Predicate:
    name, op, value = rule["property"], rule["operator"], rule.get("value")
    if name == "$team":
        if op in ("contains", "containsAny"):
            return owned_by_any(_as_list(value))
        return _compile_json(json_value(ctx.dialect, Entity.team, None), op, value, ctx)
    if name in ("$created_at", "$updated_at"):
        return _compile_instant(_META_COLUMNS[name], op, value, ctx)
    if name in _META_COLUMNS:
        return _compile_text_column(_META_COLUMNS[name], op, value, ctx)
    doc = json_value(ctx.dialect, Entity.properties, name)
    kind = ctx.types.get(name)
    typed = None if kind is None else _compile_typed(doc, kind, op, value, ctx)
    return _compile_json(doc, op, value, ctx) if typed is None else typed


def _compile_typed(doc: JsonValue, kind: str, op: str, value: Any, ctx: Context) -> Predicate | None:
    """``op`` on a property whose values are all of ``kind`` ("string", "number" or "array"),
    without type guards; None where the untyped form has no guard to drop (containment,
    emptiness)."""
    if op in ("isEmpty", "containsAny") or (op in ("=", "in") and ctx.dialect == "postgresql"):
        return None  # JSONB containment (served by the GIN index) or a test with no guard
    if kind == "array":  # an element test (containment on PostgreSQL); an array is no scalar
        return doc.has_element(canonical_value(value)) if op == "contains" else None
    fits = _is_string if kind == "string" else _is_number
    expr = doc.scalar(kind)
    ordered = binary_text(expr, ctx.dialect) if kind == "string" else expr
    if op == "isExpired":
        return ordered < ctx.now_text if kind == "string" else sa.false()
    if op == "in":
        values = [v for v in (canonical_value(v) for v in value) if fits(v)]
        return expr.in_(values) if values else sa.false()
    if op == "between":
        low, high = canonical_value(value["from"]), canonical_value(value["to"])
        return sa.and_(ordered >= low, ordered <= high) if fits(low) and fits(high) else sa.false()
    value = canonical_value(value)
    if not fits(value):
        return sa.false()  # a number never equals or orders against a string, nor the reverse
    if op == "=":
        return expr == value
    if op in _ORDERED:
        return _ORDERED[op](ordered, value)
    if kind != "string":
        return sa.false()  # contains, beginsWith, endsWith hold only for strings (or arrays)
    return _text_match(op, expr, value, ctx.dialect)


def _compile_json(doc: JsonValue, op: str, value: Any, ctx: Context) -> Predicate:
    if op == "isEmpty":
        return doc.is_empty()
    if op == "isExpired":
        return sa.and_(doc.type_is("string"), binary_text(doc.text(), ctx.dialect) < ctx.now_text)
    if op == "between":
        return _between(doc.compare, value)
    if op in ("in", "containsAny"):
        test = doc.equals if op == "in" else doc.has_element
        return _any([test(canonical_value(v)) for v in value])
    value = canonical_value(value)
    if op == "=":
        return doc.equals(value)
    if op in _ORDERED:
        return doc.compare(op, value)
    if op == "contains" and isinstance(value, str):
        as_text = sa.and_(doc.type_is("string"), _text_match(op, doc.text(), value, ctx.dialect))
        return sa.or_(as_text, doc.has_element(value))
    if op == "contains":
        return doc.has_element(value)
    return sa.and_(doc.type_is("string"), _text_match(op, doc.text(), value, ctx.dialect))


def _compile_text_column(column: Any, op: str, value: Any, ctx: Context) -> Predicate:
    def compare(op: str, v: Any) -> Predicate:
        return column == v if op == "=" else _ORDERED[op](binary_text(column, ctx.dialect), v)

    if op == "isEmpty":
        return sa.or_(column.is_(None), column == "")
    if op == "in":
        return column.in_(value) if value else sa.false()
    if op == "between":
        return _between(compare, value)
    if op in _ORDERED:
        return compare(op, value)
    return sa.and_(column.is_not(None), _text_match(op, column, value, ctx.dialect))


def _compile_instant(column: Any, op: str, value: Any, ctx: Context) -> Predicate:
    def instant(v: Any) -> datetime:
        parsed = _parse_instant(v)
        assert parsed is not None  # validated
        return parsed

    if op == "isExpired":
        return column < ctx.now
    if op == "between":
        return sa.and_(column >= instant(value["from"]), column <= instant(value["to"]))
    return _ORDERED[op](column, instant(value))


# -- relation rules ---------------------------------------------------------------------------

RELATIONS = Subject(
    "a relation",
    frozenset(["=", "in", "containsAny", "isEmpty"]),
    _is_string,
    _is_string,
    "an entity identifier",
)


def _validate_relation_rule(rule: Rule, ptr: str) -> list[FieldError]:
    errors = _unknown_keys(rule, ptr, {"relation", "operator", "value"})
    if not isinstance(rule["relation"], str) or not PROPERTY_NAME.match(rule["relation"]):
        return [*errors, FieldError(f"{ptr}/relation", "must be a relation name (letters, digits, @ _ = -)")]
    return errors + _check_operator_and_value(rule, ptr, RELATIONS)


def _compile_relation_rule(rule: Rule, ctx: Context) -> Predicate:
    edges = sa.exists().where(
        EntityRelation.source_id == Entity.id, EntityRelation.relation == rule["relation"]
    )
    if rule["operator"] == "isEmpty":
        return sa.not_(edges)
    targets = _as_list(rule["value"])
    return edges.where(EntityRelation.target_identifier.in_(targets)) if targets else sa.false()


# -- relatedTo --------------------------------------------------------------------------------


def _validate_related_to(rule: Rule, ptr: str) -> list[FieldError]:
    errors = _unknown_keys(rule, ptr, {"operator", "blueprint", "value", "direction", "required"})
    if not isinstance(rule.get("blueprint"), str) or not BLUEPRINT_ID.match(rule["blueprint"]):
        errors.append(FieldError(f"{ptr}/blueprint", "must be a blueprint identifier"))
    value = rule.get("value")
    values = value if isinstance(value, list) else [value]
    if not (0 < len(values) <= MAX_VALUES and all(isinstance(v, str) and v for v in values)):
        errors.append(
            FieldError(f"{ptr}/value", f"must be an entity identifier or a list of 1 to {MAX_VALUES}")
        )
    if rule.get("direction", "upstream") not in ("upstream", "downstream"):
        errors.append(FieldError(f"{ptr}/direction", "must be 'upstream' or 'downstream'"))
    if not isinstance(rule.get("required", False), bool):
        errors.append(FieldError(f"{ptr}/required", "must be a boolean"))
    return errors


def _compile_related_to(rule: Rule, ctx: Context) -> Predicate:
    reached = _reachable(
        rule["blueprint"],
        _as_list(rule["value"]),
        rule.get("direction", "upstream"),
        rule.get("required", False),
    )
    return Entity.id.in_(sa.select(reached.c.id))


def _reachable(blueprint: str, identifiers: list[str], direction: str, required: bool) -> Any:
    """A recursive CTE ``(id, depth)`` of the entities reached from the start entities."""
    start, node, edge = aliased(Entity), aliased(Entity), aliased(EntityRelation)
    only_required = edge.required.is_(True) if required else sa.true()
    if direction == "upstream":  # follow edges forwards: source -> target
        base: sa.Select[Any, Any] = (
            sa.select(node.id.label("id"), sa.literal_column("1").label("depth"))
            .join_from(start, edge, edge.source_id == start.id)
            .join(
                node,
                sa.and_(node.blueprint == edge.target_blueprint, node.identifier == edge.target_identifier),
            )
            .where(start.blueprint == blueprint, start.identifier.in_(identifiers), only_required)
        )
        cte = base.cte(recursive=True)
        step = (
            sa.select(node.id, cte.c.depth + sa.literal_column("1"))
            .join_from(cte, edge, edge.source_id == cte.c.id)
            .join(
                node,
                sa.and_(node.blueprint == edge.target_blueprint, node.identifier == edge.target_identifier),
            )
        )
    else:  # follow edges backwards: target -> source
        base = sa.select(edge.source_id.label("id"), sa.literal_column("1").label("depth")).where(
            edge.target_blueprint == blueprint, edge.target_identifier.in_(identifiers), only_required
        )
        cte = base.cte(recursive=True)
        step = (
            sa.select(edge.source_id, cte.c.depth + sa.literal_column("1"))
            .join_from(cte, node, node.id == cte.c.id)
            .join(
                edge,
                sa.and_(edge.target_blueprint == node.blueprint, edge.target_identifier == node.identifier),
            )
        )
    # UNION drops repeated (id, depth) rows, so each level holds each entity once; depth ends cycles.
    return cte.union(step.where(cte.c.depth < MAX_GRAPH_DEPTH, only_required))


register_rule_kind("property", RuleKind(_validate_property_rule, _compile_property_rule))
register_rule_kind("relation", RuleKind(_validate_relation_rule, _compile_relation_rule))
register_rule_kind("relatedTo", RuleKind(_validate_related_to, _compile_related_to))
