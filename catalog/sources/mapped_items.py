"""What a sync's raw items mapped to, remembered so that a re-sync maps only what changed.

Mapping a page (selector, ``itemsToParse``, every mapping expression, in the jq sandbox) is most
of what a sync of unchanged data costs. A jq program is a pure function of its input, so the
outcome of mapping an item is remembered under a hash of the item's exact JSON and of the
resource's definition (its selector, ``itemsToParse`` and mappings, and the jq version): a later
sync that sends the same item under the same definition takes the remembered entities instead
of running jq again. Any change to the item or to the resource's definition is another hash,
mapped afresh. What is remembered is the mapping's output only (before search relations are
resolved): the entities still go through :func:`catalog.sources.syncs.apply_mapping` as before
(compared with their stored rows, written when anything differs), so the counts, the writes and
the errors are those a fresh mapping gives.

Not remembered: an item whose mapping had an error (it is mapped again each time, so its errors
are reported each time), an item orjson cannot encode exactly as the sandbox sends it, and every
item of a resource whose programs name a jq builtin whose output is not a function of the input
alone (``now``, ``input``, ``env``...). Each entry notes the last sync that used it; a
successful full sync forgets the source's entries it did not use (items gone upstream,
definitions replaced).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any, cast

import orjson
from sqlalchemy import JSON, ForeignKey, Integer, String, Table, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from catalog.db import Base
from catalog.sources.definitions import Resource
from catalog.sources.mapping import ItemError, MappedEntity, Mapping, map_items

# Bumped when what an entry holds, or how a mapping is computed, changes: older entries then
# never match again (and the next successful sync forgets them).
FORMAT = 1
# jq builtins whose outputs depend on more than the input: a resource naming one (anywhere, even
# in a string literal: being conservative only costs speed) is mapped afresh every time.
IMPURE = re.compile(
    r"(?<![\w$])(now|input|inputs|input_line_number|input_filename|\$__loc__|env|\$ENV|"
    r"localtime|strflocaltime|mktime|debug|stderr|halt|halt_error)(?!\w)"
)
CHUNK = 500  # keys per IN list


class MappedItem(Base):
    """A raw item's mapping outcome under one definition of a resource: ``entities`` is None
    when the selector did not keep the item, else the entities it maps to (``[blueprint,
    entity, searches]`` each, as :class:`MappedEntity` holds them before searches resolve)."""

    __tablename__ = "data_source_mapped_items"

    data_source: Mapped[str] = mapped_column(
        ForeignKey("data_sources.identifier", ondelete="CASCADE"), primary_key=True
    )
    resource: Mapped[int] = mapped_column(Integer, primary_key=True)
    # sha256 of the definition's fingerprint and the item's JSON
    item_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    # JSON, not PostgreSQL's JSONB: the entities come back with their keys in their order.
    entities: Mapped[list[Any] | None] = mapped_column(JSON)
    # The last sync that mapped or reused it: a successful full sync forgets the others.
    sync_id: Mapped[str] = mapped_column(String(200))


_TABLE = cast(Table, MappedItem.__table__)


def fingerprint(resource: Resource) -> bytes | None:
    """What a mapping outcome depends on besides the item; None when it depends on more (the
    resource names an impure builtin, or is a catalog files resource, mapped without jq)."""
    if resource.port is None:
        return None
    definition = resource.model_dump(mode="json", by_alias=True, exclude_none=True)
    if IMPURE.search(orjson.dumps(definition).decode()):
        return None
    return orjson.dumps({"format": FORMAT, "jq": _JQ_VERSION, "resource": definition})


_JQ_VERSION = version("jq")


def item_key(fingerprint: bytes, item: Any) -> str | None:
    """The item's entry under ``fingerprint``: the hash of the very JSON the jq sandbox would
    send (orjson's); None when orjson cannot encode it (the sandbox then falls back to json)."""
    try:
        encoded = orjson.dumps(item)
    except TypeError:
        return None
    return hashlib.sha256(fingerprint + b"\n" + encoded).hexdigest()


@dataclass
class PageMapping:
    """A page's mapping (remembered outcomes and fresh ones, indexed by position in the page)
    and what :func:`remember` stores after it was applied."""

    mapping: Mapping
    reused: set[str] = field(default_factory=set)
    fresh: dict[str, list[Any] | None] = field(default_factory=dict)


def map_page(
    session: Session, data_source: str, resource_index: int, resource: Resource, items: Sequence[Any]
) -> PageMapping:
    """``map_items`` of the page, running jq only for the items whose outcome is not
    remembered. The same result as ``map_items(resource, resource_index, items)``."""
    found = fingerprint(resource)
    if found is None:
        return PageMapping(map_items(resource, resource_index, items))
    keys = [item_key(found, item) for item in items]
    known = _lookup(session, data_source, resource_index, {k for k in keys if k is not None})
    misses = [n for n, key in enumerate(keys) if key is None or key not in known]
    fresh = map_items(resource, resource_index, [items[n] for n in misses]) if misses else Mapping()
    page = PageMapping(_reindexed(fresh, misses))
    kept = {misses[n] for n in fresh.kept}
    # What the fresh items mapped to, as stored (copied now: applying the page fills in search
    # relations and the write path may change the entities it is given).
    by_item: dict[int, list[Any]] = {}
    for mapped in page.mapping.entities:
        by_item.setdefault(mapped.index, []).append([mapped.blueprint, mapped.entity, mapped.searches])
    for n in misses:
        key = keys[n]
        if key is None or n in page.mapping.failed:
            continue
        page.fresh[key] = orjson.loads(orjson.dumps(by_item.get(n, []))) if n in kept else None
    for n, key in enumerate(keys):
        if key is None or key not in known:
            continue
        entities = known[key]
        if key in page.reused and entities:  # the same item twice: entities of its own each time
            entities = orjson.loads(orjson.dumps(entities))
        page.reused.add(key)
        if entities is None:  # the selector did not keep it
            continue
        page.mapping.seen += 1
        page.mapping.kept.append(n)
        page.mapping.entities += [
            MappedEntity(n, blueprint, entity, searches) for blueprint, entity, searches in entities
        ]
    page.mapping.entities.sort(key=lambda m: m.index)  # item order, as one mapping of the page
    page.mapping.kept.sort()
    return page


def _reindexed(mapping: Mapping, positions: list[int]) -> Mapping:
    """``mapping`` of a subset of the page, indexed by the items' positions in the page."""
    for mapped in mapping.entities:
        mapped.index = positions[mapped.index]
    errors = []
    for error in mapping.errors:
        key = positions[error.key] if isinstance(error.key, int) else error.key
        item = positions[error.item] if error.item is not None else None
        errors.append(ItemError(error.resource, key, error.pointer, error.message, item=item))
    return Mapping(
        seen=mapping.seen,
        entities=mapping.entities,
        errors=errors,
        failed={positions[n] for n in mapping.failed},
        kept=[positions[n] for n in mapping.kept],
    )


def _lookup(session: Session, data_source: str, resource: int, keys: set[str]) -> dict[str, list[Any] | None]:
    ordered = sorted(keys)
    found: dict[str, list[Any] | None] = {}
    for start in range(0, len(ordered), CHUNK):
        stmt = select(_TABLE.c.item_hash, _TABLE.c.entities).where(
            _TABLE.c.data_source == data_source,
            _TABLE.c.resource == resource,
            _TABLE.c.item_hash.in_(ordered[start : start + CHUNK]),
        )
        found.update({key: entities for key, entities in session.execute(stmt)})
    return found


def remember(session: Session, data_source: str, resource: int, sync_id: str, page: PageMapping) -> None:
    """Store the page's fresh outcomes and mark the reused ones as used by ``sync_id`` (in the
    transaction that applied the page)."""
    if page.fresh:
        rows = [
            {
                "data_source": data_source,
                "resource": resource,
                "item_hash": key,
                "entities": entities,
                "sync_id": sync_id,
            }
            for key, entities in page.fresh.items()
        ]
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        stmt = insert(_TABLE)  # the table's, not the ORM's bulk insert: cheaper
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=["data_source", "resource", "item_hash"],
                set_={"entities": stmt.excluded.entities, "sync_id": stmt.excluded.sync_id},
            ),
            rows,
        )
    reused = sorted(page.reused)
    for start in range(0, len(reused), CHUNK):
        session.execute(
            update(_TABLE)
            .where(
                _TABLE.c.data_source == data_source,
                _TABLE.c.resource == resource,
                _TABLE.c.item_hash.in_(reused[start : start + CHUNK]),
                _TABLE.c.sync_id != sync_id,
            )
            .values(sync_id=sync_id)
        )


def forget_unused(session: Session, data_source: str, sync_id: str) -> None:
    """After a successful full sync: forget the source's entries that sync did not use."""
    session.execute(delete(_TABLE).where(_TABLE.c.data_source == data_source, _TABLE.c.sync_id != sync_id))
