"""Entity search (``POST /v1/entities/search``) and listing, both with keyset (cursor) pagination.

A sort item ``{"property": P, "order": "asc"|"desc"}`` names a meta-property (``$identifier
$title $blueprint $created_at $updated_at``, also accepted without the ``$``) or an entity
property. Every sort becomes a list of never-NULL SQL keys ending in ``Entity.id``, so the
cursor (the last row's keys) resumes exactly after that row, whatever the sort:

- a property sorts numbers first, then strings (by code point), then booleans (false < true),
  then arrays and objects; missing and null values come last in both orders;
- a missing ``$title`` comes last in both orders; ties are broken by ``Entity.id`` ascending.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import QueryableAttribute, Session
from sqlalchemy.sql.elements import ColumnElement

from catalog.errors import FieldError, Invalid
from catalog.identity.permissions import Principal, read_scope
from catalog.models import Blueprint, Entity
from catalog.pagination import Page, check_limit, decode_cursor, encode_cursor
from catalog.query.compiler import PROPERTY_NAME, binary_text, compile_query, json_value
from catalog.scorecards import service as scorecards

MAX_SORT = 5
META_SORTS = {
    "$identifier": Entity.identifier,
    "$title": Entity.title,
    "$blueprint": Entity.blueprint,
    "$created_at": Entity.created_at,
    "$updated_at": Entity.updated_at,
}


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
    dialect = session.get_bind().dialect.name
    errors: list[FieldError] = []
    keys = _collect(errors, lambda: sort_keys(sort, dialect)) or []
    condition = (
        sa.true()
        if query is None
        else _collect(errors, lambda: _compile(scorecards.resolve(session, query), dialect, now))
    )
    _collect(errors, lambda: check_limit(limit))
    fingerprint = _fingerprint(sort)
    after = None if cursor is None or errors else _collect(errors, lambda: _decode(cursor, keys, fingerprint))
    if errors:
        raise Invalid("invalid search", errors)

    labels = [key.expr.label(f"sort_{i}") for i, key in enumerate(keys)]
    stmt = sa.select(Entity, *labels).where(condition)
    readable = readable_condition(session, who, dialect)
    if readable is not None:
        stmt = stmt.where(readable)
    if after is not None:
        stmt = stmt.where(_after(keys, after))
    stmt = stmt.order_by(
        *[label.desc() if k.descending else label.asc() for label, k in zip(labels, keys, strict=True)]
    )
    rows = session.execute(stmt.limit(limit + 1)).all()
    page = Page[Entity](items=[row[0] for row in rows[:limit]])
    if len(rows) > limit:
        page.next_cursor = encode_cursor(
            [fingerprint, *(_dump(v, k) for v, k in zip(rows[limit - 1][1:], keys, strict=True))]
        )
    return page


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


def sort_keys(sort: list[dict[str, Any]] | None, dialect: str) -> list[SortKey]:
    """The keys of ``sort`` (validated), ending with the ``Entity.id`` tie-breaker."""
    if sort is None:
        sort = []
    if not isinstance(sort, list) or len(sort) > MAX_SORT:
        raise Invalid("invalid sort", [FieldError("/sort", f"must be a list of at most {MAX_SORT} items")])
    errors = [error for i, item in enumerate(sort) for error in _check_sort_item(item, f"/sort/{i}")]
    if errors:
        raise Invalid("invalid sort", errors)
    keys: list[SortKey] = []
    for item in sort:
        keys.extend(_item_keys(_property(item["property"]), item.get("order", "asc") == "desc", dialect))
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


def _item_keys(name: str, descending: bool, dialect: str) -> list[SortKey]:
    if name in ("$identifier", "$blueprint"):
        return [SortKey(binary_text(META_SORTS[name], dialect), descending, "text")]
    if name in ("$created_at", "$updated_at"):
        return [SortKey(META_SORTS[name], descending, "time")]
    if name == "$title":
        missing = sa.case((Entity.title.is_(None), 1), else_=0)
        title = binary_text(sa.func.coalesce(Entity.title, ""), dialect)
        return [SortKey(missing, False, "int"), SortKey(title, descending, "text")]
    value = json_value(dialect, Entity.properties, name)
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


def _compile(query: Any, dialect: str, now: datetime) -> ColumnElement[bool]:
    return compile_query(query, dialect=dialect, now=now)


def _collect(errors: list[FieldError], check: Callable[[], Any]) -> Any:
    """``check()``'s result, or None with its field errors added to ``errors``."""
    try:
        return check()
    except Invalid as exc:
        errors.extend(exc.details)
        return None
