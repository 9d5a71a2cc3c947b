"""The entity write pipeline: what follows, in the same transaction, from entities changing.

Every entity write and delete (``catalog.entities.service``), every computed value the catalog stores
and every entity removed with its blueprint ends in :func:`apply_changes` with a list of
:class:`~catalog.changes.state.EntityChange`. It runs the stages in this order:

0. the team index: ``entity_teams`` follows the teams of the entities whose teams changed (the
   read filter and ``$team`` rules read it, scorecard rules included);
1. timers: the records of ``format: timer`` properties follow the properties;
2. outbox: one ``ENTITY_*`` event per change, carrying the timer changes the relay passes on to
   Temporal (so the timers stage runs first);
3. computed properties: the mirrors and aggregations the changes move are recomputed, and the
   values that differ are written as further changes that go through this same pipeline, at
   most ``MAX_CASCADE`` hops deep (which ends cycles between computed properties);
4. scorecards: the changed entities are regraded, last, so a level is decided on the entity's
   final computed values and a write never records a passing level on the way.

Dependencies point one way: ``entities`` and ``blueprints`` call this module; it calls the
stages (``events``, ``timers``, ``computed``, ``scorecards``), which know only
``catalog.changes.state``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from catalog import audit, events
from catalog.audit import Actor
from catalog.changes.state import (
    COLUMNS,
    ENTITIES,
    EntityChange,
    entity_ids,
    entity_view,
    load_rows,
    state,
)
from catalog.computed import service as computed
from catalog.db import CHUNK, utcnow
from catalog.models import Blueprint, Entity, EntityRelation, EntityTeam
from catalog.scorecards import service as scorecards
from catalog.timers import service as timers

log = logging.getLogger("gantry.changes")

# Hops of computed properties changing computed properties; deeper changes are written but
# move nothing further (a warning says where the cascade stopped).
MAX_CASCADE = 10


def apply_changes(session: Session, changes: Sequence[EntityChange], *, depth: int = 0) -> None:
    """Run the pipeline's stages over ``changes`` (already written to their rows and audited).
    ``depth`` counts the computed-property hops that led to them (0: a write by a client)."""
    if not changes:
        return
    _sync_team_index(session, changes)
    blueprints = _blueprints(session, changes)
    relayed = _sync_timers(session, blueprints, changes)
    events.emit(session, [events.entity_event(c, relayed.get((c.blueprint, c.identifier))) for c in changes])
    _recompute(session, changes, depth)
    _regrade(session, blueprints, changes)


def _teams(entity: dict[str, Any] | None) -> list[str]:
    return list((entity or {}).get("team") or [])


def _sync_team_index(session: Session, changes: Sequence[EntityChange]) -> None:
    """``entity_teams`` in step with the stored teams of the entities whose teams changed: their
    rows are dropped and written again from ``entities.team`` (per chunk of identifiers: one
    read by the ``(blueprint, identifier)`` index, one delete, one executemany), so the index
    holds what the entity rows hold whatever the change said before."""
    moved = [c for c in changes if _teams(c.before) != _teams(c.after)]
    gone = [c.entity_id for c in moved if c.after is None and c.entity_id is not None]
    for start in range(0, len(gone), CHUNK):
        session.execute(delete(EntityTeam).where(EntityTeam.entity_id.in_(gone[start : start + CHUNK])))
    written: dict[str, list[str]] = {}
    for change in moved:
        if change.after is not None:
            written.setdefault(change.blueprint, []).append(change.identifier)
    for blueprint, identifiers in written.items():
        for start in range(0, len(identifiers), CHUNK):
            chunk = identifiers[start : start + CHUNK]
            stored = session.execute(
                select(Entity.id, Entity.team).where(
                    Entity.blueprint == blueprint, Entity.identifier.in_(chunk)
                )
            ).all()
            if not stored:
                continue
            session.execute(delete(EntityTeam).where(EntityTeam.entity_id.in_([row.id for row in stored])))
            rows = [
                {"entity_id": row.id, "team": team}
                for row in stored
                for team in dict.fromkeys(row.team or [])
                if isinstance(team, str)
            ]
            if rows:
                session.execute(insert(EntityTeam), rows)


def _blueprints(session: Session, changes: Sequence[EntityChange]) -> dict[str, Blueprint]:
    """The changes' blueprints, in the order they first appear."""
    found: dict[str, Blueprint] = {}
    for name in dict.fromkeys(c.blueprint for c in changes):
        bp = session.get(Blueprint, name)
        if bp is not None:
            found[name] = bp
    return found


def _group(changes: Sequence[EntityChange], blueprint: str) -> list[EntityChange]:
    return [c for c in changes if c.blueprint == blueprint]


def _sync_timers(
    session: Session, blueprints: dict[str, Blueprint], changes: Sequence[EntityChange]
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Timer records in step with the changes; the timer changes to relay, per entity."""
    relayed: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for name, bp in blueprints.items():
        for identifier, relay in timers.sync(session, bp, _group(changes, name)).items():
            relayed[(name, identifier)] = relay
    return relayed


def _recompute(session: Session, changes: Sequence[EntityChange], depth: int) -> None:
    if depth >= MAX_CASCADE:
        where = ", ".join(sorted({c.blueprint for c in changes}))
        log.warning("computed properties: cascade stopped after %d hops at '%s'", depth, where)
        return
    # One write has one actor and one moment; what it moves computed is theirs too.
    actor, now = changes[0].actor, changes[0].at
    for host, values in computed.affected_values(session, list(changes), now).items():
        store_computed(session, host, values, actor, now, depth=depth + 1)


def _regrade(session: Session, blueprints: dict[str, Blueprint], changes: Sequence[EntityChange]) -> None:
    for name, bp in blueprints.items():
        written = [c for c in _group(changes, name) if c.after is not None]
        if not written or not scorecards.list_scorecards(session, name):
            continue
        known = [c.entity_id for c in written if c.entity_id is not None]
        if len(known) == len(written):
            ids = known
        else:
            ids = entity_ids(session, name, [c.identifier for c in written])
        scorecards.grade(session, bp, ids, written[0].actor)


# ---- writes the catalog makes by itself ---------------------------------------------------


def store_computed(
    session: Session,
    blueprint: str,
    values: dict[str, dict[str, Any]],
    actor: Actor,
    now: datetime,
    *,
    depth: int = 1,
) -> int:
    """Write computed ``values`` (identifier -> name -> value; None removes) where they differ
    from the stored ones, audited and through the pipeline; returns how many entities changed."""
    if not values or session.get(Blueprint, blueprint) is None:
        return 0
    rows = load_rows(session, blueprint, sorted(values))
    pending = [
        change
        for identifier, row in rows.items()
        if (change := _computed_change(row, values[identifier], actor, now)) is not None
    ]
    if not pending:
        return 0
    session.execute(
        update(Entity),
        [{"id": c.entity_id, "properties": (c.after or {})["properties"]} for c in pending],
    )
    audit.record_many(session, [change_audit_row(c) for c in pending])
    apply_changes(session, pending, depth=depth)
    return len(pending)


def _computed_change(
    row: dict[str, Any], values: dict[str, Any], actor: Actor, now: datetime
) -> EntityChange | None:
    stored = row["properties"] or {}
    properties = dict(stored)
    for name, value in values.items():
        if value is None:
            properties.pop(name, None)
        else:
            properties[name] = value
    if properties == stored:
        return None
    before = state(row)
    after = {**before, "properties": properties}
    return EntityChange(row["blueprint"], row["identifier"], before, after, actor, now, row["id"])


def change_audit_row(change: EntityChange) -> dict[str, Any]:
    """The audit row of a created or updated entity (its states before and after)."""
    action = "CREATE" if change.before is None else "UPDATE"
    return audit.audit_row(
        change.actor,
        action,
        "entity",
        change.identifier,
        blueprint=change.blueprint,
        before=change.before,
        after=change.after,
    )


def refresh_blueprint(session: Session, bp: Blueprint, actor: Actor, removed: set[str]) -> int:
    """Store every computed property of ``bp`` afresh (its definitions changed), dropping the
    values of the ``removed`` ones; returns how many entities changed."""
    now = utcnow()
    values = computed.blueprint_values(session, bp, removed, now)
    return sum(store_computed(session, host, by_entity, actor, now) for host, by_entity in values.items())


def refresh_windows(session: Session, actor: Actor) -> int:
    """Store every time-windowed aggregation afresh (the scheduled regrade runs this first:
    windows move with time, not only with writes); returns how many entities changed."""
    now = utcnow()
    return sum(
        store_computed(session, host, by_entity, actor, now)
        for values in computed.window_values(session, now)
        for host, by_entity in values.items()
    )


def forget_blueprint(session: Session, identifier: str, actor: Actor) -> None:
    """Blueprint ``identifier`` is being deleted: other blueprints' computed properties that
    read it go, and so do their values."""
    now = utcnow()
    for host, by_entity in computed.forget_blueprint(session, identifier).items():
        store_computed(session, host, by_entity, actor, now)


def delete_blueprint_entities(session: Session, blueprint: str, actor: Actor) -> int:
    """Delete every entity of a blueprint (the blueprint itself is being deleted), audited and
    through the pipeline; returns how many there were."""
    rows = [
        dict(r) for r in session.execute(select(ENTITIES).where(COLUMNS.blueprint == blueprint)).mappings()
    ]
    session.execute(delete(EntityRelation).where(EntityRelation.target_blueprint == blueprint))
    session.execute(delete(Entity).where(Entity.blueprint == blueprint))
    now = utcnow()
    apply_changes(
        session, [EntityChange(blueprint, r["identifier"], state(r), None, actor, now, r["id"]) for r in rows]
    )
    audit.record_many(
        session,
        [
            audit.audit_row(
                actor, "DELETE", "entity", r["identifier"], blueprint=blueprint, before=entity_view(r)
            )
            for r in rows
        ],
    )
    return len(rows)
