"""What an entity write changed: the :class:`EntityChange` every stage of the write pipeline
(``catalog.changes.pipeline``) reads, and the row helpers the writers share.

This module is a leaf of the entity write path: the entity service, the pipeline and its stages
(events, timers, scorecards, computed properties) import it, and it imports none of them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from catalog.audit import Actor
from catalog.db import CHUNK
from catalog.models import Entity
from catalog.timefmt import format_optional

# Core statements on the table: executemany without the ORM's per-row bookkeeping.
ENTITIES = cast(Table, Entity.__table__)
COLUMNS = ENTITIES.c
# What the audit log and the outbox keep of an entity (who and when are on their own rows).
STATE_FIELDS = ("identifier", "title", "team", "properties", "relations")

EntityState = dict[str, Any]


class ChangeKind(enum.Enum):
    CREATED = "ENTITY_CREATED"
    UPDATED = "ENTITY_UPDATED"
    DELETED = "ENTITY_DELETED"

    @property
    def event_type(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class EntityChange:
    """One entity's change in a write: its state before (None: created) and after (None:
    deleted). ``entity_id`` is known when the writer has it at hand (None otherwise)."""

    blueprint: str
    identifier: str
    before: EntityState | None
    after: EntityState | None
    actor: Actor
    at: datetime
    entity_id: int | None = None

    def __post_init__(self) -> None:
        if self.before is None and self.after is None:
            raise ValueError(f"a change of '{self.identifier}' needs a state before or after it")

    @property
    def kind(self) -> ChangeKind:
        if self.before is None:
            return ChangeKind.CREATED
        return ChangeKind.DELETED if self.after is None else ChangeKind.UPDATED

    @property
    def run_id(self) -> str | None:
        return self.actor.run_id

    def properties(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The properties before and after (None where the entity did not exist)."""
        before = None if self.before is None else self.before.get("properties")
        after = None if self.after is None else self.after["properties"]
        return before, after


def state(row: Any) -> EntityState:
    """What the audit log and the outbox keep of an entity row (a mapping of its columns)."""
    return {k: row.get(k) for k in STATE_FIELDS}


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
        "source": _source(get("source_data_source"), get("source_resource")),
        "created_at": format_optional(created_at),
        "updated_at": format_optional(updated_at),
        "created_by": get("created_by"),
        "updated_by": get("updated_by"),
    }


def _source(data_source: str | None, resource: int | None) -> dict[str, Any] | None:
    """The data source that wrote an entity (None: made by hand)."""
    return None if data_source is None else {"data_source": data_source, "resource": resource}


def load_rows(session: Session, blueprint: str, identifiers: list[str]) -> dict[str, dict[str, Any]]:
    """The stored rows (every column) of the named entities that exist, by identifier."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(identifiers), CHUNK):
        chunk = identifiers[start : start + CHUNK]
        stmt = select(ENTITIES).where(COLUMNS.blueprint == blueprint, COLUMNS.identifier.in_(chunk))
        for row in session.execute(stmt).mappings():
            found[row["identifier"]] = dict(row)
    return found


def entity_ids(session: Session, blueprint: str, identifiers: list[str]) -> list[int]:
    """The row ids of the named entities of ``blueprint`` that exist."""
    return [
        entity_id
        for start in range(0, len(identifiers), CHUNK)
        for entity_id in session.scalars(
            select(Entity.id).where(
                Entity.blueprint == blueprint, Entity.identifier.in_(identifiers[start : start + CHUNK])
            )
        )
    ]
