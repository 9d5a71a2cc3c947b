"""Webhook deliveries applied in batches: up to ``BATCH`` pending deliveries of one source per
transaction, so a burst costs a few jq round trips and bulk writes rather than a transaction,
two jq round trips and a write per delivery.

The claim is one conditional UPDATE (``attempts + 1`` on rows still PENDING, RETURNING what it
took; PostgreSQL also skips rows another processor has locked), so a delivery is claimed by one
processor, and it is marked in the transaction that applies it: none is lost, none applied twice.
Within the batch, in delivery order:

- every filter of every delivery runs in one jq round trip, and each resource maps all the
  deliveries it takes as one page;
- consecutive deliveries that only create or update, and whose entities are all different, are
  written together (per resource and blueprint, in bulk) inside a savepoint; a delivery that
  deletes, or that names an entity an earlier delivery of the group wrote, starts a new group
  (so deliveries about one entity still apply in order);
- a group whose write raises is rolled back to its savepoint and its deliveries applied one by
  one, each in a savepoint of its own: one bad delivery does not fail its batch's others. A
  delivery that still raises stays PENDING for the next batch and is marked FAILED once it has
  been tried ``MAX_ATTEMPTS`` times.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session, sessionmaker

from catalog.db import utcnow
from catalog.models import DataSource, WebhookDelivery
from catalog.sources import webhooks
from catalog.sources.definitions import DataSourceIn
from catalog.sources.mapping import ItemError, Mapping, map_items
from catalog.sources.syncs import apply_mapping

log = logging.getLogger("gantry.webhooks")
BATCH = 100


@dataclass
class _Planned:
    """One delivery of the batch: what its filters took, its mapped pages per resource, and its
    outcome as it builds up."""

    position: int
    delivery: WebhookDelivery
    outcome: dict[str, Any]
    matched: bool
    deletes: bool
    pages: dict[int, Mapping] = field(default_factory=dict)

    @property
    def keys(self) -> set[tuple[str, str]]:
        return {(m.blueprint, m.entity["identifier"]) for page in self.pages.values() for m in page.entities}


def process_batch(factory: sessionmaker[Session], limit: int = BATCH) -> int:
    """Claim and apply up to ``limit`` pending deliveries of one source in one transaction; how
    many were claimed (0: none is pending). A batch whose transaction fails as a whole is
    applied again one delivery per transaction (``webhooks.process_one``).

    The batch is filtered and mapped (jq) before its transaction, from a read of the pending
    deliveries: on SQLite the claim takes the one writer lock, and every webhook request's
    INSERT waits for it, so it is held for the writes only. Deliveries claimed in between by
    another processor, or a source changed meanwhile, are mapped again inside."""
    premapped = _premap(factory, limit)
    claimed = 0
    try:
        with factory() as session, session.begin():
            deliveries = _claim(session, limit, premapped.ids) if premapped else []
            if not deliveries:  # none premapped, or another processor took them meanwhile
                deliveries = _claim(session, limit)
            claimed = len(deliveries)
            if deliveries:
                _apply(session, deliveries, premapped)
        return claimed
    except Exception:
        if not claimed:
            raise
        log.exception("a batch of %d webhook deliveries failed: applying them one by one", claimed)
        for _ in range(claimed):
            if not webhooks.process_one(factory):
                break
        return claimed


@dataclass
class _Premapped:
    """A batch planned outside any transaction: valid for exactly these deliveries of the source
    as it was saved (``key``)."""

    key: tuple[str, int, str]
    ids: list[int]
    plans: list[_Planned]


def _source_key(source: DataSource) -> tuple[str, int, str]:
    return (source.identifier, source.version or 0, str(source.updated_at))


def _premap(factory: sessionmaker[Session], limit: int) -> _Premapped | None:
    with factory() as session:
        deliveries = list(
            session.scalars(select(WebhookDelivery).where(WebhookDelivery.id.in_(_candidates(limit))))
        )
        deliveries.sort(key=lambda d: d.id)
        source = session.get(DataSource, deliveries[0].data_source) if deliveries else None
        if source is None:
            return None
        definition = webhooks.cached_definition(source)
        key = _source_key(source)
    # The read ended with the session (its rows stay loaded): no lock is kept while mapping.
    return _Premapped(key, [d.id for d in deliveries], _plan(definition, deliveries))


def _candidates(limit: int) -> Select[Any]:
    """The ids of the oldest pending deliveries of the source of the oldest one."""
    pending = WebhookDelivery.status == webhooks.PENDING
    oldest = select(WebhookDelivery.data_source).where(pending).order_by(WebhookDelivery.id).limit(1)
    return (
        select(WebhookDelivery.id)
        .where(pending, WebhookDelivery.data_source == oldest.scalar_subquery())
        .order_by(WebhookDelivery.id)
        .limit(limit)
    )


def _claim(session: Session, limit: int, ids: list[int] | None = None) -> list[WebhookDelivery]:
    """The oldest pending deliveries of the source of the oldest one (of ``ids``, those premapped,
    when given), now this transaction's."""
    pending = WebhookDelivery.status == webhooks.PENDING
    candidates = _candidates(limit)
    if ids is not None:
        candidates = candidates.where(WebhookDelivery.id.in_(ids))
    if session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    taken = session.scalars(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(candidates), pending)
        .values(attempts=WebhookDelivery.attempts + 1)
        .returning(WebhookDelivery.id)
        .execution_options(synchronize_session=False)
    )
    ids = sorted(taken)
    if not ids:
        return []
    stmt = select(WebhookDelivery).where(WebhookDelivery.id.in_(ids)).order_by(WebhookDelivery.id)
    return list(session.scalars(stmt.execution_options(populate_existing=True)))


def _apply(session: Session, deliveries: list[WebhookDelivery], premapped: _Premapped | None = None) -> None:
    source = session.get(DataSource, deliveries[0].data_source)
    if source is None:  # deleted since: nothing takes its deliveries
        for delivery in deliveries:
            _alone(session, delivery)
        return
    definition = webhooks.cached_definition(source)
    if (
        premapped is not None
        and premapped.key == _source_key(source)
        and premapped.ids == [d.id for d in deliveries]
    ):
        plans = premapped.plans
        for planned, delivery in zip(plans, deliveries, strict=True):
            planned.delivery = delivery
    else:
        plans = _plan(definition, deliveries)
    group: list[_Planned] = []
    written: set[tuple[str, str]] = set()  # the entities of the group's deliveries
    for planned in plans:
        if planned.deletes:
            _flush(session, definition, group)
            written.clear()
            _alone(session, planned.delivery)
            continue
        keys = planned.keys
        if written & keys:
            _flush(session, definition, group)
            written.clear()
        group.append(planned)
        written |= keys
    _flush(session, definition, group)


def _plan(definition: DataSourceIn, deliveries: list[WebhookDelivery]) -> list[_Planned]:
    """Filter every delivery, then map each resource's deliveries as one page."""
    filtered = webhooks.filtered(definition, [d.envelope for d in deliveries])
    plans = []
    takers: dict[int, list[int]] = defaultdict(list)  # resource -> positions of its deliveries
    for position, (delivery, (wanted, outcome)) in enumerate(zip(deliveries, filtered, strict=True)):
        deletes = any(resource.operation == "delete" for _, resource in wanted)
        plans.append(_Planned(position, delivery, outcome, bool(wanted), deletes))
        if not deletes:
            for index, _resource in wanted:
                takers[index].append(position)
    for index, positions in takers.items():
        page = map_items(definition.resources[index], index, [deliveries[p].envelope for p in positions])
        for n, position in enumerate(positions):
            plans[position].pages[index] = _part(page, n, position)
    return plans


def _part(page: Mapping, n: int, position: int) -> Mapping:
    """Item ``n`` of a mapped page, as its delivery's own page (indexed by its position)."""
    part = Mapping(seen=0)
    for mapped in page.entities:
        if mapped.index == n:
            mapped.index = position
            part.entities.append(mapped)
    for error in page.errors:
        if error.item == n:
            key = 0 if isinstance(error.key, int) else error.key  # a delivery is a page of one
            part.errors.append(ItemError(error.resource, key, error.pointer, error.message, item=position))
    if n in page.failed:
        part.failed.add(position)
    return part


def _flush(session: Session, definition: DataSourceIn, group: list[_Planned]) -> None:
    """Write a group's deliveries together in a savepoint, or (if that raises) one by one."""
    if not group:
        return
    members = list(group)
    group.clear()
    try:
        with session.begin_nested():
            _write(session, definition, members)
    except Exception:
        log.exception("a group of %d webhook deliveries failed: applying them one by one", len(members))
        for planned in members:
            _alone(session, planned.delivery)
        return
    for planned in members:
        webhooks.settle(planned.delivery, planned.outcome, planned.matched)


def _write(session: Session, definition: DataSourceIn, group: list[_Planned]) -> None:
    by_position = {p.position: p for p in group}
    resources = sorted({index for p in group for index in p.pages})
    for index in resources:
        page = Mapping(seen=0)
        for planned in group:
            part = planned.pages.get(index)
            if part is not None:
                page.entities += part.entities
                page.errors += part.errors
                page.failed |= part.failed
        applied = apply_mapping(session, definition, index, page, now=utcnow())
        for position, counts in applied.by_item.items():
            outcome = by_position[position].outcome
            for key, count in counts.items():
                outcome[key] += count
        for error in applied.errors:
            if error.item is not None:
                by_position[error.item].outcome["errors"].append(error.as_dict())


def _alone(session: Session, delivery: WebhookDelivery) -> None:
    """One delivery in a savepoint of its own (all of its work again, from the filters); one
    that raises stays PENDING, or is marked FAILED after ``MAX_ATTEMPTS``."""
    try:
        with session.begin_nested():
            webhooks.apply_delivery(session, delivery)
    except Exception as exc:
        log.exception("webhook delivery %s failed", delivery.id)
        if delivery.attempts >= webhooks.MAX_ATTEMPTS:
            delivery.status, delivery.processed_at = webhooks.FAILED, utcnow()
            delivery.outcome = {"errors": [{"pointer": "/", "message": f"{exc.__class__.__name__}: {exc}"}]}
