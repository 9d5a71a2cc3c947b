"""Sub-actions: an ActionRun step (``uses: action``) that runs another action as a child run.

The step asks the catalog for the child's run record (``gantry.prepare_child_run``), which checks
the launch exactly as a launch by the parent's requester is checked (execute permission, entity,
trigger condition, preconditions, inputs; the child's approvals are resolved for it) and answers
the child's workflow input without starting anything. The step then starts the child's ActionRun
as a child workflow and waits for it: a child waiting for approval keeps the parent waiting, the
parent's cancellation cancels the child (the awaiting task is cancelled, and Temporal cancels
the child workflow; a parent that closes otherwise asks it to cancel too). A child that fails,
is declined or times out fails the step with its error; a child's outputs — its steps' outputs
by step id — are the step's outputs.

Deterministic: every side effect is an activity or the child workflow itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    FailureError,
    WorkflowAlreadyStartedError,
)

with workflow.unsafe.imports_passed_through():
    from contracts.runs import ACTION_RUN_WORKFLOW, RunInput, RunOutcome, RunStatus
    from contracts.search_attributes import (
        GANTRY_ACTION,
        GANTRY_BLUEPRINT,
        GANTRY_ENTITY,
        GANTRY_REQUESTED_BY,
        GANTRY_RUN_STATUS,
    )
    from contracts.steps import VENDOR_CLIENT_ERROR, Link, StepResult
    from contracts.sub_actions import (
        CHILD_RUN_OUTPUTS_ACTIVITY,
        CHILD_RUN_REFUSED,
        PREPARE_CHILD_RUN_ACTIVITY,
        ChildRun,
        ChildRunOutputs,
        ChildRunRequest,
    )
    from contracts.sub_actions import SUB_ACTION_KIND as SUB_ACTION_KIND

CATALOG_CALL = timedelta(minutes=1)
CATALOG_RETRY = RetryPolicy(
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=20,
    non_retryable_error_types=[CHILD_RUN_REFUSED, VENDOR_CLIENT_ERROR],
)

Log = Callable[..., None]
Failure = Callable[[str, str], Exception]


async def execute(
    step_id: str,
    params: dict[str, Any],
    inp: RunInput,
    *,
    log: Log,
    report: Callable[[], Awaitable[None]],
    fail: Failure,
    marker: str = "",
) -> StepResult:
    """Run the step's child run to its end and return its outputs. ``log`` adds a line to the
    parent's log, ``report`` sends the parent's state (so its record shows the step running while
    the child runs), ``fail(step_id, message)`` is the parent's step failure to raise, ``marker`` the parent's
    secret marker (its secret inputs passed on in ``inputs`` reach the child as secret inputs)."""
    request = _request(step_id, params, inp, fail, marker)
    child = await _prepare(request, fail)
    log(f"Sub-action '{child.action}' runs as run {child.run_id} ({child.status})", step_id=step_id)
    await report()
    outcome = await _run_child(step_id, child, inp, fail)
    if outcome.status != RunStatus.SUCCESS:  # an ActionRun history from before failed runs failed
        raise fail(step_id, _ended(child, outcome.status.value, outcome.error or ""))
    outputs = await workflow.execute_activity(
        CHILD_RUN_OUTPUTS_ACTIVITY,
        child.run_id,
        result_type=ChildRunOutputs,
        start_to_close_timeout=CATALOG_CALL,
        retry_policy=CATALOG_RETRY,
        summary=f"{step_id} · outputs of {child.run_id}",
    )
    return StepResult(
        outputs=outputs.outputs,
        links=[Link(f"Sub-action run {child.run_id} ({child.action})", child.url)] if child.url else [],
        log=[f"Sub-action run {child.run_id} succeeded"],
    )


def _request(
    step_id: str, params: dict[str, Any], inp: RunInput, fail: Failure, marker: str
) -> ChildRunRequest:
    """The child run asked for by the step's rendered ``with``: ``action``, ``entity``, ``inputs``."""
    action, entity, inputs = params.get("action"), params.get("entity"), params.get("inputs", {})
    if not isinstance(action, str) or not action:
        raise fail(step_id, "action: 'action' must name an action")
    if entity is not None and not isinstance(entity, str):
        raise fail(step_id, f"action {action}: 'entity' must be an entity identifier")
    if not isinstance(inputs, dict):
        raise fail(step_id, f"action {action}: 'inputs' must be an object")
    return ChildRunRequest(
        parent_run_id=inp.run_id,
        step_id=step_id,
        action=action,
        entity=entity or None,
        inputs=inputs,
        execution=workflow.info().run_id,
        secret_marker=marker,
    )


async def _prepare(request: ChildRunRequest, fail: Failure) -> ChildRun:
    """The child's run record, checked and created by the catalog (the same one on a retry)."""
    try:
        return await workflow.execute_activity(
            PREPARE_CHILD_RUN_ACTIVITY,
            request,
            result_type=ChildRun,
            start_to_close_timeout=CATALOG_CALL,
            retry_policy=CATALOG_RETRY,
            summary=f"{request.step_id} · prepare {request.action}",
        )
    except ActivityError as exc:
        if isinstance(exc.cause, CancelledError):
            raise asyncio.CancelledError(f"step {request.step_id} cancelled") from exc
        raise fail(request.step_id, f"action {request.action}: {_root_message(exc)}") from exc


async def _run_child(step_id: str, child: ChildRun, inp: RunInput, fail: Failure) -> RunOutcome:
    """Start the child's ActionRun and wait for its end. Cancelling the waiting task (the parent
    is cancelled) cancels the child and waits for its cancellation to complete."""
    run_input = RunInput.from_json(child.workflow_input)
    try:
        return await workflow.execute_child_workflow(
            ACTION_RUN_WORKFLOW,
            run_input,
            id=child.workflow_id,
            result_type=RunOutcome,
            parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
            search_attributes=_attributes(run_input) if inp.search_attributes else None,
            static_summary=child.summary or None,
        )
    except WorkflowAlreadyStartedError as exc:
        raise fail(
            step_id, _ended(child, "FAILURE", f"its workflow {child.workflow_id} is already running")
        ) from exc
    except ChildWorkflowError as exc:
        cause = exc.cause
        if isinstance(cause, CancelledError):
            raise asyncio.CancelledError(f"sub-action run {child.run_id} cancelled") from exc
        details = cause.details if isinstance(cause, ApplicationError) else ()
        outcome = RunOutcome.from_details(details[0] if details else None)
        if outcome is not None:
            raise fail(step_id, _ended(child, outcome.status.value, outcome.error or "")) from exc
        raise fail(step_id, _ended(child, "FAILURE", _root_message(exc))) from exc


def _attributes(run_input: RunInput) -> TypedSearchAttributes:
    """The child's search attributes, as the API sets them on a launch."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(GANTRY_ACTION, run_input.action.identifier),
            SearchAttributePair(GANTRY_BLUEPRINT, run_input.action.blueprint or ""),
            SearchAttributePair(GANTRY_ENTITY, (run_input.entity or {}).get("identifier", "")),
            SearchAttributePair(GANTRY_RUN_STATUS, RunStatus.IN_PROGRESS.value),
            SearchAttributePair(GANTRY_REQUESTED_BY, run_input.user.identifier),
        ]
    )


def _ended(child: ChildRun, status: str, error: str) -> str:
    return f"sub-action '{child.action}' run {child.run_id} ended {status}" + (f": {error}" if error else "")


def _root_message(exc: BaseException) -> str:
    """The innermost failure's message: the catalog's words, not Temporal's wrapping."""
    cause: BaseException | None = exc
    message = str(exc)
    while cause is not None:
        if isinstance(cause, FailureError) and cause.message:
            message = cause.message
        cause = cause.__cause__
    return message
