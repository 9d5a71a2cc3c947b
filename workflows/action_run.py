"""The action-run workflow: an action's steps, in order, as activities — durably.

Deterministic: step parameters are rendered here by the pure template renderer (so Temporal UI
shows them), ``if`` conditions are evaluated here, time comes from ``workflow.now()``. Every
side effect is an activity; the run record is kept current through the ``gantry.report_run``
local activity. On failure or cancellation the completed steps' ``compensate`` run in reverse.

An action whose steps name ``needs`` or fan out (``for_each``) runs as a graph: each step starts
as an asyncio task once the steps it needs are done (:mod:`workflows.step_graph` says which), a
fanned-out step runs its items at most ``max_parallel`` at a time, and the action's
``strategy.on_failure`` decides what a failure does to the other branches. Compensation then runs
in reverse *completion* order. Any other action walks its list exactly as before.
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
    from contracts.actions import CONTINUE, CompensationSpec, RetrySpec, StepSpec, step_needs
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
    from workflows.step_graph import StepGraph

DEFAULT_TIMEOUT = timedelta(minutes=10)
DEFAULT_WAITING_TIMEOUT = timedelta(hours=1)
HEARTBEAT_TIMEOUT = timedelta(seconds=30)
# NotFoundError: the worker has no activity for this step kind (a worker from before unconfigured
# vendors' step kinds were registered, failing with VENDOR_NOT_CONFIGURED).
NON_RETRYABLE = [VENDOR_CLIENT_ERROR, STEP_FAILED, VENDOR_NOT_CONFIGURED, "NotFoundError"]
# A run that does not succeed fails its workflow, so Temporal UI's Failures view and
# ExecutionStatus="Failed" match GantryRunStatus. Histories recorded before completed instead.
FAILED_RUNS_FAIL_WORKFLOW = "failed-runs-fail-workflow"
# Marks histories whose steps ran as a graph (only actions with ``needs``/``for_each`` do).
PARALLEL_STEPS = "parallel-steps"
# A cancellation that lands while approvers are told (or their messages updated) cancels the run.
# Before this, those activities' errors were all logged and passed over, cancellation included,
# and the run went on waiting; histories recorded so replay that way.
CANCEL_WHILE_NOTIFYING = "cancel-while-notifying"
# A fanned-out step's items: each is an activity in the run's history, which must stay small.
MAX_ITEMS = 200


class RunDeclined(Exception):
    """An approval was declined or timed out: no further step runs."""

    def __init__(self, label: str, message: str) -> None:
        super().__init__(message)
        self.label = label
        self.message = message


class StepFailure(Exception):
    def __init__(self, step_id: str, message: str, *, logged: bool = False) -> None:
        super().__init__(message)
        self.step_id = step_id
        self.message = message
        # The parallel scheduler logs each failure as it happens, not once the run ends.
        self.logged = logged


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
        # A run of parallel steps: where each step is, the items each fanned-out step ran over,
        # and (step index, item index or None) in the order they succeeded, for compensation.
        self._graph: StepGraph | None = None
        self._items: dict[int, list[Any]] = {}
        self._completed: list[tuple[int, int | None]] = []
        # Parallel steps report concurrently: one report at a time, each with the latest state.
        self._reporting = asyncio.Lock()

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
        self._steps = StepState.skeleton(inp.action.steps)
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
            if inp.action.is_graph and workflow.patched(PARALLEL_STEPS):
                await self._run_graph(inp)
            else:
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
            if not failure.logged:
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
            if definition.for_each is not None:
                await self._fan_out(index, definition, inp, context)
                return
            params = render_value(definition.params, context, f"/steps/{index}/with")
        except TemplateFailure as exc:
            step.status, step.error = "FAILURE", str(exc)
            raise StepFailure(step_id, str(exc)) from exc
        if definition.wait_for_completion is not None:
            params["wait_for_completion"] = definition.wait_for_completion
        step.status, step.started_at = "IN_PROGRESS", _iso(workflow.now())
        self._show_running(step_id, uses)
        self._log(f"Step {step_id} ({uses}) started", step_id=step_id)
        if uses in WAITING_KINDS or uses in ("sleep", "approval"):
            await self._report()
        try:
            result = await self._execute(step_id, uses, params, definition, inp)
        except StepFailure as failure:
            step.status, step.ended_at, step.error = "FAILURE", _iso(workflow.now()), failure.message
            raise
        step.status, step.ended_at, step.outputs = "SUCCESS", _iso(workflow.now()), result.outputs
        self._completed.append((index, None))
        self._record(result, step_id)
        self._log(f"Step {step_id} succeeded", step_id=step_id)

    def _record(self, result: StepResult, step_id: str) -> None:
        self._links += [{"title": link.title, "url": link.url} for link in result.links]
        self._affected += result.affected_entities
        for line in result.log:
            self._log(line, step_id=step_id)

    def _show_running(self, step_id: str, uses: str) -> None:
        """The run's label and Temporal UI's current details: the running step, or with
        parallel steps every step with what it needs and where it is."""
        if self._graph is None:
            self._label = f"Running step {step_id}"
            workflow.set_current_details(f"**{self._label}** ({uses})")
            return
        running = [s.id for s in self._steps if s.status == "IN_PROGRESS"]
        self._label = f"Running step{'s' if len(running) > 1 else ''} {', '.join(running)}"
        workflow.set_current_details(
            f"**{self._label}**\n\n"
            + "\n".join(
                f"- `{s.id}` ({s.uses}) {s.status}" + (f" ← needs {', '.join(s.needs)}" if s.needs else "")
                for s in self._steps
            )
        )

    # ---- parallel steps ----------------------------------------------------------------

    async def _run_graph(self, inp: RunInput) -> None:
        """Start each step once what it needs is done, several at once when the graph allows.
        A failure under ``stop`` cancels the running steps and starts nothing more; under
        ``continue`` it blocks only its dependents (SKIPPED), and the run fails once the other
        branches end. Raises StepFailure (already logged) or RunDeclined as the walk does."""
        definitions = inp.action.steps
        needs = step_needs([(d.id, d.needs) for d in definitions])
        # A retry keeps the steps that succeeded; any other earlier step runs again.
        kept = _succeeded_before(inp)
        for step in self._steps:
            if step.id in inp.previous_steps and step.id not in kept:
                step.status, step.outputs = "PENDING", {}
        graph = StepGraph.of(needs, finished=kept)
        self._graph = graph
        index_of = {d.id: i for i, d in enumerate(definitions)}
        stop = inp.action.on_failure != CONTINUE
        running: dict[str, asyncio.Task[None]] = {}
        failures: list[StepFailure] = []
        try:
            while True:
                if not (failures and stop):
                    for step_id in graph.ready():
                        graph.start(step_id)
                        index = index_of[step_id]
                        running[step_id] = asyncio.create_task(self._run_step(index, definitions[index], inp))
                if not running:
                    break
                await workflow.wait(list(running.values()), return_when=asyncio.FIRST_COMPLETED)
                # Taken out first: stopping on a failure empties ``running``.
                ended = [(s, running.pop(s)) for s in [s for s, task in running.items() if task.done()]]
                for step_id, task in ended:
                    error = _failure_of(task)
                    if error is None:
                        graph.finish(step_id)
                    elif isinstance(error, StepFailure):
                        failures.append(error)
                        self._log(f"Step {step_id} failed: {error.message}", "ERROR", step_id)
                        blocked = graph.fail(step_id)
                        if stop:  # what it blocked stays PENDING, as the steps after a failure do
                            await self._stop(running, f"step {step_id} failed")
                        else:
                            self._skip(blocked, f"step {step_id} failed")
                    else:  # declined at an approval step: nothing more runs, whatever the strategy
                        graph.fail(step_id)
                        await self._stop(running, str(error))
                        raise error
        except asyncio.CancelledError:
            await self._stop(running, "cancelled")
            raise
        if failures:
            first = failures[0]
            message = (
                "; ".join(f"{f.step_id}: {f.message}" for f in failures)
                if len(failures) > 1
                else first.message
            )
            raise StepFailure(first.step_id, message, logged=True)

    def _skip(self, step_ids: list[str], reason: str) -> None:
        by_id = {s.id: s for s in self._steps}
        for step_id in step_ids:
            by_id[step_id].status, by_id[step_id].error = "SKIPPED", reason
            self._log(f"Step {step_id} skipped: {reason}", "WARNING", step_id)

    async def _stop(self, running: dict[str, asyncio.Task[None]], reason: str) -> None:
        """Cancel the running steps and wait until each has ended: one that finished meanwhile
        stays SUCCESS (and is compensated with the others), the rest are CANCELLED."""
        if not running:
            return
        self._log(f"Stopping {', '.join(running)}: {reason}", "WARNING")
        for task in running.values():
            task.cancel()
        await workflow.wait(list(running.values()))
        by_id = {s.id: s for s in self._steps}
        for step_id, task in running.items():
            _failure_of(task)
            step = by_id[step_id]
            if step.status == "IN_PROGRESS":
                step.status, step.ended_at, step.error = "CANCELLED", _iso(workflow.now()), reason
                self._log(f"Step {step_id} cancelled: {reason}", "WARNING", step_id)
        running.clear()

    async def _fan_out(
        self, index: int, definition: StepSpec, inp: RunInput, context: dict[str, Any]
    ) -> None:
        """Run the step once per item of its ``for_each``, at most ``max_parallel`` at a time;
        its outputs are the items' outputs in order. A failed item fails the step: the other
        items are cancelled (``stop``) or finish (``continue``), and no new one starts."""
        step, step_id, uses = self._steps[index], definition.id, definition.uses
        items = render_value(definition.for_each, context, f"/steps/{index}/for_each")
        if not isinstance(items, list):
            raise TemplateFailure(
                f"/steps/{index}/for_each: must render to a list, not {type(items).__name__}"
            )
        if len(items) > MAX_ITEMS:
            raise TemplateFailure(f"/steps/{index}/for_each: {len(items)} items, at most {MAX_ITEMS}")
        self._items[index] = items
        limit = definition.max_parallel or max(len(items), 1)
        step.status, step.started_at, step.outputs = "IN_PROGRESS", _iso(workflow.now()), [None] * len(items)
        self._show_running(step_id, uses)
        self._log(
            f"Step {step_id} ({uses}) started: {len(items)} item(s), at most {limit} at a time",
            step_id=step_id,
        )
        await self._report()
        running: dict[int, asyncio.Task[None]] = {}
        upcoming = 0
        failure: StepFailure | None = None
        try:
            while True:
                while failure is None and upcoming < len(items) and len(running) < limit:
                    running[upcoming] = asyncio.create_task(self._run_item(index, definition, inp, upcoming))
                    upcoming += 1
                if not running:
                    break
                await workflow.wait(list(running.values()), return_when=asyncio.FIRST_COMPLETED)
                for item in [i for i, task in running.items() if task.done()]:
                    error = _failure_of(running.pop(item))
                    if error is not None and failure is None:
                        failure = (
                            error
                            if isinstance(error, StepFailure)
                            else StepFailure(f"{step_id}[{item}]", str(error))
                        )
                        if inp.action.on_failure != CONTINUE:
                            for task in running.values():
                                task.cancel()
        except asyncio.CancelledError:
            for task in running.values():
                task.cancel()
            await workflow.wait(list(running.values()))
            raise
        if failure is not None:
            step.ended_at, step.error = _iso(workflow.now()), failure.message
            step.status = "FAILURE"
            raise StepFailure(step_id, f"{failure.step_id}: {failure.message}")
        step.status, step.ended_at = "SUCCESS", _iso(workflow.now())
        self._log(f"Step {step_id} succeeded: {len(items)} item(s)", step_id=step_id)

    async def _run_item(self, index: int, definition: StepSpec, inp: RunInput, item: int) -> None:
        step, step_id, uses = self._steps[index], definition.id, definition.uses
        item_id = f"{step_id}[{item}]"
        context = self._item_context(inp, index, item)
        try:
            params = render_value(definition.params, context, f"/steps/{index}/with")
        except TemplateFailure as exc:
            raise StepFailure(item_id, str(exc)) from exc
        if definition.wait_for_completion is not None:
            params["wait_for_completion"] = definition.wait_for_completion
        shown = _shown_item(context["item"])
        self._log(f"Step {step_id} item {item} ({shown}) started", step_id=step_id)
        result = await self._execute(item_id, uses, params, definition, inp)
        outputs = step.outputs if isinstance(step.outputs, list) else []
        outputs[item] = result.outputs
        self._completed.append((index, item))
        self._record(result, step_id)
        self._log(f"Step {step_id} item {item} ({shown}) succeeded", step_id=step_id)

    def _item_context(self, inp: RunInput, index: int, item: int) -> dict[str, Any]:
        return {**self._context(inp), "item": self._items[index][item], "index": item}

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
            _raise_if_cancelled(exc, gate.gate_id)
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
            _raise_if_cancelled(exc, gate.gate_id)
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
        if self._graph is not None:
            await self._compensate_completed(inp)
            return
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

    async def _compensate_completed(self, inp: RunInput) -> None:
        """Undo what parallel steps did, the last to complete first: each step, and each item
        of a fanned-out step, that succeeded (a retry's earlier steps before this execution's)."""
        definitions = inp.action.steps
        kept = _succeeded_before(inp)
        earlier = [(i, None) for i, d in enumerate(definitions) if d.id in kept and d.for_each is None]
        todo = [(i, item) for i, item in reversed(earlier + self._completed) if definitions[i].compensate]
        if not todo:
            return
        self._log(f"Compensating {len(todo)} completed step(s) in reverse completion order", "WARNING")
        for index, item in todo:
            definition, step = definitions[index], self._steps[index]
            compensate = definition.compensate
            assert compensate is not None  # todo holds only steps that have one
            step_id = definition.id if item is None else f"{definition.id}[{item}]"
            context = self._context(inp) if item is None else self._item_context(inp, index, item)
            try:
                params = render_value(compensate.params, context, f"/steps/{index}/compensate/with")
                await self._execute(f"{step_id}-compensate", compensate.uses, params, compensate, inp)
            except (StepFailure, TemplateFailure) as exc:
                self._log(f"Compensation of step {step_id} failed: {exc}", "ERROR", definition.id)
                continue
            if step.status == "SUCCESS":
                step.status = "COMPENSATED"
            self._log(f"Step {step_id} compensated ({compensate.uses})", "WARNING", definition.id)

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
        # Uncontended (a list of steps), the lock never waits; parallel steps take turns, so a
        # report never overtakes a later one and each carries the state of its turn.
        async with self._reporting:
            report = RunReport(
                status=RunStatus(self._status),
                status_label=self._label,
                steps=self._steps,
                approval=self._approval,
                links=self._links,
                affected_entities=self._affected,
                error=self._error,
                logs=self._unsent,
                report_seq=self._seq,
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


def _raise_if_cancelled(exc: ActivityError, gate_id: str) -> None:
    """Re-raise a cancellation that reached a notification activity (see CANCEL_WHILE_NOTIFYING)."""
    if isinstance(exc.cause, CancelledError) and workflow.patched(CANCEL_WHILE_NOTIFYING):
        raise asyncio.CancelledError(f"cancelled while notifying the approvers of {gate_id}") from exc


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


def _succeeded_before(inp: RunInput) -> set[str]:
    """The steps a retried run of parallel steps keeps: those that succeeded before."""
    return {k for k, v in inp.previous_steps.items() if v.get("status", "SUCCESS") == "SUCCESS"}


def _failure_of(task: asyncio.Task[None]) -> BaseException | None:
    """How an ended step task ended: None when it succeeded (or its ``if`` skipped it)."""
    if task.cancelled():
        return asyncio.CancelledError()
    return task.exception()


def _shown_item(item: Any) -> str:
    """An item as a log line shows it: short, secret placeholders masked."""
    text = PLACEHOLDER.sub(REDACTED, str(item))
    return text if len(text) <= 60 else text[:57] + "..."


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
