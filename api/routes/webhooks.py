"""Webhook sources' endpoint (signed, no bearer token) and the processor that applies deliveries.

The route does the least it can before answering: check the signature, store the delivery,
answer 202 (a push to a files source instead starts a sync of the pushed repository). :class:`DeliveryProcessor` runs inside each API process (as the event relay does)
and applies stored deliveries in batches of one source, one transaction each
(``catalog.sources.delivery_batches.process_batch``); a delivery stored while no processor runs
is applied once one starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
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
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode("utf-8", "replace")
    factory: sessionmaker[Session] = request.app.state.sessionmaker

    def receive() -> tuple[str, bool, bool]:
        """(delivery id, accepted, stored for the processor)."""
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


class DeliveryProcessor:
    """Applies stored webhook deliveries, a batch per transaction, until stopped."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory
        self._wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = False
        self.running = False

    def wake(self) -> None:
        """Process soon (thread-safe)."""
        if self._loop is not None and self._wakeup is not None:
            self._loop.call_soon_threadsafe(self._wakeup.set)

    def stop(self) -> None:
        self._stopped = True
        self.wake()

    async def run(self) -> None:
        self.running = True
        try:
            await self._loop_until_stopped()
        finally:
            self.running = False

    async def _loop_until_stopped(self) -> None:
        self._loop, self._wakeup = asyncio.get_running_loop(), asyncio.Event()
        while not self._stopped:
            self._wakeup.clear()
            try:
                busy = await anyio.to_thread.run_sync(delivery_batches.process_batch, self._factory) > 0
            except Exception:
                log.exception("webhook delivery processing failed")
                busy, pause = False, BACKOFF
            else:
                pause = IDLE_POLL
            if busy:
                continue
            if self._stopped:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), pause)
