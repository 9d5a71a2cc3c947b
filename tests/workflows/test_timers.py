"""TTL timers: reminded, extended within policy, torn down at expiry — days of timer time in a
few seconds of wall time on the time-skipping test server."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from slack_sdk.signature import SignatureVerifier
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import build_activities
from activities.slack_approvals import ApprovalAction
from catalog.timefmt import INSTANT, parse_instant
from config import Settings
from devtools.testing import eventually_async
from tests.fakes.server import serve
from tests.fakes.slack import FakeSlack
from tests.fakes.webhook import FakeWebhookReceiver
from tests.temporal_env import start_time_skipping
from tests.workflows.conftest import ADMIN_TOKEN, Stack, serve_api, stack_settings
from workflows import ALL_WORKFLOWS

ENVIRONMENT: dict[str, Any] = {
    "identifier": "environment",
    "title": "Environment",
    "schema": {
        "properties": {
            "expires_at": {"type": "string", "format": "timer"},
            "owner": {"type": "string", "format": "user"},
        }
    },
    "timers": {
        "expires_at": {
            "max_ttl": "P14D",
            "max_extension": "P3D",
            "remind_before": ["PT12H"],
            "on_expiry": {"action": "destroy_environment"},
        }
    },
}


def destroy_action(webhook: FakeWebhookReceiver) -> dict[str, Any]:
    return {
        "identifier": "destroy_environment",
        "title": "Destroy environment",
        "blueprint": "environment",
        "trigger": {"operation": "DELETE"},
        "steps": [
            {
                "id": "teardown",
                "uses": "http.request",
                "with": {"url": f"{webhook.url}/destroy", "body": {"environment": "{{ entity.identifier }}"}},
            },
            {
                "id": "forget",
                "uses": "catalog.delete_entity",
                "with": {"blueprint": "environment", "identifier": "{{ entity.identifier }}"},
            },
        ],
    }


@pytest.fixture
async def skipping() -> AsyncIterator[WorkflowEnvironment]:
    async with start_time_skipping() as env:
        yield env


SLACK_SIGNING_SECRET = "slack-signing-secret-e2e"


@pytest.fixture(scope="module")
def fake_slack() -> Iterator[FakeSlack]:
    fake = FakeSlack()
    with serve(fake.app) as url:
        fake.url = url
        yield fake


@pytest.fixture
async def timer_stack(
    tmp_path: Path, skipping: WorkflowEnvironment, webhook: FakeWebhookReceiver
) -> AsyncIterator[Stack]:
    # The time-skipping test server has no custom search attributes.
    settings = stack_settings(tmp_path, skipping, temporal_search_attributes=False)
    async with _timer_stack(settings, skipping, webhook) as stack:
        yield stack


@pytest.fixture
async def slack_timer_stack(
    tmp_path: Path, skipping: WorkflowEnvironment, webhook: FakeWebhookReceiver, fake_slack: FakeSlack
) -> AsyncIterator[Stack]:
    """The timer stack with Slack configured against the fake (API and worker)."""
    fake_slack.reset()
    settings = stack_settings(
        tmp_path,
        skipping,
        temporal_search_attributes=False,
        slack_bot_token=fake_slack.token,
        slack_signing_secret=SLACK_SIGNING_SECRET,
        slack_api_url=f"{fake_slack.url}/api",
    )
    async with _timer_stack(settings, skipping, webhook) as stack:
        yield stack


@contextlib.asynccontextmanager
async def _timer_stack(
    settings: Settings, skipping: WorkflowEnvironment, webhook: FakeWebhookReceiver
) -> AsyncIterator[Stack]:
    webhook.reset()
    with serve_api(settings) as api_url:
        settings = settings.model_copy(update={"api_url": api_url})
        async with (
            httpx.AsyncClient(
                base_url=api_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
            ) as api,
            Worker(
                skipping.client,
                task_queue=settings.task_queue,
                workflows=ALL_WORKFLOWS,
                activities=build_activities(settings),
            ),
        ):
            stack = Stack(settings, api, skipping.client, webhook, None, None)  # type: ignore[arg-type]
            assert (await api.post("/v1/blueprints", json=ENVIRONMENT)).status_code == 201
            assert (await api.post("/v1/actions", json=destroy_action(webhook))).status_code == 201
            yield stack


async def timer(stack: Stack, entity: str) -> dict[str, Any]:
    items = (await stack.api.get("/v1/timers")).json()["items"]
    return next(t for t in items if t["entity"] == entity)


async def armed(stack: Stack, entity: str) -> None:
    async def started() -> bool:
        events = (await stack.api.get(f"/v1/events?entity={entity}&delivered=false")).json()["items"]
        if events:
            return False
        try:
            await stack.client.get_workflow_handle(f"timer:environment:{entity}:expires_at").describe()
        except Exception:
            return False
        return True

    await eventually_async(started, what=f"{entity}'s timer workflow to start")


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


async def test_five_day_environment_reminded_extended_and_torn_down(
    timer_stack: Stack, skipping: WorkflowEnvironment
) -> None:
    stack = timer_stack
    now = datetime.now(UTC)
    body = {"identifier": "env-1", "properties": {"expires_at": iso(now + timedelta(days=5))}}
    assert (await stack.api.post("/v1/blueprints/environment/entities", json=body)).status_code == 201
    await armed(stack, "env-1")
    record = await timer(stack, "env-1")
    assert record["state"] == "active" and record["next_reminder"] is not None

    await skipping.sleep(timedelta(days=4, hours=13))

    async def reminded() -> dict[str, Any] | None:
        current = await timer(stack, "env-1")
        return current if current["reminders"] else None

    reminded_record = await eventually_async(reminded)
    assert reminded_record["reminders"][0]["log"].startswith("REMINDER: env-1's expires_at expires at")

    extended = await stack.api.post(
        "/v1/blueprints/environment/entities/env-1/timers/expires_at/extend", json={"by": "P2D"}
    )
    assert extended.status_code == 200, extended.text
    entity = (await stack.api.get("/v1/blueprints/environment/entities/env-1")).json()
    # the workflow's deadline, the property and the timer record: one instant, one format
    assert entity["properties"]["expires_at"] == extended.json()["deadline"]
    assert INSTANT.match(extended.json()["deadline"])
    record = await timer(stack, "env-1")
    assert record["deadline"] == extended.json()["deadline"]
    times = [record["armed_at"], record["original_deadline"], record["next_reminder"]]
    times += [r[k] for r in record["reminders"] + record["extensions"] for k in ("at", "deadline")]
    assert all(INSTANT.match(t) for t in times if t is not None), times
    too_far = await stack.api.post(
        "/v1/blueprints/environment/entities/env-1/timers/expires_at/extend", json={"by": "P2D"}
    )
    assert too_far.status_code == 409
    assert "at most P3D" in too_far.json()["error"]["message"]

    # Skip to just past the new deadline; the teardown's activities then run in real time.
    deadline = datetime.fromisoformat(extended.json()["deadline"])
    await skipping.sleep(deadline - await skipping.get_current_time() - timedelta(seconds=1))

    async def gone() -> bool:
        return (await stack.api.get("/v1/blueprints/environment/entities/env-1")).status_code == 404

    await eventually_async(gone)
    assert len(stack.webhook.calls("POST", "/destroy")) == 1
    final = await eventually_async(lambda: _teardown_done(stack, "env-1"))
    assert final["state"] == "expired" and final["on_expiry_run"]
    run = (await stack.api.get(f"/v1/runs/{final['on_expiry_run']}")).json()
    assert run["source"] == "AUTOMATION" and run["status"] == "SUCCESS"
    expired = (await stack.api.get("/v1/events?type=TIMER_EXPIRED&entity=env-1")).json()["items"]
    assert len(expired) == 1


async def _teardown_done(stack: Stack, entity: str) -> dict[str, Any] | None:
    current = await timer(stack, entity)
    return current if current["teardown"] == "done" else None


async def test_clearing_the_timer_cancels_teardown(timer_stack: Stack, skipping: WorkflowEnvironment) -> None:
    stack = timer_stack
    body = {"identifier": "env-2", "properties": {"expires_at": iso(datetime.now(UTC) + timedelta(days=1))}}
    await stack.api.post("/v1/blueprints/environment/entities", json=body)
    await armed(stack, "env-2")
    cleared = await stack.api.patch(
        "/v1/blueprints/environment/entities/env-2", json={"properties": {"expires_at": None}}
    )
    assert cleared.status_code == 200
    handle = stack.client.get_workflow_handle("timer:environment:env-2:expires_at")
    assert (await handle.result())["state"] == "cleared"
    await skipping.sleep(timedelta(days=2))
    assert (await stack.api.get("/v1/blueprints/environment/entities/env-2")).status_code == 200
    assert not stack.webhook.calls("POST", "/destroy")
    assert (await timer(stack, "env-2"))["state"] == "cleared"


async def test_changing_the_deadline_rearms_and_a_past_deadline_expires_at_once(
    timer_stack: Stack, skipping: WorkflowEnvironment
) -> None:
    stack = timer_stack
    now = datetime.now(UTC)
    await stack.api.post(
        "/v1/blueprints/environment/entities",
        json={"identifier": "env-3", "properties": {"expires_at": iso(now + timedelta(days=1))}},
    )
    await armed(stack, "env-3")
    later = iso(now + timedelta(days=3))
    await stack.api.patch(
        "/v1/blueprints/environment/entities/env-3", json={"properties": {"expires_at": later}}
    )
    await armed(stack, "env-3")
    handle = stack.client.get_workflow_handle("timer:environment:env-3:expires_at")
    await eventually_async(
        lambda: _deadline_is(handle, "2")
    )  # re-armed: the running workflow holds the new deadline
    await skipping.sleep(timedelta(days=2))
    assert (await stack.api.get("/v1/blueprints/environment/entities/env-3")).status_code == 200

    past = {"identifier": "env-4", "properties": {"expires_at": iso(now - timedelta(hours=1))}}
    await stack.api.post("/v1/blueprints/environment/entities", json=past)

    async def gone() -> bool:
        return (await stack.api.get("/v1/blueprints/environment/entities/env-4")).status_code == 404

    await eventually_async(gone)

    beyond = {"identifier": "env-5", "properties": {"expires_at": iso(now + timedelta(days=30))}}
    refused = await stack.api.post("/v1/blueprints/environment/entities", json=beyond)
    assert refused.status_code == 422
    assert "max_ttl of P14D" in refused.json()["error"]["details"][0]["message"]


async def _deadline_is(handle: Any, _: str) -> bool:
    view = await handle.query("view")
    deadline = parse_instant(view["deadline"]) if view["deadline"] else None
    return deadline is not None and deadline > datetime.now(UTC) + timedelta(days=2)


# ---- the owners, in Slack ----------------------------------------------------------------------


async def _owned_environment(stack: Stack, entity: str, expires_in: timedelta) -> None:
    """``entity`` of team platform, whose member Bob (bob@example.com) is its owner."""
    for path, body in [
        ("/v1/teams", {"identifier": "platform", "title": "Platform"}),
        (
            "/v1/users",
            {"identifier": "bob", "email": "bob@example.com", "name": "Bob", "teams": ["platform"]},
        ),
        (
            "/v1/blueprints/environment/entities",
            {
                "identifier": entity,
                "team": ["platform"],
                "properties": {"expires_at": iso(datetime.now(UTC) + expires_in)},
            },
        ),
    ]:
        response = await stack.api.post(path, json=body)
        assert response.status_code == 201, response.text
    await armed(stack, entity)


async def _click(stack: Stack, button: dict[str, Any], user: str = "U0BOB") -> None:
    """Post a click on ``button`` to the API, signed as Slack signs it."""
    payload = {
        "type": "block_actions",
        "user": {"id": user, "team_id": "T0GANTRY"},
        "container": {"type": "message", "channel_id": "D0BOB"},
        "channel": {"id": "D0BOB"},
        "trigger_id": "1.2.3",
        "actions": [{"type": "button", "action_id": button["action_id"], "value": button["value"]}],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(SLACK_SIGNING_SECRET).generate_signature(timestamp=timestamp, body=body)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature or "",
    }
    response = await stack.api.post("/v1/slack/interactions", content=body, headers=headers)
    assert response.status_code == 200, response.text


async def test_the_reminder_dm_extends_the_timer_from_slack_within_policy(
    slack_timer_stack: Stack, skipping: WorkflowEnvironment, fake_slack: FakeSlack
) -> None:
    stack = slack_timer_stack
    await _owned_environment(stack, "env-s", timedelta(days=5))

    await skipping.sleep(timedelta(days=4, hours=13))

    async def reminder_dm() -> list[dict[str, Any]]:
        return [m for (channel, _), m in list(fake_slack.messages.items()) if channel == "D0BOB"]

    [message] = await eventually_async(reminder_dm)
    deadline = datetime.fromisoformat((await timer(stack, "env-s"))["deadline"])
    assert message["text"] == f"⏰ env-s's expires_at expires at {deadline:%Y-%m-%d %H:%M} UTC"
    blocks = json.loads(message["blocks"]) if isinstance(message["blocks"], str) else message["blocks"]
    buttons = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert [b["text"]["text"] for b in buttons] == ["Extend 1 day", "Extend 3 days"]
    assert {b["action_id"] for b in buttons} == {ApprovalAction.EXTEND_TIMER.value}
    assert json.loads(buttons[0]["value"]) == {
        "timer_id": "timer:environment:env-s:expires_at",
        "blueprint": "environment",
        "entity": "env-s",
        "property": "expires_at",
        "by": "P1D",
    }

    await _click(stack, buttons[0])

    async def told() -> list[str]:
        return [str(e["text"]) for e in list(fake_slack.ephemeral) if e["user"] == "U0BOB"]

    [extended] = await eventually_async(told)
    new_deadline = deadline + timedelta(days=1)
    assert extended == f"Extended to {new_deadline:%Y-%m-%d %H:%M} UTC: env-s's expires_at, by P1D."
    # The workflow, the entity's property, the timer record and the audit log agree.
    handle = stack.client.get_workflow_handle("timer:environment:env-s:expires_at")
    view = await handle.query("view")
    assert datetime.fromisoformat(view["deadline"]) == new_deadline
    entity = (await stack.api.get("/v1/blueprints/environment/entities/env-s")).json()
    assert datetime.fromisoformat(entity["properties"]["expires_at"]) == new_deadline
    record = await timer(stack, "env-s")
    assert datetime.fromisoformat(record["deadline"]) == new_deadline
    assert [(e["by"], e["user"], e["via"]) for e in record["extensions"]] == [("P1D", "bob", "slack")]
    audit = (await stack.api.get("/v1/audit-log?resource_type=timer")).json()["items"]
    [extend] = [a for a in audit if a["operation"] == "EXTEND"]
    assert extend["actor"] == "bob" and extend["after"]["via"] == "slack"
    assert datetime.fromisoformat(extend["after"]["deadline"]) == new_deadline

    # 1 day + 3 days is past max_extension (P3D): refused, privately, and nothing changes.
    await _click(stack, buttons[1])
    refused = (await eventually_async(lambda: _more_than(told, 1)))[1]
    assert (
        refused == "env-s's expires_at was not extended: extensions may add at most P3D to the first deadline"
    )
    assert datetime.fromisoformat((await handle.query("view"))["deadline"]) == new_deadline
    assert len((await timer(stack, "env-s"))["extensions"]) == 1


async def _more_than(check: Any, count: int) -> Any:
    found = await check()
    return found if len(found) > count else None


async def test_without_slack_the_reminder_notice_only_logs(
    timer_stack: Stack, skipping: WorkflowEnvironment
) -> None:
    stack = timer_stack
    await _owned_environment(stack, "env-q", timedelta(days=1))

    await skipping.sleep(timedelta(hours=12, minutes=30))
    handle = stack.client.get_workflow_handle("timer:environment:env-q:expires_at")
    results = await eventually_async(lambda: _notify_results(handle))
    assert results == [["Slack is not configured: env-q's owners were not messaged"]]
    assert (await timer(stack, "env-q"))["error"] is None


async def _notify_results(handle: WorkflowHandle[Any, Any]) -> list[Any]:
    """What each ``slack.notify_timer_owners`` the timer ran answered."""
    history = await handle.fetch_history()
    notify = {
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "slack.notify_timer_owners"
    }
    return [
        json.loads(e.activity_task_completed_event_attributes.result.payloads[0].data)
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
        and e.activity_task_completed_event_attributes.scheduled_event_id in notify
    ]


async def test_a_failed_teardown_is_sent_to_the_owners_without_buttons(
    slack_timer_stack: Stack, skipping: WorkflowEnvironment, fake_slack: FakeSlack
) -> None:
    stack = slack_timer_stack
    stack.webhook.fail_next(400, {"error": "the environment is locked"}, path="/destroy$")
    await _owned_environment(stack, "env-f", timedelta(hours=1))

    await skipping.sleep(timedelta(hours=1))

    async def failed() -> dict[str, Any] | None:
        current = await timer(stack, "env-f")
        return current if current["teardown"] == "failed" else None

    record = await eventually_async(failed)

    async def dms() -> list[dict[str, Any]]:
        return [m for (channel, _), m in list(fake_slack.messages.items()) if channel == "D0BOB"]

    [message] = await eventually_async(dms)
    assert message["text"].startswith("Cleanup of env-f after its expires_at expired needs attention: ")
    assert record["error"] in message["text"]
    blocks = json.loads(message["blocks"]) if isinstance(message["blocks"], str) else message["blocks"]
    assert [b["type"] for b in blocks] == ["section"]  # no buttons: the timer has expired
    assert (await stack.api.get("/v1/blueprints/environment/entities/env-f")).status_code == 200


async def test_timer_expired_triggers_an_automation(timer_stack: Stack) -> None:
    stack = timer_stack
    notify = {
        "identifier": "notify",
        "title": "Notify",
        "trigger": {"operation": "CREATE"},
        "user_inputs": {"properties": {"text": {"type": "string"}}},
        "steps": [
            {
                "id": "post",
                "uses": "http.request",
                "with": {"url": f"{stack.webhook.url}/expired", "body": {"text": "{{ inputs.text }}"}},
            }
        ],
    }
    assert (await stack.api.post("/v1/actions", json=notify)).status_code == 201
    automation = {
        "identifier": "tell_on_expiry",
        "trigger": {"event": "TIMER_EXPIRED", "blueprint": "environment"},
        "invoke": {
            "action": "notify",
            "inputs": {"text": "{{ event.entity }} expired ({{ event.timer.property }})"},
        },
    }
    assert (await stack.api.post("/v1/automations", json=automation)).status_code == 201
    past = {
        "identifier": "env-9",
        "properties": {"expires_at": iso(datetime.now(UTC) - timedelta(minutes=1))},
    }
    assert (await stack.api.post("/v1/blueprints/environment/entities", json=past)).status_code == 201

    async def told() -> bool:
        return bool(stack.webhook.calls("POST", "/expired"))

    await eventually_async(told)
    (call,) = stack.webhook.calls("POST", "/expired")
    assert call.json == {"text": "env-9 expired (expires_at)"}
    runs = (await stack.api.get("/v1/runs?action=notify")).json()["items"]
    assert [r["trigger"]["automation"] for r in runs] == ["tell_on_expiry"]
