"""Webhook sources: signed deliveries, stored before they are answered and applied once.

``POST /v1/webhooks/{data_source}`` checks the HMAC signature the source's ``security`` asks
for (the secret is read from the environment variable ``secret_env`` names; GitHub's
``X-Hub-Signature-256: sha256=...`` is the default), stores the delivery and answers 202; the
same delivery id stored before is not stored (nor applied) again. Storing is one statement once
the process knows the source's signing settings (:func:`store_if_current`: the INSERT itself
checks that the source is still at the version they were read from). A processor in each API
process claims pending deliveries (``catalog.sources.delivery_batches``) and, in the same
transaction as the entity writes, maps each envelope ``{body, headers, query}`` with each
resource's ``filter``, ``itemsToParse``, mappings and ``operation``, and marks it with its
outcome. A crash before the commit leaves the delivery pending for the next claim; after it, the
delivery is marked: none is lost, none applied twice.
"""

from __future__ import annotations

import hmac
import os
import re
import threading
from collections.abc import Mapping as MappingType
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, String, Table, bindparam, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from catalog.db import JSONType, UTCDateTime, utcnow
from catalog.entities.service import delete_entity
from catalog.errors import CatalogError, FieldError, Invalid, NotFound
from catalog.models import DataSource, Entity, WebhookDelivery
from catalog.pagination import Page, check_limit, decode_cursor, encode_cursor
from catalog.sandbox.jq import JqError, run_jq_batch
from catalog.sources.definitions import DataSourceIn, Resource, Security, parsed
from catalog.sources.mapping import ItemError, map_items
from catalog.sources.syncs import apply_mapping, source_actor
from catalog.timefmt import format_instant, format_optional

PENDING, APPLIED, IGNORED, FAILED = "PENDING", "APPLIED", "IGNORED", "FAILED"
DELIVERY_HEADERS = ("x-delivery-id", "x-github-delivery")
# Never kept in an envelope: the mappings have no business with credentials.
DROPPED_HEADERS = ("authorization", "cookie", "proxy-authorization")
MAX_DELIVERY_ID = 200
# GitHub's owner/name: what a push may name for a files source to re-read.
REPOSITORY = re.compile(r"^[A-Za-z0-9-]{1,39}/(?!\.{1,2}$)[A-Za-z0-9._-]{1,100}$")
# A delivery whose processing raised this many times is marked FAILED (not retried forever).
MAX_ATTEMPTS = 3


def webhook_source(session: Session, identifier: str) -> tuple[DataSource, DataSourceIn]:
    source = session.get(DataSource, identifier)
    if source is None or source.kind != "webhook":
        raise NotFound(f"webhook source '{identifier}' not found")
    return source, parsed(source)


def signed_source(session: Session, identifier: str) -> tuple[DataSource, DataSourceIn]:
    """A source that takes deliveries: a webhook source, or a files source with ``security``
    (GitHub push events re-read the pushed repository)."""
    source = session.get(DataSource, identifier)
    definition = cached_definition(source) if source is not None else None
    if (
        source is None
        or source.kind not in ("webhook", "files")
        or definition is None
        or not definition.security
    ):
        _INTAKES.pop(identifier, None)
        raise NotFound(f"webhook source '{identifier}' not found")
    remember_intake(source, definition)
    return source, definition


# Parsed definitions by (source, version, updated stamp): every delivery to a source re-read and
# re-validated the same definition; a saved change bumps the stamp, so a stale one is never used.
_PARSED: dict[tuple[str, int, str], DataSourceIn] = {}
_PARSED_LOCK = threading.Lock()
MAX_PARSED = 256


def cached_definition(source: DataSource) -> DataSourceIn:
    """``parsed(source)``, validated once per saved version of the source."""
    key = (source.identifier, source.version or 0, str(source.updated_at))
    found = _PARSED.get(key)
    if found is None:
        found = parsed(source)
        with _PARSED_LOCK:
            if len(_PARSED) >= MAX_PARSED:
                _PARSED.clear()
            _PARSED[key] = found
    return found


@dataclass(frozen=True)
class Intake:
    """What taking a webhook source's deliveries needs, as one saved version of it said."""

    identifier: str
    version: int
    updated_at: datetime
    security: Security


# The intake of each webhook source, by identifier, as last read. Only a hint: a delivery is
# stored through it only while the source is still at that version (:func:`store_if_current`).
_INTAKES: dict[str, Intake] = {}


def known_intake(identifier: str) -> Intake | None:
    """The webhook source's intake as this process last read it (None: not read yet)."""
    return _INTAKES.get(identifier)


def remember_intake(source: DataSource, definition: DataSourceIn) -> None:
    """Keep a webhook source's intake for the deliveries that follow."""
    if source.kind != "webhook" or definition.security is None:
        return
    with _PARSED_LOCK:
        if len(_INTAKES) >= MAX_PARSED and source.identifier not in _INTAKES:
            _INTAKES.clear()
        _INTAKES[source.identifier] = Intake(
            source.identifier, source.version or 0, source.updated_at, definition.security
        )


_STORE_IF_CURRENT: dict[str, Any] = {}


def store_if_current(
    connection: Connection, intake: Intake, delivery_id: str, content: dict[str, Any]
) -> bool:
    """Store a delivery in one statement, provided its source is still at the version
    ``intake`` was read from and no delivery with that id was stored before; whether it was
    stored (False: a repeated id, or the source changed or is gone: ask :func:`store` after
    reading the source again)."""
    dialect = connection.dialect.name
    stmt = _STORE_IF_CURRENT.get(dialect)
    if stmt is None:
        stmt = _STORE_IF_CURRENT[dialect] = _store_if_current_statement(dialect)
    stored = connection.execute(
        stmt,
        {
            "source": intake.identifier,
            "delivery": delivery_id,
            "received": utcnow(),
            "envelope": content,
            "version": intake.version,
            "updated": intake.updated_at,
        },
    )
    return stored.scalar() is not None


def _store_if_current_statement(dialect: str) -> Any:
    """``INSERT INTO webhook_deliveries (...) SELECT ... FROM data_sources WHERE identifier =
    :source AND version = :version AND updated_at = :updated ON CONFLICT DO NOTHING RETURNING
    id``, built once (its compiled form is then cached)."""
    deliveries, sources = cast(Table, WebhookDelivery.__table__), cast(Table, DataSource.__table__)
    values = select(
        bindparam("source", type_=String()),
        bindparam("delivery", type_=String()),
        bindparam("received", type_=UTCDateTime()),
        bindparam("envelope", type_=JSONType),
        literal(PENDING),
        literal(0),
    ).where(
        sources.c.identifier == bindparam("source"),
        sources.c.kind == "webhook",
        sources.c.version == bindparam("version"),
        sources.c.updated_at == bindparam("updated", type_=UTCDateTime()),
    )
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    columns = ["data_source", "delivery_id", "received_at", "envelope", "status", "attempts"]
    return (
        insert(deliveries)
        .from_select(columns, values)
        .on_conflict_do_nothing(index_elements=["data_source", "delivery_id"])
        .returning(deliveries.c.id)
    )


def pushed_repository(definition: DataSourceIn, headers: MappingType[str, str], body: Any) -> str | None:
    """The repository (``owner/name``) a GitHub ``push`` to its default branch names, when it is
    of the files source's ``config.org``; None for any other delivery (nothing to re-read: the
    worker reads the default branch's files)."""
    if headers.get("x-github-event") != "push" or not isinstance(body, dict):
        return None
    repository = body.get("repository")
    org = definition.config.get("org")
    if not isinstance(repository, dict) or not isinstance(org, str):
        return None
    name = repository.get("full_name")
    if not isinstance(name, str) or not REPOSITORY.match(name):
        return None
    if name.split("/", 1)[0].lower() != org.lower():
        return None
    branch = repository.get("default_branch")
    if isinstance(branch, str) and body.get("ref") != f"refs/heads/{branch}":
        return None
    return name


def signature_valid(security: Security, headers: MappingType[str, str], body: bytes) -> bool:
    """Whether the request carries the HMAC of its body under the source's secret. An unset
    or empty secret accepts nothing."""
    secret = os.environ.get(security.secret_env, "")
    given = headers.get(security.header.lower(), "")
    if not secret or not given.startswith(security.prefix):
        return False
    expected = hmac.new(secret.encode(), body, security.algorithm).hexdigest()
    return hmac.compare_digest(given[len(security.prefix) :].strip().lower(), expected)


def delivery_id_of(headers: MappingType[str, str]) -> str | None:
    for name in DELIVERY_HEADERS:
        value = headers.get(name)
        if value:
            if len(value) > MAX_DELIVERY_ID:
                raise Invalid(
                    "delivery id too long",
                    [FieldError(f"/{name}", f"at most {MAX_DELIVERY_ID} characters")],
                )
            return value
    return None


def envelope(body: Any, headers: MappingType[str, str], query: MappingType[str, str]) -> dict[str, Any]:
    """What the mappings see: header names lower-cased, credentials left out."""
    kept = {k.lower(): v for k, v in headers.items() if k.lower() not in DROPPED_HEADERS}
    return {"body": body, "headers": kept, "query": dict(query)}


def store(session: Session, data_source: str, delivery_id: str, content: dict[str, Any]) -> bool:
    """Store a delivery; False when one with that id was stored before (nothing stored)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = (
        insert(WebhookDelivery)
        .values(
            data_source=data_source,
            delivery_id=delivery_id,
            received_at=utcnow(),
            envelope=content,
            status=PENDING,
            attempts=0,
        )
        .on_conflict_do_nothing(index_elements=["data_source", "delivery_id"])
        .returning(WebhookDelivery.id)
    )
    return session.scalar(stmt) is not None


# ---- the processor's work -------------------------------------------------------------------


def _claim(session: Session) -> WebhookDelivery | None:
    """The oldest pending delivery, now this transaction's. The conditional update is what
    claims it (PostgreSQL also skips rows another processor has locked): on SQLite, whose reads
    lock nothing, a delivery another processor took in between is simply not found pending."""
    stmt = (
        select(WebhookDelivery.id)
        .where(WebhookDelivery.status == PENDING)
        .order_by(WebhookDelivery.id)
        .limit(1)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    candidate = session.scalar(stmt)
    if candidate is None:
        return None
    taken = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == candidate, WebhookDelivery.status == PENDING)
        .values(attempts=WebhookDelivery.attempts + 1)
    )
    if getattr(taken, "rowcount", 0) != 1:
        return None
    return session.get(WebhookDelivery, candidate, populate_existing=True)


def process_one(factory: sessionmaker[Session]) -> bool:
    """Apply the oldest pending delivery and mark it, in one transaction; False when none is
    pending. A delivery whose processing raises is retried, then marked FAILED."""
    delivery_id: int | None = None
    try:
        with factory() as session, session.begin():
            delivery = _claim(session)
            if delivery is None:
                return False
            delivery_id = delivery.id
            apply_delivery(session, delivery)
        return True
    except Exception as exc:
        if delivery_id is None:
            raise
        _note_attempt(factory, delivery_id, exc)
        return True


def _note_attempt(factory: sessionmaker[Session], delivery_id: int, exc: Exception) -> None:
    with factory() as session, session.begin():
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.status != PENDING:
            return
        delivery.attempts += 1
        if delivery.attempts >= MAX_ATTEMPTS:
            delivery.status, delivery.processed_at = FAILED, utcnow()
            delivery.outcome = {"errors": [{"pointer": "/", "message": f"{exc.__class__.__name__}: {exc}"}]}


def new_outcome() -> dict[str, Any]:
    return {"created": 0, "updated": 0, "unchanged": 0, "deleted": 0, "failed": 0, "errors": []}


def apply_delivery(session: Session, delivery: WebhookDelivery) -> None:
    """Apply one claimed delivery and mark it (the caller's transaction)."""
    source = session.get(DataSource, delivery.data_source)
    definition = parsed(source) if source is not None else None
    outcome = new_outcome()
    matched = False
    if definition is not None:
        ((wanted, outcome),) = filtered(definition, [delivery.envelope])
        for index, resource in wanted:
            matched = True
            if resource.operation == "delete":
                _delete(session, definition, index, resource, delivery.envelope, outcome)
            else:
                applied = apply_mapping(
                    session, definition, index, map_items(resource, index, [delivery.envelope]), now=utcnow()
                )
                for key in ("created", "updated", "unchanged", "failed"):
                    outcome[key] += applied.counts[key]
                outcome["errors"] += [e.as_dict() for e in applied.errors]
    settle(delivery, outcome, matched)


def settle(delivery: WebhookDelivery, outcome: dict[str, Any], matched: bool) -> None:
    """Mark a delivery with what it did: FAILED when it had errors and wrote nothing."""
    written = sum(outcome[k] for k in ("created", "updated", "unchanged", "deleted"))
    if outcome["errors"] and not written:
        delivery.status = FAILED
    else:
        delivery.status = APPLIED if matched else IGNORED
    delivery.outcome, delivery.processed_at = outcome, utcnow()


def filtered(
    definition: DataSourceIn, contents: list[dict[str, Any]]
) -> list[tuple[list[tuple[int, Resource]], dict[str, Any]]]:
    """Per delivery: the resources whose ``filter`` (jq over the envelope) is true for it, and
    its outcome so far (a filter's jq error is one of its errors). One jq round trip for all."""
    filters = [(i, r) for i, r in enumerate(definition.resources) if r.filter is not None]
    outcomes = run_jq_batch([(r.filter or "", content) for content in contents for _, r in filters])
    answers = []
    for n, _content in enumerate(contents):
        results = dict(
            zip([i for i, _ in filters], outcomes[n * len(filters) : (n + 1) * len(filters)], strict=True)
        )
        outcome, wanted = new_outcome(), []
        for index, resource in enumerate(definition.resources):
            result = results.get(index)
            if isinstance(result, JqError):
                outcome["errors"].append(
                    ItemError(index, 0, f"/resources/{index}/filter", f"jq: {result}").as_dict()
                )
                outcome["failed"] += 1
            elif result is None or (result and result[0] is True):
                wanted.append((index, resource))
        answers.append((wanted, outcome))
    return answers


def _delete(
    session: Session,
    definition: DataSourceIn,
    index: int,
    resource: Resource,
    content: dict[str, Any],
    outcome: dict[str, Any],
) -> None:
    """``operation: delete``: the entities the mapping names are deleted (those absent are fine)."""
    mapping = map_items(resource, index, [content])
    outcome["errors"] += [e.as_dict() for e in mapping.errors]
    outcome["failed"] += len(mapping.failed)
    for mapped in mapping.entities:
        identifier = mapped.entity["identifier"]
        exists = session.scalar(
            select(Entity.id).where(Entity.blueprint == mapped.blueprint, Entity.identifier == identifier)
        )
        if exists is None:
            continue
        try:
            delete_entity(session, mapped.blueprint, identifier, source_actor(definition.identifier))
        except CatalogError as exc:
            outcome["errors"].append(ItemError(index, identifier, "/", f"not deleted: {exc}").as_dict())
            outcome["failed"] += 1
            continue
        outcome["deleted"] += 1


# ---- reading ----------------------------------------------------------------------------------


def list_deliveries(
    session: Session, data_source: str, *, limit: int, cursor: str | None
) -> Page[WebhookDelivery]:
    """Newest first."""
    check_limit(limit)
    stmt = select(WebhookDelivery).where(WebhookDelivery.data_source == data_source)
    if cursor:
        (last_id,) = decode_cursor(cursor, size=1)
        if not isinstance(last_id, int):
            raise Invalid("invalid cursor", [FieldError("/cursor", "not a cursor returned by this API")])
        stmt = stmt.where(WebhookDelivery.id < last_id)
    rows = list(session.scalars(stmt.order_by(WebhookDelivery.id.desc()).limit(limit + 1)))
    next_cursor = encode_cursor([rows[limit - 1].id]) if len(rows) > limit else None
    return Page(rows[:limit], next_cursor)


def delivery_view(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "delivery_id": delivery.delivery_id,
        "status": delivery.status,
        "received_at": format_instant(delivery.received_at),
        "processed_at": format_optional(delivery.processed_at),
        "attempts": delivery.attempts,
        "outcome": delivery.outcome,
    }
