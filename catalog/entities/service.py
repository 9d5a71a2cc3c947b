"""Entity service: validated, audited writes of catalog entities, one at a time or in bulk.

Every write goes through :func:`write_entities`, which works on a batch (a single create is a
batch of one): it validates each item against the blueprint's cached validator, checks the teams,
users and relation targets the batch names with one query each, then writes the valid items with
executemany statements. Invalid items are reported and never half-written. What was written, and
every delete, becomes a list of :class:`EntityChange` handed to the write pipeline
(:func:`catalog.changes.pipeline.apply_changes`): events, timers, computed properties, scorecards.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from catalog import audit
from catalog.audit import Actor
from catalog.blueprints.properties import PropertyValidator
from catalog.blueprints.service import get_blueprint, property_validator
from catalog.changes.pipeline import apply_changes, change_audit_row
from catalog.changes.state import (
    CHUNK,
    COLUMNS,
    ENTITIES,
    EntityChange,
    EntityState,
    entity_view,
    load_rows,
    state,
)
from catalog.computed import service as computed
from catalog.db import utcnow
from catalog.entities.permissions import (
    delete_denial,
    field_denial,
    forbidden,
    may_read,
    source_owned_denial,
    stub_denial,
    write_denial,
)
from catalog.errors import CatalogError, Conflict, FieldError, Forbidden, Invalid, NotFound, pointer
from catalog.identity.permissions import Principal, blueprint_permissions, is_moderator, passes
from catalog.identity.service import missing_teams, missing_users
from catalog.models import Blueprint, Entity, EntityRelation
from catalog.schemas import (
    COMPUTED_ENTITY_FIELDS,
    DOT_SEGMENT_MESSAGE,
    ENTITY_ID_PATTERN,
    EntityPatch,
)
from catalog.schemas import ENTITY_ID as ENTITY_ID_CHARS
from catalog.timers import service as timers

__all__ = [
    "Mode",
    "SourceTag",
    "WriteResult",
    "delete_entity",
    "entity_view",
    "get_entity",
    "patch_entity",
    "write_entities",
    "write_one",
]

ENTITY_ID = re.compile(ENTITY_ID_PATTERN)
ENTITY_FIELDS = {"identifier", "title", "team", "properties", "relations", "blueprint"}
# The columns an update rewrites (and, for a data source's write, the source's tag).
UPDATED_COLUMNS = ("id", "title", "team", "properties", "relations", "updated_at", "updated_by")
SOURCE_COLUMNS = ("source_data_source", "source_resource", "source_properties", "source_relations")
RELATIONS = cast(Table, EntityRelation.__table__)
# The entities' blueprint/identifier key, and how often a write whose new entity another
# transaction created meanwhile is done again (each time it finds more of the batch existing).
ENTITY_KEY = "uq_entities_blueprint_identifier"
KEY_RACE_ATTEMPTS = 3


class Mode(enum.Enum):
    CREATE = "create"  # 409 if it exists
    UPSERT = "upsert"  # create or replace
    MERGE = "merge"  # create, or merge properties and relations into the existing entity
    REPLACE = "replace"  # must exist; replace


@dataclass(frozen=True)
class SourceTag:
    """A data source writing (resource ``resource`` of its definition): its entities carry the
    tag, and the properties and relations it sets become the source's (users may not change
    them)."""

    data_source: str
    resource: int

    def columns(self, properties: list[str], relations: list[str]) -> dict[str, Any]:
        return {
            "source_data_source": self.data_source,
            "source_resource": self.resource,
            "source_properties": sorted(properties),
            "source_relations": sorted(relations),
        }


@dataclass
class WriteResult:
    identifier: str
    status: str  # created | updated | unchanged | failed
    entity: dict[str, Any] | None = None
    error: CatalogError | None = None


@dataclass
class _Item:
    """One entity of a batch, from parsing to its written row."""

    index: int
    base: str  # the JSON pointer of the item in the request ("" for a single write)
    identifier: str
    title: str | None = None
    team: list[str] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    relations: dict[str, Any] = field(default_factory=dict)
    existing: dict[str, Any] | None = None
    # The relation targets the item names, per relation (set once its relations are checked).
    targets: dict[str, list[str]] = field(default_factory=dict)
    errors: list[FieldError] = field(default_factory=list)
    # The properties and relations the item itself names (before a merge brings in the stored ones).
    given: list[str] = field(default_factory=list)
    given_relations: list[str] = field(default_factory=list)
    # A 403 or 404 for this item: reported instead of a 422 (``errors`` then holds its details).
    denial: CatalogError | None = None
    # What the write did: created, updated or unchanged, and the row as it now stands.
    status: str = "failed"
    row: dict[str, Any] | None = None

    def deny(self, error: CatalogError) -> None:
        self.denial = error
        self.errors += error.details or [FieldError("/", error.message)]

    @property
    def valid(self) -> bool:
        return not self.errors

    def fields(self) -> EntityState:
        """The entity as the item would write it."""
        return {
            "identifier": self.identifier,
            "title": self.title,
            "team": self.team,
            "properties": self.properties,
            "relations": self.relations,
        }

    def result(self, views: bool) -> WriteResult:
        if self.errors:
            return WriteResult(
                self.identifier, "failed", error=self.denial or Invalid("invalid entity", self.errors)
            )
        return WriteResult(
            self.identifier, self.status, entity_view(self.row) if views and self.row else None
        )


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
        return _Item(index, base, "", errors=[FieldError(base or "/", "an entity must be an object")])
    identifier = raw.get("identifier")
    item = _Item(index, base, identifier if isinstance(identifier, str) else "")
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
    item.given, item.given_relations = list(properties), list(relations)
    return item


def _computed_written(bp: Blueprint, properties: dict[str, Any], base: str) -> list[FieldError]:
    return [
        FieldError(base + pointer(name), "is a computed property: the catalog sets it")
        for name in sorted(computed.names(bp) & set(properties))
    ]


def _merge_into(item: _Item, existing: dict[str, Any], source: SourceTag | None) -> None:
    """Merge mode: the given properties and relations win; the rest is kept, except what the
    same data source set before and no longer sets (its mapping now yields null)."""
    dropped = set()
    if source is not None and existing.get("source_data_source") == source.data_source:
        dropped = set(existing.get("source_properties") or []) - set(item.properties)
    kept = {k: v for k, v in existing["properties"].items() if k not in dropped}
    item.properties = {**kept, **item.properties}
    item.relations = {**existing["relations"], **item.relations}
    item.title = item.title if item.title is not None else existing["title"]
    item.team = item.team or list(existing["team"] or [])


def _check_relations(item: _Item, bp: Blueprint) -> None:
    """Shape-check the item's relations; note the targets it names, per relation."""
    base = item.base
    targets = item.targets
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
    source: SourceTag | None = None,
) -> list[WriteResult]:
    """Validate and write a batch of entities; one result per item, in order. With ``who``, each
    item must pass the blueprint's permissions (a 403 or 404 for that item alone); without it
    the caller is the catalog itself (extensions, data sources, internal writes) and already
    decided. With ``source`` the entities are tagged as that data source's.

    Another transaction may create one of the batch's new entities between this one's read and
    its insert (two API processes upserting the same new entity at once): the insert then breaks
    the blueprint/identifier key. On PostgreSQL the batch is written in a savepoint and, on that conflict, done
    again from the start: it now finds the other's entity and updates it (audited and evented as
    an update of what the other wrote), or answers "exists" to a create."""

    def write() -> list[WriteResult]:
        return _write_batch(
            session,
            blueprint,
            raw_items,
            mode=mode,
            actor=actor,
            create_missing_related=create_missing_related,
            bulk=bulk,
            who=who,
            source=source,
        )

    connection = session.connection()
    if connection.dialect.name == "sqlite":
        # SQLite has one writer at a time: take the write lock before reading what exists, so no
        # other writer can create an entity in between. (pysqlite begins a transaction only at
        # the first write, and a SAVEPOINT before it would open one of its own whose release
        # commits: a preview would write.)
        if not connection.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        return write()
    for attempt in range(KEY_RACE_ATTEMPTS):
        try:
            with session.begin_nested():
                return write()
        except IntegrityError as exc:
            if attempt == KEY_RACE_ATTEMPTS - 1 or not _entity_key_taken(exc):
                raise
    raise AssertionError("unreachable")  # the loop returns or raises


def _entity_key_taken(exc: IntegrityError) -> bool:
    """Whether the write broke an entity's blueprint/identifier key (PostgreSQL names the
    constraint, SQLite the columns)."""
    message = str(exc.orig)
    return ENTITY_KEY in message or "entities.blueprint, entities.identifier" in message


def _write_batch(
    session: Session,
    blueprint: str,
    raw_items: list[Any],
    *,
    mode: Mode,
    actor: Actor,
    create_missing_related: bool,
    bulk: bool,
    who: Principal | None,
    source: SourceTag | None,
) -> list[WriteResult]:
    bp = get_blueprint(session, blueprint)
    items = [_parse(i, raw, bp, f"/entities/{i}" if bulk else "") for i, raw in enumerate(raw_items)]
    _refuse_duplicates(items)
    _attach_existing(session, bp, items, mode, who, source)
    validator = property_validator(bp)
    for item in items:
        if item.valid:
            _validate(item, bp, validator)
    if who is not None and not is_moderator(bp, who):
        _check_field_permissions(session, bp, who, [i for i in items if i.valid])
    if who is not None and not who.is_service:
        for item in items:
            if item.valid and item.existing is not None:
                _check_source_owned(bp, who, item)
    _check_references(session, bp, items, validator, create_missing_related, actor, who)
    _write(session, bp, [i for i in items if i.valid], actor, source)
    return [item.result(views=not bulk) for item in items]


def _refuse_duplicates(items: list[_Item]) -> None:
    seen: set[str] = set()
    for item in items:
        if item.identifier and item.identifier in seen:
            item.errors.append(FieldError(f"{item.base}/identifier", "appears twice in this request"))
        seen.add(item.identifier)


def _attach_existing(
    session: Session,
    bp: Blueprint,
    items: list[_Item],
    mode: Mode,
    who: Principal | None,
    source: SourceTag | None = None,
) -> None:
    """Each item's stored entity, checked against the mode and (with ``who``) the write policy."""
    existing = load_rows(session, bp.identifier, [i.identifier for i in items if i.valid])
    for item in items:
        if not item.valid:
            continue
        item.existing = existing.get(item.identifier)
        if item.existing is not None and mode is Mode.CREATE:
            item.errors.append(FieldError(f"{item.base}/identifier", "an entity with this identifier exists"))
        elif item.existing is None and mode is Mode.REPLACE:
            item.errors.append(FieldError(f"{item.base}/identifier", "no entity with this identifier exists"))
        elif item.existing is not None and mode is Mode.MERGE:
            _merge_into(item, item.existing, source)
        if who is not None and item.valid:
            existing_team = None if item.existing is None else list(item.existing["team"] or [])
            denial = write_denial(bp, who, item.identifier, existing_team, item.team, item.base)
            if denial is not None:
                item.deny(denial)


def _validate(item: _Item, bp: Blueprint, validator: PropertyValidator) -> None:
    """Properties against the schema (normalized when valid), relations, timers' ``max_ttl``."""
    # Computed values are kept as stored (merge mode brings them in too); clients never set them.
    kept = computed.stored_values(bp, (item.existing or {}).get("properties"))
    item.properties = {k: v for k, v in item.properties.items() if k not in computed.names(bp)}
    item.errors += validator.validate(item.properties, f"{item.base}/properties")
    _check_relations(item, bp)
    if item.errors:
        return
    item.properties = {**validator.normalize(item.properties), **kept}
    if bp.timers:
        created_at = (item.existing or {}).get("created_at") or utcnow()
        item.errors += timers.check_max_ttl(bp, item.properties, created_at, item.base)


def _check_field_permissions(session: Session, bp: Blueprint, who: Principal, items: list[_Item]) -> None:
    """Updates by callers who are not moderators: the narrowing field policies, and no timer
    pushed past what its ``max_extension`` allows (the extend endpoint's limit)."""
    updates = [i for i in items if i.existing is not None]
    writes = [
        (i.identifier, i.existing["properties"] if i.existing else {}, i.properties, i.base) for i in updates
    ]
    late = timers.extension_problems(session, bp, writes) if bp.timers else {}
    for item in updates:
        old = item.existing or {}
        owners = list(old.get("team") or [])
        properties = _changed(old.get("properties") or {}, item.properties)
        relations = _changed(old.get("relations") or {}, item.relations)
        denial = field_denial(bp, who, item.identifier, owners, properties, relations, item.base)
        if denial is None and late.get(item.identifier):
            message = f"only moderators and admins may push the timers of '{item.identifier}' further"
            denial = forbidden(message, late[item.identifier])
        if denial is not None:
            item.deny(denial)


def _check_source_owned(bp: Blueprint, who: Principal, item: _Item) -> None:
    """People (admins included) do not change what a data source set: the next sync would undo
    it. The blueprint's ``update_properties`` (``update_relations``) policy for a property (a
    relation) may allow it explicitly."""
    old = item.existing or {}
    owner = old.get("source_data_source")
    if not owner:
        return
    permissions = blueprint_permissions(bp)
    teams = list(old.get("team") or [])
    properties = _not_allowed(
        _changed(old.get("properties") or {}, item.properties),
        set(old.get("source_properties") or []),
        permissions.update_properties,
        who,
        teams,
    )
    relations = _not_allowed(
        _changed(old.get("relations") or {}, item.relations),
        set(old.get("source_relations") or []),
        permissions.update_relations,
        who,
        teams,
    )
    if properties or relations:
        item.deny(source_owned_denial(item.identifier, owner, properties, item.base, relations))


def _not_allowed(
    changed: list[str], owned: set[str], policies: dict[str, Any], who: Principal, teams: list[str]
) -> list[str]:
    """The changed fields the source owns that no explicit policy lets ``who`` change."""
    return [
        name
        for name in changed
        if name in owned and not (name in policies and passes(policies[name], who, teams))
    ]


def _changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


# ---- references: teams, users, relation targets ------------------------------------------


def _check_references(
    session: Session,
    bp: Blueprint,
    items: list[_Item],
    validator: PropertyValidator,
    create_missing_related: bool,
    actor: Actor,
    who: Principal | None,
) -> None:
    """One query per kind of reference for the whole batch: teams, users, relation targets."""
    candidates = [i for i in items if i.valid]
    users: set[str] = set()
    teams: set[str] = set()
    for item in candidates:
        found = validator.referenced(item.properties)
        users |= found["user"]
        teams |= found["team"] | set(item.team)
    unknown = {"user": missing_users(session, users), "team": missing_teams(session, teams)}
    for item in candidates:
        _flag_unknown(item, validator.references, unknown)
    # Relation targets last: an item of this batch that failed is no target.
    stubs = _check_relation_targets(session, bp, candidates, create_missing_related, who)
    _create_stubs(session, stubs, actor)


def _flag_unknown(item: _Item, reference_kinds: dict[str, str], unknown: dict[str, set[str]]) -> None:
    item.errors += [
        FieldError(f"{item.base}/team/{n}", f"team '{t}' does not exist")
        for n, t in enumerate(item.team)
        if t in unknown["team"]
    ]
    for name, kind in reference_kinds.items():
        value = item.properties.get(name)
        for v in value if isinstance(value, list) else [value]:
            if v in unknown[kind]:
                item.errors.append(
                    FieldError(f"{item.base}/properties" + pointer(name), f"{kind} '{v}' does not exist")
                )


def _check_relation_targets(
    session: Session,
    bp: Blueprint,
    items: list[_Item],
    create_missing_related: bool,
    who: Principal | None,
) -> dict[str, set[str]]:
    """Fail items naming absent targets, or (``create_missing_related``) return the bare
    entities to create for the items that stay valid, per target blueprint."""
    missing = _missing_targets(session, bp, items)
    refused = {
        t
        for t, ids in missing.items()
        if ids and who is not None and stub_denial(get_blueprint(session, t), who)
    }
    stubs: dict[str, set[str]] = {}
    for item in items:
        needed = _absent_targets(item, bp, missing, create_missing_related, refused)
        if item.valid:
            for target_bp, absent_ids in needed.items():
                stubs.setdefault(target_bp, set()).update(absent_ids)
    return stubs


def _missing_targets(session: Session, bp: Blueprint, items: list[_Item]) -> dict[str, set[str]]:
    """The named targets that do not exist (nor are written by this batch), per blueprint."""
    wanted: dict[str, set[str]] = {}
    for item in items:
        for name, ids in item.targets.items():
            wanted.setdefault(bp.relations[name]["target"], set()).update(ids)
    batch_ids = {i.identifier for i in items if i.valid}
    return {
        target_bp: ids
        - _existing_ids(session, target_bp, ids)
        - (batch_ids if target_bp == bp.identifier else set())
        for target_bp, ids in wanted.items()
    }


def _absent_targets(
    item: _Item,
    bp: Blueprint,
    missing: dict[str, set[str]],
    create_missing_related: bool,
    refused: set[str],
) -> dict[str, set[str]]:
    """Fail (422) or deny (403) ``item`` for its absent targets, or return those to create."""
    needed: dict[str, set[str]] = {}
    denied: list[FieldError] = []
    for name, ids in item.targets.items():
        target_bp = bp.relations[name]["target"]
        absent = [t for t in ids if t in missing.get(target_bp, set())]
        if not absent:
            continue
        where = f"{item.base}/relations" + pointer(name)
        names = ", ".join(repr(a) for a in absent)
        if not create_missing_related:
            item.errors.append(
                FieldError(
                    where,
                    f"no '{target_bp}' entity {names} (pass create_missing_related_entities=true to create it)",
                )
            )
        elif target_bp in refused:
            denied.append(FieldError(where, f"you may not create '{target_bp}' entities {names}"))
        else:
            needed.setdefault(target_bp, set()).update(absent)
    if denied:
        item.deny(forbidden("you may not create the missing related entities", denied))
    return needed


def _existing_ids(session: Session, blueprint: str, ids: set[str]) -> set[str]:
    found: set[str] = set()
    listed = list(ids)
    for start in range(0, len(listed), CHUNK):
        stmt = select(Entity.identifier).where(
            Entity.blueprint == blueprint, Entity.identifier.in_(listed[start : start + CHUNK])
        )
        found.update(session.scalars(stmt))
    return found


def _create_stubs(session: Session, missing: dict[str, set[str]], actor: Actor) -> None:
    """Bare related entities (``create_missing_related_entities``): audited, but (as they always
    were) neither evented nor graded: they stand in for entities another source will write."""
    now = utcnow()
    for target_bp, ids in missing.items():
        if not ids:
            continue
        get_blueprint(session, target_bp)
        rows = [_new_row(target_bp, _bare(i), actor, now) for i in sorted(ids)]
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


def _bare(identifier: str) -> EntityState:
    return {"identifier": identifier, "title": None, "team": [], "properties": {}, "relations": {}}


# ---- writing -----------------------------------------------------------------------------


def _new_row(blueprint: str, fields: EntityState, actor: Actor, now: datetime) -> dict[str, Any]:
    return {
        "blueprint": blueprint,
        **fields,
        "created_at": now,
        "updated_at": now,
        "created_by": actor.user,
        "updated_by": actor.user,
    }


def _write(
    session: Session, bp: Blueprint, items: list[_Item], actor: Actor, source: SourceTag | None = None
) -> None:
    """Write the valid items (each notes its status and row), audit them, and run the pipeline."""
    now = utcnow()
    for item in items:
        if item.existing is not None and _same(item, source):
            item.status, item.row = "unchanged", item.existing
    created = _insert(session, bp, [i for i in items if i.existing is None], actor, now, source)
    updated = _update(
        session, bp, [i for i in items if i.existing is not None and i.row is None], actor, now, source
    )
    changes = created + updated
    audit.record_many(session, [change_audit_row(c) for c in changes])
    apply_changes(session, changes)


def _insert(
    session: Session,
    bp: Blueprint,
    items: list[_Item],
    actor: Actor,
    now: datetime,
    source: SourceTag | None = None,
) -> list[EntityChange]:
    if not items:
        return []
    rows = [_new_row(bp.identifier, item.fields(), actor, now) for item in items]
    if source is not None:
        for row, item in zip(rows, items, strict=True):
            row.update(source.columns(item.given, item.given_relations))
    if any(any(item.targets.values()) for item in items):
        stmt = ENTITIES.insert().returning(COLUMNS.id, sort_by_parameter_order=True)
        ids: list[int | None] = list(session.scalars(stmt, rows))
    else:  # no relation edges to write: a plain executemany is much cheaper
        session.execute(ENTITIES.insert(), rows)
        ids = [None] * len(rows)
    changes, edges = [], []
    for item, row, entity_id in zip(items, rows, ids, strict=True):
        item.status, item.row = "created", row
        changes.append(EntityChange(bp.identifier, item.identifier, None, state(row), actor, now, entity_id))
        if entity_id is not None:
            edges += _edges(bp, entity_id, item.targets)
    _insert_edges(session, edges)
    return changes


def _update(
    session: Session,
    bp: Blueprint,
    items: list[_Item],
    actor: Actor,
    now: datetime,
    source: SourceTag | None = None,
) -> list[EntityChange]:
    if not items:
        return []
    changes, edges = [], []
    columns = UPDATED_COLUMNS + (SOURCE_COLUMNS if source is not None else ())
    for item in items:
        old = item.existing or {}
        item.status = "updated"
        item.row = {**old, **item.fields(), "updated_at": now, "updated_by": actor.user}
        if source is not None:
            item.row.update(source.columns(item.given, item.given_relations))
        changes.append(
            EntityChange(bp.identifier, item.identifier, state(old), state(item.row), actor, now, old["id"])
        )
        edges += _edges(bp, old["id"], item.targets)
    session.execute(update(Entity), [{k: (i.row or {})[k] for k in columns} for i in items])
    changed_ids = [c.entity_id for c in changes]
    for start in range(0, len(changed_ids), CHUNK):
        session.execute(
            delete(EntityRelation).where(EntityRelation.source_id.in_(changed_ids[start : start + CHUNK]))
        )
    _insert_edges(session, edges)
    return changes


def _insert_edges(session: Session, edges: list[dict[str, Any]]) -> None:
    if edges:
        session.execute(RELATIONS.insert(), edges)


def _same(item: _Item, source: SourceTag | None = None) -> bool:
    """An upsert that changes nothing writes nothing (no new updated_at, no audit row); for a
    data source, nor does one whose tag is already the source's."""
    old = item.existing or {}
    # Rows tagged before relations were owned have no ``source_relations``: none is no relation.
    stored = {k: old.get(k) for k in SOURCE_COLUMNS} | {"source_relations": old.get("source_relations") or []}
    if source is not None and stored != source.columns(item.given, item.given_relations):
        return False
    return (
        old.get("title"),
        old.get("team") or [],
        old.get("properties") or {},
        old.get("relations") or {},
    ) == (item.title, item.team, item.properties, item.relations)


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
    computed_fields = [
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
    if computed_fields or unknown or computed_properties:
        raise Invalid("invalid entity", computed_fields + unknown + computed_properties)
    own = {k: v for k, v in entity.properties.items() if k not in computed.names(bp)}
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
    """Delete one entity; refused while others hold a required relation to it. The entities
    that pointed at it lose the relation: they are updated, evented and regraded like any write."""
    entity = get_entity(session, blueprint, identifier)
    if who is not None:
        denial = delete_denial(get_blueprint(session, blueprint), who, identifier, list(entity.team or []))
        if denial is not None:
            raise denial
    inbound = _inbound(session, blueprint, identifier)
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
    changes = [
        change
        for edge, _source in inbound
        if (change := _drop_relation(session, edge, entity, actor, now)) is not None
    ]
    before = entity_view(entity)
    session.delete(entity)
    audit.record(session, actor, "DELETE", "entity", identifier, blueprint=blueprint, before=before)
    changes.append(EntityChange(blueprint, identifier, state(before), None, actor, now, entity.id))
    # The pipeline's stages read with Core statements, which do not flush the ORM changes above.
    session.flush()
    apply_changes(session, changes)


def _inbound(session: Session, blueprint: str, identifier: str) -> list[tuple[EntityRelation, str]]:
    """The relation edges pointing at the entity, with the identifier of their source."""
    rows = session.execute(
        select(EntityRelation, Entity.identifier)
        .join(Entity, Entity.id == EntityRelation.source_id)
        .where(EntityRelation.target_blueprint == blueprint, EntityRelation.target_identifier == identifier)
    )
    return [(edge, source) for edge, source in rows]


def _drop_relation(
    session: Session, edge: EntityRelation, target: Entity, actor: Actor, now: datetime
) -> EntityChange | None:
    """Remove the deleted ``target`` from the relation of the entity ``edge`` comes from
    (audited); the change, for the pipeline. None for the target's relation to itself."""
    source = session.get(Entity, edge.source_id)
    if source is None or source.id == target.id:
        return None
    before = entity_view(source)
    value = source.relations.get(edge.relation)
    remaining = [v for v in value if v != target.identifier] if isinstance(value, list) else None
    source.relations = {**source.relations, edge.relation: remaining}
    source.updated_at, source.updated_by = now, actor.user
    session.delete(edge)
    after = entity_view(source)
    audit.record(
        session,
        actor,
        "UPDATE",
        "entity",
        source.identifier,
        blueprint=source.blueprint,
        before=before,
        after=after,
    )
    return EntityChange(
        source.blueprint, source.identifier, state(before), state(after), actor, now, source.id
    )
