"""The API's door to Temporal: start, cancel and look at action-run workflows.

The client is connected lazily and reused; when Temporal cannot be reached every call raises
:class:`ServiceUnavailable` (a 503 with Retry-After), so a launch leaves nothing behind.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.errors import ServiceUnavailable
from catalog.runs.service import NEVER_STARTED
from config import Settings
from contracts.approvals import DECIDE_UPDATE, NO_APPROVAL_PENDING, REFUSAL_STATUS, Decision
from contracts.runs import RunInput, RunOutcome, RunStatus
from contracts.search_attributes import (
    GANTRY_ACTION,
    GANTRY_BLUEPRINT,
    GANTRY_ENTITY,
    GANTRY_REQUESTED_BY,
    GANTRY_RUN_STATUS,
)
from contracts.timers import (
    ARM_SIGNAL,
    EXTEND_UPDATE,
    EXTENSION_REFUSED,
    RUN_ENDED_SIGNAL,
    Arm,
    Extension,
    TimerInput,
)
from workflows.action_run import ActionRun
from workflows.timer import EntityTimer


class DecisionRefused(Exception):
    """The approval gate refused a decision: ``status`` is 403 (not allowed) or 409 (too late)."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


@dataclass
class WorkflowEnd:
    """How a closed workflow ended, in run-status words."""

    status: str
    label: str
    error: str | None = None
    # Temporal does not know the workflow: it was never started (or its history was deleted).
    missing: bool = False

    def never_started(self) -> WorkflowEnd:
        """How the reconciler ends a run whose workflow Temporal does not know after a grace."""
        return WorkflowEnd("FAILURE", "Not started", f"{NEVER_STARTED}: Temporal does not know it", True)


class TemporalGateway:
    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self._settings = settings
        self._client = client
        self._lock = asyncio.Lock()

    def _attributes(self, *pairs: SearchAttributePair[Any]) -> TypedSearchAttributes | None:
        """Gantry's search attributes, unless the server cannot take them (the test server)."""
        return TypedSearchAttributes(list(pairs)) if self._settings.temporal_search_attributes else None

    async def client(self) -> Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await asyncio.wait_for(
                        Client.connect(
                            self._settings.temporal_address,
                            namespace=self._settings.temporal_namespace,
                            tls=self._settings.temporal_tls,
                        ),
                        timeout=5,
                    )
                except (RuntimeError, OSError, TimeoutError, RPCError) as exc:
                    raise ServiceUnavailable(
                        f"Temporal at {self._settings.temporal_address} is unreachable: {exc}"
                    ) from exc
        return self._client

    async def start_action_run(
        self,
        workflow_input: RunInput,
        *,
        workflow_id: str,
        action: str,
        blueprint: str | None,
        entity: str | None,
        requested_by: str,
        summary: str,
        first_only: bool = False,
    ) -> None:
        """Start the run's workflow; one already running is the same launch, retried. With
        ``first_only`` (starting a run whose launch may have started it already) no execution
        is started if one with this id ever ran, even one that has ended."""
        client = await self.client()
        attributes = TypedSearchAttributes(
            [
                SearchAttributePair(GANTRY_ACTION, action),
                SearchAttributePair(GANTRY_BLUEPRINT, blueprint or ""),
                SearchAttributePair(GANTRY_ENTITY, entity or ""),
                SearchAttributePair(GANTRY_RUN_STATUS, RunStatus.IN_PROGRESS.value),
                SearchAttributePair(GANTRY_REQUESTED_BY, requested_by),
            ]
        )
        try:
            await client.start_workflow(
                ActionRun.run,
                workflow_input,
                id=workflow_id,
                task_queue=self._settings.task_queue,
                search_attributes=attributes if self._settings.temporal_search_attributes else None,
                id_reuse_policy=(
                    WorkflowIDReusePolicy.REJECT_DUPLICATE
                    if first_only
                    else WorkflowIDReusePolicy.ALLOW_DUPLICATE
                ),
                static_summary=summary,
                rpc_timeout=_timeout(),
            )
        except WorkflowAlreadyStartedError:
            return  # the same launch, retried: one workflow
        except RPCError as exc:
            raise _unavailable(exc) from exc

    async def cancel(self, workflow_id: str) -> None:
        client = await self.client()
        try:
            await client.get_workflow_handle(workflow_id).cancel(rpc_timeout=_timeout())
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return
            raise _unavailable(exc) from exc

    async def decide(self, workflow_id: str, decision: Decision) -> dict[str, Any]:
        """Apply an approval decision through the workflow's ``decide`` Update. A decision its
        validator refuses raises :class:`DecisionRefused` and never enters the history."""
        client = await self.client()
        handle = client.get_workflow_handle(workflow_id)
        try:
            result = await handle.execute_update(DECIDE_UPDATE, decision, rpc_timeout=_update_timeout())
        except WorkflowUpdateRPCTimeoutOrCancelledError as exc:
            # No worker took the Update in time. Temporal keeps an admitted Update for the workflow's
            # next task, so it may still apply: say so rather than "nothing happened".
            raise ServiceUnavailable(
                "no worker answered in time; the decision may still apply once one does: "
                "look at the run before deciding again"
            ) from exc
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            kind = getattr(cause, "type", None) or ""
            raise DecisionRefused(
                REFUSAL_STATUS.get(kind, 409), kind, str(getattr(cause, "message", cause))
            ) from exc
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise DecisionRefused(409, NO_APPROVAL_PENDING, "the run's workflow is not running") from exc
            raise _unavailable(exc) from exc
        state: dict[str, Any] = result
        return state

    async def arm_timer(self, timer: dict[str, Any], arm: Arm, *, blueprint: str, entity: str) -> None:
        """Signal-with-start the timer's workflow: starts it, or re-arms (or clears) the running one."""
        client = await self.client()
        try:
            if arm.deadline is None:  # cleared: only a running timer needs to hear it
                await client.get_workflow_handle(timer["id"]).signal(ARM_SIGNAL, arm, rpc_timeout=_timeout())
                return
            await client.start_workflow(
                EntityTimer.run,
                TimerInput(timer["id"], blueprint, entity, timer["property"]),
                id=timer["id"],
                task_queue=self._settings.task_queue,
                start_signal=ARM_SIGNAL,
                start_signal_args=[arm],
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                search_attributes=self._attributes(
                    SearchAttributePair(GANTRY_BLUEPRINT, blueprint),
                    SearchAttributePair(GANTRY_ENTITY, entity),
                ),
                static_summary=f"TTL of {blueprint} {entity}: {timer['property']}",
                rpc_timeout=_timeout(),
            )
        except RPCError as exc:
            if arm.deadline is None and exc.status == RPCStatusCode.NOT_FOUND:
                return
            raise _unavailable(exc) from exc

    async def run_ended(self, timer_id: str, run_id: str) -> None:
        """Tell a timer its on-expiry run has ended; a timer no longer running needs nothing."""
        client = await self.client()
        try:
            await client.get_workflow_handle(timer_id).signal(
                RUN_ENDED_SIGNAL, run_id, rpc_timeout=_timeout()
            )
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return
            raise _unavailable(exc) from exc

    async def extend_timer(self, timer_id: str, extension: Extension) -> dict[str, Any]:
        client = await self.client()
        try:
            result = await client.get_workflow_handle(timer_id).execute_update(
                EXTEND_UPDATE, extension, rpc_timeout=_update_timeout()
            )
        except WorkflowUpdateRPCTimeoutOrCancelledError as exc:
            raise ServiceUnavailable(
                "no worker answered in time; the extension may still apply once one does: "
                "look at the timer before extending again"
            ) from exc
        except WorkflowUpdateFailedError as exc:
            raise DecisionRefused(
                409, EXTENSION_REFUSED, str(getattr(exc.cause, "message", exc.cause))
            ) from exc
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise DecisionRefused(409, EXTENSION_REFUSED, "the timer is not running") from exc
            raise _unavailable(exc) from exc
        state: dict[str, Any] = result
        return state

    async def start_automation(self, workflow_id: str, workflow: str, arg: Any, summary: str) -> bool:
        """Start a workflow once: False when one with this id already ran (a relayed duplicate)."""
        client = await self.client()
        try:
            await client.start_workflow(
                workflow,
                arg,
                id=workflow_id,
                task_queue=self._settings.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                static_summary=summary,
                rpc_timeout=_timeout(),
            )
        except WorkflowAlreadyStartedError:
            return False
        except RPCError as exc:
            raise _unavailable(exc) from exc
        return True

    async def ended(self, workflow_id: str) -> WorkflowEnd | None:
        """None while the workflow runs; how it ended once it is closed (or was never started)."""
        client = await self.client()
        handle = client.get_workflow_handle_for(ActionRun.run, workflow_id)
        try:
            description = await handle.describe(rpc_timeout=_timeout())
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return WorkflowEnd(
                    "FAILURE",
                    "The workflow was never started or no longer exists",
                    "workflow not found",
                    missing=True,
                )
            raise _unavailable(exc) from exc
        status = description.status
        if status in (None, WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW):
            return None
        if status == WorkflowExecutionStatus.COMPLETED:
            try:
                result = await handle.result(rpc_timeout=_timeout())
            except WorkflowFailureError as exc:
                return WorkflowEnd("FAILURE", "Workflow failed", str(exc.cause or exc))
            return WorkflowEnd(result.status, f"Workflow completed ({result.status})", result.error)
        if status == WorkflowExecutionStatus.FAILED and (outcome := await _run_outcome(handle)):
            return outcome
        mapping = {
            WorkflowExecutionStatus.TERMINATED: ("CANCELLED", "Terminated from Temporal"),
            WorkflowExecutionStatus.CANCELED: ("CANCELLED", "Cancelled"),
            WorkflowExecutionStatus.TIMED_OUT: ("TIMED_OUT", "The workflow timed out"),
            WorkflowExecutionStatus.FAILED: ("FAILURE", "The workflow failed"),
        }
        run_status, label = mapping.get(status, ("FAILURE", f"Workflow ended: {status.name}"))
        return WorkflowEnd(run_status, label, label)


async def _run_outcome(handle: Any) -> WorkflowEnd | None:
    """How a run whose workflow failed on purpose ended: ActionRun fails its workflow with the
    run's status (FAILURE, DECLINED, TIMED_OUT), label and error as the failure's details."""
    try:
        await handle.result(rpc_timeout=_timeout())
    except WorkflowFailureError as exc:
        details = getattr(exc.cause, "details", None) or ()
        outcome = RunOutcome.from_details(details[0]) if details else None
        if outcome is not None:
            return WorkflowEnd(outcome.status, outcome.label, outcome.error)
    return None


def _timeout() -> Any:
    from datetime import timedelta

    return timedelta(seconds=10)


def _update_timeout() -> Any:
    """Longer than a worker failover (Temporal's 10 s sticky schedule-to-start timeout), so a
    decision or extension sent while a worker restarts still gets its answer."""
    from datetime import timedelta

    return timedelta(seconds=20)


def _unavailable(exc: RPCError) -> ServiceUnavailable:
    return ServiceUnavailable(f"Temporal refused the call: {exc.message}")
