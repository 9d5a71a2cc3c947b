"""Parallel steps on the time-skipping test server: ``needs``, ``strategy.on_failure``,
compensation in reverse completion order, and ``for_each`` fan-out bounded by ``max_parallel``.

The same recorded stand-ins as ``test_action_run_fast``: each step kind records the
:class:`StepInput` it got and answers what the test scripts, here often a coroutine that waits
for another step, so the tests decide which branch is mid-step when another one fails.

One test (marked slow) runs the real stack instead: a ``python worker.py`` process SIGKILLed
while three branches wait on GitHub runs, and each build dispatched once all the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import build_activities
from config import Settings
from contracts.runs import RunStatus
from contracts.steps import StepInput, StepResult
from devtools.testing import eventually_async
from tests.fakes.github import FakeGitHub, RunScript
from tests.fakes.server import serve
from tests.temporal_env import start_time_skipping
from tests.workflows.conftest import WEBHOOK_SECRET
from tests.workflows.test_action_run_fast import Harness, _harness, failed_outcome, frozen, run_input, step
from tests.workflows.test_durability import SlowWebhookReceiver, process_stack
from workflows import ALL_WORKFLOWS
from workflows.action_run import ActionRun


@pytest.fixture(scope="module")
async def skipping() -> AsyncIterator[WorkflowEnvironment]:
    async with start_time_skipping() as env:
        yield env


@pytest.fixture
async def harness(skipping: WorkflowEnvironment) -> AsyncIterator[Harness]:
    async with _harness(skipping) as made:
        yield made


@pytest.fixture
async def own_harness() -> AsyncIterator[Harness]:
    """On a server of its own: after a cancelled activity the test server stops skipping time."""
    async with start_time_skipping() as env, _harness(env) as made:
        yield made


UNDO = {"uses": "http.request", "with": {"url": "https://example.test/undo"}}


def action(steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """The action of ``run_input`` with ``extra`` keys (a ``strategy``)."""
    return {"identifier": "deploy", "title": "Deploy", "steps": steps, **extra}


async def step_status(handle: WorkflowHandle[Any, Any], step_id: str) -> str:
    """A step's status as the running workflow holds it (its ``state`` query)."""
    state = await handle.query(ActionRun.state)
    return str(next(s for s in state["steps"] if s["id"] == step_id)["status"])


def statuses(harness: Harness) -> dict[str, str]:
    return {s.id: s.status for s in harness.recorder.last.steps}


async def test_independent_steps_run_at_once_and_a_step_waits_for_what_it_needs(harness: Harness) -> None:
    both_started = asyncio.Event()
    started: list[str] = []

    async def meet(inp: StepInput) -> StepResult:
        # Each branch returns only once the other has started: they ran at the same time.
        started.append(inp.step_id)
        if len(started) == 2:
            both_started.set()
        await asyncio.wait_for(both_started.wait(), 10)
        return StepResult(outputs={"region": inp.step_id})

    steps = [
        step("east", needs=[]),
        step("west", needs=[]),
        {
            "id": "record",
            "uses": "catalog.upsert_entity",
            "needs": ["east", "west"],
            "with": {"regions": ["{{ steps.east.outputs.region }}", "{{ steps.west.outputs.region }}"]},
        },
        step("notify"),  # no needs: it follows the step before it
    ]
    harness.recorder.answers.update(east=meet, west=meet)
    outcome = await (await harness.start(run_input(steps))).result()
    assert outcome.status == RunStatus.SUCCESS
    assert sorted(harness.recorder.called()[:2]) == ["east", "west"]
    assert harness.recorder.called()[2:] == ["record", "notify"]
    assert harness.recorder.steps[2].params == {"regions": ["east", "west"]}
    final = harness.recorder.last
    assert [(s.id, s.needs, s.status) for s in final.steps] == [
        ("east", [], "SUCCESS"),
        ("west", [], "SUCCESS"),
        ("record", ["east", "west"], "SUCCESS"),
        ("notify", ["record"], "SUCCESS"),
    ]
    # The log interleaves the branches, each line naming its step.
    lines = [(line.step_id, line.message) for report in harness.recorder.reports for line in report.logs]
    starts = [sid for sid, message in lines if message.endswith("started")]
    assert starts[:2] == ["east", "west"] and starts[2:] == ["record", "notify"]
    seqs = [line.seq for report in harness.recorder.reports for line in report.logs]
    assert seqs == list(range(len(seqs)))


async def test_stop_cancels_the_running_sibling_and_compensates_in_reverse_completion_order(
    own_harness: Harness,
) -> None:
    recorder = own_harness.recorder
    east_done, slow_started, slow_stopped = asyncio.Event(), asyncio.Event(), asyncio.Event()
    handles: list[WorkflowHandle[Any, Any]] = []

    async def east(inp: StepInput) -> StepResult:
        east_done.set()
        return StepResult(outputs={"done": "east"})

    async def east_succeeded() -> bool:
        return await step_status(handles[0], "east") == "SUCCESS"

    async def west(inp: StepInput) -> StepResult:
        # Defined first, completes once the workflow has seen east complete: compensation
        # follows completion, not the list.
        await asyncio.wait_for(east_done.wait(), 10)
        await eventually_async(east_succeeded, what="the workflow to see east succeed")
        return StepResult(outputs={"done": "west"})

    async def slow(inp: StepInput) -> StepResult:
        slow_started.set()
        try:
            while True:  # mid-step until cancelled; heartbeats deliver the cancellation
                activity.heartbeat()
                await asyncio.sleep(0.05)
        finally:
            slow_stopped.set()

    async def boom(inp: StepInput) -> StepResult:
        await asyncio.wait_for(slow_started.wait(), 10)
        raise frozen()

    steps = [
        step("west", needs=[], compensate=UNDO),
        step("east", needs=[], compensate=UNDO),
        step("build", "github.workflow_dispatch", needs=[], heartbeat_timeout="PT1S", compensate=UNDO),
        step("boom", needs=["west", "east"]),
        step("after", needs=["boom"]),
    ]
    recorder.answers.update(west=west, east=east, build=slow, boom=boom)
    handles.append(await own_harness.start(run_input(steps)))
    outcome = await failed_outcome(handles[0])
    assert (outcome["status"], outcome["label"]) == ("FAILURE", "Failed at step boom")
    await asyncio.wait_for(slow_stopped.wait(), 10)
    assert recorder.called()[-2:] == ["west-compensate", "east-compensate"]
    assert "build-compensate" not in recorder.called()  # cancelled, not completed
    assert statuses(own_harness) == {
        "west": "COMPENSATED",
        "east": "COMPENSATED",
        "build": "CANCELLED",
        "boom": "FAILURE",
        "after": "PENDING",
    }
    log = recorder.log()
    assert "Stopping build: step boom failed" in log
    assert "Compensating 2 completed step(s) in reverse completion order" in log


async def test_a_failure_and_a_success_ending_together_stop_cleanly(harness: Harness) -> None:
    recorder = harness.recorder
    started: list[str] = []
    both = asyncio.Event()

    async def together(inp: StepInput) -> StepResult:
        # Both end at once, so the workflow most likely sees both in one task.
        started.append(inp.step_id)
        if len(started) == 2:
            both.set()
        await asyncio.wait_for(both.wait(), 10)
        if inp.step_id == "fails":
            raise frozen()
        return StepResult(outputs={"done": inp.step_id})

    # fails is first in the list: stopping on it must not lose works, which ended with it.
    steps = [
        step("fails", needs=[]),
        step("works", needs=[], compensate=UNDO),
        step("after", needs=["fails"]),
    ]
    recorder.answers.update(fails=together, works=together)
    handle = await harness.start(run_input(steps))
    outcome = await asyncio.wait_for(failed_outcome(handle), 20)
    assert outcome["label"] == "Failed at step fails"
    assert statuses(harness) == {"fails": "FAILURE", "works": "COMPENSATED", "after": "PENDING"}


async def test_continue_lets_other_branches_finish_skips_dependents_and_fails_at_the_end(
    harness: Harness,
) -> None:
    recorder = harness.recorder
    failed = asyncio.Event()

    async def fails(inp: StepInput) -> StepResult:
        failed.set()
        raise frozen()

    async def mid_step(inp: StepInput) -> StepResult:
        # Still running when its sibling fails; it goes on and succeeds.
        await asyncio.wait_for(failed.wait(), 10)
        return StepResult(outputs={"done": "long"})

    steps = [
        step("short", needs=[]),
        step("long", needs=[], compensate=UNDO),
        step("after_short", needs=["short"]),
        step("then", needs=["after_short"]),
        step("after_long", needs=["long"], compensate=UNDO),
    ]
    recorder.answers.update(short=fails, long=mid_step)
    inp = run_input(steps, action=action(steps, strategy={"on_failure": "continue"}))
    outcome = await failed_outcome(await harness.start(inp))
    assert (outcome["status"], outcome["label"]) == ("FAILURE", "Failed at step short")
    assert "environment is frozen" in outcome["error"]
    assert "after_short" not in recorder.called() and "then" not in recorder.called()
    assert recorder.called()[-2:] == ["after_long-compensate", "long-compensate"]
    assert statuses(harness) == {
        "short": "FAILURE",
        "long": "COMPENSATED",
        "after_short": "SKIPPED",
        "then": "SKIPPED",
        "after_long": "COMPENSATED",
    }
    assert "Step then skipped: step short failed" in recorder.log()


async def test_for_each_fans_out_at_most_max_parallel_at_a_time(harness: Harness) -> None:
    recorder = harness.recorder
    in_flight: list[str] = []
    most = 0

    async def deploy(inp: StepInput) -> StepResult:
        nonlocal most
        in_flight.append(inp.step_id)
        most = max(most, len(in_flight))
        await asyncio.sleep(0.05)
        in_flight.remove(inp.step_id)
        return StepResult(outputs={"url": f"https://{inp.params['region']}.example.test"})

    regions = ["us-east-1", "eu-west-1", "ap-south-1", "sa-east-1", "ca-central-1"]
    steps: list[dict[str, Any]] = [
        {
            "id": "deploy",
            "uses": "http.request",
            "for_each": "{{ inputs.regions }}",
            "max_parallel": 2,
            "with": {"region": "{{ item }}", "position": "{{ index }}", "version": "{{ inputs.version }}"},
        },
        {"id": "record", "uses": "catalog.upsert_entity", "with": {"urls": "{{ steps.deploy.outputs }}"}},
    ]
    for i in range(len(regions)):
        recorder.answers[f"deploy[{i}]"] = deploy
    inp = run_input(steps, inputs={"version": "v2", "regions": regions})
    outcome = await (await harness.start(inp)).result()
    assert outcome.status == RunStatus.SUCCESS
    assert most == 2, "max_parallel bounds the items in flight"
    items = [s for s in recorder.steps if s.step_id.startswith("deploy[")]
    assert sorted((s.params["position"], s.params["region"]) for s in items) == list(enumerate(regions))
    assert {s.idempotency_key for s in items} == {f"{inp.run_id}:deploy[{i}]" for i in range(5)}
    expected = [{"url": f"https://{r}.example.test"} for r in regions]
    assert recorder.last.steps[0].outputs == expected  # in item order, whatever finished first
    assert recorder.steps[-1].params == {"urls": expected}
    assert "Step deploy (http.request) started: 5 item(s), at most 2 at a time" in recorder.log()


async def test_a_failed_run_compensates_each_fanned_out_item(harness: Harness) -> None:
    recorder = harness.recorder
    steps: list[dict[str, Any]] = [
        {
            "id": "deploy",
            "uses": "http.request",
            "for_each": "{{ inputs.regions }}",
            "with": {"region": "{{ item }}"},
            "compensate": {"uses": "http.request", "with": {"undo": "{{ item }}", "at": "{{ index }}"}},
        },
        step("verify"),
    ]
    recorder.answers["verify"] = frozen()
    inp = run_input(steps, inputs={"version": "v2", "regions": ["a", "b"]})
    with_undo = await failed_outcome(await harness.start(inp))
    assert with_undo["label"] == "Failed at step verify"
    undone = [s for s in recorder.steps if s.step_id.endswith("-compensate")]
    assert sorted((s.step_id, s.params["undo"], s.params["at"]) for s in undone) == [
        ("deploy[0]-compensate", "a", 0),
        ("deploy[1]-compensate", "b", 1),
    ]
    assert statuses(harness) == {"deploy": "COMPENSATED", "verify": "FAILURE"}


async def test_a_failed_item_under_stop_cancels_the_items_in_flight(own_harness: Harness) -> None:
    recorder = own_harness.recorder
    waiting: set[str] = set()
    two_waiting, stopped = asyncio.Event(), asyncio.Event()

    async def item(inp: StepInput) -> StepResult:
        if inp.params["region"] == "b":
            await asyncio.wait_for(two_waiting.wait(), 10)
            raise frozen()
        waiting.add(inp.step_id)
        if len(waiting) == 2:
            two_waiting.set()
        try:
            while True:
                activity.heartbeat()
                await asyncio.sleep(0.05)
        finally:
            waiting.discard(inp.step_id)
            if not waiting:
                stopped.set()

    steps: list[dict[str, Any]] = [
        {
            "id": "deploy",
            "uses": "github.workflow_dispatch",
            "for_each": "{{ inputs.regions }}",
            "heartbeat_timeout": "PT1S",
            "with": {"region": "{{ item }}"},
            "compensate": UNDO,
        },
        step("after"),
    ]
    recorder.answers.update({f"deploy[{i}]": item for i in range(3)})
    inp = run_input(steps, inputs={"version": "v1", "regions": ["a", "b", "c"]})
    outcome = await failed_outcome(await own_harness.start(inp))
    assert outcome["label"] == "Failed at step deploy" and "deploy[1]" in outcome["error"]
    await asyncio.wait_for(stopped.wait(), 10)  # both vendor calls stopped
    assert not [c for c in recorder.called() if c.endswith("-compensate") or c == "after"]
    assert statuses(own_harness) == {"deploy": "FAILURE", "after": "PENDING"}


async def test_for_each_that_is_not_a_list_fails_the_step(harness: Harness) -> None:
    steps = [{"id": "deploy", "uses": "http.request", "for_each": "{{ inputs.version }}", "with": {}}]
    outcome = await failed_outcome(await harness.start(run_input(steps)))
    assert outcome["label"] == "Failed at step deploy"
    assert "must render to a list" in outcome["error"]
    assert harness.recorder.steps == []


async def test_cancelling_the_run_cancels_every_branch(own_harness: Harness) -> None:
    recorder = own_harness.recorder
    running: set[str] = set()
    both = asyncio.Event()

    async def forever(inp: StepInput) -> StepResult:
        running.add(inp.step_id)
        if len(running) == 2:
            both.set()
        while True:
            activity.heartbeat()
            await asyncio.sleep(0.05)

    steps = [
        step("done_first", needs=[], compensate=UNDO),
        step("a", "github.workflow_dispatch", needs=["done_first"], heartbeat_timeout="PT1S"),
        step("b", "github.workflow_dispatch", needs=["done_first"], heartbeat_timeout="PT1S"),
    ]
    recorder.answers.update(a=forever, b=forever)
    handle = await own_harness.start(run_input(steps))
    await asyncio.wait_for(both.wait(), 30)
    await handle.cancel()
    try:
        await handle.result()
        raise AssertionError("a cancelled run's workflow is cancelled")
    except WorkflowFailureError:
        pass
    assert statuses(own_harness) == {"done_first": "COMPENSATED", "a": "CANCELLED", "b": "CANCELLED"}
    assert own_harness.recorder.last.status == RunStatus.CANCELLED


# ---- a worker killed while three branches run (a real worker process, a dev server) ----------


@pytest.fixture(scope="module")
def slow_receiver() -> Iterator[SlowWebhookReceiver]:
    fake = SlowWebhookReceiver(WEBHOOK_SECRET)
    with serve(fake.asgi()) as url:
        fake.url = url
        yield fake


@pytest.mark.slow
async def test_a_killed_worker_resumes_three_running_branches_each_dispatched_once(
    tmp_path: Path, temporal: Any, slow_receiver: SlowWebhookReceiver, github: FakeGitHub
) -> None:
    address = temporal.client.service_client.config.target_host
    async with process_stack(tmp_path, address, slow_receiver, github) as stack:
        regions = ["east", "west", "south"]
        await stack.create_action(
            [
                {
                    "id": region,
                    "uses": "github.workflow_dispatch",
                    "needs": [],
                    "with": {"repo": f"acme/{region}", "workflow": "deploy.yml", "ref": "main"},
                    "wait_for_completion": True,
                    "heartbeat_timeout": "PT2S",
                }
                for region in regions
            ]
        )
        # In progress for 25 polls (0.1 s apart) each: across the crash and into the next worker.
        github.scripts += [RunScript(conclusion="success", polls=25) for _ in regions]
        run = await stack.launch()

        async def all_three_running() -> bool:
            steps = (await stack.run(run["id"]))["steps"]
            dispatched = len(github.calls("POST", "/dispatches$")) == 3
            return dispatched and all(s["status"] == "IN_PROGRESS" for s in steps)

        await stack.until("three branches dispatched and running", all_three_running)
        stack.worker.kill()
        # The next worker in this process (a second worker process takes ~20 s to start here):
        # the same settings, task queue and activities.
        settings = Settings.model_validate(
            {
                k.removeprefix("GANTRY_").lower(): v
                for k, v in stack.worker.env.items()
                if k.startswith("GANTRY_")
            }
        )
        async with Worker(
            temporal.client,
            task_queue=settings.task_queue,
            workflows=ALL_WORKFLOWS,
            activities=build_activities(settings),
        ):
            done = await stack.ended(run["id"])
        assert done["status"] == "SUCCESS", done["error"]
        assert len(github.calls("POST", "/dispatches$")) == 3, "each branch dispatched once"
        assert {s["outputs"]["run_id"] for s in done["steps"]} == {r["id"] for r in github.runs.values()}
        assert all(r["conclusion"] == "success" for r in github.runs.values())
