"""Data-source operations that span the catalog and Temporal: saving a source sets its
schedule, deleting one removes it, ``POST .../syncs`` starts a sync, and a signed GitHub push to
a files source starts a sync of the pushed repository.

A pull source with a ``schedule`` has the Temporal Schedule ``datasource:{id}``, which starts
``DataSourceSync`` every ``schedule`` (workflow ``sync:{id}:scheduled-<time>``). The definition is
committed only after Temporal took the schedule change, so Temporal down is a 503 with
Retry-After and nothing changed; an API sync's record is committed before its workflow starts
and ends as FAILURE (not started) when Temporal cannot take it.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import timedelta
from functools import partial
from typing import Annotated, Any, TypeVar

import anyio.from_thread
from fastapi import Depends
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import SessionDep, SettingsDep, TemporalDep
from api.errors import ServiceUnavailable
from api.temporal import TemporalGateway
from catalog.audit import Actor
from catalog.db import utcnow
from catalog.durations import parse_duration
from catalog.identity.permissions import Principal
from catalog.models import DataSource, DataSourceSync
from catalog.sources import definitions, syncs
from catalog.sources.definitions import PULL_KINDS, DataSourceIn
from config import Settings
from contracts.search_attributes import GANTRY_DATA_SOURCE
from contracts.sources import SCHEDULED, SYNC_WORKFLOW, SyncInput, SyncStatus, schedule_id, sync_workflow_id

T = TypeVar("T")
RPC_TIMEOUT = timedelta(seconds=5)


def _unavailable(exc: Exception) -> ServiceUnavailable:
    return ServiceUnavailable(f"Temporal did not take the change: {exc}")


def scheduled(definition: dict[str, Any]) -> timedelta | None:
    """How often a saved definition syncs (None: only when asked)."""
    every = definition.get("schedule")
    if every is None or definition.get("kind") not in PULL_KINDS:
        return None
    return parse_duration(every)


class DataSourceService:
    """Data-source operations for one request (called from the route's worker thread)."""

    def __init__(self, session: Session, temporal: TemporalGateway, settings: Settings) -> None:
        self.session = session
        self.temporal = temporal
        self.settings = settings

    def save(
        self, body: DataSourceIn, actor: Actor, who: Principal, *, create_only: bool = False
    ) -> tuple[DataSource, bool]:
        """Check and store the definition, bring its schedule in line, then commit."""
        source, previous = definitions.save(self.session, body, actor, who, create_only=create_only)
        before = scheduled(previous.definition) if previous is not None else None
        after = scheduled(source.definition)
        if before is not None or after is not None:
            try:
                self._await(partial(self._set_schedule, source.identifier, after))
            except ServiceUnavailable:
                self.session.rollback()
                raise
        self.session.commit()
        return source, previous is None

    def delete(self, identifier: str, actor: Actor, who: Principal) -> None:
        source = definitions.get_administrable(self.session, identifier, who)
        definitions.delete(self.session, source, actor)
        if scheduled(source.definition) is not None:
            try:
                self._await(partial(self._set_schedule, identifier, None))
            except ServiceUnavailable:
                self.session.rollback()
                raise
        self.session.commit()

    def start_sync(self, identifier: str, actor: Actor, who: Principal) -> DataSourceSync:
        """Commit a RUNNING record, then start its workflow; Temporal down ends the record as
        FAILURE (not started) and answers 503."""
        source = definitions.get_administrable(self.session, identifier, who)
        sync = syncs.open_sync(self.session, source, syncs.new_sync_id(), "API", actor)
        self.session.commit()
        self._launch(SyncInput(data_source=identifier, sync_id=sync.id, trigger="API"))
        return sync

    def start_push_sync(
        self, source: DataSource, repository: str, delivery_id: str
    ) -> tuple[DataSourceSync, bool]:
        """A signed push to a files source: a sync of just ``repository`` (trigger WEBHOOK), named
        after the delivery; a delivery seen before starts nothing (False)."""
        identifier = source.identifier
        sync_id = syncs.push_sync_id(delivery_id)
        existing = self.session.get(DataSourceSync, (identifier, sync_id))
        if existing is not None:
            return existing, False
        actor = syncs.source_actor(identifier)
        try:
            sync = syncs.open_sync(self.session, source, sync_id, "WEBHOOK", actor, [repository])
            self.session.commit()
        except IntegrityError:  # the same delivery, at the same time, in another request
            self.session.rollback()
            return syncs.get_sync(self.session, identifier, sync_id), False
        pushed = SyncInput(
            data_source=identifier, sync_id=sync_id, trigger="WEBHOOK", repositories=[repository]
        )
        self._launch(pushed)
        return sync, True

    def _launch(self, start: SyncInput) -> None:
        """Start a committed record's workflow; Temporal down ends the record as FAILURE."""
        try:
            self._await(partial(self._start, start))
        except ServiceUnavailable as exc:
            self.session.rollback()
            sync = syncs.get_sync(self.session, start.data_source, start.sync_id)
            sync.status, sync.ended_at = SyncStatus.FAILURE.value, utcnow()
            sync.errors = [{"message": f"not started: {exc.message}", "resource": None}]
            self.session.commit()
            raise

    # ---- on the event loop ------------------------------------------------------------------

    def _attributes(self, identifier: str) -> TypedSearchAttributes | None:
        if not self.settings.temporal_search_attributes:
            return None
        return TypedSearchAttributes([SearchAttributePair(GANTRY_DATA_SOURCE, identifier)])

    async def _start(self, start: SyncInput) -> None:
        client = await self.temporal.client()
        try:
            await client.start_workflow(
                SYNC_WORKFLOW,
                start,
                id=sync_workflow_id(start.data_source, start.sync_id),
                task_queue=self.settings.task_queue,
                search_attributes=self._attributes(start.data_source),
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                rpc_timeout=RPC_TIMEOUT,
            )
        except WorkflowAlreadyStartedError:
            return
        except RPCError as exc:
            raise _unavailable(exc) from exc

    def _schedule(self, identifier: str, every: timedelta) -> Schedule:
        return Schedule(
            action=ScheduleActionStartWorkflow(
                SYNC_WORKFLOW,
                SyncInput(data_source=identifier),
                id=sync_workflow_id(identifier, SCHEDULED),
                task_queue=self.settings.task_queue,
                typed_search_attributes=self._attributes(identifier) or TypedSearchAttributes.empty,
            ),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        )

    async def _set_schedule(self, identifier: str, every: timedelta | None) -> None:
        """Create, update or delete ``datasource:{id}`` so that it matches ``every``."""
        client: Client = await self.temporal.client()
        handle = client.get_schedule_handle(schedule_id(identifier))
        try:
            if every is None:
                await handle.delete(rpc_timeout=RPC_TIMEOUT)
                return
            schedule = self._schedule(identifier, every)

            def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=schedule)

            try:
                await handle.update(replace, rpc_timeout=RPC_TIMEOUT)
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
                await client.create_schedule(schedule_id(identifier), schedule, rpc_timeout=RPC_TIMEOUT)
        except RPCError as exc:
            if every is None and exc.status == RPCStatusCode.NOT_FOUND:
                return
            raise _unavailable(exc) from exc

    def _await(self, call: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return anyio.from_thread.run(call)


def data_source_service(
    session: SessionDep, temporal: TemporalDep, settings: SettingsDep
) -> DataSourceService:
    return DataSourceService(session, temporal, settings)


DataSourceServiceDep = Annotated[DataSourceService, Depends(data_source_service)]
