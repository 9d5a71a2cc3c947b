"""The action-run workflow: an action's steps, in order, as activities — durably.

Deterministic: step parameters are rendered here by the pure template renderer (so Temporal UI
shows them), ``if`` conditions are evaluated here, time comes from ``workflow.now()``. Every
side effect is an activity; the run record is kept current through the ``gantry.report_run``
local activity. On failure or cancellation the completed steps' ``compensate`` run in reverse.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    FailureError,
    RetryState,
)
from temporalio.exceptions import TimeoutError as StepTimeout  # the builtin stays wait_condition's

with workflow.unsafe.imports_passed_through():
    # Jinja2 imports parts of itself lazily while compiling; pass them all through the sandbox.
    import jinja2
    import jinja2.compiler
    import jinja2.runtime
    import jinja2.sandbox  # noqa: F401

    from catalog.durations import parse_duration
    from catalog.runs.secrets import PLACEHOLDER, REDACTED, mark_inputs, secret_input_names
    from catalog.runs.step_kinds import WAITING_KINDS, describe_target
    from catalog.sandbox.templates import TemplateFailure, evaluate_condition, render_value
    from catalog.timefmt import format_instant
    from contracts.actions import CompensationSpec, RetrySpec, StepSpec
    from contracts.approvals import (
        DECIDE_UPDATE,
        NO_APPROVAL_PENDING,
        ApprovalMessages,
        ApprovalOutcome,
        ApprovalPolicy,
        ApprovalRequest,
        Decision,
    )
    from contracts.runs import (
        REPORT_ACTIVITY,
        RUN_FAILED_TYPES,
        LogLevel,
        LogLine,
        ReportInput,
        RunInput,
        RunOutcome,
        RunReport,
        RunStatus,
        StepState,
    )
    from contracts.search_attributes import GANTRY_RUN_STATUS
    from contracts.steps import STEP_FAILED, VENDOR_CLIENT_ERROR, VENDOR_NOT_CONFIGURED, StepInput, StepResult
    from workflows import sub_action
    from workflows.approval_gate import ApprovalGate

DEFAULT_TIMEOUT = timedelta(minutes=10)
DEFAULT_WAITING_TIMEOUT = timedelta(hours=1)
HEARTBEAT_TIMEOUT = timedelta(seconds=30)
# NotFoundError: the worker has no activity for this step kind (a worker from before unconfigured
# vendors' step kinds were registered, failing with VENDOR_NOT_CONFIGURED).
NON_RETRYABLE = [VENDOR_CLIENT_ERROR, STEP_FAILED, VENDOR_NOT_CONFIGURED, "NotFoundError"]
# A run that does not succeed fails its workflow, so Temporal UI's Failures view and
# ExecutionStatus="Failed" match GantryRunStatus. Histories recorded before completed instead.
FAILED_RUNS_FAIL_WORKFLOW = "failed-runs-fail-workflow"


class RunDeclined(Exception):
    """An approval was declined or timed out: no further step runs."""

    def __init__(self, label: str, message: str) -> None:
        super().__init__(message)
        self.label = label
        self.message = message


class StepFailure(Exception):
    def __init__(self, step_id: str, message: str) -> None:
        super().__init__(message)
        self.step_id = step_id
        self.message = message


@workflow.defn(name="ActionRun")
class ActionRun:
    def __init__(self) -> None:
        self._run_id = ""
        self._status = RunStatus.IN_PROGRESS
        self._label = "Starting"
        self._error: str | None = None
        self._steps: list[StepState] = []
        self._links: list[dict[str, Any]] = []
        self._affected: list[dict[str, Any]] = []
        self._unsent: list[LogLine] = []
        self._seq = 0
        self._search_attributes = True
        self._gate: ApprovalGate | None = None
        self._approval: dict[str, Any] | None = None
        # This execution's secret marker: only placeholders bearing it are ever substituted.
        self._marker = ""

    @workflow.query
    def state(self) -> dict[str, Any]:
        return {
            "status": self._status,
            "status_label": self._label,
            "steps": self._steps,
            "error": self._error,
        }

    @workflow.update(name=DECIDE_UPDATE)
    async def decide(self, decision: Decision) -> dict[str, Any]:
        """An approver's decision; the validator refuses it before it reaches history."""
        gate = self._gate
        assert gate is not None  # the validator saw to it
        gate.apply(decision, _iso(workflow.now()))
        verb = "approved" if decision.decision == "APPROVE" else "declined"
        note = f": {decision.comment}" if decision.comment else ""
        self._log(f"{decision.user} {verb} via {decision.via}{note}", step_id=gate.gate_id)
        self._approval = gate.view()
        return self._approval

    @decide.validator
    def _check_decision(self, decision: Decision) -> None:
        if decision.decision not in ("APPROVE", "DECLINE"):
            raise ApplicationError("decision must be APPROVE or DECLINE", type=NO_APPROVAL_PENDING)
        if self._gate is None:
            raise ApplicationError("no approval is pending for this run", type=NO_APPROVAL_PENDING)
        refusal = self._gate.refusal(decision)
        if refusal is not None:
            kind, message = refusal
            raise ApplicationError(message, type=kind)

    @workflow.run
    async def run(self, inp: RunInput) -> RunOutcome:
        self._run_id = inp.run_id
        # Workflow randomness: the same on replay, unknown to whoever writes the data steps read.
        self._marker = workflow.uuid4().hex
        self._seq = inp.log_base
        self._search_attributes = inp.search_attributes
        self._steps = [StepState.pending(spec) for spec in inp.action.steps]
        done = inp.previous_steps
        for step in self._steps:
            if step.id in done:
                step.status = done[step.id].get("status", "SUCCESS")
                step.outputs = done[step.id].get("outputs", {})
        self._log(
            f"Run of '{inp.action.title or inp.action.identifier}' started by {inp.user.identifier}"
            + (f", resuming at step {inp.resume_at}" if inp.resume_at else "")
        )
        try:
            if "action" in inp.approvals and "action" not in _approved(inp):
                await self._await_approval("action", inp)
            for index, definition in enumerate(inp.action.steps):
                if definition.id in done:
                    continue
                await self._run_step(index, definition, inp)
        except RunDeclined as declined:
            self._log(f"Not running further steps: {declined.message}", "WARNING")
            self._mark_running(RunStatus.DECLINED, declined.message)
            await self._compensate(inp)
            await self._finish(RunStatus.DECLINED, declined.label, declined.message)
            return self._unsuccessful(RunStatus.DECLINED, declined.label, declined.message)
        except asyncio.CancelledError:
            self._log("Cancelled: stopping the running step", "WARNING")
            self._mark_running(RunStatus.CANCELLED, "cancelled")
            await self._compensate(inp)
            await self._finish(RunStatus.CANCELLED, "Cancelled", "cancelled")
            raise
        except StepFailure as failure:
            self._log(f"Step {failure.step_id} failed: {failure.message}", "ERROR", failure.step_id)
            await self._compensate(inp)
            label = f"Failed at step {failure.step_id}"
            await self._finish(RunStatus.FAILURE, label, failure.message)
            return self._unsuccessful(RunStatus.FAILURE, label, failure.message)
        await self._finish(RunStatus.SUCCESS, "Completed", None)
        return RunOutcome(RunStatus.SUCCESS)

    def _unsuccessful(self, status: RunStatus, label: str, error: str) -> RunOutcome:
        """End a run that did not succeed, after compensation and its final report: its workflow
        fails with the run's error (details: status, label, error). A history recorded before
        this change completed with the outcome as its result, and replays that way."""
        if not workflow.patched(FAILED_RUNS_FAIL_WORKFLOW):
            return RunOutcome(status, error)
        message = f"{status}: {label}" + (f" — {error}" if error.lower() != label.lower() else "")
        raise ApplicationError(
            message,
            {"status": status.value, "error": error, "label": label},
            type=RUN_FAILED_TYPES[status],
            non_retryable=True,
        )

    # ---- steps -------------------------------------------------------------------------

    def _context(self, inp: RunInput) -> dict[str, Any]:
        steps = {s.id: {"outputs": s.outputs, "status": s.status} for s in self._steps}
        return {
            # Secret inputs become this run's marked placeholders here, by name, and nowhere else.
            "inputs": mark_inputs(inp.inputs, _secret_inputs(inp), self._marker),
            "entity": inp.entity,
            "steps": steps,
            "run": dataclasses.asdict(inp.run),
            "user": dataclasses.asdict(inp.user),
            "event": inp.event,
        }

    async def _run_step(self, index: int, definition: StepSpec, inp: RunInput) -> None:
        step = self._steps[index]
        step_id, uses = definition.id, definition.uses
        context = self._context(inp)
        try:
            condition = definition.condition
            if condition is not None and not evaluate_condition(condition, context, f"/steps/{index}/if"):
                step.status = "SKIPPED"
                self._log(f"Step {step_id} skipped: its condition is false", step_id=step_id)
                return
            params = render_value(definition.params, context, f"/steps/{index}/with")
        except TemplateFailure as exc:
            step.status, step.error = "FAILURE", str(exc)
            raise StepFailure(step_id, str(exc)) from exc
        if definition.wait_for_completion is not None:
            params["wait_for_completion"] = definition.wait_for_completion
        step.status, step.started_at = "IN_PROGRESS", _iso(workflow.now())
        self._label = f"Running step {step_id}"
        workflow.set_current_details(f"**{self._label}** ({uses})")
        self._log(f"Step {step_id} ({uses}) started", step_id=step_id)
        if uses in WAITING_KINDS or uses in ("sleep", "approval"):
            await self._report()
        try:
            result = await self._execute(step_id, uses, params, definition, inp)
        except StepFailure as failure:
            step.status, step.ended_at, step.error = "FAILURE", _iso(workflow.now()), failure.message
            raise
        step.status, step.ended_at, step.outputs = "SUCCESS", _iso(workflow.now()), result.outputs
        self._links += [{"title": link.title, "url": link.url} for link in result.links]
        self._affected += result.affected_entities
        for line in result.log:
            self._log(line, step_id=step_id)
        self._log(f"Step {step_id} succeeded", step_id=step_id)

    async def _execute(
        self,
        step_id: str,
        uses: str,
        params: dict[str, Any],
        definition: StepSpec | CompensationSpec,
        inp: RunInput,
    ) -> StepResult:
        if uses == sub_action.SUB_ACTION_KIND:  # another action as a child run
            return await sub_action.execute(
                step_id,
                params,
                inp,
                log=self._log,
                report=self._report,
                fail=StepFailure,
                marker=self._marker,
            )
        if uses == "approval":
            await self._await_approval(step_id, inp)
            approvers = [a["user"] for a in (self._approval or {}).get("approvals", [])]
            return StepResult(outputs={"approved_by": approvers})
        if uses == "sleep":
            try:
                await workflow.sleep(parse_duration(str(params["duration"])))
            except ValueError as exc:
                raise StepFailure(step_id, str(exc)) from exc
            return StepResult(outputs={"slept": params["duration"]})
        timeout = _duration(
            definition.timeout, DEFAULT_WAITING_TIMEOUT if uses in WAITING_KINDS else DEFAULT_TIMEOUT
        )
        try:
            return await workflow.execute_activity(
                uses,
                StepInput(
                    run_id=inp.run_id,
                    step_id=step_id,
                    uses=uses,
                    params=params,
                    action=inp.action.identifier,
                    timeout_seconds=timeout.total_seconds(),
                    secret_marker=self._marker,
                    entity=_entity_ref(inp, params),
                    retry=_retry_numbers(definition.retry),
                ),
                result_type=StepResult,
                start_to_close_timeout=timeout,
                heartbeat_timeout=(
                    _duration(definition.heartbeat_timeout, HEARTBEAT_TIMEOUT)
                    if uses in WAITING_KINDS
                    else None
                ),
                retry_policy=_retry_policy(definition.retry),
                summary=f"{step_id} · {uses}",
            )
        except ActivityError as exc:
            if isinstance(exc.cause, CancelledError):
                raise asyncio.CancelledError(f"step {step_id} cancelled") from exc
            raise StepFailure(step_id, _step_error(uses, params, exc)) from exc

    # ---- approvals ---------------------------------------------------------------------

    async def _await_approval(self, gate_id: str, inp: RunInput) -> None:
        """Wait durably for the gate's decision; raise RunDeclined unless it is approved."""
        policy = inp.approvals[gate_id]
        gate = ApprovalGate.open(gate_id, inp.run_id, policy, inp.user.identifier)
        if inp.resume_at and inp.approved_gates is not None:
            # A retry asks anew: buttons of the earlier request (never closed if that execution
            # was cancelled while waiting) must not decide this one.
            gate.request_id = f"{gate.request_id}:{inp.log_base}"
        self._gate, previous_status = gate, self._status
        self._set_status(RunStatus.WAITING_FOR_APPROVAL, "Waiting for approval")
        for phase, people, timeout in policy.phases():
            deadline = workflow.now() + parse_duration(timeout)
            gate.start_phase(phase, people, _iso(deadline))
            self._approval = gate.view()
            who = ", ".join(sorted(gate.eligible)) or "nobody"
            self._log(
                f"Approval {'escalated' if phase == 'escalated' else 'requested'}: "
                f"{gate.required} of {who} by {_iso(deadline)}",
                step_id=gate_id,
            )
            await self._notify(gate, inp, policy, reminder=False)
            await self._report()
            if await self._wait_for_decisions(gate, inp, policy, deadline):
                break
            self._log(f"No decision within {timeout}", "WARNING", gate_id)
        if gate.status == "PENDING":
            gate.status = "TIMED_OUT"
        self._gate, self._approval = None, gate.view()
        await self._close_notifications(gate, inp)
        if gate.status != "APPROVED":
            label = "Approval timed out" if gate.status == "TIMED_OUT" else "Declined"
            raise RunDeclined(label, "approval timed out" if gate.status == "TIMED_OUT" else "declined")
        self._log(f"Approved by {', '.join(a['user'] for a in gate.approvals)}", step_id=gate_id)
        self._set_status(previous_status, "Approved")
        await self._report()

    async def _wait_for_decisions(
        self, gate: ApprovalGate, inp: RunInput, policy: ApprovalPolicy, deadline: Any
    ) -> bool:
        """True once the gate closes; False when the deadline passes. Sends reminders."""
        reminders = sorted(deadline - parse_duration(r) for r in policy.remind_before)
        reminders = [r for r in reminders if r > workflow.now()]
        seen = gate.decisions
        while gate.status == "PENDING":
            now = workflow.now()
            if now >= deadline:
                return False
            wake = min([*reminders, deadline])
            try:
                await workflow.wait_condition(
                    lambda seen=seen: gate.status != "PENDING" or gate.decisions != seen,  # type: ignore[misc]
                    timeout=wake - now,
                )
            except TimeoutError:
                if reminders and wake == reminders[0]:
                    reminders.pop(0)
                    self._log(
                        f"REMINDER sent to {', '.join(a.identifier for a in gate.undecided()) or 'nobody'}",
                        step_id=gate.gate_id,
                    )
                    await self._notify(gate, inp, policy, reminder=True)
                    await self._report()
                continue
            if gate.decisions != seen:
                seen = gate.decisions
                await self._report()
        return True

    async def _notify(
        self, gate: ApprovalGate, inp: RunInput, policy: ApprovalPolicy, *, reminder: bool
    ) -> None:
        hidden = _secret_inputs(inp)
        inputs = {
            k: (REDACTED if k in hidden or (isinstance(v, str) and PLACEHOLDER.search(v)) else v)
            for k, v in inp.inputs.items()
        }
        request = ApprovalRequest(
            run_id=inp.run_id,
            request_id=gate.request_id,
            action_title=inp.action.title,
            requester=inp.user.identifier,
            entity=(inp.entity or {}).get("identifier"),
            inputs=inputs,
            required_approvals=gate.required,
            expires_at=gate.expires_at or "",
            run_url=inp.run.url,
            temporal_ui_url=inp.run.temporal_ui_url,
            approvers=gate.undecided() if policy.notify.direct_messages else [],
            channel=None if reminder else policy.notify.slack_channel,
            reminder=reminder,
        )
        try:
            sent = await workflow.execute_activity(
                "slack.request_approval",
                request,
                result_type=ApprovalMessages,
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=RetryPolicy(maximum_attempts=5),
                summary=f"{gate.gate_id} · ask approvers",
            )
        except ActivityError as exc:
            self._log(f"Could not notify approvers: {_root_message(exc)}", "WARNING", gate.gate_id)
            return
        gate.messages += sent.messages
        for line in sent.log:
            self._log(line, step_id=gate.gate_id)

    async def _close_notifications(self, gate: ApprovalGate, inp: RunInput) -> None:
        decided = gate.declines or gate.approvals
        by = ", ".join(d["user"] for d in decided)
        text = {
            "APPROVED": f"Approved by {by}",
            "DECLINED": f"Declined by {by}",
            "TIMED_OUT": "Timed out: no decision in time",
        }[gate.status]
        if not gate.messages:
            return
        try:
            await workflow.execute_activity(
                "slack.update_approval",
                ApprovalOutcome(
                    run_id=inp.run_id,
                    request_id=gate.request_id,
                    outcome=gate.status,
                    text=text,
                    messages=gate.messages,
                ),
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=RetryPolicy(maximum_attempts=5),
                summary=f"{gate.gate_id} · show the outcome",
            )
        except ActivityError as exc:
            self._log(
                f"Could not update the approval messages: {_root_message(exc)}", "WARNING", gate.gate_id
            )

    def _set_status(self, status: RunStatus, label: str) -> None:
        self._status, self._label = status, label
        self._upsert_status(status)

    def _upsert_status(self, status: RunStatus) -> None:
        if self._search_attributes:
            workflow.upsert_search_attributes([GANTRY_RUN_STATUS.value_set(status.value)])

    async def _compensate(self, inp: RunInput) -> None:
        done = [(i, d) for i, d in enumerate(inp.action.steps) if self._steps[i].status == "SUCCESS"]
        todo = [(i, d, d.compensate) for i, d in reversed(done) if d.compensate]
        if not todo:
            return
        self._log(f"Compensating {len(todo)} completed step(s) in reverse order", "WARNING")
        for index, definition, compensate in todo:
            step_id = definition.id
            try:
                params = render_value(
                    compensate.params, self._context(inp), f"/steps/{index}/compensate/with"
                )
                await self._execute(f"{step_id}-compensate", compensate.uses, params, compensate, inp)
            except (StepFailure, TemplateFailure) as exc:
                self._log(f"Compensation of step {step_id} failed: {exc}", "ERROR", step_id)
                continue
            self._steps[index].status = "COMPENSATED"
            self._log(f"Step {step_id} compensated ({compensate.uses})", "WARNING", step_id)

    def _mark_running(self, status: RunStatus, error: str) -> None:
        for step in self._steps:
            if step.status == "IN_PROGRESS":
                step.status, step.ended_at, step.error = status.value, _iso(workflow.now()), error

    # ---- reporting ---------------------------------------------------------------------

    def _log(self, message: str, level: LogLevel = "INFO", step_id: str | None = None) -> None:
        self._unsent.append(LogLine(self._seq, message, level, step_id, _iso(workflow.now())))
        self._seq += 1

    async def _finish(self, status: RunStatus, label: str, error: str | None) -> None:
        self._status, self._label, self._error = status, label, error
        self._log(
            f"Run ended: {status}" + (f" ({error})" if error else ""),
            "ERROR" if status == "FAILURE" else "INFO",
        )
        self._upsert_status(status)
        workflow.set_current_details(f"**{status}** — {label}")
        await self._report()

    async def _report(self) -> None:
        report = RunReport(
            status=RunStatus(self._status),
            status_label=self._label,
            steps=self._steps,
            approval=self._approval,
            links=self._links,
            affected_entities=self._affected,
            error=self._error,
            logs=self._unsent,
        )
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


def _approved(inp: RunInput) -> list[str]:
    if inp.approved_gates is not None:
        return inp.approved_gates
    return ["action"] if inp.resume_at else []


def _secret_inputs(inp: RunInput) -> set[str]:
    return secret_input_names({"user_inputs": inp.action.user_inputs})


def _entity_ref(inp: RunInput, params: dict[str, Any]) -> str:
    """``{blueprint}/{identifier}`` of the entity a step acts for: the run's entity; in a CREATE
    action (no entity yet) the one of the action's blueprint its step names in ``with.entity``."""
    if inp.entity:
        return f"{inp.entity.get('blueprint') or inp.action.blueprint}/{inp.entity['identifier']}"
    named, blueprint = params.get("entity"), inp.action.blueprint
    if isinstance(named, str) and named and blueprint:
        return f"{blueprint}/{named}"
    return ""


def _iso(moment: datetime) -> str:
    return format_instant(moment)


def _duration(value: str | None, default: timedelta) -> timedelta:
    return parse_duration(value) if value else default


def _retry_policy(retry: RetrySpec | None) -> RetryPolicy:
    retry = retry or RetrySpec()
    return RetryPolicy(
        initial_interval=_duration(retry.initial_interval, timedelta(seconds=1)),
        backoff_coefficient=float(2.0 if retry.backoff_coefficient is None else retry.backoff_coefficient),
        maximum_interval=_duration(retry.maximum_interval, timedelta(minutes=1)),
        maximum_attempts=int(5 if retry.maximum_attempts is None else retry.maximum_attempts),
        non_retryable_error_types=NON_RETRYABLE,
    )


def _retry_numbers(retry: RetrySpec | None) -> dict[str, float]:
    """The step's retry policy in seconds, for the activity to say what its failure leads to."""
    policy = _retry_policy(retry)
    return {
        "maximum_attempts": policy.maximum_attempts,
        "initial_interval": policy.initial_interval.total_seconds(),
        "backoff_coefficient": policy.backoff_coefficient,
        "maximum_interval": (policy.maximum_interval or policy.initial_interval).total_seconds(),
    }


_RETRY_ENDS = {
    RetryState.MAXIMUM_ATTEMPTS_REACHED: "no retries left",
    RetryState.NON_RETRYABLE_FAILURE: "not retryable",
    RetryState.TIMEOUT: "out of time",
}


def _step_error(uses: str, params: dict[str, Any], exc: ActivityError) -> str:
    """The step's error: the activity's own message when it composed one (kind, target, attempt,
    hint); else — a timeout, an activity no worker has — the same shape around Temporal's words."""
    cause = exc.cause
    if isinstance(cause, ApplicationError) and _step_details(cause).get("step_error"):
        return cause.message
    target = PLACEHOLDER.sub(REDACTED, describe_target(uses, params))
    head = " ".join(part for part in (uses, target) if part)
    reason = _root_message(exc)
    if isinstance(cause, StepTimeout):
        reason = f"{cause.type.name.lower().replace('_', '-') if cause.type else 'activity'} timeout"
    ending = _RETRY_ENDS.get(exc.retry_state) if exc.retry_state is not None else None
    return f"{head} failed" + (f" ({ending})" if ending else "") + f": {reason}"


def _step_details(error: ApplicationError) -> dict[str, Any]:
    first = error.details[0] if error.details else None
    return first if isinstance(first, dict) else {}


def _root_message(exc: BaseException) -> str:
    """The innermost failure's message: the vendor's words, not Temporal's wrapping."""
    cause: BaseException | None = exc
    message = str(exc)
    while cause is not None:
        if isinstance(cause, (ApplicationError, FailureError)) and str(cause):
            message = cause.message if isinstance(cause, FailureError) else str(cause)
        cause = cause.__cause__
    return message
