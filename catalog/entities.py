"""Entity service: validated, audited writes of catalog entities, one at a time or in bulk.

Every write goes through :func:`write_entities`, which works on a batch (a single create is a
batch of one): it validates each item against the blueprint's cached validator, checks the teams,
users and relation targets the batch names with one query each, then writes the valid items with
executemany statements. Invalid items are reported and never half-written.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.orm import Session

from catalog import audit, computed, events, scorecards, timers
from catalog.audit import Actor
from catalog.blueprints import get_blueprint, property_validator
from catalog.db import utcnow
from catalog.entity_permissions import (
    delete_denial,
    field_denial,
    forbidden,
    may_read,
    stub_denial,
    write_denial,
)
from catalog.errors import CatalogError, Conflict, FieldError, Forbidden, Invalid, NotFound, pointer
from catalog.identity import missing_teams, missing_users
from catalog.models import Blueprint, Entity, EntityRelation
from catalog.permissions import Principal, is_moderator
from catalog.schemas import (
    COMPUTED_ENTITY_FIELDS,
    DOT_SEGMENT_MESSAGE,
    ENTITY_ID_PATTERN,
    EntityPatch,
)
from catalog.schemas import ENTITY_ID as ENTITY_ID_CHARS
from catalog.timefmt import format_optional

ENTITY_ID = re.compile(ENTITY_ID_PATTERN)
ENTITY_FIELDS = {"identifier", "title", "team", "properties", "relations", "blueprint"}
# Core statements on the tables: executemany without the ORM's per-row bookkeeping.
ENTITIES = cast(Table, Entity.__table__)
COLUMNS = ENTITIES.c


class Mode(enum.Enum):
    CREATE = "create"  # 409 if it exists
    UPSERT = "upsert"  # create or replace
    MERGE = "merge"  # create, or merge properties and relations into the existing entity
    REPLACE = "replace"  # must exist; replace


@dataclass
class WriteResult:
    identifier: str
    status: str  # created | updated | unchanged | failed
    entity: dict[str, Any] | None = None
    error: CatalogError | None = None


@dataclass
class _Item:
    index: int
    identifier: str
    title: str | None = None
    team: list[str] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    relations: dict[str, Any] = field(default_factory=dict)
    existing: dict[str, Any] | None = None
    errors: list[FieldError] = field(default_factory=list)
    # A 403 or 404 for this item: reported instead of a 422 (``errors`` then holds its details).
    denial: CatalogError | None = None

    def deny(self, error: CatalogError) -> None:
        self.denial = error
        self.errors += error.details or [FieldError("/", error.message)]


def entity_view(row: Any, scorecards: dict[str, Any] | None = None) -> dict[str, Any]:
    """The API form of an entity row (an ORM ``Entity`` or a mapping of its columns)."""
    get = row.get if isinstance(row, dict) else lambda k: getattr(row, k)
    created_at: datetime | None = get("created_at")
    updated_at: datetime | None = get("updated_at")
    return {
        "identifier": get("identifier"),
        "title": get("title"),
        "blueprint": get("blueprint"),
        "team": get("team") or [],
        "properties": get("properties") or {},
        "relations": get("relations") or {},
        "scorecards": scorecards or {},
        "created_at": format_optional(created_at),
        "updated_at": format_optional(updated_at),
        "created_by": get("created_by"),
        "updated_by": get("updated_by"),
    }


def get_entity(session: Session, blueprint: str, identifier: str, who: Principal | None = None) -> Entity:
    """The entity; 404 when it does not exist or ``who`` (when given) may not read it."""
    entity = session.scalar(
        select(Entity).where(Entity.blueprint == blueprint, Entity.identifier == identifier)
    )
    if entity is None:
        get_blueprint(session, blueprint)
        raise NotFound(f"entity '{identifier}' of blueprint '{blueprint}' not found")
    if who is not None and not may_read(get_blueprint(session, blueprint), who, entity.team or []):
        raise NotFound(f"entity '{identifier}' of blueprint '{blueprint}' not found")
    return entity


# ---- parsing -----------------------------------------------------------------------------


def _identifier_problem(identifier: Any) -> str:
    if isinstance(identifier, str) and re.match(ENTITY_ID_CHARS, identifier):
        return DOT_SEGMENT_MESSAGE
    return f"must match {ENTITY_ID_CHARS}"


def _parse(index: int, raw: Any, bp: Blueprint, base: str) -> _Item:
    if not isinstance(raw, dict):
        return _Item(index, "", errors=[FieldError(base or "/", "an entity must be an object")])
    identifier = raw.get("identifier")
    item = _Item(index, identifier if isinstance(identifier, str) else "")
    item.errors += [
        FieldError(f"{base}/{name}", "is computed by the catalog and cannot be set")
        for name in COMPUTED_ENTITY_FIELDS
        if name in raw
    ]
    item.errors += [
        FieldError(base + pointer(name), "is not a field of an entity")
        for name in raw
        if name not in ENTITY_FIELDS and name not in COMPUTED_ENTITY_FIELDS
    ]
    if raw.get("blueprint") not in (None, bp.identifier):
        item.errors.append(
            FieldError(f"{base}/blueprint", f"must be '{bp.identifier}' (the blueprint in the path)")
        )
    if not isinstance(identifier, str) or not ENTITY_ID.match(identifier):
        item.errors.append(FieldError(f"{base}/identifier", _identifier_problem(identifier)))
    title = raw.get("title")
    if title is not None and (not isinstance(title, str) or len(title) > 512):
        item.errors.append(FieldError(f"{base}/title", "must be a string of at most 512 characters"))
    team = raw.get("team")
    team_list = [team] if isinstance(team, str) else team if team is not None else []
    if not isinstance(team_list, list) or not all(isinstance(t, str) for t in team_list):
        item.errors.append(FieldError(f"{base}/team", "must be a team identifier or a list of them"))
    properties = raw.get("properties", {})
    if not isinstance(properties, dict):
        item.errors.append(FieldError(f"{base}/properties", "must be an object"))
    else:
        item.errors += _computed_written(bp, properties, f"{base}/properties")
    relations = raw.get("relations", {})
    if not isinstance(relations, dict) or not all(
        v is None or isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
        for v in relations.values()
    ):
        item.errors.append(FieldError(f"{base}/relations", "must map relation names to identifiers"))
    if item.errors:
        return item
    item.title, item.team, item.properties, item.relations = (
        title,
        list(team_list),
        properties,
        dict(relations),
    )
    return item


def _computed_written(bp: Blueprint, properties: dict[str, Any], base: str) -> list[FieldError]:
    return [
        FieldError(base + pointer(name), "is a computed property: the catalog sets it")
        for name in sorted(computed.names(bp) & set(properties))
    ]


def _computed_names(bp: Blueprint) -> set[str]:
    return computed.names(bp)


def _merge_into(item: _Item, existing: dict[str, Any]) -> None:
    """Merge mode: the given properties and relations win; the rest is kept."""
    item.properties = {**existing["properties"], **item.properties}
    item.relations = {**existing["relations"], **item.relations}
    item.title = item.title if item.title is not None else existing["title"]
    item.team = item.team or list(existing["team"] or [])


def _check_relations(item: _Item, bp: Blueprint, base: str) -> dict[str, list[str]]:
    """Shape-check the item's relations; return the targets it names, per relation."""
    targets: dict[str, list[str]] = {}
    for name, value in item.relations.items():
        where = f"{base}/relations" + pointer(name)
        definition = bp.relations.get(name)
        if definition is None:
            item.errors.append(FieldError(where, "is not a relation of the blueprint"))
            continue
        if definition.get("many"):
            if value is not None and not isinstance(value, list):
                item.errors.append(FieldError(where, "is a many relation: give a list of identifiers"))
                continue
            targets[name] = list(dict.fromkeys(value or []))
        else:
            if isinstance(value, list):
                item.errors.append(FieldError(where, "is a single relation: give one identifier"))
                continue
            targets[name] = [value] if value else []
        # Targets may become entities (create_missing_related_entities): the identifier rule holds.
        item.errors += [
            FieldError(where, f"{target!r}: {_identifier_problem(target)}")
            for target in targets.get(name, [])
            if not isinstance(target, str) or not ENTITY_ID.match(target)
        ]
    for name, definition in bp.relations.items():
        if definition.get("required") and not targets.get(name):
            item.errors.append(FieldError(f"{base}/relations" + pointer(name), "is required"))
    return targets


# ---- the write core ----------------------------------------------------------------------


def write_entities(
    session: Session,
    blueprint: str,
    raw_items: list[Any],
    *,
    mode: Mode,
    actor: Actor,
    create_missing_related: bool = False,
    bulk: bool = False,
    who: Principal | None = None,
) -> list[WriteResult]:
    """Validate and write a batch of entities; one result per item, in order. With ``who``, each
    item must pass the blueprint's permissions (a 403 or 404 for that item alone); without it
    the caller is the catalog itself (extensions, internal writes) and already decided."""
    bp = get_blueprint(session, blueprint)
    validator = property_validator(bp)
    base_of = (lambda i: f"/entities/{i}") if bulk else (lambda i: "")
    items = [_parse(i, raw, bp, base_of(i)) for i, raw in enumerate(raw_items)]

    seen: set[str] = set()
    for item in items:
        if item.identifier and item.identifier in seen:
            item.errors.append(
                FieldError(f"{base_of(item.index)}/identifier", "appears twice in this request")
            )
        seen.add(item.identifier)

    existing = _load_existing(session, blueprint, [i.identifier for i in items if not i.errors])
    for item in items:
        if item.errors:
            continue
        item.existing = existing.get(item.identifier)
        if item.existing is not None and mode is Mode.CREATE:
            item.errors.append(
                FieldError(f"{base_of(item.index)}/identifier", "an entity with this identifier exists")
            )
        elif item.existing is None and mode is Mode.REPLACE:
            item.errors.append(
                FieldError(f"{base_of(item.index)}/identifier", "no entity with this identifier exists")
            )
        elif item.existing is not None and mode is Mode.MERGE:
            _merge_into(item, item.existing)
        if who is not None and not item.errors:
            existing_team = None if item.existing is None else list(item.existing["team"] or [])
            denial = write_denial(bp, who, item.identifier, existing_team, item.team, base_of(item.index))
            if denial is not None:
                item.deny(denial)

    targets: dict[int, dict[str, list[str]]] = {}
    references: dict[str, set[str]] = {"user": set(), "team": set()}
    for item in items:
        if item.errors:
            continue
        base = base_of(item.index)
        # Computed values are kept as stored (merge mode brings them in too); clients never set them.
        kept = computed.stored_values(bp, (item.existing or {}).get("properties"))
        item.properties = {k: v for k, v in item.properties.items() if k not in computed.names(bp)}
        item.errors += validator.validate(item.properties, f"{base}/properties")
        targets[item.index] = _check_relations(item, bp, base)
        if not item.errors:
            item.properties = {**validator.normalize(item.properties), **kept}
            if bp.timers:
                created_at = (item.existing or {}).get("created_at") or utcnow()
                item.errors += timers.check_max_ttl(bp, item.properties, created_at, base)
            found = validator.referenced(item.properties)
            references["user"] |= found["user"]
            references["team"] |= found["team"] | set(item.team)
    if who is not None and not is_moderator(bp, who):
        _check_field_permissions(session, bp, who, [i for i in items if not i.errors], base_of)

    _check_references(session, bp, items, targets, references, base_of, create_missing_related, actor, who)

    results = _write(session, bp, items, targets, actor, views=not bulk)
    by_index = dict(results)
    for item in items:
        if item.errors:
            error = item.denial or Invalid("invalid entity", item.errors)
            by_index[item.index] = WriteResult(item.identifier, "failed", error=error)
    return [by_index[i] for i in range(len(items))]


def _check_field_permissions(
    session: Session, bp: Blueprint, who: Principal, items: list[_Item], base_of: Any
) -> None:
    """Updates by callers who are not moderators: the narrowing field policies, and no timer
    pushed past what its ``max_extension`` allows (the extend endpoint's limit)."""
    updates = [i for i in items if i.existing is not None]
    writes = [
        (i.identifier, i.existing["properties"] if i.existing else {}, i.properties, base_of(i.index))
        for i in updates
    ]
    late = timers.extension_problems(session, bp, writes) if bp.timers else {}
    for item in updates:
        old = item.existing or {}
        owners = list(old.get("team") or [])
        properties = _changed(old.get("properties") or {}, item.properties)
        relations = _changed(old.get("relations") or {}, item.relations)
        base = base_of(item.index)
        denial = field_denial(bp, who, item.identifier, owners, properties, relations, base)
        if denial is None and late.get(item.identifier):
            message = f"only moderators and admins may push the timers of '{item.identifier}' further"
            denial = forbidden(message, late[item.identifier])
        if denial is not None:
            item.deny(denial)


def _changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


def _load_existing(session: Session, blueprint: str, identifiers: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(identifiers), 500):
        chunk = identifiers[start : start + 500]
        stmt = select(Entity.__table__).where(COLUMNS.blueprint == blueprint, COLUMNS.identifier.in_(chunk))
        for row in session.execute(stmt).mappings():
            found[row["identifier"]] = dict(row)
    return found


def _check_references(
    session: Session,
    bp: Blueprint,
    items: list[_Item],
    targets: dict[int, dict[str, list[str]]],
    references: dict[str, set[str]],
    base_of: Any,
    create_missing_related: bool,
    actor: Actor,
    who: Principal | None,
) -> None:
    """One query per kind of reference for the whole batch: teams, users, relation targets."""
    reference_kinds = property_validator(bp).references
    unknown_teams = missing_teams(session, references["team"])
    unknown_users = missing_users(session, references["user"])
    candidates = [i for i in items if not i.errors]
    for item in candidates:
        base = base_of(item.index)
        item.errors += [
            FieldError(f"{base}/team/{n}", f"team '{t}' does not exist")
            for n, t in enumerate(item.team)
            if t in unknown_teams
        ]
        for name, kind in reference_kinds.items():
            value = item.properties.get(name)
            unknown = unknown_users if kind == "user" else unknown_teams
            for v in value if isinstance(value, list) else [value]:
                if v in unknown:
                    item.errors.append(
                        FieldError(f"{base}/properties" + pointer(name), f"{kind} '{v}' does not exist")
                    )
    # Relation targets last: an item of this batch that failed is no target.
    stubs = _check_relation_targets(session, bp, candidates, targets, base_of, create_missing_related, who)
    _create_stubs(session, stubs, actor)


def _check_relation_targets(
    session: Session,
    bp: Blueprint,
    items: list[_Item],
    targets: dict[int, dict[str, list[str]]],
    base_of: Any,
    create_missing_related: bool,
    who: Principal | None,
) -> dict[str, set[str]]:
    """Fail items naming absent targets, or (``create_missing_related``) return the bare
    entities to create for the items that stay valid, per target blueprint."""
    wanted: dict[str, set[str]] = {}
    for item in items:
        for name, ids in targets.get(item.index, {}).items():
            wanted.setdefault(bp.relations[name]["target"], set()).update(ids)
    batch_ids = {i.identifier for i in items if not i.errors}
    missing: dict[str, set[str]] = {}
    for target_bp, wanted_ids in wanted.items():
        present = _load_existing_ids(session, target_bp, wanted_ids)
        missing[target_bp] = wanted_ids - present - (batch_ids if target_bp == bp.identifier else set())
    refused = {
        t
        for t, ids in missing.items()
        if ids and who is not None and stub_denial(get_blueprint(session, t), who)
    }
    stubs: dict[str, set[str]] = {}
    for item in items:
        base = base_of(item.index)
        needed: dict[str, set[str]] = {}
        denied: list[FieldError] = []
        for name, ids in targets.get(item.index, {}).items():
            target_bp = bp.relations[name]["target"]
            absent = [t for t in ids if t in missing.get(target_bp, set())]
            if not absent:
                continue
            where = f"{base}/relations" + pointer(name)
            names = ", ".join(repr(a) for a in absent)
            if not create_missing_related:
                item.errors.append(
                    FieldError(
                        where,
                        f"no '{target_bp}' entity {names}"
                        " (pass create_missing_related_entities=true to create it)",
                    )
                )
            elif target_bp in refused:
                denied.append(FieldError(where, f"you may not create '{target_bp}' entities {names}"))
            else:
                needed.setdefault(target_bp, set()).update(absent)
        if denied:
            item.deny(forbidden("you may not create the missing related entities", denied))
        elif not item.errors:
            for target_bp, absent_ids in needed.items():
                stubs.setdefault(target_bp, set()).update(absent_ids)
    return stubs


def _load_existing_ids(session: Session, blueprint: str, ids: set[str]) -> set[str]:
    found: set[str] = set()
    listed = list(ids)
    for start in range(0, len(listed), 500):
        stmt = select(Entity.identifier).where(
            Entity.blueprint == blueprint, Entity.identifier.in_(listed[start : start + 500])
        )
        found.update(session.scalars(stmt))
    return found


def _create_stubs(session: Session, missing: dict[str, set[str]], actor: Actor) -> None:
    now = utcnow()
    for target_bp, ids in missing.items():
        if not ids:
            continue
        get_blueprint(session, target_bp)
        rows = [_new_row(target_bp, i, None, [], {}, {}, actor, now) for i in sorted(ids)]
        session.execute(insert(Entity), rows)
        audit.record_many(
            session,
            [
                audit.audit_row(
                    actor, "CREATE", "entity", r["identifier"], blueprint=target_bp, after=entity_view(r)
                )
                for r in rows
            ],
        )


def _new_row(
    blueprint: str,
    identifier: str,
    title: str | None,
    team: list[str],
    properties: dict[str, Any],
    relations: dict[str, Any],
    actor: Actor,
    now: datetime,
) -> dict[str, Any]:
    return {
        "blueprint": blueprint,
        "identifier": identifier,
        "title": title,
        "team": team,
        "properties": properties,
        "relations": relations,
        "created_at": now,
        "updated_at": now,
        "created_by": actor.user,
        "updated_by": actor.user,
    }


def _write(
    session: Session,
    bp: Blueprint,
    items: list[_Item],
    targets: dict[int, dict[str, list[str]]],
    actor: Actor,
    views: bool,
) -> list[tuple[int, WriteResult]]:
    """Write the valid items. ``views``: also build each entity's API form (single writes)."""
    now = utcnow()
    valid = [i for i in items if not i.errors]
    creates = [i for i in valid if i.existing is None]
    updates = [i for i in valid if i.existing is not None]
    results: list[tuple[int, WriteResult]] = []
    audit_rows: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []

    rows = [
        _new_row(bp.identifier, i.identifier, i.title, i.team, i.properties, i.relations, actor, now)
        for i in creates
    ]
    if rows:
        needs_ids = any(any(targets[i.index].values()) for i in creates)
        if needs_ids:
            stmt = ENTITIES.insert().returning(COLUMNS.id, sort_by_parameter_order=True)
            ids: list[int | None] = list(session.scalars(stmt, rows))
        else:  # no relation edges to write: a plain executemany is much cheaper
            session.execute(ENTITIES.insert(), rows)
            ids = [None] * len(rows)
        for item, row, entity_id in zip(creates, rows, ids, strict=True):
            view = entity_view(row) if views else None
            results.append((item.index, WriteResult(item.identifier, "created", view)))
            audit_rows.append(
                audit.audit_row(
                    actor, "CREATE", "entity", item.identifier, blueprint=bp.identifier, after=_state(row)
                )
            )
            if entity_id is not None:
                edges += _edges(bp, entity_id, targets[item.index])

    unchanged = [i for i in updates if _same(i)]
    for item in unchanged:
        results.append(
            (
                item.index,
                WriteResult(
                    item.identifier, "unchanged", entity_view(item.existing or {}) if views else None
                ),
            )
        )
    updates = [i for i in updates if not _same(i)]
    if updates:
        changes = []
        for item in updates:
            old = item.existing or {}
            row = {
                **old,
                "title": item.title,
                "team": item.team,
                "properties": item.properties,
                "relations": item.relations,
                "updated_at": now,
                "updated_by": actor.user,
            }
            changes.append(
                {
                    k: row[k]
                    for k in ("id", "title", "team", "properties", "relations", "updated_at", "updated_by")
                }
            )
            view = entity_view(row) if views else None
            results.append((item.index, WriteResult(item.identifier, "updated", view)))
            audit_rows.append(
                audit.audit_row(
                    actor,
                    "UPDATE",
                    "entity",
                    item.identifier,
                    blueprint=bp.identifier,
                    before=_state(old),
                    after=_state(row),
                )
            )
            edges += _edges(bp, old["id"], targets[item.index])
        session.execute(update(Entity), changes)
        changed_ids = [c["id"] for c in changes]
        for start in range(0, len(changed_ids), 500):
            session.execute(
                delete(EntityRelation).where(EntityRelation.source_id.in_(changed_ids[start : start + 500]))
            )

    if edges:
        session.execute(cast(Table, EntityRelation.__table__).insert(), edges)
    audit.record_many(session, audit_rows)
    _emit_changes(
        session,
        bp,
        actor,
        [(i.identifier, None, _state_of(i)) for i in creates],
        [(i.identifier, _state(i.existing or {}), _state_of(i)) for i in updates],
        now,
    )
    return results


def _state_of(item: _Item) -> dict[str, Any]:
    return {
        "identifier": item.identifier,
        "title": item.title,
        "team": item.team,
        "properties": item.properties,
        "relations": item.relations,
    }


def _emit_changes(
    session: Session,
    bp: Blueprint,
    actor: Actor,
    created: list[tuple[str, None, dict[str, Any]]],
    changed: list[tuple[str, dict[str, Any], dict[str, Any] | None]],
    now: Any,
) -> None:
    """Outbox events for entity writes, with the timer changes the relay must pass on."""
    everything: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]] = [*created, *changed]
    relay = timers.sync(
        session,
        bp,
        [
            (e, (b or {}).get("properties"), a["properties"] if a is not None else None)
            for e, b, a in everything
        ],
    )
    rows = []
    for entity, before, after in everything:
        kind = "ENTITY_CREATED" if before is None else "ENTITY_DELETED" if after is None else "ENTITY_UPDATED"
        payload = {"timers": relay[entity]} if entity in relay else None
        rows.append(
            events.event_row(
                kind,
                actor,
                blueprint=bp.identifier,
                entity=entity,
                diff={"before": before, "after": after},
                payload=payload,
                at=now,
            )
        )
    events.emit(session, rows)
    computed.on_entities_written(session, bp, actor, everything, now)
    written = [entity for entity, _, after in everything if after is not None]
    if written and scorecards.list_scorecards(session, bp.identifier):
        ids = [
            entity_id
            for start in range(0, len(written), 500)
            for entity_id in session.scalars(
                select(Entity.id).where(
                    Entity.blueprint == bp.identifier, Entity.identifier.in_(written[start : start + 500])
                )
            )
        ]
        scorecards.grade(session, bp, ids, actor)


def _state(row: dict[str, Any]) -> dict[str, Any]:
    """What the audit log keeps of an entity (who and when are on the audit row itself)."""
    return {k: row.get(k) for k in ("identifier", "title", "team", "properties", "relations")}


def _same(item: _Item) -> bool:
    """An upsert that changes nothing writes nothing (no new updated_at, no audit row)."""
    old = item.existing or {}
    return (
        old.get("title"),
        old.get("team") or [],
        old.get("properties") or {},
        old.get("relations") or {},
    ) == (
        item.title,
        item.team,
        item.properties,
        item.relations,
    )


def _edges(bp: Blueprint, source_id: int, targets: dict[str, list[str]]) -> list[dict[str, Any]]:
    return [
        {
            "source_id": source_id,
            "source_blueprint": bp.identifier,
            "relation": name,
            "target_blueprint": bp.relations[name]["target"],
            "target_identifier": target,
            "required": bool(bp.relations[name].get("required")),
        }
        for name, ids in targets.items()
        for target in ids
    ]


def write_one(
    session: Session,
    blueprint: str,
    raw: Any,
    *,
    mode: Mode,
    actor: Actor,
    create_missing_related: bool = False,
    who: Principal | None = None,
) -> WriteResult:
    """Write a single entity; raise its error (422, 403, or 409 when it exists / 404 when
    missing or not readable by ``who``)."""
    (result,) = write_entities(
        session,
        blueprint,
        [raw],
        mode=mode,
        actor=actor,
        create_missing_related=create_missing_related,
        who=who,
    )
    if isinstance(result.error, Forbidden | NotFound):
        raise result.error
    if result.error is not None:
        details = result.error.details
        if mode is Mode.CREATE and any(d.message == "an entity with this identifier exists" for d in details):
            raise Conflict(f"entity '{result.identifier}' of blueprint '{blueprint}' already exists")
        if mode is Mode.REPLACE and any(
            d.message == "no entity with this identifier exists" for d in details
        ):
            raise NotFound(f"entity '{result.identifier}' of blueprint '{blueprint}' not found")
        raise result.error
    return result


def patch_entity(
    session: Session,
    blueprint: str,
    identifier: str,
    body: EntityPatch,
    raw: dict[str, Any],
    actor: Actor,
    *,
    create_missing_related: bool = False,
    who: Principal | None = None,
) -> WriteResult:
    """Change some fields: properties and relations merge key by key (null removes a key)."""
    entity = get_entity(session, blueprint, identifier, who)
    computed = [
        FieldError(f"/{n}", "is computed by the catalog and cannot be set")
        for n in COMPUTED_ENTITY_FIELDS
        if n in raw
    ]
    unknown = [
        FieldError(pointer(n), "is not a field of an entity")
        for n in raw
        if n not in ENTITY_FIELDS | set(COMPUTED_ENTITY_FIELDS)
    ]
    bp = get_blueprint(session, blueprint)
    computed_properties = _computed_written(bp, body.properties or {}, "/properties")
    if computed or unknown or computed_properties:
        raise Invalid("invalid entity", computed + unknown + computed_properties)
    own = {k: v for k, v in entity.properties.items() if k not in _computed_names(bp)}
    merged: dict[str, Any] = {
        "identifier": identifier,
        "title": body.title if "title" in body.model_fields_set else entity.title,
        "team": body.team if body.team is not None else entity.team,
        "properties": {**own, **(body.properties or {})},
        "relations": {**entity.relations, **(body.relations or {})},
    }
    merged["properties"] = {k: v for k, v in merged["properties"].items() if v is not None}
    return write_one(
        session,
        blueprint,
        merged,
        mode=Mode.REPLACE,
        actor=actor,
        create_missing_related=create_missing_related,
        who=who,
    )


def delete_entity(
    session: Session, blueprint: str, identifier: str, actor: Actor, who: Principal | None = None
) -> None:
    """Delete one entity; refused while others hold a required relation to it."""
    entity = get_entity(session, blueprint, identifier)
    if who is not None:
        denial = delete_denial(get_blueprint(session, blueprint), who, identifier, list(entity.team or []))
        if denial is not None:
            raise denial
    inbound = list(
        session.execute(
            select(EntityRelation, Entity.identifier)
            .join(Entity, Entity.id == EntityRelation.source_id)
            .where(
                EntityRelation.target_blueprint == blueprint, EntityRelation.target_identifier == identifier
            )
        )
    )
    required = [(edge, source) for edge, source in inbound if edge.required]
    if required:
        raise Conflict(
            f"entity '{identifier}' is required by other entities",
            [
                FieldError(
                    pointer("relations", e.relation), f"'{e.source_blueprint}' entity '{s}' requires it"
                )
                for e, s in required
            ],
        )
    now = utcnow()
    for edge, _source in inbound:
        source = session.get(Entity, edge.source_id)
        if source is None or source.id == entity.id:
            continue
        before = entity_view(source)
        value = source.relations.get(edge.relation)
        remaining = [v for v in value if v != identifier] if isinstance(value, list) else None
        source.relations = {**source.relations, edge.relation: remaining}
        source.updated_at, source.updated_by = now, actor.user
        session.delete(edge)
        audit.record(
            session,
            actor,
            "UPDATE",
            "entity",
            source.identifier,
            blueprint=source.blueprint,
            before=before,
            after=entity_view(source),
        )
        diff = {"before": _state(before), "after": _state(entity_view(source))}
        events.emit(
            session,
            [
                events.event_row(
                    "ENTITY_UPDATED",
                    actor,
                    blueprint=source.blueprint,
                    entity=source.identifier,
                    diff=diff,
                    at=now,
                )
            ],
        )
    before = entity_view(entity)
    state = _state(before)
    session.delete(entity)
    audit.record(session, actor, "DELETE", "entity", identifier, blueprint=blueprint, before=before)
    _emit_changes(session, get_blueprint(session, blueprint), actor, [], [(identifier, state, None)], now)


def delete_all_entities(session: Session, blueprint: str, actor: Actor) -> int:
    """Delete every entity of a blueprint (the blueprint itself is being deleted)."""
    rows = list(session.execute(select(Entity.__table__).where(COLUMNS.blueprint == blueprint)).mappings())
    session.execute(delete(EntityRelation).where(EntityRelation.target_blueprint == blueprint))
    session.execute(delete(Entity).where(Entity.blueprint == blueprint))
    _emit_changes(
        session,
        get_blueprint(session, blueprint),
        actor,
        [],
        [(r["identifier"], _state(dict(r)), None) for r in rows],
        utcnow(),
    )
    audit.record_many(
        session,
        [
            audit.audit_row(
                actor, "DELETE", "entity", r["identifier"], blueprint=blueprint, before=entity_view(dict(r))
            )
            for r in rows
        ],
    )
    return len(rows)
