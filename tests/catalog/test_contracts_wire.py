"""The typed contracts keep their wire format: an action's steps keyed ``with``/``if`` as stored and
recorded, a timer report whose keys' presence is its meaning, a run's step skeleton."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from contracts.actions import ActionSpec, CompensationSpec, RetrySpec, StepSpec
from contracts.approvals import ApprovalPolicy, Approver, ApproverSelection
from contracts.runs import RunInput, StepState, initial_steps
from contracts.timers import NextReminder, ReminderSent, TimerExtension, TimerNews
from contracts.wire import WireError

HISTORIES = Path(__file__).parents[1] / "workflows" / "histories"


def recorded_inputs() -> list[tuple[str, dict[str, Any]]]:
    inputs = []
    for path in sorted(HISTORIES.glob("action_run_*.json")):
        started = json.loads(path.read_text())["events"][0]["workflowExecutionStartedEventAttributes"]
        inputs.append((path.stem, json.loads(base64.b64decode(started["input"]["payloads"][0]["data"]))))
    return inputs


@pytest.mark.parametrize(
    ("name", "recorded"), recorded_inputs(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_a_recorded_input_reads_typed_and_writes_its_steps_back_as_recorded(
    name: str, recorded: dict[str, Any]
) -> None:
    typed = RunInput.from_json(recorded)
    written = typed.to_json()

    assert written["action"]["steps"] == recorded["action"]["steps"], name
    assert written["approvals"] == recorded.get("approvals", {}), name
    for step, raw in zip(typed.action.steps, recorded["action"]["steps"], strict=True):
        assert step.params == raw.get("with", {}) and step.condition == raw.get("if")


def test_a_step_writes_with_and_if_and_leaves_out_what_is_not_set() -> None:
    step = StepSpec(
        "deploy",
        "github.workflow_dispatch",
        params={"ref": "main"},
        condition="{{ inputs.go }}",
        retry=RetrySpec(maximum_attempts=2),
        compensate=CompensationSpec("http.request", params={"url": "https://x.test/undo"}),
    )

    wire = ActionSpec("ship", [step], title="Ship").to_json()

    assert wire["steps"] == [
        {
            "id": "deploy",
            "uses": "github.workflow_dispatch",
            "with": {"ref": "main"},
            "if": "{{ inputs.go }}",
            "retry": {"maximum_attempts": 2},
            "compensate": {"uses": "http.request", "with": {"url": "https://x.test/undo"}},
        }
    ]
    assert ActionSpec.from_json(wire).steps == [step]


def test_a_newer_definition_s_unknown_keys_are_dropped_and_a_missing_kind_refused() -> None:
    raw = {"identifier": "ship", "steps": [{"id": "a", "uses": "sleep", "with": {}, "cache": True}], "v": 2}
    assert ActionSpec.from_json(raw).steps == [StepSpec("a", "sleep")]
    with pytest.raises(TypeError) as refused:
        ActionSpec.from_json({"identifier": "ship", "steps": [{"id": "a"}]})
    causes, cause = [], refused.value.__cause__
    while cause is not None:
        causes.append(str(cause))
        cause = cause.__cause__
    assert any("'uses'" in c for c in causes), causes


def test_a_resolved_policy_keeps_the_shape_the_workflow_has_always_read() -> None:
    policy = ApprovalPolicy(
        ApproverSelection(users=["bob"]), timeout="PT1H", eligible=[Approver("bob", "bob@example.com")]
    )
    wire = RunInput.from_json(
        {
            "run_id": "r",
            "action": {"identifier": "a", "steps": []},
            "entity": None,
            "inputs": {},
            "user": {"identifier": "alice"},
            "run": {"id": "r", "action": "a"},
            "approvals": {
                "action": {
                    "approvers": {"users": ["bob"]},
                    "timeout": "PT1H",
                    "eligible": [{"identifier": "bob", "email": "bob@example.com"}],
                }
            },
        }
    )
    assert wire.approvals == {"action": policy}
    assert wire.to_json()["approvals"]["action"]["eligible"] == [
        {"identifier": "bob", "email": "bob@example.com", "name": ""}
    ]


def test_the_step_skeleton_and_a_retry_s_reset() -> None:
    spec = StepSpec("deploy", "http.request", title="Deploy it")
    assert initial_steps([spec]) == initial_steps(
        [{"id": "deploy", "uses": "http.request", "title": "Deploy it"}]
    )
    done = StepState("deploy", "http.request", "Deploy it", "FAILURE", "t0", "t1", {"x": 1}, "boom")
    assert done.again() == StepState("deploy", "http.request", "Deploy it", "PENDING", "t0", "t1", {}, None)
    assert StepState.from_json({**done.to_json(), "attempts": 3}) == done


def test_timer_news_says_only_what_it_says() -> None:
    rearm = TimerNews(
        state="active",
        deadline="2031-01-01T00:00:00.000Z",
        extensions=[TimerExtension("P1D", "alice", at="t", deadline="d")],
        next_reminder=NextReminder(None),
    )
    wire = rearm.to_json()

    assert wire == {
        "state": "active",
        "deadline": "2031-01-01T00:00:00.000Z",
        "extensions": [{"by": "P1D", "user": "alice", "via": "api", "at": "t", "deadline": "d"}],
        "next_reminder": None,  # news: no reminder is left
    }
    assert TimerNews.from_json(wire) == rearm
    assert TimerNews(teardown="done").to_json() == {"teardown": "done"}  # next_reminder untouched
    assert TimerNews.from_json({"teardown": "done"}).next_reminder is None
    reminder = TimerNews(reminder=ReminderSent("t", "d"), next_reminder=NextReminder("t2"))
    assert list(reminder.to_json()) == ["reminder", "next_reminder"]
    assert reminder.wants_owners and TimerNews(notify_owners="cleanup failed").wants_owners
    assert not TimerNews(state="cleared").wants_owners


def test_a_malformed_timer_news_key_is_named() -> None:
    with pytest.raises(WireError) as refused:
        TimerNews.from_json({"teardown": "running", "extensions": [{"user": "alice"}]})
    assert refused.value.field == "extensions"
