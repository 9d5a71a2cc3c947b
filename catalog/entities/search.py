"""Entity search (``POST /v1/entities/search``) and listing, both with keyset (cursor) pagination.

A sort item ``{"property": P, "order": "asc"|"desc"}`` names a meta-property (``$identifier
$title $blueprint $created_at $updated_at``, also accepted without the ``$``) or an entity
property. Every sort becomes a list of never-NULL SQL keys ending in ``Entity.id``, so the
cursor (the last row's keys) resumes exactly after that row, whatever the sort:

- a property sorts numbers first, then strings (by code point), then booleans (false < true),
  then arrays and objects; missing and null values come last in both orders;
- a missing ``$title`` comes last in both orders; ties are broken by ``Entity.id`` ascending.

Where the query keeps to blueprints that declare the sorted property a string or a number
(``catalog.query.compiler.declared_types``), the property sorts on its typed value alone, missing
last. The title and identifier orders are the expressions migration 0019 indexes (per blueprint,
either direction), so a page of a blueprint sorted by them is read from an index in order; an
ascending sort resumes with a row-value comparison that the index serves too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.orm import QueryableAttribute, Session
from sqlalchemy.sql.elements import ColumnElement

from catalog.errors import FieldError, Invalid
from catalog.identity.permissions import Principal, read_scope
from catalog.models import Blueprint, Entity
from catalog.pagination import Page, check_limit, decode_cursor, encode_cursor
from catalog.query.compiler import (
    PROPERTY_NAME,
    binary_text,
    compile_query,
    declared_types,
    json_value,
    query_blueprints,
)
from catalog.scorecards import service as scorecards

MAX_SORT = 5
ENTITIES = cast(sa.Table, Entity.__table__)
META_SORTS = {
    "$identifier": Entity.identifier,
    "$title": Entity.title,
    "$blueprint": Entity.blueprint,
    "$created_at": Entity.created_at,
    "$updated_at": Entity.updated_at,
}
# Constants written into the SQL (not bound), so the sort expressions are exactly the indexed ones.
_ONE, _ZERO = sa.literal_column("1", sa.Integer), sa.literal_column("0", sa.Integer)
_EMPTY = sa.literal_column("''", sa.String)


@dataclass(frozen=True)
class SortKey:
    """One ORDER BY column: never NULL, so keyset comparison is plain ``<``/``>``/``=``."""

    expr: ColumnElement[Any] | QueryableAttribute[Any]
    descending: bool
    kind: str  # how its values travel in a cursor: "int" "number" "text" "time"


def search_entities(
    session: Session,
    *,
    query: dict[str, Any] | None,
    sort: list[dict[str, Any]] | None,
    limit: int,
    cursor: str | None,
    now: datetime,
    who: Principal | None = None,
) -> Page[Entity]:
    """One page of the entities matching ``query`` in ``sort`` order (of those ``who`` may read,
    filtered in SQL before paging, so cursors walk the readable entities only)."""
    stmt, fingerprint, keys = _search_statement(session, [Entity], query, sort, limit, cursor, now, who)
    rows = session.execute(stmt).all()
    page = Page[Entity](items=[row[0] for row in rows[:limit]])
    page.next_cursor = _next_cursor(rows, limit, 1, fingerprint, keys)
    return page


def search_rows(
    session: Session,
    *,
    query: dict[str, Any] | None,
    sort: list[dict[str, Any]] | None,
    limit: int,
    cursor: str | None,
    now: datetime,
    who: Principal | None = None,
) -> Page[RowMapping]:
    """``search_entities`` as plain rows (every column of ``entities``), for the API to present
    without building ORM objects."""
    columns = list(ENTITIES.c)
    stmt, fingerprint, keys = _search_statement(session, columns, query, sort, limit, cursor, now, who)
    rows = session.execute(stmt).all()
    page = Page[RowMapping](items=[row._mapping for row in rows[:limit]])
    page.next_cursor = _next_cursor(rows, limit, len(columns), fingerprint, keys)
    return page


def _search_statement(
    session: Session,
    selected: list[Any],
    query: dict[str, Any] | None,
    sort: list[dict[str, Any]] | None,
    limit: int,
    cursor: str | None,
    now: datetime,
    who: Principal | None,
) -> tuple[sa.Select[Any], str, list[SortKey]]:
    """The page's statement (``limit + 1`` rows of ``selected`` and the sort keys), the sort's
    fingerprint and its keys; every invalid part of the request raises one ``Invalid``."""
    dialect = session.get_bind().dialect.name
    errors: list[FieldError] = []
    types = _declared_types(session, query)
    keys = _collect(errors, lambda: sort_keys(sort, dialect, types)) or []
    condition = (
        sa.true()
        if query is None
        else _collect(errors, lambda: _compile(scorecards.resolve(session, query), dialect, now, types))
    )
    _collect(errors, lambda: check_limit(limit))
    fingerprint = _fingerprint(sort)
    after = None if cursor is None or errors else _collect(errors, lambda: _decode(cursor, keys, fingerprint))
    if errors:
        raise Invalid("invalid search", errors)

    labels = [key.expr.label(f"sort_{i}") for i, key in enumerate(keys)]
    stmt = sa.select(*selected, *labels).where(condition)
    readable = readable_condition(session, who, dialect)
    if readable is not None:
        stmt = stmt.where(readable)
    if after is not None:
        stmt = stmt.where(_after(keys, after))
    stmt = stmt.order_by(
        *[label.desc() if k.descending else label.asc() for label, k in zip(labels, keys, strict=True)]
    )
    return stmt.limit(limit + 1), fingerprint, keys


def _next_cursor(
    rows: Sequence[Any], limit: int, width: int, fingerprint: str, keys: list[SortKey]
) -> str | None:
    """The cursor after the page's last row (its sort keys follow its ``width`` columns)."""
    if len(rows) <= limit:
        return None
    last = rows[limit - 1][width:]
    return encode_cursor([fingerprint, *(_dump(v, k) for v, k in zip(last, keys, strict=True))])


def _declared_types(session: Session, query: Any) -> dict[str, str]:
    """The typed properties of the blueprints ``query`` keeps to (none when it spans all)."""
    names = query_blueprints(query)
    if not names:
        return {}
    schemas = session.scalars(sa.select(Blueprint.schema).where(Blueprint.identifier.in_(sorted(names))))
    return declared_types(schemas)


def readable_condition(
    session: Session, who: Principal | None, dialect: str, blueprints: list[Blueprint] | None = None
) -> ColumnElement[bool] | None:
    """The SQL keeping the entities ``who`` may read; None when nothing needs filtering."""
    if who is None:
        return None
    scope = read_scope(session, who, dialect, blueprints)
    return None if scope is None else scope[1]


def list_entities(
    session: Session, *, blueprint: str, limit: int, cursor: str | None, who: Principal | None = None
) -> Page[Entity]:
    """One page of a blueprint's entities in creation (id) order (those ``who`` may read)."""
    check_limit(limit)
    stmt = sa.select(Entity).where(Entity.blueprint == blueprint).order_by(Entity.id)
    bp = session.get(Blueprint, blueprint)
    readable = readable_condition(session, who, session.get_bind().dialect.name, [bp] if bp else [])
    if readable is not None:
        stmt = stmt.where(readable)
    if cursor is not None:
        key = decode_cursor(cursor)
        if len(key) != 1 or not _is_int(key[0]):
            raise Invalid("invalid cursor", [FieldError("/cursor", "not a cursor returned by this API")])
        stmt = stmt.where(Entity.id > key[0])
    rows = list(session.scalars(stmt.limit(limit + 1)))
    next_cursor = encode_cursor([rows[limit - 1].id]) if len(rows) > limit else None
    return Page(items=rows[:limit], next_cursor=next_cursor)


def sort_keys(
    sort: list[dict[str, Any]] | None, dialect: str, types: dict[str, str] | None = None
) -> list[SortKey]:
    """The keys of ``sort`` (validated), ending with the ``Entity.id`` tie-breaker; ``types``
    (property -> "string" | "number") are the properties known to hold only that type."""
    if sort is None:
        sort = []
    if not isinstance(sort, list) or len(sort) > MAX_SORT:
        raise Invalid("invalid sort", [FieldError("/sort", f"must be a list of at most {MAX_SORT} items")])
    errors = [error for i, item in enumerate(sort) for error in _check_sort_item(item, f"/sort/{i}")]
    if errors:
        raise Invalid("invalid sort", errors)
    keys: list[SortKey] = []
    for item in sort:
        name, descending = _property(item["property"]), item.get("order", "asc") == "desc"
        keys.extend(_item_keys(name, descending, dialect, (types or {}).get(name)))
    return [*keys, SortKey(Entity.id, False, "int")]


def _check_sort_item(item: Any, ptr: str) -> list[FieldError]:
    if not isinstance(item, dict):
        return [FieldError(ptr, 'must be {"property": P, "order": "asc"|"desc"}')]
    errors = [FieldError(f"{ptr}/{key}", "unknown key") for key in item if key not in ("property", "order")]
    name = item.get("property")
    if not isinstance(name, str) or not (name in META_SORTS or PROPERTY_NAME.match(name)):
        errors.append(
            FieldError(f"{ptr}/property", "must be a property name or one of " + " ".join(META_SORTS))
        )
    if item.get("order", "asc") not in ("asc", "desc"):
        errors.append(FieldError(f"{ptr}/order", "must be 'asc' or 'desc'"))
    return errors


def _property(name: str) -> str:
    # Clients write "title" for the title (the README's tour does): bare meta names mean the meta-property.
    return f"${name}" if f"${name}" in META_SORTS else name


def _missing_last(expr: Any) -> ColumnElement[Any]:
    return sa.case((expr.is_(None), _ONE), else_=_ZERO)


def _item_keys(name: str, descending: bool, dialect: str, kind: str | None) -> list[SortKey]:
    if name in ("$identifier", "$blueprint"):
        return [SortKey(binary_text(META_SORTS[name], dialect), descending, "text")]
    if name in ("$created_at", "$updated_at"):
        return [SortKey(META_SORTS[name], descending, "time")]
    if name == "$title":
        title = binary_text(sa.func.coalesce(Entity.title, _EMPTY), dialect)
        return [SortKey(_missing_last(Entity.title), False, "int"), SortKey(title, descending, "text")]
    value = json_value(dialect, Entity.properties, name)
    if kind in ("string", "number"):  # every value is of this kind: missing (or null) last, then it
        typed = value.scalar(kind)
        if kind == "number":
            key = SortKey(sa.func.coalesce(typed, _ZERO), descending, "number")
        else:
            key = SortKey(binary_text(sa.func.coalesce(typed, _EMPTY), dialect), descending, "text")
        return [SortKey(_missing_last(typed), False, "int"), key]
    rank = sa.case(  # missing and null last
        (value.type_is("number"), 0),
        (value.type_is("string"), 1),
        (value.type_is("boolean"), 2),
        (value.type_is("array", "object"), 3),
        else_=4,
    )
    number = sa.case((value.type_is("number"), value.number()), else_=0)
    text = sa.case(
        (value.type_is("string"), value.text()),
        (value.equals(True), "true"),
        (value.type_is("boolean"), "false"),
        else_="",
    )
    return [
        SortKey(rank, False, "int"),
        SortKey(number, descending, "number"),
        SortKey(binary_text(text, dialect), descending, "text"),
    ]


def _after(keys: list[SortKey], values: list[Any]) -> ColumnElement[bool]:
    """Rows strictly after ``values`` in the order of ``keys`` (lexicographic, per-key direction)."""
    if not any(key.descending for key in keys):
        # One row-value comparison: an index in the keys' order serves it as a range.
        bound = [
            v if isinstance(v, ColumnElement) else sa.literal(v, k.expr.type)
            for v, k in zip(values, keys, strict=True)
        ]
        return sa.tuple_(*[key.expr for key in keys]) > sa.tuple_(*bound)
    alternatives = []
    for i, key in enumerate(keys):
        beyond = key.expr < values[i] if key.descending else key.expr > values[i]
        alternatives.append(sa.and_(*[keys[j].expr == values[j] for j in range(i)], beyond))
    return sa.or_(*alternatives)


def _fingerprint(sort: Any) -> str:
    """Ties a cursor to the sort it was made for."""
    normal = [
        [_property(str(i.get("property"))), i.get("order", "asc")] for i in sort or [] if isinstance(i, dict)
    ]
    return hashlib.sha256(json.dumps(normal, default=str).encode()).hexdigest()[:12]


def _dump(value: Any, key: SortKey) -> Any:
    if key.kind == "time":
        return value.isoformat()  # opaque cursor: full precision, not the shown millisecond form
    if isinstance(value, Decimal):
        return str(value)
    return value


def _decode(cursor: str, keys: list[SortKey], fingerprint: str) -> list[Any]:
    raw = decode_cursor(cursor)
    if len(raw) != len(keys) + 1 or raw[0] != fingerprint:
        raise Invalid("invalid cursor", [FieldError("/cursor", "not a cursor of this search and sort")])
    try:
        return [_load(value, key) for value, key in zip(raw[1:], keys, strict=True)]
    except (TypeError, ValueError, InvalidOperation) as exc:
        raise Invalid("invalid cursor", [FieldError("/cursor", "not a cursor returned by this API")]) from exc


def _load(value: Any, key: SortKey) -> Any:
    if key.kind == "int" and _is_int(value):
        return value
    if key.kind == "text" and isinstance(value, str):
        return value
    if key.kind == "time" and isinstance(value, str):
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is not None:
            return moment
    if key.kind == "number" and isinstance(value, str) and Decimal(value).is_finite():
        return sa.literal(Decimal(value), sa.Numeric())
    if key.kind == "number" and (_is_int(value) or isinstance(value, float)):
        return value
    raise ValueError(f"bad {key.kind} key")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _compile(query: Any, dialect: str, now: datetime, types: dict[str, str]) -> ColumnElement[bool]:
    return compile_query(query, dialect=dialect, now=now, types=types)


def _collect(errors: list[FieldError], check: Callable[[], Any]) -> Any:
    """``check()``'s result, or None with its field errors added to ``errors``."""
    try:
        return check()
    except Invalid as exc:
        errors.extend(exc.details)
        return None
