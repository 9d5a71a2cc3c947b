"""A run keeps the action definition it started with: editing, even deleting, the action while the
run waits for its approval changes nothing for it, and a retry runs the pinned steps too. Dev
server, the real API and worker, the fake webhook receiver recording what the steps sent."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from devtools.testing import eventually_async
from tests.workflows.conftest import Stack

pytestmark = pytest.mark.temporal


def release(stack: Stack, approval: dict[str, Any] | None, steps: list[dict[str, Any]]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "identifier": "release",
        "title": "Release",
        "trigger": {"operation": "CREATE"},
        "user_inputs": {"properties": {"version": {"type": "string"}}, "required": ["version"]},
        "steps": steps,
    }
    if approval is not None:
        body["approval"] = approval
    return body


def call(stack: Stack, step_id: str, path: str, note: str) -> dict[str, Any]:
    return {
        "id": step_id,
        "uses": "http.request",
        "with": {
            "url": f"{stack.webhook.url}{path}",
            "body": {"version": "{{ inputs.version }}", "note": note},
        },
    }


async def approver(stack: Stack) -> httpx.AsyncClient:
    user = {"identifier": "bob", "email": "bob@example.com"}
    assert (await stack.api.post("/v1/users", json=user)).status_code == 201
    token = (await stack.api.post("/v1/tokens", json={"user": "bob"})).json()["token"]
    return httpx.AsyncClient(base_url=stack.api.base_url, headers={"Authorization": f"Bearer {token}"})


async def gate_open(stack: Stack, run_id: str) -> dict[str, Any]:
    async def pending() -> dict[str, Any] | None:
        run = (await stack.api.get(f"/v1/runs/{run_id}")).json()
        return dict(run) if run["approval"] and run["approval"]["status"] == "PENDING" else None

    return await eventually_async(pending, what=f"run {run_id}'s approval to open")


async def test_a_run_waiting_for_approval_runs_the_definition_it_started_with(stack: Stack) -> None:
    bob = await approver(stack)
    policy = {"required_approvals": 1, "approvers": {"users": ["bob"]}, "timeout": "PT1H"}
    original = release(stack, policy, [call(stack, "ship", "/pinned/old", "original")])
    assert (await stack.api.post("/v1/actions", json=original)).status_code == 201
    run = await stack.launch("release", inputs={"version": "v1"})
    assert run["action_version"] == 1
    await gate_open(stack, run["id"])

    edited = release(stack, policy, [call(stack, "ship", "/pinned/new", "edited")])
    saved = await stack.api.put("/v1/actions/release", json=edited)
    assert saved.status_code == 200 and saved.json()["version"] == 2
    assert (await stack.api.delete("/v1/actions/release")).status_code == 204

    decided = await bob.post(f"/v1/runs/{run['id']}/approval", json={"decision": "APPROVE"})
    assert decided.status_code == 200, decided.text
    done = await stack.wait_for(run["id"], {"SUCCESS", "FAILURE", "DECLINED"})
    assert done["status"] == "SUCCESS", done
    (delivery,) = stack.webhook.calls("POST", "/pinned/")
    assert (delivery.path, delivery.json) == ("/pinned/old", {"version": "v1", "note": "original"})
    assert done["action_version"] == 1
    await bob.aclose()


async def test_a_retry_runs_the_pinned_steps_not_the_edited_ones(stack: Stack) -> None:
    bob = await approver(stack)
    gate = {"id": "gate", "uses": "approval", "with": {"approvers": {"users": ["bob"]}}}
    steps = [
        call(stack, "prepare", "/pinned/prepare", "original"),
        gate,
        call(stack, "ship", "/pinned/old", "original"),
    ]
    assert (await stack.api.post("/v1/actions", json=release(stack, None, steps))).status_code == 201
    run = await stack.launch("release", inputs={"version": "v7"})
    await gate_open(stack, run["id"])

    edited = copy.deepcopy(steps)
    edited[2] = call(stack, "ship", "/pinned/new", "edited")
    assert (await stack.api.put("/v1/actions/release", json=release(stack, None, edited))).status_code == 200
    declined = await bob.post(f"/v1/runs/{run['id']}/approval", json={"decision": "DECLINE"})
    assert declined.status_code == 200, declined.text
    assert (await stack.wait_for(run["id"], {"DECLINED"}))["status"] == "DECLINED"

    retried = await stack.api.post(f"/v1/runs/{run['id']}/retry")
    assert retried.status_code == 202, retried.text
    await gate_open(stack, run["id"])
    assert (await bob.post(f"/v1/runs/{run['id']}/approval", json={"decision": "APPROVE"})).status_code == 200
    done = await stack.wait_for(run["id"], {"SUCCESS", "FAILURE", "DECLINED"})
    assert done["status"] == "SUCCESS", done
    assert [c.path for c in stack.webhook.calls("POST", "/pinned/")] == ["/pinned/prepare", "/pinned/old"]
    assert done["action_version"] == 1
    await bob.aclose()
