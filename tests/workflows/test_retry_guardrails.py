"""A retry is a new decision: it never passes an approval gate that was not APPROVED. And a run
record whose workflow never started is failed by the reconciler once its start grace is over."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from temporalio.api.enums.v1 import EventType

from catalog.db import utcnow
from catalog.models import Run
from devtools.testing import eventually_async
from tests.workflows.conftest import SERVICE_TOKEN, Stack
from tests.workflows.test_approvals import action, people, waiting

POLICY = {"required_approvals": 1, "approvers": {"teams": ["platform"]}, "timeout": "PT1H"}


async def reopened(stack: Stack, run_id: str, before: str) -> dict[str, Any]:
    """The run once a new approval request (not ``before``) is pending."""

    async def asked_again() -> dict[str, Any] | None:
        run = (await stack.api.get(f"/v1/runs/{run_id}")).json()
        approval = run["approval"] or {}
        pending = approval.get("status") == "PENDING" and approval.get("request_id") != before
        return dict(run) if pending else None

    return await eventually_async(asked_again, what="the approval to be asked again")


async def blocked_at_the_gate(stack: Stack, workflow_id: str) -> list[str]:
    """The activities the workflow scheduled, once it has nothing left to do but wait: no
    workflow task and no activity pending. A step that wrongly skipped the gate would have been
    scheduled by then (the workflow's own history says so), so this is the positive signal that
    the workflow got past the point where it would have called it."""
    handle = stack.client.get_workflow_handle(workflow_id)

    async def idle() -> bool:
        raw = (await handle.describe()).raw_description
        return not raw.HasField("pending_workflow_task") and not raw.pending_activities

    await eventually_async(idle, what=f"workflow {workflow_id} to wait with nothing pending")
    return [
        event.activity_task_scheduled_event_attributes.activity_type.name
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


async def test_retry_after_cancel_while_waiting_asks_approval_again(stack: Stack) -> None:
    users = await people(stack)
    assert (await stack.api.post("/v1/actions", json=action(stack, POLICY))).status_code == 201
    run = await waiting(stack, users["alice"])
    first_request = run["approval"]["request_id"]
    assert (await users["alice"].post(f"/v1/runs/{run['id']}/cancel")).status_code == 202
    assert (await stack.wait_for(run["id"], {"CANCELLED"}))["steps"][0]["status"] == "PENDING"

    retried = await users["alice"].post(f"/v1/runs/{run['id']}/retry")
    assert retried.status_code == 202, retried.text
    assert retried.json()["status"] == "WAITING_FOR_APPROVAL"
    again = await reopened(stack, run["id"], first_request)
    assert again["status"] == "WAITING_FOR_APPROVAL" and again["steps"][0]["status"] == "PENDING"
    assert "http.request" not in await blocked_at_the_gate(stack, run["workflow_id"])
    assert not stack.webhook.calls("POST", "/flags")

    assert again["approval"]["request_id"] != first_request  # old buttons cannot decide it
    approved = await users["bob"].post(f"/v1/runs/{run['id']}/approval", json={"decision": "APPROVE"})
    assert approved.status_code == 200, approved.text
    done = await stack.wait_for(run["id"], {"SUCCESS", "FAILURE", "DECLINED"})
    assert done["status"] == "SUCCESS" and len(stack.webhook.calls("POST", "/flags")) == 1


async def test_a_declined_run_retried_asks_its_approvers_again(stack: Stack) -> None:
    users = await people(stack)
    assert (await stack.api.post("/v1/actions", json=action(stack, POLICY))).status_code == 201
    run = await waiting(stack, users["alice"])
    declined = await users["bob"].post(f"/v1/runs/{run['id']}/approval", json={"decision": "DECLINE"})
    assert declined.status_code == 200
    await stack.wait_for(run["id"], {"DECLINED"})

    assert (await users["alice"].post(f"/v1/runs/{run['id']}/retry")).status_code == 202
    again = await reopened(stack, run["id"], run["approval"]["request_id"])
    assert again["approval"]["declines"] == [] and not stack.webhook.calls("POST", "/flags")
    approved = await users["erin"].post(f"/v1/runs/{run['id']}/approval", json={"decision": "APPROVE"})
    assert approved.json()["status"] == "APPROVED"
    assert (await stack.wait_for(run["id"], {"SUCCESS", "FAILURE"}))["status"] == "SUCCESS"
    assert len(stack.webhook.calls("POST", "/flags")) == 1


async def test_an_approval_step_declined_is_asked_again_on_retry(stack: Stack) -> None:
    users = await people(stack)
    steps = [
        {"id": "sign_off", "uses": "approval", "with": POLICY},
        {"id": "toggle", "uses": "http.request", "with": {"url": f"{stack.webhook.url}/flags"}},
    ]
    assert (await stack.api.post("/v1/actions", json=action(stack, steps=steps))).status_code == 201
    launched = await users["alice"].post("/v1/actions/toggle_flag/runs", json={"inputs": {"flag": "x"}})
    run_id = launched.json()["id"]
    first = await reopened(stack, run_id, "")
    await users["bob"].post(f"/v1/runs/{run_id}/approval", json={"decision": "DECLINE"})
    assert (await stack.wait_for(run_id, {"DECLINED"}))["steps"][0]["status"] == "DECLINED"

    assert (await users["alice"].post(f"/v1/runs/{run_id}/retry")).status_code == 202
    await reopened(stack, run_id, first["approval"]["request_id"])
    assert not stack.webhook.calls("POST", "/flags")
    await users["erin"].post(f"/v1/runs/{run_id}/approval", json={"decision": "APPROVE"})
    assert (await stack.wait_for(run_id, {"SUCCESS", "FAILURE"}))["status"] == "SUCCESS"


def orphan(stack: Stack, run_id: str, age: timedelta) -> None:
    """A run record whose workflow was never started (an API that died between the two)."""
    created = utcnow() - age
    assert stack.settings.database_url is not None
    engine = create_engine(stack.settings.database_url)
    with Session(engine) as session:
        session.add(
            Run(
                id=run_id,
                action="toggle_flag",
                action_title="Toggle flag",
                inputs={},
                status="IN_PROGRESS",
                status_label="Starting",
                source="API",
                created_by="admin",
                created_at=created,
                updated_at=created,
                steps=[],
                links=[],
                affected_entities=[],
                workflow_id=f"action:toggle_flag:{run_id}",
            )
        )
        session.commit()
    engine.dispose()


async def test_reconcile_fails_a_run_whose_workflow_never_started(stack: Stack) -> None:
    assert (await stack.api.post("/v1/actions", json=action(stack))).status_code == 201
    orphan(stack, "r_orphan_old", timedelta(minutes=5))
    orphan(stack, "r_orphan_new", timedelta(seconds=1))
    service = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
    async with httpx.AsyncClient(base_url=stack.api.base_url, headers=service) as worker:
        reconciled = await worker.post("/v1/runs/reconcile")
    assert reconciled.status_code == 200, reconciled.text
    assert reconciled.json()["converged"] == ["r_orphan_old"]
    old = (await stack.api.get("/v1/runs/r_orphan_old")).json()
    assert old["status"] == "FAILURE" and old["ended_at"] is not None
    assert old["error"].startswith("its workflow never started")
    # Within its start grace the young one is never failed as "never started" (on a loaded
    # machine it may have grown quiet by now, and reading it then starts its workflow).
    young = (await stack.api.get("/v1/runs/r_orphan_new")).json()
    assert not (young["error"] or "").startswith("its workflow never started"), young
