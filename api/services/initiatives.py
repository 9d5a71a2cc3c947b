"""Initiative operations that span the catalog and Temporal: saving one arms its workflow,
changing its deadline or reminders re-arms it, deleting one ends it.

The workflow ``initiative:{id}`` is signalled with signal-with-start (``schedule``), so a
create, a later change and a retried request all end in one workflow with the latest schedule.
The definition is committed only after Temporal took the signal: Temporal down is a 503 with
Retry-After and nothing changed. A dry run never reaches Temporal.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import timedelta
from functools import partial
from typing import Annotated, Any, TypeVar

import anyio.from_thread
from fastapi import Depends
from sqlalchemy.orm import Session
from temporalio.common import WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from api.deps import SessionDep, SettingsDep, TemporalDep
from api.errors import ServiceUnavailable
from api.temporal import TemporalGateway
from catalog.audit import Actor
from catalog.identity.permissions import Principal
from catalog.initiatives import service
from catalog.initiatives.service import InitiativeIn
from catalog.models import Initiative
from config import Settings
from contracts.initiatives import (
    INITIATIVE_WORKFLOW,
    SCHEDULE_SIGNAL,
    InitiativeInput,
    InitiativeSchedule,
    initiative_workflow_id,
)

T = TypeVar("T")
RPC_TIMEOUT = timedelta(seconds=5)


class InitiativeService:
    """Initiative operations for one request (called from the route's worker thread)."""

    def __init__(self, session: Session, temporal: TemporalGateway, settings: Settings) -> None:
        self.session = session
        self.temporal = temporal
        self.settings = settings

    def save(
        self,
        body: InitiativeIn,
        actor: Actor,
        who: Principal,
        *,
        create_only: bool = False,
        dry_run: bool = False,
    ) -> tuple[Initiative, bool]:
        """Check and store the definition, (re-)arm its workflow when its schedule changed, commit."""
        initiative, before = service.save(self.session, body, actor, who, create_only=create_only)
        if dry_run:
            return initiative, before is None
        if service.schedule_changed(before, initiative.definition):
            schedule = InitiativeSchedule(
                initiative.definition["deadline"], list(initiative.definition["remind_before"])
            )
            self._or_roll_back(partial(self._signal, initiative.identifier, schedule))
        self.session.commit()
        return initiative, before is None

    def delete(self, identifier: str, actor: Actor, who: Principal) -> None:
        service.delete(self.session, identifier, actor, who)
        self._or_roll_back(partial(self._end, identifier))
        self.session.commit()

    def _or_roll_back(self, call: Callable[[], Coroutine[Any, Any, None]]) -> None:
        try:
            anyio.from_thread.run(call)
        except ServiceUnavailable:
            self.session.rollback()
            raise

    async def _signal(self, identifier: str, schedule: InitiativeSchedule) -> None:
        client = await self.temporal.client()
        try:
            await client.start_workflow(
                INITIATIVE_WORKFLOW,
                InitiativeInput(identifier),
                id=initiative_workflow_id(identifier),
                task_queue=self.settings.task_queue,
                start_signal=SCHEDULE_SIGNAL,
                start_signal_args=[schedule],
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                static_summary=f"initiative {identifier}",
                rpc_timeout=RPC_TIMEOUT,
            )
        except RPCError as exc:
            raise ServiceUnavailable(f"Temporal did not take the change: {exc.message}") from exc

    async def _end(self, identifier: str) -> None:
        client = await self.temporal.client()
        handle = client.get_workflow_handle(initiative_workflow_id(identifier))
        try:
            await handle.signal(SCHEDULE_SIGNAL, InitiativeSchedule(None), rpc_timeout=RPC_TIMEOUT)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return  # it already ended (its deadline passed)
            raise ServiceUnavailable(f"Temporal did not take the change: {exc.message}") from exc


def initiative_service(
    session: SessionDep, temporal: TemporalDep, settings: SettingsDep
) -> InitiativeService:
    return InitiativeService(session, temporal, settings)


InitiativeServiceDep = Annotated[InitiativeService, Depends(initiative_service)]
