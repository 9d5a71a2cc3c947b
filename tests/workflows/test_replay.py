"""Recorded histories still replay: a workflow change that would break in-flight runs fails here.

Each file in ``histories/`` is a real history recorded by ``record_histories.py`` from the
workflow code of its day. Replaying it against today's ``ALL_WORKFLOWS`` must issue the same
commands in the same order; a nondeterminism error means runs in flight at deploy time would
get stuck. Fix the change with ``workflow.patched(...)``, do not re-record (see that script).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from workflows import ALL_WORKFLOWS
from workflows.reconcile import LOOPING, PASSES_PER_EXECUTION

HISTORIES = Path(__file__).parent / "histories"

# Every scenario that must keep replaying, and the workflow type it recorded. A history that
# goes missing fails here rather than silently shrinking the coverage.
EXPECTED = {
    "action_run_success_several_kinds": "ActionRun",
    "action_run_failure_compensated": "ActionRun",
    "action_run_failure_fails_workflow": "ActionRun",
    "action_run_retry_resumed": "ActionRun",
    "action_run_cancelled": "ActionRun",
    "action_run_sleep": "ActionRun",
    "action_run_approval_approved": "ActionRun",
    "action_run_parallel_fan_out_compensated": "ActionRun",
    "action_run_sub_action": "ActionRun",
    "reconcile_runs": "ReconcileRuns",
    "reconcile_runs_continued": "ReconcileRuns",
    "regrade_scorecards": "RegradeScorecards",
    "automation_run": "AutomationRun",
    "entity_timer": "EntityTimer",
    "entity_timer_run_ended": "EntityTimer",
    "data_source_sync": "DataSourceSync",
    "data_source_sync_push": "DataSourceSync",
    "initiative_reminded_moved_reported": "Initiative",
    "exemption_expired": "ExemptionExpiry",
}


def load(name: str) -> WorkflowHistory:
    path = HISTORIES / f"{name}.json"
    assert path.exists(), f"{path} is missing: python -m tests.workflows.record_histories --only {name}"
    return WorkflowHistory.from_json(f"recorded-{name}", path.read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_recorded_history_replays(name: str) -> None:
    history = load(name)
    started = history.events[0].workflow_execution_started_event_attributes
    assert started.workflow_type.name == EXPECTED[name]
    # debug_mode: no 2 s deadlock detector. This test is about determinism; a busy CI machine's
    # stall (a garbage collection in the sandbox, say) must not read as a replay failure.
    replayer = Replayer(workflows=ALL_WORKFLOWS, debug_mode=True)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{name} no longer replays: {result.replay_failure!r}"


def test_every_recorded_history_is_checked() -> None:
    recorded = {path.stem for path in HISTORIES.glob("*.json")}
    assert recorded == set(EXPECTED), "add new histories to EXPECTED (and remove deleted ones)"


def patches(name: str) -> list[str]:
    """The ids of the ``workflow.patched`` markers a recorded history holds."""
    found = []
    for event in load(name).events:
        marker = event.marker_recorded_event_attributes
        if marker.marker_name == "core_patch":
            found.append(json.loads(marker.details["patch-data"].payloads[0].data)["id"])
    return found


def test_histories_cover_the_run_paths() -> None:
    """The recordings still show what they are named for (a recording from a broken scenario
    would replay fine and prove little)."""

    def event_types(name: str) -> str:
        return json.dumps(
            [e.get("eventType") for e in json.loads((HISTORIES / f"{name}.json").read_text())["events"]]
        )

    assert "WORKFLOW_EXECUTION_CANCELED" in event_types("action_run_cancelled")
    assert "TIMER_FIRED" in event_types("action_run_sleep")
    retry = load("action_run_retry_resumed").events[0].workflow_execution_started_event_attributes
    assert "resume_at" in retry.input.payloads[0].data.decode()
    for name in ("action_run_success_several_kinds", "action_run_failure_compensated", "action_run_sleep"):
        assert "WORKFLOW_EXECUTION_COMPLETED" in event_types(name)
    # Since the failed-runs-fail-workflow patch: its marker, then the workflow fails.
    assert "WORKFLOW_EXECUTION_FAILED" in event_types("action_run_failure_fails_workflow")
    assert patches("action_run_failure_fails_workflow") == ["failed-runs-fail-workflow"]
    assert patches("action_run_failure_compensated") == []
    timer = event_types("entity_timer")
    for kind in (
        "EXECUTION_SIGNALED",
        "UPDATE_COMPLETED",
        "TIMER_FIRED",
        "MARKER_RECORDED",
        "EXECUTION_COMPLETED",
    ):
        assert kind in timer  # armed, extended, reminded and expired, reports as local activities
    assert "ACTIVITY_TASK_COMPLETED" in event_types("automation_run")
    assert "TIMER_CANCELED" in event_types("entity_timer_run_ended")  # the signal cut the wait
    # The run waited at its approval gate (a timer for the deadline), the decide Update was
    # accepted and completed, the wait ended early and the run went on to succeed.
    gate = event_types("action_run_approval_approved")
    for kind in ("UPDATE_ACCEPTED", "UPDATE_COMPLETED", "TIMER_CANCELED", "EXECUTION_COMPLETED"):
        assert kind in gate
    # A sub-action: its child run prepared, started as a child workflow that completed.
    child = event_types("action_run_sub_action")
    for kind in ("START_CHILD_WORKFLOW_EXECUTION_INITIATED", "CHILD_WORKFLOW_EXECUTION_COMPLETED"):
        assert kind in child
    # A sync: open, load, one pull that completed and one that failed, then complete (PARTIAL).
    sync = event_types("data_source_sync")
    assert sync.count("ACTIVITY_TASK_COMPLETED") == 4 and "ACTIVITY_TASK_FAILED" in sync
    ended = load("data_source_sync").events[-1].workflow_execution_completed_event_attributes
    assert json.loads(ended.result.payloads[0].data)["status"] == "PARTIAL"
    # A push webhook's sync: its input names the pushed repository, and it succeeded.
    push = load("data_source_sync_push")
    started_with = push.events[0].workflow_execution_started_event_attributes.input.payloads[0].data
    assert json.loads(started_with)["repositories"] == ["acme/payments"]
    pushed = push.events[-1].workflow_execution_completed_event_attributes
    assert json.loads(pushed.result.payloads[0].data)["status"] == "SUCCESS"
    # Parallel steps: the scheduler's marker, steps scheduled before earlier ones completed (two
    # branches, then the fan-out two at a time), each region's deploy compensated, then failed.
    assert patches("action_run_parallel_fan_out_compensated") == [
        "parallel-steps",
        "failed-runs-fail-workflow",
    ]
    parallel = json.loads((HISTORIES / "action_run_parallel_fan_out_compensated.json").read_text())["events"]
    in_flight = most = 0
    for event in parallel:
        kind = event["eventType"]
        in_flight += kind.endswith("ACTIVITY_TASK_SCHEDULED") - kind.endswith(
            ("ACTIVITY_TASK_COMPLETED", "ACTIVITY_TASK_FAILED")
        )
        most = max(most, in_flight)
    assert most == 2
    called = [
        json.loads(
            base64.b64decode(e["activityTaskScheduledEventAttributes"]["input"]["payloads"][0]["data"])
        )
        for e in parallel
        if "activityTaskScheduledEventAttributes" in e
    ]
    undone = [c["step_id"] for c in called if c["step_id"].endswith("-compensate")]
    assert sorted(undone) == [f"deploy[{i}]-compensate" for i in range(3)] + ["record-compensate"]
    assert "WORKFLOW_EXECUTION_FAILED" in event_types("action_run_parallel_fan_out_compensated")
    approval = load("action_run_approval_approved").events[0].workflow_execution_started_event_attributes
    assert '"approvals":{"action"' in approval.input.payloads[0].data.decode()
    # An initiative: armed by its first schedule, re-armed by a moved deadline (the first timer
    # cancelled), one reminder activity, the report activity at the deadline, then its end.
    initiative = event_types("initiative_reminded_moved_reported")
    assert initiative.count("EXECUTION_SIGNALED") == 2 and "TIMER_CANCELED" in initiative
    assert initiative.count("ACTIVITY_TASK_COMPLETED") == 2 and initiative.count("TIMER_FIRED") == 2
    reported = (
        load("initiative_reminded_moved_reported").events[-1].workflow_execution_completed_event_attributes
    )
    assert json.loads(reported.result.payloads[0].data)["state"] == "reported"
    # An exemption's timer: it fired at the exemption's date and the expiry activity answered.
    expired = load("exemption_expired").events[-1].workflow_execution_completed_event_attributes
    assert "TIMER_FIRED" in event_types("exemption_expired")
    assert json.loads(expired.result.payloads[0].data) == {"status": "EXPIRED"}


def test_the_housekeeping_loop_recording_continues_as_new() -> None:
    """A full execution of the looping ReconcileRuns: every pass (an activity, then a durable
    sleep), then continue-as-new with a fresh history. The older ``reconcile_runs`` recording is
    one pass from before the loop (no patch marker) and must keep replaying as that."""
    events = json.loads((HISTORIES / "reconcile_runs_continued.json").read_text())["events"]
    kinds = [e["eventType"] for e in events]
    assert kinds[-1] == "EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW"
    assert kinds.count("EVENT_TYPE_ACTIVITY_TASK_COMPLETED") == PASSES_PER_EXECUTION
    assert kinds.count("EVENT_TYPE_TIMER_FIRED") == PASSES_PER_EXECUTION
    assert patches("reconcile_runs_continued") == [LOOPING]
    assert patches("reconcile_runs") == []
