"""The action-run workflow: an action's steps, in order, as activities — durably.

Deterministic: step parameters are rendered here by the pure template renderer (so Temporal UI
shows them), ``if`` conditions are evaluated here, time comes from ``workflow.now()``. Every
side effect is an activity; the run record is kept current through the ``gantry.report_run``
local activity. On failure or cancellation the completed steps' ``compensate`` run in reverse.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    # Jinja2 imports parts of itself lazily while compiling; pass them all through the sandbox.
    import jinja2
    import jinja2.compiler
    import jinja2.runtime
    import jinja2.sandbox  # noqa: F401

    from activities.types import STEP_FAILED, VENDOR_CLIENT_ERROR, ReportInput, StepInput, StepResult
    from catalog.durations import parse_duration
    from catalog.step_kinds import WAITING_KINDS
    from catalog.templates import TemplateFailure, evaluate_condition, render_value

RUN_STATUS = SearchAttributeKey.for_keyword("GantryRunStatus")
REPORT_ACTIVITY = "gantry.report_run"
DEFAULT_TIMEOUT = timedelta(minutes=10)
DEFAULT_WAITING_TIMEOUT = timedelta(hours=1)
HEARTBEAT_TIMEOUT = timedelta(seconds=30)
NON_RETRYABLE = [VENDOR_CLIENT_ERROR, STEP_FAILED]


@dataclass
class RunInput:
    run_id: str
    action: dict[str, Any]
    entity: dict[str, Any] | None
    inputs: dict[str, Any]
    user: dict[str, Any]
    run: dict[str, Any]
    event: dict[str, Any] | None = None
    # A retry resumes at this step, with the earlier steps' {"status", "outputs"}.
    resume_at: str | None = None
    previous_steps: dict[str, Any] = field(default_factory=dict)
    # First seq of this execution's log lines (a retry continues after the last one).
    log_base: int = 0


class StepFailure(Exception):
    def __init__(self, step_id: str, message: str) -> None:
        super().__init__(message)
        self.step_id = step_id
        self.message = message


@workflow.defn(name="ActionRun")
class ActionRun:
    def __init__(self) -> None:
        self._run_id = ""
        self._status = "IN_PROGRESS"
        self._label = "Starting"
        self._error: str | None = None
        self._steps: list[dict[str, Any]] = []
        self._links: list[dict[str, Any]] = []
        self._affected: list[dict[str, Any]] = []
        self._unsent: list[dict[str, Any]] = []
        self._seq = 0

    @workflow.query
    def state(self) -> dict[str, Any]:
        return {
            "status": self._status,
            "status_label": self._label,
            "steps": self._steps,
            "error": self._error,
        }

    @workflow.run
    async def run(self, inp: RunInput) -> dict[str, Any]:
        self._run_id = inp.run_id
        self._seq = inp.log_base
        self._steps = [
            {
                "id": s["id"],
                "title": s.get("title") or s["id"],
                "uses": s["uses"],
                "status": "PENDING",
                "started_at": None,
                "ended_at": None,
                "outputs": {},
                "error": None,
            }
            for s in inp.action["steps"]
        ]
        done = inp.previous_steps
        for step in self._steps:
            if step["id"] in done:
                step.update(
                    status=done[step["id"]].get("status", "SUCCESS"),
                    outputs=done[step["id"]].get("outputs", {}),
                )
        self._log(
            f"Run of '{inp.action.get('title', inp.action['identifier'])}' started by {inp.user['identifier']}"
            + (f", resuming at step {inp.resume_at}" if inp.resume_at else "")
        )
        try:
            for index, definition in enumerate(inp.action["steps"]):
                if definition["id"] in done:
                    continue
                await self._run_step(index, definition, inp)
        except asyncio.CancelledError:
            self._log("Cancelled: stopping the running step", "WARNING")
            self._mark_running("CANCELLED", "cancelled")
            await self._compensate(inp)
            await self._finish("CANCELLED", "Cancelled", "cancelled")
            raise
        except StepFailure as failure:
            self._log(f"Step {failure.step_id} failed: {failure.message}", "ERROR", failure.step_id)
            await self._compensate(inp)
            await self._finish("FAILURE", f"Failed at step {failure.step_id}", failure.message)
            return {"status": "FAILURE", "error": failure.message}
        await self._finish("SUCCESS", "Completed", None)
        return {"status": "SUCCESS", "error": None}

    # ---- steps -------------------------------------------------------------------------

    def _context(self, inp: RunInput) -> dict[str, Any]:
        steps = {s["id"]: {"outputs": s["outputs"], "status": s["status"]} for s in self._steps}
        return {
            "inputs": inp.inputs,
            "entity": inp.entity,
            "steps": steps,
            "run": inp.run,
            "user": inp.user,
            "event": inp.event,
        }

    async def _run_step(self, index: int, definition: dict[str, Any], inp: RunInput) -> None:
        step = self._steps[index]
        step_id, uses = definition["id"], definition["uses"]
        context = self._context(inp)
        try:
            condition = definition.get("if")
            if condition is not None and not evaluate_condition(condition, context, f"/steps/{index}/if"):
                step.update(status="SKIPPED")
                self._log(f"Step {step_id} skipped: its condition is false", step_id=step_id)
                return
            params = render_value(definition.get("with", {}), context, f"/steps/{index}/with")
        except TemplateFailure as exc:
            step.update(status="FAILURE", error=str(exc))
            raise StepFailure(step_id, str(exc)) from exc
        if definition.get("wait_for_completion") is not None:
            params["wait_for_completion"] = definition["wait_for_completion"]
        step.update(status="IN_PROGRESS", started_at=_iso(workflow.now()))
        self._label = f"Running step {step_id}"
        workflow.set_current_details(f"**{self._label}** ({uses})")
        self._log(f"Step {step_id} ({uses}) started", step_id=step_id)
        if uses in WAITING_KINDS or uses == "sleep":
            await self._report()
        try:
            result = await self._execute(step_id, uses, params, definition, inp)
        except StepFailure as failure:
            step.update(status="FAILURE", ended_at=_iso(workflow.now()), error=failure.message)
            raise
        step.update(status="SUCCESS", ended_at=_iso(workflow.now()), outputs=result.outputs)
        self._links += [{"title": link.title, "url": link.url} for link in result.links]
        self._affected += result.affected_entities
        for line in result.log:
            self._log(line, step_id=step_id)
        self._log(f"Step {step_id} succeeded", step_id=step_id)

    async def _execute(
        self, step_id: str, uses: str, params: dict[str, Any], definition: dict[str, Any], inp: RunInput
    ) -> StepResult:
        if uses == "sleep":
            try:
                await workflow.sleep(parse_duration(str(params["duration"])))
            except ValueError as exc:
                raise StepFailure(step_id, str(exc)) from exc
            return StepResult(outputs={"slept": params["duration"]})
        timeout = _duration(
            definition.get("timeout"), DEFAULT_WAITING_TIMEOUT if uses in WAITING_KINDS else DEFAULT_TIMEOUT
        )
        try:
            return await workflow.execute_activity(
                uses,
                StepInput(
                    run_id=inp.run_id,
                    step_id=step_id,
                    uses=uses,
                    params=params,
                    action=inp.action["identifier"],
                    timeout_seconds=timeout.total_seconds(),
                ),
                result_type=StepResult,
                start_to_close_timeout=timeout,
                heartbeat_timeout=(
                    _duration(definition.get("heartbeat_timeout"), HEARTBEAT_TIMEOUT)
                    if uses in WAITING_KINDS
                    else None
                ),
                retry_policy=_retry_policy(definition.get("retry")),
                summary=f"{step_id} · {uses}",
            )
        except ActivityError as exc:
            if isinstance(exc.cause, CancelledError):
                raise asyncio.CancelledError(f"step {step_id} cancelled") from exc
            raise StepFailure(step_id, _root_message(exc)) from exc

    async def _compensate(self, inp: RunInput) -> None:
        done = [(i, d) for i, d in enumerate(inp.action["steps"]) if self._steps[i]["status"] == "SUCCESS"]
        todo = [(i, d) for i, d in reversed(done) if d.get("compensate")]
        if not todo:
            return
        self._log(f"Compensating {len(todo)} completed step(s) in reverse order", "WARNING")
        for index, definition in todo:
            compensate = definition["compensate"]
            step_id = definition["id"]
            try:
                params = render_value(
                    compensate.get("with", {}), self._context(inp), f"/steps/{index}/compensate/with"
                )
                await self._execute(f"{step_id}-compensate", compensate["uses"], params, compensate, inp)
            except (StepFailure, TemplateFailure) as exc:
                self._log(f"Compensation of step {step_id} failed: {exc}", "ERROR", step_id)
                continue
            self._steps[index]["status"] = "COMPENSATED"
            self._log(f"Step {step_id} compensated ({compensate['uses']})", "WARNING", step_id)

    def _mark_running(self, status: str, error: str) -> None:
        for step in self._steps:
            if step["status"] == "IN_PROGRESS":
                step.update(status=status, ended_at=_iso(workflow.now()), error=error)

    # ---- reporting ---------------------------------------------------------------------

    def _log(self, message: str, level: str = "INFO", step_id: str | None = None) -> None:
        self._unsent.append(
            {
                "seq": self._seq,
                "message": message,
                "level": level,
                "step_id": step_id,
                "at": _iso(workflow.now()),
            }
        )
        self._seq += 1

    async def _finish(self, status: str, label: str, error: str | None) -> None:
        self._status, self._label, self._error = status, label, error
        self._log(
            f"Run ended: {status}" + (f" ({error})" if error else ""),
            "ERROR" if status == "FAILURE" else "INFO",
        )
        workflow.upsert_search_attributes([RUN_STATUS.value_set(status)])
        workflow.set_current_details(f"**{status}** — {label}")
        await self._report()

    async def _report(self) -> None:
        report = {
            "status": self._status,
            "status_label": self._label,
            "steps": self._steps,
            "links": self._links,
            "affected_entities": self._affected,
            "error": self._error,
            "logs": self._unsent,
        }
        self._unsent = []
        await workflow.execute_local_activity(
            REPORT_ACTIVITY,
            ReportInput(self._run_id, report),
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(hours=6),
            retry_policy=RetryPolicy(
                maximum_interval=timedelta(seconds=30), non_retryable_error_types=NON_RETRYABLE
            ),
            summary="report run state",
        )


def _iso(moment: Any) -> str:
    return str(moment.isoformat())


def _duration(value: str | None, default: timedelta) -> timedelta:
    return parse_duration(value) if value else default


def _retry_policy(retry: dict[str, Any] | None) -> RetryPolicy:
    retry = retry or {}
    return RetryPolicy(
        initial_interval=_duration(retry.get("initial_interval"), timedelta(seconds=1)),
        backoff_coefficient=float(retry.get("backoff_coefficient", 2.0)),
        maximum_interval=_duration(retry.get("maximum_interval"), timedelta(minutes=1)),
        maximum_attempts=int(retry.get("maximum_attempts", 5)),
        non_retryable_error_types=NON_RETRYABLE,
    )


def _root_message(exc: BaseException) -> str:
    """The innermost failure's message: the vendor's words, not Temporal's wrapping."""
    cause: BaseException | None = exc
    message = str(exc)
    while cause is not None:
        if isinstance(cause, (ApplicationError, FailureError)) and str(cause):
            message = cause.message if isinstance(cause, FailureError) else str(cause)
        cause = cause.__cause__
    return message
