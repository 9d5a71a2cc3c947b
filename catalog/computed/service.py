"""Computed properties: mirror and aggregation properties of a blueprint's entities.

A *mirror property* reads a property through a single relation: ``{"path": "system.owner_team"}``
on a service is its system's ``owner_team`` (or a meta-property: ``system.$title``). An
*aggregation property* is a function of the ``target`` entities whose ``relation`` points at the
entity: ``count``, ``sum``, ``min``, ``max``, ``average`` of a number property, or ``ratio`` (the
share of them that match a query), optionally only those in a time ``window`` (on ``$created_at``
or a date-time ``time_property``) and matching a ``query``.

Values are stored in ``Entity.properties`` under their names, so search, scorecard rules and
action conditions read them like any property; clients cannot write them. This module only
*computes*: the write pipeline (``catalog.changes.pipeline``) asks :func:`affected_values` what a batch of
:class:`~catalog.changes.state.EntityChange` affects: when entity X changes, X's own mirrors, the
mirrors of the entities whose relations point at X, and the aggregations of the entities X's
relations pointed at before and point at after. Aggregations are SQL (one grouped statement per
definition). The pipeline writes the values that changed as further changes (audited, emitted
as ``ENTITY_UPDATED``, regraded), which may change further computed properties in turn, up to
its cascade bound. Windows move with time: :func:`window_values` is recomputed before the
scheduled regrade.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from catalog.blueprints.properties import PROPERTY_NAME, TIME_FORMATS
from catalog.changes.state import EntityChange
from catalog.db import CHUNK
from catalog.durations import parse_duration
from catalog.errors import FieldError, Invalid, pointer
from catalog.models import Blueprint, Entity, EntityRelation
from catalog.query.compiler import compile_query, format_instant, json_value, validate_query
from catalog.schemas import AggregationPropertyDef, BlueprintIn, MirrorPropertyDef

log = logging.getLogger("gantry.computed")

FUNCTIONS = ("count", "sum", "min", "max", "average", "ratio")
NUMBER_TYPES = ("number", "integer")
MIRRORED_META = ("$identifier", "$title", "$team", "$created_at", "$updated_at")

# Computed values to store: host blueprint -> entity identifier -> property name -> value
# (None removes the value).
HostValues = dict[str, dict[str, dict[str, Any]]]


@dataclass(frozen=True)
class Mirror:
    host: str  # the blueprint whose entities hold the value
    name: str
    relation: str
    target: str  # the blueprint the relation points at
    field: str  # a property of the target, or a meta-property


@dataclass(frozen=True)
class Aggregation:
    host: str
    name: str
    target: str  # the blueprint aggregated over
    relation: str  # the target's relation that points at the host
    function: str
    property: str | None
    window: timedelta | None
    time_property: str | None
    query: dict[str, Any] | None
    match: dict[str, Any] | None


# ---- definitions -------------------------------------------------------------------------


def names(bp: Blueprint) -> set[str]:
    """The blueprint's computed property names."""
    return set(bp.mirror_properties or {}) | set(bp.aggregation_properties or {})


def stored_values(bp: Blueprint, properties: dict[str, Any] | None) -> dict[str, Any]:
    """The computed values among an entity's stored ``properties``."""
    computed = names(bp)
    return {k: v for k, v in (properties or {}).items() if k in computed}


def mirrors_of(bp: Blueprint) -> list[Mirror]:
    found = []
    for name, definition in (bp.mirror_properties or {}).items():
        relation, _, field = definition["path"].partition(".")
        target = bp.relations[relation]["target"]
        found.append(Mirror(bp.identifier, name, relation, target, field))
    return found


def aggregations_of(bp: Blueprint) -> list[Aggregation]:
    return [
        Aggregation(
            host=bp.identifier,
            name=name,
            target=d["target"],
            relation=d["relation"],
            function=d["function"],
            property=d.get("property"),
            window=parse_duration(d["window"]) if d.get("window") else None,
            time_property=d.get("time_property"),
            query=d.get("query"),
            match=d.get("match"),
        )
        for name, d in (bp.aggregation_properties or {}).items()
    ]


@dataclass
class _Definitions:
    mirrors: list[Mirror]
    aggregations: list[Aggregation]


def _definitions(session: Session) -> _Definitions:
    blueprints = list(session.scalars(select(Blueprint)))
    return _Definitions(
        [m for bp in blueprints for m in mirrors_of(bp)],
        [a for bp in blueprints for a in aggregations_of(bp)],
    )


# ---- checking definitions when a blueprint is saved --------------------------------------


@dataclass(frozen=True)
class _Shape:
    """What a check needs to know of a blueprint: its properties, relations, computed names."""

    properties: dict[str, dict[str, Any]]
    relations: dict[str, dict[str, Any]]
    computed: set[str]


def _shape_of(session: Session, identifier: str, body: BlueprintIn) -> _Shape | None:
    if identifier == body.identifier:
        return _Shape(
            body.schema_.properties,
            {k: v.model_dump() for k, v in body.relations.items()},
            set(body.mirror_properties) | set(body.aggregation_properties),
        )
    bp = session.get(Blueprint, identifier)
    if bp is None:
        return None
    return _Shape(bp.schema.get("properties", {}), bp.relations, names(bp))


def check(session: Session, body: BlueprintIn) -> tuple[list[FieldError], dict[str, Any], dict[str, Any]]:
    """Problems with the body's computed properties (by pointer), and their stored forms (an
    aggregation's omitted ``relation`` resolved)."""
    errors: list[FieldError] = []
    properties = body.schema_.properties
    for kind, defined in (
        ("mirror_properties", body.mirror_properties),
        ("aggregation_properties", body.aggregation_properties),
    ):
        for name in defined:
            where = pointer(kind, name)
            if not PROPERTY_NAME.match(name):
                errors.append(FieldError(where, "names must match ^[A-Za-z_][A-Za-z0-9_]*$"))
            elif name in properties:
                errors.append(FieldError(where, "a computed property cannot share a name with a property"))
            elif name in body.relations:
                errors.append(FieldError(where, "a computed property cannot share a name with a relation"))
            elif kind == "aggregation_properties" and name in body.mirror_properties:
                errors.append(FieldError(where, "is also a mirror property"))
    mirrors = {}
    for name, mirror in body.mirror_properties.items():
        errors += _check_mirror(session, body, name, mirror)
        mirrors[name] = mirror.model_dump(exclude_none=True)
    aggregations = {}
    for name, aggregation in body.aggregation_properties.items():
        problems, relation = _check_aggregation(session, body, name, aggregation)
        errors += problems
        aggregations[name] = {**aggregation.model_dump(exclude_none=True), "relation": relation}
    return errors, mirrors, aggregations


def _check_mirror(
    session: Session, body: BlueprintIn, name: str, mirror: MirrorPropertyDef
) -> list[FieldError]:
    where = pointer("mirror_properties", name, "path")
    relation, dot, field = mirror.path.partition(".")
    if not dot or not field:
        return [FieldError(where, "must be 'relation.property' (or 'relation.$title' and the like)")]
    definition = body.relations.get(relation)
    if definition is None:
        return [FieldError(where, f"'{relation}' is not a relation of the blueprint")]
    if definition.many:
        return [FieldError(where, f"'{relation}' is a many relation: aggregate it instead")]
    target = _shape_of(session, definition.target, body)
    if target is None:
        return []  # the relation's own check names the missing blueprint
    if field.startswith("$"):
        if field not in MIRRORED_META:
            return [FieldError(where, f"'{field}' is not one of {', '.join(MIRRORED_META)}")]
        return []
    if field not in target.properties and field not in target.computed:
        return [FieldError(where, f"'{field}' is not a property of blueprint '{definition.target}'")]
    if definition.target == body.identifier and field == name:
        return [FieldError(where, "a mirror property cannot mirror itself")]
    return []


def _check_aggregation(
    session: Session, body: BlueprintIn, name: str, aggregation: AggregationPropertyDef
) -> tuple[list[FieldError], str | None]:
    where = pointer("aggregation_properties", name)
    target = _shape_of(session, aggregation.target, body)
    if target is None:
        return [FieldError(f"{where}/target", f"blueprint '{aggregation.target}' does not exist")], None
    errors: list[FieldError] = []
    relation = aggregation.relation
    pointing = sorted(n for n, r in target.relations.items() if r.get("target") == body.identifier)
    if relation is None:
        if len(pointing) != 1:
            found = ", ".join(pointing) if pointing else "none does"
            errors.append(
                FieldError(
                    f"{where}/relation",
                    f"name the relation of '{aggregation.target}' that points at '{body.identifier}'"
                    f" ({found})",
                )
            )
        else:
            relation = pointing[0]
    elif relation not in pointing:
        errors.append(
            FieldError(
                f"{where}/relation",
                f"'{relation}' is not a relation of '{aggregation.target}' pointing at '{body.identifier}'",
            )
        )
    if aggregation.function not in FUNCTIONS:
        errors.append(FieldError(f"{where}/function", f"must be one of {', '.join(FUNCTIONS)}"))
    numeric = aggregation.function in ("sum", "min", "max", "average")
    if numeric:
        definition = target.properties.get(aggregation.property or "")
        if aggregation.property is None:
            errors.append(FieldError(f"{where}/property", f"is required by '{aggregation.function}'"))
        elif definition is None or definition.get("type") not in NUMBER_TYPES:
            errors.append(
                FieldError(
                    f"{where}/property",
                    f"must be a number or integer property of '{aggregation.target}'",
                )
            )
    elif aggregation.property is not None:
        errors.append(FieldError(f"{where}/property", f"'{aggregation.function}' takes no property"))
    if aggregation.function == "ratio" and aggregation.match is None:
        errors.append(FieldError(f"{where}/match", "is required by 'ratio': the query the share is of"))
    elif aggregation.function != "ratio" and aggregation.match is not None:
        errors.append(FieldError(f"{where}/match", "applies to 'ratio' only"))
    if aggregation.window is not None:
        try:
            if parse_duration(aggregation.window) <= timedelta(0):
                errors.append(FieldError(f"{where}/window", "must be longer than zero"))
        except ValueError as exc:
            errors.append(FieldError(f"{where}/window", str(exc)))
    if aggregation.time_property is not None:
        definition = target.properties.get(aggregation.time_property)
        if aggregation.window is None:
            errors.append(FieldError(f"{where}/time_property", "applies with a window only"))
        elif definition is None or definition.get("format") not in TIME_FORMATS:
            errors.append(
                FieldError(
                    f"{where}/time_property", f"must be a date-time property of '{aggregation.target}'"
                )
            )
    for key in ("query", "match"):
        query = getattr(aggregation, key)
        if query is not None:
            errors += _query_problems(query, f"{where}/{key}")
    return errors, relation


def _query_problems(query: dict[str, Any], where: str) -> list[FieldError]:
    if _mentions_scorecard(query):
        return [FieldError(where, "computed properties cannot depend on scorecards")]
    try:
        validate_query(query, pointer=where)
    except Invalid as exc:
        return list(exc.details)
    return []


def _mentions_scorecard(query: Any) -> bool:
    if isinstance(query, dict):
        return "scorecard" in query or any(_mentions_scorecard(v) for v in query.values())
    if isinstance(query, list):
        return any(_mentions_scorecard(v) for v in query)
    return False


def dependents_problems(
    session: Session, identifier: str, schema: dict[str, Any], relations: dict[str, Any], computed: set[str]
) -> list[FieldError]:
    """What a new shape of blueprint ``identifier`` would break in other blueprints' computed
    properties (a 409: change those first)."""
    properties = schema.get("properties", {})
    errors = []
    for other in session.scalars(select(Blueprint).where(Blueprint.identifier != identifier)):
        for mirror in mirrors_of(other):
            if mirror.target != identifier or mirror.field.startswith("$"):
                continue
            if mirror.field not in properties and mirror.field not in computed:
                errors.append(
                    FieldError(
                        pointer("schema", "properties", mirror.field),
                        f"blueprint '{other.identifier}' mirrors it in '{mirror.name}'",
                    )
                )
        for agg in aggregations_of(other):
            if agg.target != identifier:
                continue
            used_by = f"blueprint '{other.identifier}' aggregates it in '{agg.name}'"
            if (relations.get(agg.relation) or {}).get("target") != other.identifier:
                errors.append(FieldError(pointer("relations", agg.relation), used_by))
            number = properties.get(agg.property or "") or {}
            if agg.property and number.get("type") not in NUMBER_TYPES:
                errors.append(FieldError(pointer("schema", "properties", agg.property), used_by))
            time = properties.get(agg.time_property or "") or {}
            if agg.time_property and time.get("format") not in TIME_FORMATS:
                errors.append(FieldError(pointer("schema", "properties", agg.time_property), used_by))
    return errors


def blueprints_depending_on(session: Session, identifier: str) -> list[tuple[Blueprint, str]]:
    """(blueprint, computed property) pairs of other blueprints that aggregate ``identifier``."""
    return [
        (other, agg.name)
        for other in session.scalars(select(Blueprint).where(Blueprint.identifier != identifier))
        for agg in aggregations_of(other)
        if agg.target == identifier
    ]


def forget_blueprint(session: Session, identifier: str) -> HostValues:
    """Blueprint ``identifier`` is being deleted: drop the computed properties of other
    blueprints that read it (mirrors through relations to it, aggregations of it); returns the
    values to remove from their entities."""
    stripped: HostValues = {}
    for other in list(session.scalars(select(Blueprint).where(Blueprint.identifier != identifier))):
        mirrors = {m.name for m in mirrors_of(other) if m.target == identifier}
        aggregations = {a.name for a in aggregations_of(other) if a.target == identifier}
        if not mirrors and not aggregations:
            continue
        other.mirror_properties = {k: v for k, v in other.mirror_properties.items() if k not in mirrors}
        other.aggregation_properties = {
            k: v for k, v in other.aggregation_properties.items() if k not in aggregations
        }
        session.flush()
        stripped[other.identifier] = _cleared(session, other.identifier, mirrors | aggregations)
    return stripped


def _cleared(session: Session, blueprint: str, removed: set[str]) -> dict[str, dict[str, Any]]:
    identifiers = session.scalars(select(Entity.identifier).where(Entity.blueprint == blueprint))
    return {i: dict.fromkeys(removed) for i in identifiers}


# ---- computing -----------------------------------------------------------------------------


def _number(value: Any) -> int | float | None:
    """SQL results as JSON numbers: integral values as ints (both dialects agree), else floats."""
    if value is None:
        return None
    number = float(value) if isinstance(value, Decimal) else value
    if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
        return None
    if float(number).is_integer():
        return int(number)
    return round(float(number), 6)


def _mirror_value(mirror: Mirror, row: Any) -> Any:
    if row.target_identifier is None:
        return None
    field = mirror.field
    if field == "$identifier":
        return row.target_identifier
    if field == "$title":
        return row.title
    if field == "$team":
        return list(row.team or []) or None
    if field in ("$created_at", "$updated_at"):
        moment = row.created_at if field == "$created_at" else row.updated_at
        return format_instant(moment) if moment else None
    return (row.properties or {}).get(field)


def compute_mirrors(session: Session, mirror: Mirror, hosts: list[str] | None) -> dict[str, Any]:
    """``mirror`` for each host entity (identifiers; None: every entity of the host blueprint)."""
    _lock(session, mirror.host, hosts)
    host, target, edge = aliased(Entity), aliased(Entity), aliased(EntityRelation)
    base = (
        select(
            host.identifier.label("host"),
            target.identifier.label("target_identifier"),
            target.title,
            target.team,
            target.properties,
            target.created_at,
            target.updated_at,
        )
        .select_from(host)
        .outerjoin(edge, sa.and_(edge.source_id == host.id, edge.relation == mirror.relation))
        .outerjoin(
            target,
            sa.and_(target.blueprint == edge.target_blueprint, target.identifier == edge.target_identifier),
        )
        .where(host.blueprint == mirror.host)
    )
    values: dict[str, Any] = {}
    for stmt in _chunked(base, host.identifier, hosts):
        for row in session.execute(stmt):
            values[row.host] = _mirror_value(mirror, row)
    return values


def compute_aggregations(
    session: Session, agg: Aggregation, hosts: list[str] | None, now: datetime
) -> dict[str, Any]:
    """``agg`` for each host entity, in one grouped statement (per chunk of hosts)."""
    dialect = session.get_bind().dialect.name
    _lock(session, agg.host, hosts)
    edge = aliased(EntityRelation)
    base = (
        select(edge.target_identifier, _aggregate(agg, dialect, now))
        .select_from(Entity)
        .join(edge, edge.source_id == Entity.id)
        .where(
            Entity.blueprint == agg.target,
            edge.relation == agg.relation,
            edge.target_blueprint == agg.host,
            _filter(agg, dialect, now),
        )
        .group_by(edge.target_identifier)
    )
    empty = 0 if agg.function in ("count", "sum") else None
    everyone = (
        hosts
        if hosts is not None
        else list(session.scalars(select(Entity.identifier).where(Entity.blueprint == agg.host)))
    )
    values: dict[str, Any] = dict.fromkeys(everyone, empty)
    for stmt in _chunked(base, edge.target_identifier, hosts):
        for identifier, value in session.execute(stmt):
            if identifier in values:
                values[identifier] = empty if value is None else _number(value)
    return values


def _aggregate(agg: Aggregation, dialect: str, now: datetime) -> sa.ColumnElement[Any]:
    if agg.function == "count":
        return sa.func.count()
    if agg.function == "ratio":
        assert agg.match is not None
        hit = compile_query(agg.match, dialect=dialect, now=now, pointer="/match")
        return sa.func.avg(sa.case((hit, 1.0), else_=0.0))
    assert agg.property is not None
    value = json_value(dialect, Entity.properties, agg.property)
    number = sa.case((value.type_is("number"), value.number()))
    sql_name = {"sum": "sum", "min": "min", "max": "max", "average": "avg"}[agg.function]
    return cast(sa.ColumnElement[Any], getattr(sa.func, sql_name)(number))


def _filter(agg: Aggregation, dialect: str, now: datetime) -> sa.ColumnElement[bool]:
    """The window and the query, compiled by the one query compiler."""
    rules: list[dict[str, Any]] = []
    if agg.window is not None:
        # stored times have milliseconds: round the end up so what was written just now is in
        end = now + timedelta(microseconds=999)
        span = {"from": format_instant(now - agg.window), "to": format_instant(end)}
        rules.append({"property": agg.time_property or "$created_at", "operator": "between", "value": span})
    if agg.query is not None:
        rules.append(agg.query)
    return compile_query({"combinator": "and", "rules": rules}, dialect=dialect, now=now, pointer="/query")


def _lock(session: Session, blueprint: str, hosts: list[str] | None) -> None:
    """Lock the host rows before reading what their values derive from. On PostgreSQL (read
    committed) a concurrent write of the same hosts then waits for this transaction, and its own
    reads, which come after the lock, see what this one committed: neither overwrites the other
    with a value computed from a stale snapshot. (SQLite has one writer at a time.)"""
    if hosts is None or session.get_bind().dialect.name != "postgresql":
        return
    ordered = sorted(hosts)
    for start in range(0, len(ordered), CHUNK):
        stmt = (
            select(Entity.id)
            .where(Entity.blueprint == blueprint, Entity.identifier.in_(ordered[start : start + CHUNK]))
            .order_by(Entity.id)
            .with_for_update()
        )
        session.execute(stmt).all()


def _chunked(stmt: Any, column: Any, keys: list[str] | None) -> Iterable[Any]:
    if keys is None:
        yield stmt
        return
    for start in range(0, len(keys), CHUNK):
        yield stmt.where(column.in_(keys[start : start + CHUNK]))


# ---- keeping values current -----------------------------------------------------------------


def _related(state: dict[str, Any] | None, relation: str) -> set[str]:
    value = (state or {}).get("relations", {}).get(relation)
    if isinstance(value, list):
        return {v for v in value if isinstance(v, str)}
    return {value} if isinstance(value, str) and value else set()


def _field_changed(field: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> bool:
    if before is None or after is None or field == "$updated_at":
        return True
    if field in ("$title", "$team"):
        key = field[1:]
        return before.get(key) != after.get(key)
    if field.startswith("$"):
        return False
    return (before.get("properties") or {}).get(field) != (after.get("properties") or {}).get(field)


def _aggregation_touched(
    agg: Aggregation, before: dict[str, Any] | None, after: dict[str, Any] | None
) -> bool:
    if before is None or after is None or agg.query is not None or agg.match is not None:
        return True
    if _related(before, agg.relation) != _related(after, agg.relation):
        return True
    return any(
        _field_changed(prop, before, after) for prop in (agg.property, agg.time_property) if prop is not None
    )


def affected_values(session: Session, changes: list[EntityChange], now: datetime) -> HostValues:
    """The computed values (of any blueprint's entities) that ``changes`` may have moved,
    recomputed; the caller stores those that differ."""
    definitions = _definitions(session)
    if not definitions.mirrors and not definitions.aggregations:
        return {}
    wanted: HostValues = {}
    for blueprint, group in _by_blueprint(changes).items():
        for mirror in definitions.mirrors:
            _want(wanted, mirror.host, mirror.name, _mirrors_moved(session, mirror, blueprint, group))
        for agg in definitions.aggregations:
            _want(wanted, agg.host, agg.name, _aggregations_moved(session, agg, blueprint, group, now))
    return wanted


def _by_blueprint(changes: list[EntityChange]) -> dict[str, list[EntityChange]]:
    groups: dict[str, list[EntityChange]] = {}
    for change in changes:
        groups.setdefault(change.blueprint, []).append(change)
    return groups


def _want(wanted: HostValues, host: str, name: str, values: dict[str, Any]) -> None:
    for identifier, value in values.items():
        wanted.setdefault(host, {}).setdefault(identifier, {})[name] = value


def _mirrors_moved(
    session: Session, mirror: Mirror, blueprint: str, changes: list[EntityChange]
) -> dict[str, Any]:
    """``mirror`` of (a) the changed entities whose relation moved, (b) the entities pointing at
    changed ones whose mirrored field changed (or at deleted ones: their value is dangling)."""
    values: dict[str, Any] = {}
    if mirror.host == blueprint:
        moved = [
            c.identifier
            for c in changes
            if c.after is not None
            and (
                c.before is None or _related(c.before, mirror.relation) != _related(c.after, mirror.relation)
            )
        ]
        if moved:
            values.update(compute_mirrors(session, mirror, moved))
    if mirror.target == blueprint:
        touched = [c.identifier for c in changes if _field_changed(mirror.field, c.before, c.after)]
        sources = _pointing_at(session, mirror, touched)
        if any(c.after is None for c in changes):
            sources |= _dangling(session, mirror)
        if sources:
            values.update(compute_mirrors(session, mirror, sorted(sources)))
    return values


def _aggregations_moved(
    session: Session, agg: Aggregation, blueprint: str, changes: list[EntityChange], now: datetime
) -> dict[str, Any]:
    """``agg`` of the created entities of its host (a new entity's own: 0 for a count, say) and
    (c) of the entities the changed targets pointed at before and point at after."""
    values: dict[str, Any] = {}
    created = [c.identifier for c in changes if c.before is None and c.after is not None]
    if agg.host == blueprint and created:
        values.update(compute_aggregations(session, agg, created, now))
    if agg.target != blueprint:
        return values
    hosts: set[str] = set()
    for change in changes:
        if _aggregation_touched(agg, change.before, change.after):
            hosts |= _related(change.before, agg.relation) | _related(change.after, agg.relation)
    if hosts:
        values.update(compute_aggregations(session, agg, sorted(hosts), now))
    return values


def _pointing_at(session: Session, mirror: Mirror, targets: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(targets), CHUNK):
        stmt = (
            select(Entity.identifier)
            .join(EntityRelation, EntityRelation.source_id == Entity.id)
            .where(
                Entity.blueprint == mirror.host,
                EntityRelation.relation == mirror.relation,
                EntityRelation.target_blueprint == mirror.target,
                EntityRelation.target_identifier.in_(targets[start : start + CHUNK]),
            )
        )
        found.update(session.scalars(stmt))
    return found


def _dangling(session: Session, mirror: Mirror) -> set[str]:
    """Entities holding a mirror value whose relation no longer points anywhere (its target was
    deleted: the delete removed the edge before this runs)."""
    dialect = session.get_bind().dialect.name
    has_edge = sa.exists().where(
        EntityRelation.source_id == Entity.id, EntityRelation.relation == mirror.relation
    )
    stmt = select(Entity.identifier).where(
        Entity.blueprint == mirror.host,
        sa.not_(json_value(dialect, Entity.properties, mirror.name).is_empty()),
        sa.not_(has_edge),
    )
    return set(session.scalars(stmt))


def blueprint_values(session: Session, bp: Blueprint, removed: set[str], now: datetime) -> HostValues:
    """Every computed property of ``bp`` for all its entities (after the definitions changed),
    and None for the ``removed`` ones (their values are dropped)."""
    values: dict[str, dict[str, Any]] = _cleared(session, bp.identifier, removed)
    for mirror in mirrors_of(bp):
        for identifier, value in compute_mirrors(session, mirror, None).items():
            values.setdefault(identifier, {})[mirror.name] = value
    for agg in aggregations_of(bp):
        for identifier, value in compute_aggregations(session, agg, None, now).items():
            values.setdefault(identifier, {})[agg.name] = value
    return {bp.identifier: values}


def window_values(session: Session, now: datetime) -> Iterator[HostValues]:
    """Every aggregation with a time window, recomputed (windows move with time, not only with
    writes). Lazily, one definition at a time: the caller stores each before the next is
    computed, so a chain of aggregations reads the values stored before it."""
    for agg in _definitions(session).aggregations:
        if agg.window is not None:
            values = compute_aggregations(session, agg, None, now)
            yield {agg.host: {i: {agg.name: v} for i, v in values.items()}}
