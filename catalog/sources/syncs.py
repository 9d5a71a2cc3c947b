"""Syncs: a data source's records of what it wrote, and the catalog side of the sync contract.

The worker pages through the vendor and hands each page of raw items to :func:`apply_page`,
which maps them (``catalog.sources.mapping``), writes the entities through the catalog's one
write path (``write_entities``, bulk, as the source: validation, audit, events, scorecards and
computed properties all apply; an entity that would not change is not written, and is found by
comparing with its stored row before the write path, so an unchanged re-sync costs one query and
the "seen" insert per page), notes what it saw, and adds to the record's counts. Items a sync
mapped before, unchanged under an unchanged definition, are not mapped again
(``catalog.sources.mapped_items``). A page is applied once: sent again (a worker resuming
after a crash), it answers what it answered the first time. :func:`complete` ends the record
and, only after a SUCCESS and with ``delete_stale``, deletes the source's entities the sync did
not see, unless they are more than ``deletion_threshold`` of the source's entities.

A push webhook's sync of a files source is scoped to the pushed repositories (``repositories``
on its record, set when the catalog opened it): its stale deletion considers only the source's
entities whose ``location`` property names a file of those repositories (the descriptor
converter records it), so it never deletes what came from another repository; an entity
without a location is left to the next full sync.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Table, delete, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from catalog import audit
from catalog.audit import Actor
from catalog.base import Strict
from catalog.blueprints.properties import PropertyValidator
from catalog.blueprints.service import property_validator
from catalog.computed import service as computed
from catalog.db import CHUNK, utcnow
from catalog.entities.service import Mode, SourceTag, delete_entity, write_entities
from catalog.errors import CatalogError, Conflict, FieldError, Invalid, NotFound
from catalog.identity.service import missing_teams, missing_users
from catalog.models import Blueprint, DataSource, DataSourceSeen, DataSourceSync, DataSourceSyncPage, Entity
from catalog.pagination import Page, check_limit, decode_cursor, encode_cursor
from catalog.sources import mapped_items
from catalog.sources.definitions import DataSourceIn, parsed
from catalog.sources.mapping import (
    ENTITY_ORDER,
    ItemError,
    MappedEntity,
    Mapping,
    map_items,
    resolve_searches,
)
from catalog.timefmt import format_instant, format_optional
from contracts.sources import SyncStatus

TRIGGERS = ("SCHEDULE", "API", "WEBHOOK")
# A record keeps this many item errors (the counts keep counting).
MAX_ERRORS = 1000
# A page of raw items: the worker sends at most 500.
MAX_PAGE_ITEMS = 1000


class PreviewIn(Strict):
    resource: int | str = 0
    items: list[Any] = Field(max_length=MAX_PAGE_ITEMS)


class Message(BaseModel):
    """The worker's messages (contracts.sources): unknown fields are ignored, as every reader of
    a contract does, so a newer worker can add one."""

    model_config = ConfigDict(extra="ignore")


class OpenSyncIn(Message):
    trigger: str = "SCHEDULE"


class SyncBatchIn(Message):
    resource: int = Field(ge=0)
    page: str = Field("", max_length=10_000)
    items: list[Any] = Field(max_length=MAX_PAGE_ITEMS)


class SyncErrorIn(Message):
    message: str = Field(max_length=10_000)
    resource: int | None = None


class SyncCompletionIn(Message):
    status: Literal["SUCCESS", "PARTIAL", "FAILURE"]
    errors: list[SyncErrorIn] = Field(default_factory=list, max_length=MAX_ERRORS)


# What a sync id may be: ours (``20261202T070000-1a2b3c4d``) and a schedule's (``scheduled-<time>``).
SYNC_ID = re.compile(r"^[A-Za-z0-9._:+-]{1,200}$")
COUNTS = ("seen", "created", "updated", "unchanged", "deleted", "failed")


def source_actor(data_source: str) -> Actor:
    """Whom a source's writes are audited as."""
    return Actor(f"datasource:{data_source}")


# ---- applying mapped items --------------------------------------------------------------------


@dataclass
class Applied:
    """What applying mapped items did: counts, item errors, the entities seen (blueprint, id)."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    errors: list[ItemError] = field(default_factory=list)
    seen: set[tuple[str, str]] = field(default_factory=set)
    entities: list[dict[str, Any]] = field(default_factory=list)
    # created/updated/unchanged/failed by the index of the item in the page (its errors carry
    # the same index): what a batch of webhook deliveries reports per delivery.
    by_item: dict[int, dict[str, int]] = field(default_factory=dict)

    def note(self, item: int, status: str) -> None:
        self.counts[status] += 1
        counts = self.by_item.setdefault(item, {})
        counts[status] = counts.get(status, 0) + 1

    def answer(self) -> dict[str, int]:
        return {k: self.counts[k] for k in ("seen", "created", "updated", "unchanged", "failed")}


def apply_mapping(
    session: Session, definition: DataSourceIn, resource_index: int, mapping: Mapping, *, now: datetime
) -> Applied:
    """Write what a page mapped to, per blueprint in bulk; every failure becomes an item error."""
    applied = Applied()
    applied.counts["seen"] = mapping.seen
    for index in sorted(mapping.failed):
        applied.note(index, "failed")
    applied.errors += mapping.errors
    base = f"/resources/{resource_index}"
    by_blueprint: dict[str, list[MappedEntity]] = defaultdict(list)
    for mapped in mapping.entities:
        applied.seen.add((mapped.blueprint, mapped.entity["identifier"]))
        problems = resolve_searches(session, mapped, resource_index, base, now)
        if problems:
            for problem in problems:
                problem.item = mapped.index
            applied.errors += problems
            applied.note(mapped.index, "failed")
            continue
        by_blueprint[mapped.blueprint].append(mapped)
    tag = SourceTag(definition.identifier, resource_index)
    for blueprint, entities in by_blueprint.items():
        _write_blueprint(session, definition, tag, blueprint, entities, applied, base)
    return applied


def _write_blueprint(
    session: Session,
    definition: DataSourceIn,
    tag: SourceTag,
    blueprint: str,
    entities: list[MappedEntity],
    applied: Applied,
    base: str,
) -> None:
    if session.get(Blueprint, blueprint) is None:
        where = f"{base}/port/entity/mappings/blueprint"
        for mapped in entities:
            key = mapped.entity["identifier"]
            message = f"blueprint '{blueprint}' does not exist"
            applied.errors.append(ItemError(tag.resource, key, where, message, item=mapped.index))
            applied.note(mapped.index, "failed")
        return
    bp = session.get(Blueprint, blueprint)
    assert bp is not None
    unchanged = _unchanged(session, bp, tag, entities)
    for mapped in entities:
        if mapped.index in unchanged:
            applied.note(mapped.index, "unchanged")
            applied.entities.append({"blueprint": blueprint, **mapped.entity})
    entities = [m for m in entities if m.index not in unchanged]
    if not entities:
        return
    results = write_entities(
        session,
        blueprint,
        [m.entity for m in entities],
        mode=Mode.MERGE,
        actor=source_actor(definition.identifier),
        create_missing_related=definition.create_missing_related_entities,
        bulk=True,
        source=tag,
    )
    for n, (mapped, result) in enumerate(zip(entities, results, strict=True)):
        if result.error is None:
            applied.note(mapped.index, result.status)
            applied.entities.append({"blueprint": blueprint, **mapped.entity})
            continue
        applied.note(mapped.index, "failed")
        for error in _write_errors(tag.resource, mapped.entity["identifier"], result.error, f"/entities/{n}"):
            error.item = mapped.index
            applied.errors.append(error)


def _unchanged(session: Session, bp: Blueprint, tag: SourceTag, entities: list[MappedEntity]) -> set[int]:
    """The items (by index in the page) whose write would change nothing: compared with the
    stored rows in one query per page, so a re-sync skips validation and the write path for
    them. Conservative: an entity written before its blueprint last changed, or naming a team
    or user that no longer exists, takes the write path (which validates and reports it)."""
    stored = _stored_rows(session, bp, [m.entity["identifier"] for m in entities])
    computed_names = computed.names(bp)
    validator = property_validator(bp)
    candidates: list[tuple[MappedEntity, dict[str, Any]]] = []
    for mapped in entities:
        row = stored.get(mapped.entity["identifier"])
        if row is not None and _same_as_stored(mapped.entity, row, tag, validator, computed_names):
            candidates.append((mapped, row))
    teams: set[str] = set()
    users: set[str] = set()
    references: list[tuple[MappedEntity, set[str], set[str]]] = []
    for mapped, row in candidates:
        found = validator.referenced(row["properties"] or {})
        row_teams = found["team"] | set(row["team"] or [])
        teams |= row_teams
        users |= found["user"]
        references.append((mapped, row_teams, found["user"]))
    gone_teams, gone_users = missing_teams(session, teams), missing_users(session, users)
    return {
        mapped.index
        for mapped, row_teams, row_users in references
        if not (row_teams & gone_teams or row_users & gone_users)
    }


# What :func:`_same_as_stored` compares: read as plain tuples (a row mapping per entity costs more
# than the comparison).
_COMPARED = (
    "identifier",
    "title",
    "team",
    "properties",
    "relations",
    "source_data_source",
    "source_resource",
    "source_properties",
    "source_relations",
)
_ENTITIES = cast(Table, Entity.__table__)


def _stored_rows(session: Session, bp: Blueprint, identifiers: list[str]) -> dict[str, dict[str, Any]]:
    """The compared columns of the named entities of ``bp`` that exist, by identifier, and
    ``before_blueprint``: whether the row was written before the blueprint last changed
    (compared by the database, in the times' stored form)."""
    columns = [_ENTITIES.c[name] for name in _COMPARED]
    if bp.updated_at is None:
        before = literal(False).label("before_blueprint")
    else:
        before = (_ENTITIES.c.updated_at < bp.updated_at).label("before_blueprint")
    names = (*_COMPARED, "before_blueprint")
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(identifiers), CHUNK):
        stmt = select(*columns, before).where(
            _ENTITIES.c.blueprint == bp.identifier,
            _ENTITIES.c.identifier.in_(identifiers[start : start + CHUNK]),
        )
        for row in session.execute(stmt):
            found[row[0]] = dict(zip(names, row, strict=True))
    return found


def _same_as_stored(
    entity: dict[str, Any],
    row: dict[str, Any],
    tag: SourceTag,
    validator: PropertyValidator,
    computed_names: set[str],
) -> bool:
    """What a merge write of ``entity`` by ``tag`` would leave equals ``row`` (the write path's
    merge, done on the stored row): same fields, same source tag, and the blueprint unchanged
    since the row was written (its schema would validate the row as before)."""
    given = entity.get("properties") or {}
    given_relations = entity.get("relations") or {}
    if set(given) & computed_names or set(entity) - set(ENTITY_ORDER):
        return False
    if row["before_blueprint"]:
        return False
    if (row["source_data_source"], row["source_resource"]) != (tag.data_source, tag.resource):
        return False
    if (row["source_properties"] or [], row["source_relations"] or []) != (
        sorted(given),
        sorted(given_relations),
    ):
        return False
    title = entity.get("title")
    team = entity.get("team")
    team_list = [team] if isinstance(team, str) else list(team or [])
    stored_properties = row["properties"] or {}
    # Times are stored in their canonical form: compare what the write path would store.
    given = validator.normalize(given) if validator.time_properties else given
    stored_relations = row["relations"] or {}
    return (
        (title if title is not None else row["title"]) == row["title"]
        and (team_list or list(row["team"] or [])) == list(row["team"] or [])
        and {**stored_properties, **given} == stored_properties
        and {**stored_relations, **given_relations} == stored_relations
    )


def _write_errors(resource: int, key: str, error: CatalogError, prefix: str) -> list[ItemError]:
    """The blueprint's 422 details (or a 403) as item errors, pointing into the entity."""
    details = error.details or [FieldError("/", error.message)]
    return [
        ItemError(
            resource, key, d.pointer[len(prefix) :] if d.pointer.startswith(prefix) else d.pointer, d.message
        )
        for d in details
    ]


def preview(session: Session, source: DataSource, resource: int | str, items: list[Any]) -> dict[str, Any]:
    """What ``items`` would become, with every mapping and validation error; nothing is kept
    (the writes are rolled back before returning)."""
    definition = parsed(source)
    index = resource_index(definition, resource, "/resource")
    mapping = map_items(definition.resources[index], index, items)
    try:
        applied = apply_mapping(session, definition, index, mapping, now=utcnow())
    finally:
        session.rollback()
    return {"entities": applied.entities, "errors": [e.as_dict() for e in applied.errors]}


def resource_index(definition: DataSourceIn, resource: int | str, where: str) -> int:
    """A resource by index, or by ``kind`` (the first of that kind)."""
    if isinstance(resource, int) and 0 <= resource < len(definition.resources):
        return resource
    if isinstance(resource, str):
        for index, candidate in enumerate(definition.resources):
            if candidate.kind == resource:
                return index
    raise Invalid(
        "unknown resource",
        [FieldError(where, f"must be a resource index below {len(definition.resources)} or a resource kind")],
    )


# ---- sync records ---------------------------------------------------------------------------


def new_sync_id() -> str:
    return utcnow().strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(4)


def push_sync_id(delivery_id: str) -> str:
    """A push delivery's sync, named after its delivery id (a redelivery finds it, and starts
    nothing twice); an id that cannot be part of a sync id is hashed."""
    candidate = f"push-{delivery_id}"
    return (
        candidate if SYNC_ID.match(candidate) else "push-" + hashlib.sha256(delivery_id.encode()).hexdigest()
    )


def open_sync(
    session: Session,
    source: DataSource,
    sync_id: str,
    trigger: str,
    actor: Actor,
    repositories: list[str] | None = None,
) -> DataSourceSync:
    """The record of ``sync_id``, created RUNNING if absent (the worker's retries find it);
    ``repositories`` scopes a files source's sync to those repositories."""
    if trigger not in TRIGGERS:
        raise Invalid("invalid trigger", [FieldError("/trigger", f"must be one of {', '.join(TRIGGERS)}")])
    if not SYNC_ID.match(sync_id):
        raise Invalid("invalid sync id", [FieldError("/sync_id", f"must match {SYNC_ID.pattern}")])
    sync = session.get(DataSourceSync, (source.identifier, sync_id))
    if sync is not None:
        return sync
    sync = DataSourceSync(
        data_source=source.identifier,
        id=sync_id,
        trigger=trigger,
        status=SyncStatus.RUNNING.value,
        errors=[],
        warnings=[],
        started_at=utcnow(),
        created_by=actor.user,
        repositories=repositories,
        **dict.fromkeys(COUNTS, 0),
    )
    session.add(sync)
    session.flush()
    return sync


def get_sync(session: Session, data_source: str, sync_id: str, *, lock: bool = False) -> DataSourceSync:
    stmt = select(DataSourceSync).where(
        DataSourceSync.data_source == data_source, DataSourceSync.id == sync_id
    )
    sync = session.scalar(stmt.with_for_update() if lock else stmt)
    if sync is None:
        raise NotFound(f"sync '{sync_id}' of data source '{data_source}' not found")
    return sync


def list_syncs(session: Session, data_source: str, *, limit: int, cursor: str | None) -> Page[DataSourceSync]:
    """Newest first."""
    check_limit(limit)
    stmt = select(DataSourceSync).where(DataSourceSync.data_source == data_source)
    if cursor:
        started, last_id = decode_cursor(cursor, size=2)
        try:
            after = datetime.fromisoformat(str(started))
        except ValueError as exc:
            raise Invalid(
                "invalid cursor", [FieldError("/cursor", "not a cursor returned by this API")]
            ) from exc
        stmt = stmt.where(
            (DataSourceSync.started_at < after)
            | ((DataSourceSync.started_at == after) & (DataSourceSync.id < str(last_id)))
        )
    stmt = stmt.order_by(DataSourceSync.started_at.desc(), DataSourceSync.id.desc()).limit(limit + 1)
    rows = list(session.scalars(stmt))
    more = len(rows) > limit
    last = rows[limit - 1] if more else None
    return Page(rows[:limit], encode_cursor([last.started_at.isoformat(), last.id]) if last else None)


def sync_view(sync: DataSourceSync) -> dict[str, Any]:
    return {
        "id": sync.id,
        "data_source": sync.data_source,
        "trigger": sync.trigger,
        "status": sync.status,
        "counts": {k: getattr(sync, k) for k in COUNTS},
        "errors": sync.errors or [],
        "warnings": sync.warnings or [],
        "started_at": format_instant(sync.started_at),
        "ended_at": format_optional(sync.ended_at),
        "created_by": sync.created_by,
        "repositories": sync.repositories,
    }


def _add(sync: DataSourceSync, counts: dict[str, int], errors: list[dict[str, Any]]) -> None:
    for key in COUNTS:
        setattr(sync, key, (getattr(sync, key) or 0) + counts.get(key, 0))
    room = MAX_ERRORS - len(sync.errors or [])
    if errors and room > 0:
        sync.errors = [*(sync.errors or []), *errors[:room]]


# ---- the worker's pages and its completion --------------------------------------------------------


def _page_key(page: str) -> str:
    return hashlib.sha256(page.encode()).hexdigest()


def apply_page(
    session: Session, source: DataSource, sync_id: str, resource: int, page: str, items: list[Any]
) -> dict[str, int]:
    """Apply one page of raw items to a running sync, once (a page seen before answers what it
    answered then, counting nothing twice). The caller commits."""
    sync = get_sync(session, source.identifier, sync_id, lock=True)
    stored = session.get(DataSourceSyncPage, (source.identifier, sync_id, resource, _page_key(page)))
    if stored is not None:
        return dict(stored.result)
    if sync.status != SyncStatus.RUNNING.value:
        raise Conflict(f"sync '{sync_id}' has ended ({sync.status}): it takes no more items")
    definition = parsed(source)
    index = resource_index(definition, resource, "/resource")
    page_mapping = mapped_items.map_page(
        session, source.identifier, index, definition.resources[index], items
    )
    applied = apply_mapping(session, definition, index, page_mapping.mapping, now=utcnow())
    mapped_items.remember(session, source.identifier, index, sync_id, page_mapping)
    _note_seen(session, source.identifier, sync_id, applied.seen)
    _add(sync, applied.counts, [e.as_dict() for e in applied.errors])
    answer = applied.answer()
    session.add(
        DataSourceSyncPage(
            data_source=source.identifier,
            sync_id=sync_id,
            resource=index,
            page=_page_key(page),
            result=answer,
        )
    )
    session.flush()
    return answer


def _note_seen(session: Session, data_source: str, sync_id: str, seen: set[tuple[str, str]]) -> None:
    if not seen:
        return
    rows = [
        {"data_source": data_source, "sync_id": sync_id, "blueprint": bp, "identifier": identifier}
        for bp, identifier in sorted(seen)
    ]
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    # On the table, not the mapped class: the ORM's bulk insert costs more than the insert.
    session.execute(insert(cast(Table, DataSourceSeen.__table__)).on_conflict_do_nothing(), rows)


def complete(
    session: Session, source: DataSource, sync_id: str, status: str, errors: list[dict[str, Any]]
) -> DataSourceSync:
    """End the sync (once: a repeated completion answers the ended record). Only a SUCCESS
    deletes stale entities, and only if the source asks for it."""
    if status not in (SyncStatus.SUCCESS, SyncStatus.PARTIAL, SyncStatus.FAILURE):
        raise Invalid("invalid status", [FieldError("/status", "must be SUCCESS, PARTIAL or FAILURE")])
    sync = get_sync(session, source.identifier, sync_id, lock=True)
    if sync.status != SyncStatus.RUNNING.value:
        return sync
    definition = parsed(source)
    sync.status, sync.ended_at = status, utcnow()
    _add(sync, {}, errors)
    if status == SyncStatus.SUCCESS and definition.delete_stale:
        _delete_stale(session, definition, sync)
    if status == SyncStatus.SUCCESS and sync.repositories is None:
        mapped_items.forget_unused(session, source.identifier, sync_id)
    session.execute(
        delete(DataSourceSeen).where(
            DataSourceSeen.data_source == source.identifier, DataSourceSeen.sync_id == sync_id
        )
    )
    session.execute(
        delete(DataSourceSyncPage).where(
            DataSourceSyncPage.data_source == source.identifier, DataSourceSyncPage.sync_id == sync_id
        )
    )
    audit.record(
        session,
        source_actor(source.identifier),
        "SYNC",
        "data_source",
        source.identifier,
        after=sync_view(sync),
    )
    session.flush()
    return sync


def _delete_stale(session: Session, definition: DataSourceIn, sync: DataSourceSync) -> None:
    """Delete the source's entities this sync did not see (of a scoped sync: only those located
    in its repositories); none if they are too many."""
    owned_rows = session.execute(
        select(Entity.blueprint, Entity.identifier, Entity.properties).where(
            Entity.source_data_source == definition.identifier
        )
    )
    seen_rows = session.execute(
        select(DataSourceSeen.blueprint, DataSourceSeen.identifier).where(
            DataSourceSeen.data_source == definition.identifier, DataSourceSeen.sync_id == sync.id
        )
    )
    scope = {r.lower() for r in sync.repositories} if sync.repositories is not None else None
    owned = {
        (bp, identifier)
        for bp, identifier, properties in owned_rows
        if scope is None or repository_of((properties or {}).get("location")) in scope
    }
    seen = {(bp, identifier) for bp, identifier in seen_rows}
    stale = sorted(owned - seen)
    if not stale:
        return
    if len(stale) / len(owned) > definition.deletion_threshold:
        whose = "the source's" if scope is None else "the source's in the pushed repositories"
        sync.warnings = [
            *(sync.warnings or []),
            f"stale deletion skipped: {len(stale)} of {whose} {len(owned)} entities were not seen, "
            f"more than its deletion_threshold {definition.deletion_threshold:g}",
        ]
        return
    actor = source_actor(definition.identifier)
    deleted = 0
    problems: list[dict[str, Any]] = []
    for blueprint, identifier in stale:
        try:
            delete_entity(session, blueprint, identifier, actor)
        except CatalogError as exc:
            problems.append({"key": identifier, "pointer": "/", "message": f"not deleted: {exc}"})
            continue
        deleted += 1
    _add(sync, {"deleted": deleted}, problems)


def repository_of(location: Any) -> str | None:
    """The repository (``owner/name``, lower-cased) a catalog file's location names: its URL
    (``https://github.com/acme/payments/blob/main/catalog-info.yaml``) or ``acme/payments/<path>``."""
    if not isinstance(location, str) or not location:
        return None
    path = urlsplit(location).path if "://" in location else location
    parts = path.strip("/").split("/")
    return f"{parts[0]}/{parts[1]}".lower() if len(parts) >= 2 and parts[0] and parts[1] else None
