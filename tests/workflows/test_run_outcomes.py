"""How runs end, as operators and users see it: a run that does not succeed fails its workflow
(Temporal UI's Failures view matches GantryRunStatus), a step whose vendor is not configured
fails at once saying what to set, and a failing step's error names its kind, target, attempt
and a hint — one line in the worker log, no traceback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError, RetryState, TimeoutError, TimeoutType
from temporalio.testing import WorkflowEnvironment

from api.temporal import TemporalGateway
from devtools.testing import eventually_async
from tests.fakes.github import FakeGitHub
from tests.fakes.jira import FakeJira
from tests.fakes.webhook import FakeWebhookReceiver
from tests.workflows.conftest import Stack, running_stack, stack_settings
from workflows.action_run import _step_error

TERMINAL = {"SUCCESS", "FAILURE", "DECLINED", "CANCELLED", "TIMED_OUT"}
JIRA_NOT_CONFIGURED = "Jira is not configured: set GANTRY_JIRA_URL, GANTRY_JIRA_USER and GANTRY_JIRA_TOKEN"


def flag_action(steps: list[dict[str, Any]], approval: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "identifier": "toggle_flag",
        "title": "Toggle flag",
        "trigger": {"operation": "CREATE"},
        "steps": steps,
    }
    if approval is not None:
        body["approval"] = approval
    return body


def webhook_step(url: str, **extra: Any) -> dict[str, Any]:
    return {"id": "toggle", "uses": "http.request", "with": {"url": url, "body": {"flag": "on"}}, **extra}


async def launch(stack: Stack, action: dict[str, Any]) -> dict[str, Any]:
    saved = await stack.api.post("/v1/actions", json=action)
    assert saved.status_code == 201, saved.text
    return await stack.launch(action["identifier"])


async def workflow_status(stack: Stack, workflow_id: str) -> WorkflowExecutionStatus | None:
    """The workflow's status once it closed (the final report lands a moment before that)."""
    handle = stack.client.get_workflow_handle(workflow_id)

    async def closed() -> WorkflowExecutionStatus | None:
        status = (await handle.describe()).status
        return status if status != WorkflowExecutionStatus.RUNNING else None

    return await eventually_async(closed, what=f"workflow {workflow_id} to close")


async def test_a_successful_run_completes_its_workflow(stack: Stack) -> None:
    run = await launch(stack, flag_action([webhook_step(f"{stack.webhook.url}/flags")]))
    assert (await stack.wait_for(run["id"], TERMINAL))["status"] == "SUCCESS"
    assert await workflow_status(stack, run["workflow_id"]) == WorkflowExecutionStatus.COMPLETED


async def test_a_failed_run_fails_its_workflow_after_compensating_and_reporting(stack: Stack) -> None:
    stack.webhook.fail_next(400, {"message": "environment is frozen"}, path="/flags")
    record = {
        "id": "record",
        "uses": "http.request",
        "with": {"url": f"{stack.webhook.url}/record"},
        "compensate": {"uses": "http.request", "with": {"url": f"{stack.webhook.url}/unrecord"}},
    }
    run = await launch(stack, flag_action([record, webhook_step(f"{stack.webhook.url}/flags")]))
    done = await stack.wait_for(run["id"], TERMINAL)
    assert done["status"] == "FAILURE" and done["status_label"] == "Failed at step toggle"
    assert done["error"] == (
        f"http.request POST {stack.webhook.url}/flags failed (attempt 1 of 5, not retryable): "
        "webhook 400: environment is frozen"
    )
    assert [s["status"] for s in done["steps"]] == ["COMPENSATED", "FAILURE"]
    assert stack.webhook.calls("POST", "/unrecord")  # compensated before the workflow failed

    handle = stack.client.get_workflow_handle(run["workflow_id"])
    assert await workflow_status(stack, run["workflow_id"]) == WorkflowExecutionStatus.FAILED
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "RunFailed"
    assert cause.message == f"FAILURE: Failed at step toggle — {done['error']}"
    attributes = {p.key.name: p.value for p in (await handle.describe()).typed_search_attributes}
    assert attributes["GantryRunStatus"] == "FAILURE"

    # The API, asked how the workflow ended, reads the run's own outcome from the failure.
    ended = await TemporalGateway(stack.settings, stack.client).ended(run["workflow_id"])
    assert ended is not None and (ended.status, ended.label, ended.error) == (
        "FAILURE",
        "Failed at step toggle",
        done["error"],
    )

    # A retry starts a new execution under the same id, and it completes.
    assert (await stack.api.post(f"/v1/runs/{run['id']}/retry")).status_code == 202
    assert (await stack.wait_for(run["id"], TERMINAL))["status"] == "SUCCESS"
    assert await workflow_status(stack, run["workflow_id"]) == WorkflowExecutionStatus.COMPLETED


async def test_a_declined_run_fails_its_workflow_with_declined(stack: Stack) -> None:
    created = await stack.api.post("/v1/users", json={"identifier": "bob", "email": "bob@example.com"})
    assert created.status_code == 201, created.text
    token = (await stack.api.post("/v1/tokens", json={"user": "bob"})).json()["token"]
    policy = {"required_approvals": 1, "approvers": {"users": ["bob"]}, "timeout": "PT1H"}
    run = await launch(stack, flag_action([webhook_step(f"{stack.webhook.url}/flags")], policy))
    async with httpx.AsyncClient(
        base_url=stack.api.base_url, headers={"Authorization": f"Bearer {token}"}
    ) as bob:

        async def declined() -> httpx.Response:
            decided = await bob.post(f"/v1/runs/{run['id']}/approval", json={"decision": "DECLINE"})
            assert decided.status_code == 200, decided.text  # refused while the gate is not open yet
            return decided

        await eventually_async(declined, what="bob's decline to apply")
    done = await stack.wait_for(run["id"], TERMINAL)
    assert done["status"] == "DECLINED" and not stack.webhook.calls("POST", "/flags")
    assert await workflow_status(stack, run["workflow_id"]) == WorkflowExecutionStatus.FAILED
    ended = await TemporalGateway(stack.settings, stack.client).ended(run["workflow_id"])
    assert ended is not None and (ended.status, ended.label) == ("DECLINED", "Declined")


async def test_a_closed_port_says_where_and_how_often_in_the_run_log_and_one_line_in_the_worker_log(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    retry = {"maximum_attempts": 2, "initial_interval": "PT0.2S"}
    with caplog.at_level(logging.DEBUG):
        run = await launch(stack, flag_action([webhook_step("http://127.0.0.1:9/hook", retry=retry)]))
        done = await stack.wait_for(run["id"], TERMINAL)
    final = (
        "http.request POST http://127.0.0.1:9/hook failed (attempt 2 of 2, no retries left): "
        "connection refused — is 127.0.0.1:9 reachable from the worker?"
    )
    assert done["status"] == "FAILURE" and done["error"] == final
    assert f"Step toggle failed: {final}" in await stack.logs(run["id"])

    mine = [r for r in caplog.records if r.name == "gantry.steps" and run["id"] in r.getMessage()]
    assert [r.getMessage() for r in mine] == [
        f"run {run['id']} step toggle: http.request POST http://127.0.0.1:9/hook failed "
        "(attempt 1 of 2, next retry in 0.2 s): connection refused — is 127.0.0.1:9 reachable from the worker?",
        f"run {run['id']} step toggle: {final}",
    ]
    noisy = [
        r for r in caplog.records if r.levelno >= logging.WARNING and r.exc_info and r.name != "gantry.steps"
    ]
    assert noisy == [], [r.getMessage() for r in noisy]


@pytest.fixture
async def bare_stack(
    tmp_path: Path,
    temporal: WorkflowEnvironment,
    webhook: FakeWebhookReceiver,
    github: FakeGitHub,
    jira: FakeJira,
) -> AsyncIterator[Stack]:
    """The stack with no vendor configured: as on a fresh machine."""
    webhook.reset()
    settings = stack_settings(tmp_path, temporal)
    async with running_stack(settings, temporal, webhook, github, jira) as stack:
        yield stack


async def test_an_unconfigured_vendor_warns_on_save_and_fails_the_step_at_once(bare_stack: Stack) -> None:
    stack = bare_stack
    ticket = {"id": "ticket", "uses": "jira.create_issue", "with": {"project": "OPS", "summary": "flag on"}}
    action = flag_action([webhook_step(f"{stack.webhook.url}/flags"), ticket])
    saved = await stack.api.post("/v1/actions", json=action)
    assert saved.status_code == 201, saved.text
    assert saved.json()["warnings"] == [{"pointer": "/steps/1/uses", "message": JIRA_NOT_CONFIGURED}]
    replaced = await stack.api.put("/v1/actions/toggle_flag", json=flag_action([ticket]))
    assert replaced.status_code == 200 and replaced.json()["warnings"][0]["pointer"] == "/steps/0/uses"
    assert "warnings" not in (await stack.api.get("/v1/actions/toggle_flag")).json()

    saved = await stack.api.put("/v1/actions/toggle_flag", json=action)
    run = await stack.launch("toggle_flag")
    done = await stack.wait_for(run["id"], TERMINAL, timeout=10)
    assert done["status"] == "FAILURE"
    assert done["error"] == f"jira.create_issue project OPS not run: {JIRA_NOT_CONFIGURED}"
    assert "not registered" not in done["error"]
    history = await stack.client.get_workflow_handle(run["workflow_id"]).fetch_history()
    attempts = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
    ]
    assert attempts == [1, 1]  # the webhook once, the Jira step once: not retried


async def test_a_webhook_only_action_saves_without_warnings(bare_stack: Stack) -> None:
    saved = await bare_stack.api.post(
        "/v1/actions", json=flag_action([webhook_step("https://example.com/x")])
    )
    assert saved.status_code == 201 and saved.json()["warnings"] == []


def test_a_timed_out_step_names_its_kind_target_and_timeout() -> None:
    # No activity message to reuse: the workflow composes the same shape around Temporal's words.
    error = ActivityError(
        "activity timeout",
        scheduled_event_id=5,
        started_event_id=6,
        identity="worker",
        activity_type="aws.cloudformation.deploy_stack",
        activity_id="3",
        retry_state=RetryState.MAXIMUM_ATTEMPTS_REACHED,
    )
    error.__cause__ = TimeoutError(
        "activity StartToClose timeout", type=TimeoutType.START_TO_CLOSE, last_heartbeat_details=[]
    )
    params = {"stack_name": "web-${secret:abc:NAME}", "template": {}}
    assert _step_error("aws.cloudformation.deploy_stack", params, error) == (
        "aws.cloudformation.deploy_stack stack web-******** failed (no retries left): start-to-close timeout"
    )
