"""``ActionRun``'s own logic in seconds: the time-skipping test server and recorded fake activities.

No API, no vendors: each step kind the workflow calls is a same-named stand-in that records the
:class:`StepInput` it got and answers what the test scripted; ``gantry.report_run`` records the
reports. What is checked is the workflow's logic: steps in order with rendered parameters, ``if``,
compensation in reverse on failure and on cancel, the approval gate, a retry resuming at the
failed step, and a failed run failing its workflow.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts.approvals import (
    DECIDE_UPDATE,
    SELF_APPROVAL,
    ApprovalMessages,
    ApprovalOutcome,
    ApprovalRequest,
    Decision,
    SlackMessage,
)
from contracts.runs import REPORT_ACTIVITY, ReportInput, Requester, RunInfo, RunInput, RunReport, RunStatus
from contracts.steps import VENDOR_CLIENT_ERROR, StepInput, StepResult
from devtools.testing import eventually_async
from tests.temporal_env import start_time_skipping
from workflows.action_run import ActionRun

# A step's scripted answer: a result, an exception to raise, or a coroutine that decides.
Answer = StepResult | Exception | Callable[[StepInput], Awaitable[StepResult]]
STEP_KINDS = ("http.request", "catalog.upsert_entity", "catalog.delete_entity", "github.workflow_dispatch")


@dataclass
class Recorder:
    """Same-named stand-ins for every activity ``ActionRun`` calls, recording what they got."""

    answers: dict[str, Answer] = field(default_factory=dict)  # by step id; default: success
    steps: list[StepInput] = field(default_factory=list)
    reports: list[RunReport] = field(default_factory=list)
    requests: list[ApprovalRequest] = field(default_factory=list)
    outcomes: list[ApprovalOutcome] = field(default_factory=list)
    # Awaited before the approvers' request is answered: a test can hold the notification there.
    notifying: Callable[[], Awaitable[None]] | None = None

    def activities(self) -> list[Callable[..., Any]]:
        return [self._step(uses) for uses in STEP_KINDS] + [
            self._report,
            self._request_approval,
            self._update_approval,
        ]

    def _step(self, uses: str) -> Callable[..., Any]:
        @activity.defn(name=uses)
        async def step(inp: StepInput) -> StepResult:
            self.steps.append(inp)
            answer = self.answers.get(inp.step_id, StepResult(outputs={"done": inp.step_id}))
            if isinstance(answer, Exception):
                raise answer
            if callable(answer):
                return await answer(inp)
            return answer

        return step

    @activity.defn(name=REPORT_ACTIVITY)
    async def _report(self, report: ReportInput) -> None:
        self.reports.append(report.report)

    @activity.defn(name="slack.request_approval")
    async def _request_approval(self, request: ApprovalRequest) -> ApprovalMessages:
        self.requests.append(request)
        if self.notifying is not None:
            await self.notifying()
        return ApprovalMessages(messages=[SlackMessage("C-approvals", f"ts-{len(self.requests)}")])

    @activity.defn(name="slack.update_approval")
    async def _update_approval(self, outcome: ApprovalOutcome) -> None:
        self.outcomes.append(outcome)

    def called(self) -> list[str]:
        """The step ids the stand-ins ran, in order."""
        return [s.step_id for s in self.steps]

    @property
    def last(self) -> RunReport:
        return self.reports[-1]

    def log(self) -> list[str]:
        return [line.message for report in self.reports for line in report.logs]


@dataclass
class Harness:
    env: WorkflowEnvironment
    task_queue: str
    recorder: Recorder

    async def start(self, inp: RunInput) -> WorkflowHandle[Any, Any]:
        return await self.env.client.start_workflow(
            ActionRun.run, inp, id=f"run-{inp.run_id}", task_queue=self.task_queue
        )


@pytest.fixture(scope="module")
async def skipping() -> AsyncIterator[WorkflowEnvironment]:
    async with start_time_skipping() as env:
        yield env


@asynccontextmanager
async def _harness(env: WorkflowEnvironment) -> AsyncIterator[Harness]:
    recorder = Recorder()
    task_queue = f"fast-{uuid.uuid4().hex[:8]}"
    async with Worker(
        env.client, task_queue=task_queue, workflows=[ActionRun], activities=recorder.activities()
    ):
        yield Harness(env, task_queue, recorder)


@pytest.fixture
async def harness(skipping: WorkflowEnvironment) -> AsyncIterator[Harness]:
    async with _harness(skipping) as made:
        yield made


@pytest.fixture
async def own_harness() -> AsyncIterator[Harness]:
    """A harness on a server of its own: after a cancelled activity the test server stops
    skipping time for every later workflow, which would stall the module's timeout tests."""
    async with start_time_skipping() as env, _harness(env) as made:
        yield made


def step(step_id: str, uses: str = "http.request", **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "uses": uses, "with": {"url": f"https://example.test/{step_id}"}, **extra}


def run_input(steps: list[dict[str, Any]], **overrides: Any) -> RunInput:
    run_id = uuid.uuid4().hex[:12]
    action: dict[str, Any] = {
        "identifier": "deploy",
        "title": "Deploy",
        "user_inputs": {"properties": {"version": {"type": "string"}, "token": {"secret": True}}},
        "steps": steps,
    }
    values: dict[str, Any] = {
        "run_id": run_id,
        "action": action,
        "entity": {"blueprint": "service", "identifier": "payments", "properties": {"tier": "gold"}},
        "inputs": {"version": "v1", "token": "s3cret-token"},
        "user": Requester("alice", "alice@example.com"),
        "run": RunInfo(id=run_id, action="deploy"),
        # The time-skipping server has no custom search attributes.
        "search_attributes": False,
    }
    values.update(overrides)
    return RunInput(**values)


def policy(**overrides: Any) -> dict[str, Any]:
    """An approval policy as the catalog resolves it: with its eligible people."""
    return {
        "required_approvals": 1,
        "approvers": {"users": ["bob"]},
        "allow_self_approval": False,
        "timeout": "PT1H",
        "on_timeout": "DECLINE",
        "escalation_approvers": None,
        "escalation_timeout": None,
        "remind_before": [],
        "notify": {"slack_channel": None, "direct_messages": True},
        "eligible": [{"identifier": "bob", "email": "bob@example.com"}],
        "escalation_eligible": [],
        **overrides,
    }


def frozen() -> ApplicationError:
    return ApplicationError("environment is frozen", type=VENDOR_CLIENT_ERROR, non_retryable=True)


async def failed_outcome(handle: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    """The details of the ApplicationError a run that did not succeed fails its workflow with."""
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError), cause
    details = cause.details[0]
    assert isinstance(details, dict)
    return {"type": cause.type, **details}


async def test_steps_run_in_order_with_rendered_parameters(harness: Harness) -> None:
    steps = [
        step("record", "catalog.upsert_entity"),
        {
            "id": "notify",
            "uses": "http.request",
            "with": {
                "url": "https://example.test/{{ entity.identifier }}",
                "body": {"version": "{{ inputs.version }}", "after": "{{ steps.record.outputs.done }}"},
            },
        },
    ]
    harness.recorder.answers["record"] = StepResult(outputs={"done": "recorded"})
    inp = run_input(steps)
    outcome = await (await harness.start(inp)).result()
    assert outcome.status == RunStatus.SUCCESS
    assert harness.recorder.called() == ["record", "notify"]
    notify = harness.recorder.steps[1]
    assert notify.params == {
        "url": "https://example.test/payments",
        "body": {"version": "v1", "after": "recorded"},
    }
    assert (notify.run_id, notify.action, notify.entity) == (inp.run_id, "deploy", "service/payments")
    assert notify.idempotency_key == f"{inp.run_id}:notify"
    final = harness.recorder.last
    assert final.status == RunStatus.SUCCESS
    assert [s.status for s in final.steps] == ["SUCCESS", "SUCCESS"]
    assert final.steps[0].outputs == {"done": "recorded"}
    seqs = [line.seq for report in harness.recorder.reports for line in report.logs]
    assert seqs == list(range(len(seqs))), "log lines are numbered once each, in order"


async def test_a_false_condition_skips_the_step(harness: Harness) -> None:
    steps = [
        step("only-prod", **{"if": "{{ inputs.version == 'prod' }}"}),
        step("always", **{"if": "{{ entity.properties.tier == 'gold' }}"}),
    ]
    await (await harness.start(run_input(steps))).result()
    assert harness.recorder.called() == ["always"]
    assert [s.status for s in harness.recorder.last.steps] == ["SKIPPED", "SUCCESS"]
    assert "Step only-prod skipped: its condition is false" in harness.recorder.log()


async def test_secret_inputs_reach_steps_only_as_marked_placeholders(harness: Harness) -> None:
    steps = [{"id": "call", "uses": "http.request", "with": {"headers": {"X-Token": "{{ inputs.token }}"}}}]
    await (await harness.start(run_input(steps))).result()
    sent = harness.recorder.steps[0]
    token = sent.params["headers"]["X-Token"]
    assert "s3cret-token" not in token
    assert token == f"${{secret:{sent.secret_marker}:token}}"
    assert sent.secret_marker, "each execution has its own marker"


async def test_a_failed_step_compensates_completed_steps_in_reverse_and_fails_the_workflow(
    harness: Harness,
) -> None:
    steps = [
        step("first", compensate={"uses": "http.request", "with": {"url": "https://example.test/undo-1"}}),
        step("skipped", **{"if": "{{ false }}"}, compensate={"uses": "http.request"}),
        step("second", compensate={"uses": "http.request", "with": {"url": "https://example.test/undo-2"}}),
        step("third"),
        step("never"),
    ]
    harness.recorder.answers["third"] = frozen()
    handle = await harness.start(run_input(steps))
    outcome = await failed_outcome(handle)
    assert outcome["type"] == "RunFailed"
    assert outcome["status"] == "FAILURE"
    assert outcome["label"] == "Failed at step third"
    assert "environment is frozen" in outcome["error"]
    # Only completed steps are undone, the last first; the failed step is tried once (4xx).
    assert harness.recorder.called() == ["first", "second", "third", "second-compensate", "first-compensate"]
    final = harness.recorder.last
    assert final.status == RunStatus.FAILURE
    assert [s.status for s in final.steps] == [
        "COMPENSATED",
        "SKIPPED",
        "COMPENSATED",
        "FAILURE",
        "PENDING",
    ]
    assert "environment is frozen" in (final.steps[3].error or "")


async def test_a_failed_compensation_is_logged_and_the_others_still_run(harness: Harness) -> None:
    steps = [
        step("first", compensate={"uses": "http.request"}),
        step("second", compensate={"uses": "http.request"}),
        step("third"),
    ]
    harness.recorder.answers.update({"third": frozen(), "second-compensate": frozen()})
    await failed_outcome(await harness.start(run_input(steps)))
    assert harness.recorder.called()[-2:] == ["second-compensate", "first-compensate"]
    assert [s.status for s in harness.recorder.last.steps] == ["COMPENSATED", "SUCCESS", "FAILURE"]
    assert any(m.startswith("Compensation of step second failed") for m in harness.recorder.log())


async def test_cancel_stops_the_running_step_and_compensates(own_harness: Harness) -> None:
    started, stopped = asyncio.Event(), asyncio.Event()

    async def wait_until_cancelled(inp: StepInput) -> StepResult:
        started.set()
        try:
            while True:  # heartbeats deliver the cancellation
                activity.heartbeat()
                await asyncio.sleep(0.05)
        finally:
            stopped.set()

    steps = [
        step("record", compensate={"uses": "catalog.delete_entity", "with": {"identifier": "x"}}),
        step("build", "github.workflow_dispatch", heartbeat_timeout="PT1S"),
        step("never"),
    ]
    own_harness.recorder.answers["build"] = wait_until_cancelled
    handle = await own_harness.start(run_input(steps))
    await asyncio.wait_for(started.wait(), timeout=30)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    assert isinstance(failed.value.cause, CancelledError)
    # The vendor call itself was stopped, not left running behind the cancelled run.
    await asyncio.wait_for(stopped.wait(), timeout=30)
    assert own_harness.recorder.called() == ["record", "build", "record-compensate"]
    final = own_harness.recorder.last
    assert final.status == RunStatus.CANCELLED
    assert [s.status for s in final.steps] == ["COMPENSATED", "CANCELLED", "PENDING"]


async def test_a_cancel_while_approvers_are_being_told_cancels_the_run(own_harness: Harness) -> None:
    notifying, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        notifying.set()
        await asyncio.wait_for(release.wait(), timeout=30)

    own_harness.recorder.notifying = hold
    handle = await own_harness.start(run_input([step("deploy")], approvals={"action": policy()}))
    await asyncio.wait_for(notifying.wait(), timeout=30)
    await handle.cancel()
    try:
        with pytest.raises(WorkflowFailureError) as failed:
            await asyncio.wait_for(handle.result(), timeout=30)
    finally:
        release.set()
    assert isinstance(failed.value.cause, CancelledError)
    assert own_harness.recorder.called() == []
    assert own_harness.recorder.last.status == RunStatus.CANCELLED


async def waiting_for_approval(harness: Harness) -> RunReport:
    """The report that says the gate opened (and its request went to approvers)."""

    def opened() -> RunReport:
        reports = [r for r in harness.recorder.reports if r.status == RunStatus.WAITING_FOR_APPROVAL]
        assert reports and harness.recorder.requests, "no request for approval yet"
        return reports[-1]

    return await eventually_async(opened, what="the approval gate to open")


async def test_an_approved_action_runs_its_steps(harness: Harness) -> None:
    inp = run_input([step("deploy")], approvals={"action": policy()})
    handle = await harness.start(inp)
    report = await waiting_for_approval(harness)
    assert report.approval is not None and report.approval["status"] == "PENDING"
    assert harness.recorder.steps == [], "no step runs before the decision"
    request = harness.recorder.requests[0]
    assert [a.identifier for a in request.approvers] == ["bob"]
    assert request.inputs["token"] != "s3cret-token", "approvers never see a secret input"
    await handle.execute_update(DECIDE_UPDATE, Decision(user="bob", decision="APPROVE", comment="ship it"))
    outcome = await handle.result()
    assert outcome.status == RunStatus.SUCCESS
    assert harness.recorder.called() == ["deploy"]
    assert [o.outcome for o in harness.recorder.outcomes] == ["APPROVED"]
    assert harness.recorder.outcomes[0].messages == [SlackMessage("C-approvals", "ts-1")]
    assert "bob approved via api: ship it" in harness.recorder.log()


async def test_the_requester_cannot_approve_their_own_run(harness: Harness) -> None:
    inp = run_input([step("deploy")], approvals={"action": policy()})
    handle = await harness.start(inp)
    await waiting_for_approval(harness)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(DECIDE_UPDATE, Decision(user="alice", decision="APPROVE"))
    cause = refused.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == SELF_APPROVAL, cause
    await handle.execute_update(DECIDE_UPDATE, Decision(user="bob", decision="DECLINE"))
    outcome = await failed_outcome(handle)
    assert (outcome["type"], outcome["status"]) == ("RunDeclined", "DECLINED")
    assert harness.recorder.steps == []


async def test_an_approval_step_times_out_and_compensates(harness: Harness) -> None:
    steps = [
        step("prepare", compensate={"uses": "http.request"}),
        {"id": "sign-off", "uses": "approval", "with": {}},
        step("deploy"),
    ]
    inp = run_input(steps, approvals={"sign-off": policy(timeout="P2D")})
    handle = await harness.start(inp)
    # Waiting on the result lets the server skip the two days to the deadline.
    outcome = await failed_outcome(handle)
    assert (outcome["status"], outcome["label"]) == ("DECLINED", "Approval timed out")
    assert harness.recorder.called() == ["prepare", "prepare-compensate"]
    assert [o.outcome for o in harness.recorder.outcomes] == ["TIMED_OUT"]


async def test_a_retry_resumes_at_the_failed_step_with_earlier_outputs(harness: Harness) -> None:
    steps = [
        step("record"),
        {"id": "deploy", "uses": "http.request", "with": {"id": "{{ steps.record.outputs.id }}"}},
    ]
    inp = run_input(
        steps,
        resume_at="deploy",
        previous_steps={"record": {"status": "SUCCESS", "outputs": {"id": "rec-7"}}},
        log_base=40,
        approvals={"action": policy()},
        approved_gates=["action"],
    )
    outcome = await (await harness.start(inp)).result()
    assert outcome.status == RunStatus.SUCCESS
    # The approved gate is not asked again, the finished step not run again.
    assert harness.recorder.requests == []
    assert harness.recorder.called() == ["deploy"]
    assert harness.recorder.steps[0].params == {"id": "rec-7"}
    first = harness.recorder.reports[0].logs[0]
    assert first.seq == 40
    assert "resuming at step deploy" in first.message
    assert [s.status for s in harness.recorder.last.steps] == ["SUCCESS", "SUCCESS"]


async def test_a_template_error_fails_the_step_without_calling_it(harness: Harness) -> None:
    steps = [step("first"), {"id": "broken", "uses": "http.request", "with": {"url": "{{ inputs.nope }}"}}]
    outcome = await failed_outcome(await harness.start(run_input(steps)))
    assert outcome["label"] == "Failed at step broken"
    assert harness.recorder.called() == ["first"]
    assert harness.recorder.last.steps[1].status == "FAILURE"
