"""TTL timers: reminded, extended within policy, torn down at expiry — days of timer time in a
few seconds of wall time on the time-skipping test server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import build_activities
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


@pytest.fixture
async def timer_stack(
    tmp_path: Path, skipping: WorkflowEnvironment, webhook: FakeWebhookReceiver
) -> AsyncIterator[Stack]:
    webhook.reset()
    # The time-skipping test server has no custom search attributes.
    settings = stack_settings(tmp_path, skipping, temporal_search_attributes=False)
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


async def until(check: Any, timeout: float = 20) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition never held")
        await asyncio.sleep(0.1)


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

    await until(started)


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

    reminded_record = await until(reminded)
    assert reminded_record["reminders"][0]["log"].startswith("REMINDER: env-1's expires_at expires at")

    extended = await stack.api.post(
        "/v1/blueprints/environment/entities/env-1/timers/expires_at/extend", json={"by": "P2D"}
    )
    assert extended.status_code == 200, extended.text
    entity = (await stack.api.get("/v1/blueprints/environment/entities/env-1")).json()
    assert entity["properties"]["expires_at"] == extended.json()["deadline"].replace(
        "+00:00", ".000Z"
    ) or entity["properties"]["expires_at"].startswith(extended.json()["deadline"][:19])
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

    await until(gone)
    assert len(stack.webhook.calls("POST", "/destroy")) == 1
    final = await until(lambda: _teardown_done(stack, "env-1"))
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
    await until(lambda: _deadline_is(handle, "2"))  # re-armed: the running workflow holds the new deadline
    await skipping.sleep(timedelta(days=2))
    assert (await stack.api.get("/v1/blueprints/environment/entities/env-3")).status_code == 200

    past = {"identifier": "env-4", "properties": {"expires_at": iso(now - timedelta(hours=1))}}
    await stack.api.post("/v1/blueprints/environment/entities", json=past)

    async def gone() -> bool:
        return (await stack.api.get("/v1/blueprints/environment/entities/env-4")).status_code == 404

    await until(gone)

    beyond = {"identifier": "env-5", "properties": {"expires_at": iso(now + timedelta(days=30))}}
    refused = await stack.api.post("/v1/blueprints/environment/entities", json=beyond)
    assert refused.status_code == 422
    assert "max_ttl of P14D" in refused.json()["error"]["details"][0]["message"]


async def _deadline_is(handle: Any, _: str) -> bool:
    view = await handle.query("view")
    return bool(view["deadline"]) and view["deadline"] > iso(datetime.now(UTC) + timedelta(days=2))
