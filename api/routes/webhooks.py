"""Webhook sources' endpoint (signed, no bearer token) and the processor that applies deliveries.

The route does the least it can before answering: check the signature, store the delivery,
answer 202 (a push to a files source instead starts a sync of the pushed repository). Once this
process has read a webhook source, a delivery to it is one INSERT that checks the source is
still at the version read (``catalog.sources.webhooks.store_if_current``); anything else (the
first delivery, a changed or deleted source, a bad signature, a repeated id) reads the source.
:class:`DeliveryProcessor` runs inside each API process (as the event relay does) and applies
stored deliveries in batches of one source, one transaction each
(``catalog.sources.delivery_batches.process_batch``), after a burst has been let in; a delivery
stored while no processor runs is applied once one starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import uuid
from typing import Any

import anyio.to_thread
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.openapi import errors
from api.schemas import DeliveryAccepted
from api.services.data_sources import DataSourceService
from catalog.errors import NotFound, Unauthenticated
from catalog.sources import delivery_batches, webhooks

log = logging.getLogger("gantry.webhooks")
router = APIRouter(tags=["webhooks"])
IDLE_POLL = 2.0
BACKOFF = 5.0
# The processor waits for a pause this long in this process's deliveries before applying them...
QUIET = 0.05
# ... but deliveries wait for a pause at most this long.
MAX_DEFER = 5.0


@router.post(
    "/v1/webhooks/{data_source}",
    status_code=202,
    response_model=DeliveryAccepted,
    responses=errors(401, 503),
    openapi_extra={"security": []},
)
async def receive_webhook(data_source: str, request: Request) -> JSONResponse:
    """A vendor's delivery to a webhook source: signed per the source's ``security`` (no bearer
    token), stored, and answered 202 at once; a delivery id seen before is not applied again.
    To a files source with ``security``, a GitHub push to a repository's default branch starts
    a sync of that repository (Temporal down: 503); any other event starts nothing."""
    raw = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    body = _parsed(raw)
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    engine: Engine = request.app.state.engine

    def receive() -> tuple[str, bool, bool]:
        """(delivery id, accepted, stored for the processor)."""
        # The common case in one statement: a webhook source this process has read, a valid
        # signature, a new delivery id, the source unchanged since (checked by the INSERT).
        intake = webhooks.known_intake(data_source)
        if intake is not None and webhooks.signature_valid(intake.security, headers, raw):
            delivery_id = webhooks.delivery_id_of(headers) or uuid.uuid4().hex
            content = webhooks.envelope(body, headers, request.query_params)
            with engine.begin() as connection:
                if webhooks.store_if_current(connection, intake, delivery_id, content):
                    return delivery_id, True, True
        # Otherwise (first delivery, a changed or deleted source, a bad signature, a repeated
        # id): read the source and decide.
        with factory() as session:
            # An unknown source answers as a bad signature does: the route tells an unsigned
            # caller nothing, not even which webhook sources exist.
            try:
                source, definition = webhooks.signed_source(session, data_source)
            except NotFound:
                raise Unauthenticated(f"the request is not signed for data source '{data_source}'") from None
            assert definition.security is not None  # signed_source answers only sources with one
            if not webhooks.signature_valid(definition.security, headers, raw):
                raise Unauthenticated(f"the request is not signed for data source '{data_source}'")
            delivery_id = webhooks.delivery_id_of(headers) or uuid.uuid4().hex
            if source.kind == "files":
                repository = webhooks.pushed_repository(definition, headers, body)
                if repository is None:
                    return delivery_id, False, False
                service = DataSourceService(session, request.app.state.temporal, request.app.state.settings)
                _sync, started = service.start_push_sync(source, repository, delivery_id)
                return delivery_id, started, False
            content = webhooks.envelope(body, headers, request.query_params)
            accepted = webhooks.store(session, data_source, delivery_id, content)
            session.commit()
            return delivery_id, accepted, accepted

    delivery_id, accepted, stored = await anyio.to_thread.run_sync(receive)
    if stored:
        request.app.state.deliveries.wake()
    return JSONResponse({"delivery_id": delivery_id, "accepted": accepted}, status_code=202)


def _parsed(raw: bytes) -> Any:
    """The body as JSON (orjson, or json for what orjson refuses: NaN, integers beyond 64 bits,
    UTF-16), else as text."""
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


class DeliveryProcessor:
    """Applies stored webhook deliveries, a batch per transaction, until stopped.

    It lets a burst of deliveries in before applying them: while this process keeps storing
    deliveries (one in the last ``quiet`` seconds) it waits, for at most ``max_defer`` seconds
    since it started falling behind; then it applies batch after batch until none is pending.
    Applying a batch holds the database's writer (SQLite has one), the process's interpreter
    and a core far longer than storing a delivery does: applied as they arrive, a burst was
    taken at the rate it was applied. Deferred, it is taken at the rate it is stored, and its
    batches are fuller; under load that never pauses, deliveries wait at most ``max_defer``
    before the processor applies them at its own pace.
    """

    def __init__(
        self, factory: sessionmaker[Session], *, quiet: float = QUIET, max_defer: float = MAX_DEFER
    ) -> None:
        self._factory = factory
        self._wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = False
        self._quiet, self._max_defer = quiet, max_defer
        self._last_stored = -math.inf  # time.monotonic() of this process's last stored delivery
        self._behind_since: float | None = None  # since when deliveries wait for a pause
        self.running = False

    def wake(self, *, stored: bool = True) -> None:
        """Process soon (thread-safe); ``stored``: a delivery was just stored."""
        if stored:
            self._last_stored = time.monotonic()
        if self._loop is not None and self._wakeup is not None:
            self._loop.call_soon_threadsafe(self._wakeup.set)

    def stop(self) -> None:
        self._stopped = True
        self.wake(stored=False)

    async def run(self) -> None:
        self.running = True
        try:
            await self._loop_until_stopped()
        finally:
            self.running = False
            self._loop = None  # a wake-up after the end has nothing to wake

    async def _loop_until_stopped(self) -> None:
        self._loop, self._wakeup = asyncio.get_running_loop(), asyncio.Event()
        while not self._stopped:
            self._wakeup.clear()
            await self._let_the_burst_in()
            if self._stopped:
                return
            try:
                busy = await anyio.to_thread.run_sync(delivery_batches.process_batch, self._factory) > 0
            except Exception:
                log.exception("webhook delivery processing failed")
                busy, pause = False, BACKOFF
            else:
                pause = IDLE_POLL
            if busy:
                continue
            self._behind_since = None  # nothing pending: the next burst may be let in again
            if self._stopped:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), pause)

    async def _let_the_burst_in(self) -> None:
        """Wait while deliveries keep being stored, unless deliveries have waited ``max_defer``."""
        while not self._stopped:
            now = time.monotonic()
            since_stored = now - self._last_stored
            if since_stored >= self._quiet:
                return
            if self._behind_since is None:
                self._behind_since = now
            left = self._max_defer - (now - self._behind_since)
            if left <= 0:
                return
            await asyncio.sleep(min(self._quiet - since_stored, left))
