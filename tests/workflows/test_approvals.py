"""Approvals through the API: the wait lives in the workflow, the Update's validator refuses
bad decisions before they reach history, and every decision is recorded and audited."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from temporalio.testing import WorkflowEnvironment

from devtools.testing import eventually_async
from tests.fakes.github import FakeGitHub
from tests.fakes.jira import FakeJira
from tests.fakes.webhook import FakeWebhookReceiver
from tests.workflows.conftest import Stack, running_stack, stack_settings


async def people(stack: Stack) -> dict[str, httpx.AsyncClient]:
    """Teams and users, and an API client for each user."""
    await stack.api.post("/v1/teams", json={"identifier": "platform", "title": "Platform"})
    await stack.api.post("/v1/teams", json={"identifier": "sre", "title": "SRE"})
    clients = {}
    for name, teams in (
        ("alice", ["platform"]),
        ("bob", ["platform"]),
        ("carol", []),
        ("dave", ["sre"]),
        ("erin", ["platform"]),
    ):
        created = await stack.api.post(
            "/v1/users", json={"identifier": name, "email": f"{name}@example.com", "teams": teams}
        )
        assert created.status_code == 201, created.text
        token = (await stack.api.post("/v1/tokens", json={"user": name})).json()["token"]
        clients[name] = httpx.AsyncClient(
            base_url=stack.api.base_url, headers={"Authorization": f"Bearer {token}"}
        )
    return clients


def action(
    stack: Stack, approval: dict[str, Any] | None = None, steps: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "identifier": "toggle_flag",
        "title": "Toggle flag",
        "trigger": {"operation": "CREATE"},
        "user_inputs": {"properties": {"flag": {"type": "string"}}, "required": ["flag"]},
        "steps": steps
        or [
            {
                "id": "toggle",
                "uses": "http.request",
                "with": {"url": f"{stack.webhook.url}/flags", "body": {"flag": "{{ inputs.flag }}"}},
            }
        ],
    }
    if approval is not None:
        body["approval"] = approval
    return body


async def waiting(stack: Stack, client: httpx.AsyncClient, flag: str = "dark-mode") -> dict[str, Any]:
    launched = await client.post("/v1/actions/toggle_flag/runs", json={"inputs": {"flag": flag}})
    assert launched.status_code == 202, launched.text
    assert launched.json()["status"] == "WAITING_FOR_APPROVAL"
    run_id = launched.json()["id"]

    async def pending() -> dict[str, Any] | None:
        run = (await stack.api.get(f"/v1/runs/{run_id}")).json()
        return dict(run) if run["approval"] and run["approval"]["status"] == "PENDING" else None

    return await eventually_async(pending, what=f"run {run_id}'s approval to open")


async def _decided(client: httpx.AsyncClient, run_id: str, decision: str) -> httpx.Response:
    """The decision's answer, once it is applied (a 4xx while the gate is not open to it)."""
    response = await client.post(f"/v1/runs/{run_id}/approval", json={"decision": decision})
    assert response.status_code == 200, response.text
    return response


async def test_two_approvals_continue_the_run(stack: Stack) -> None:
    users = await people(stack)
    policy = {"required_approvals": 2, "approvers": {"teams": ["platform"]}, "timeout": "PT1H"}
    assert (await stack.api.post("/v1/actions", json=action(stack, policy))).status_code == 201
    run = await waiting(stack, users["alice"])
    # alice is in platform but requested the run: without self-approval she is not eligible.
    assert run["approval"]["eligible"] == ["bob", "erin"]

    mine = (await users["bob"].get("/v1/runs?status=WAITING_FOR_APPROVAL&approver=me")).json()["items"]
    assert [r["id"] for r in mine] == [run["id"]]
    assert (await users["carol"].get("/v1/runs?status=WAITING_FOR_APPROVAL&approver=me")).json()[
        "items"
    ] == []

    self_approval = await users["alice"].post(f"/v1/runs/{run['id']}/approval", json={"decision": "APPROVE"})
    assert self_approval.status_code == 403 and "self-approval" in self_approval.json()["error"]["message"]
    outsider = await users["carol"].post(f"/v1/runs/{run['id']}/approval", json={"decision": "APPROVE"})
    assert outsider.status_code == 403 and "not an eligible approver" in outsider.json()["error"]["message"]

    first = await users["bob"].post(
        f"/v1/runs/{run['id']}/approval", json={"decision": "APPROVE", "comment": "lgtm"}
    )
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "PENDING" and [a["user"] for a in first.json()["approvals"]] == ["bob"]
    again = await users["bob"].post(f"/v1/runs/{run['id']}/approval", json={"decision": "APPROVE"})
    assert again.status_code == 409 and "already decided" in again.json()["error"]["message"]
    assert not stack.webhook.calls("POST", "/flags")

    second = await users["erin"].post(f"/v1/runs/{run['id']}/approval", json={"decision": "APPROVE"})
    assert second.json()["status"] == "APPROVED"
    done = await stack.wait_for(run["id"], {"SUCCESS", "FAILURE", "DECLINED"})
    assert done["status"] == "SUCCESS"
    assert done["approval"]["approvals"][0] | {"at": None} == {
        "user": "bob",
        "via": "api",
        "comment": "lgtm",
        "at": None,
    }
    assert len(stack.webhook.calls("POST", "/flags")) == 1
    late = await users["bob"].post(f"/v1/runs/{run['id']}/approval", json={"decision": "DECLINE"})
    assert late.status_code == 409

    # refused decisions never entered the workflow's history
    history = await stack.client.get_workflow_handle(run["workflow_id"]).fetch_history()
    updates = [e for e in history.events if e.HasField("workflow_execution_update_accepted_event_attributes")]
    assert len(updates) == 2
    audit = (await stack.api.get(f"/v1/audit-log?run_id={run['id']}&resource_type=run")).json()["items"]
    operations = sorted(a["operation"] for a in audit)
    assert operations.count("APPROVE") == 2 and operations.count("DECISION_REFUSED") == 4
    logs = await stack.logs(run["id"])
    assert "bob approved via api: lgtm" in logs and "Approved by bob, erin" in logs
    assert any(line.startswith("Slack is not configured") for line in logs) or any(
        "Could not notify" in line for line in logs
    )


async def test_one_decline_declines_and_no_step_runs(stack: Stack) -> None:
    users = await people(stack)
    policy = {"required_approvals": 2, "approvers": {"teams": ["platform"]}}
    await stack.api.post("/v1/actions", json=action(stack, policy))
    run = await waiting(stack, users["alice"])
    await users["bob"].post(f"/v1/runs/{run['id']}/approval", json={"decision": "APPROVE"})
    declined = await users["erin"].post(
        f"/v1/runs/{run['id']}/approval", json={"decision": "DECLINE", "comment": "not during the freeze"}
    )
    assert declined.json()["status"] == "DECLINED"
    done = await stack.wait_for(run["id"], {"SUCCESS", "FAILURE", "DECLINED"})
    assert done["status"] == "DECLINED" and done["steps"][0]["status"] == "PENDING"
    assert done["approval"]["declines"][0]["comment"] == "not during the freeze"
    assert not stack.webhook.calls("POST", "/flags")


async def test_timeout_escalates_then_declines(stack: Stack) -> None:
    users = await people(stack)
    policy = {
        "approvers": {"users": ["bob"]},
        "timeout": "PT1S",
        "on_timeout": "ESCALATE",
        "escalation_approvers": {"teams": ["sre"]},
        "escalation_timeout": "PT2S",
    }
    await stack.api.post("/v1/actions", json=action(stack, policy))
    run = await waiting(stack, users["alice"])

    async def escalated() -> dict[str, Any] | None:
        approval = (await stack.api.get(f"/v1/runs/{run['id']}")).json()["approval"]
        return dict(approval) if approval["phase"] == "escalated" else None

    approval = await eventually_async(escalated, what="the approval to escalate")
    assert approval["eligible"] == ["dave"]
    assert (
        await users["bob"].post(f"/v1/runs/{run['id']}/approval", json={"decision": "APPROVE"})
    ).status_code == 403
    done = await stack.wait_for(run["id"], {"SUCCESS", "FAILURE", "DECLINED"}, timeout=20)
    assert done["status"] == "DECLINED" and done["status_label"] == "Approval timed out"
    assert done["approval"]["status"] == "TIMED_OUT"


async def test_escalated_approver_approves(stack: Stack) -> None:
    users = await people(stack)
    policy = {
        "approvers": {"users": ["bob"]},
        "timeout": "PT1S",
        "on_timeout": "ESCALATE",
        "escalation_approvers": {"users": ["dave"]},
        "escalation_timeout": "PT1M",
    }
    await stack.api.post("/v1/actions", json=action(stack, policy))
    run = await waiting(stack, users["alice"])
    # dave is eligible once the first timeout escalates: until then his approval is refused
    decided = await eventually_async(
        lambda: _decided(users["dave"], run["id"], "APPROVE"), what="dave's approval to apply"
    )
    assert decided.json()["status"] == "APPROVED" and decided.json()["phase"] == "escalated"
    assert (await stack.wait_for(run["id"], {"SUCCESS", "FAILURE", "DECLINED"}))["status"] == "SUCCESS"


async def test_approval_as_a_middle_step_and_self_approval_allowed(stack: Stack) -> None:
    users = await people(stack)
    steps = [
        {
            "id": "prepare",
            "uses": "http.request",
            "with": {"url": f"{stack.webhook.url}/prepare"},
            "compensate": {"uses": "http.request", "with": {"url": f"{stack.webhook.url}/undo"}},
        },
        {
            "id": "gate",
            "uses": "approval",
            "with": {"approvers": {"roles": ["admin"], "users": ["alice"]}, "allow_self_approval": True},
        },
        {"id": "toggle", "uses": "http.request", "with": {"url": f"{stack.webhook.url}/flags"}},
    ]
    await stack.api.post("/v1/actions", json=action(stack, steps=steps))
    launched = (
        await users["alice"].post("/v1/actions/toggle_flag/runs", json={"inputs": {"flag": "x"}})
    ).json()
    assert launched["status"] == "IN_PROGRESS"

    async def gate_open() -> dict[str, Any] | None:
        run = (await stack.api.get(f"/v1/runs/{launched['id']}")).json()
        return dict(run) if run["status"] == "WAITING_FOR_APPROVAL" and run["approval"] else None

    run = await eventually_async(gate_open, what="the middle approval step to open")
    assert run["steps"][0]["status"] == "SUCCESS" and run["steps"][1]["status"] == "IN_PROGRESS"
    approved = await users["alice"].post(f"/v1/runs/{run['id']}/approval", json={"decision": "APPROVE"})
    assert approved.status_code == 200, approved.text
    done = await stack.wait_for(run["id"], {"SUCCESS", "FAILURE", "DECLINED"})
    assert done["status"] == "SUCCESS" and done["steps"][1]["outputs"] == {"approved_by": ["alice"]}

    # a decline in the middle compensates what ran before it
    second = (
        await users["alice"].post("/v1/actions/toggle_flag/runs", json={"inputs": {"flag": "y"}})
    ).json()
    # refused until the run reaches its approval step, after ``prepare``
    await eventually_async(lambda: _decided(stack.api, second["id"], "DECLINE"), what="the decline to apply")
    done = await stack.wait_for(second["id"], {"SUCCESS", "FAILURE", "DECLINED"})
    assert done["status"] == "DECLINED"
    assert [s["status"] for s in done["steps"]] == ["COMPENSATED", "DECLINED", "PENDING"]
    assert len(stack.webhook.calls("POST", "/undo")) == 1


async def test_unsatisfiable_policies_are_refused_when_saved(stack: Stack) -> None:
    await people(stack)
    too_many = action(stack, {"required_approvals": 4, "approvers": {"teams": ["platform"]}})
    response = await stack.api.post("/v1/actions", json=too_many)
    assert response.status_code == 422
    details = {d["pointer"]: d["message"] for d in response.json()["error"]["details"]}
    assert "only 3 people are eligible" in details["/approval/required_approvals"]
    unknown = action(stack, {"approvers": {"teams": ["ghosts"]}, "on_timeout": "ESCALATE"})
    refused = {
        d["pointer"] for d in (await stack.api.post("/v1/actions", json=unknown)).json()["error"]["details"]
    }
    assert refused == {"/approval/approvers/teams/0", "/approval/escalation_approvers"}


async def test_eligible_means_able_on_both_databases(
    database_url: str,
    tmp_path: Path,
    temporal: WorkflowEnvironment,
    webhook: FakeWebhookReceiver,
    github: FakeGitHub,
    jira: FakeJira,
) -> None:
    """The requester is neither in ``approval.eligible`` nor in ``?approver=me`` unless the policy
    allows self-approval; the worker's service principal never is (SQLite and PostgreSQL)."""
    settings = stack_settings(tmp_path, temporal, database_url=database_url)
    async with running_stack(settings, temporal, webhook, github, jira) as stack:
        api = stack.api
        users = await people(stack)
        # The bootstrap admin is named by its role; the worker's user (role service) never is.
        policy = {"approvers": {"teams": ["platform"], "roles": ["admin"]}}
        assert (await api.post("/v1/actions", json=action(stack, policy))).status_code == 201
        run = await waiting(stack, users["bob"])
        assert run["approval"]["eligible"] == ["admin", "alice", "erin"]
        assert await _waiting_for(users["bob"]) == []
        assert await _waiting_for(users["alice"]) == [run["id"]]
        refused = await users["bob"].post(f"/v1/runs/{run['id']}/approval", json={"decision": "APPROVE"})
        assert refused.status_code == 403 and "self-approval" in refused.json()["error"]["message"]

        allowed = {**policy, "allow_self_approval": True}
        assert (await api.put("/v1/actions/toggle_flag", json=action(stack, allowed))).status_code == 200
        own = await waiting(stack, users["bob"], flag="light-mode")
        assert own["approval"]["eligible"] == ["admin", "alice", "bob", "erin"]
        assert await _waiting_for(users["bob"]) == [own["id"]]
        approved = await users["bob"].post(f"/v1/runs/{own['id']}/approval", json={"decision": "APPROVE"})
        assert approved.status_code == 200 and approved.json()["status"] == "APPROVED"


async def _waiting_for(client: httpx.AsyncClient) -> list[str]:
    """The ids of the runs waiting for this user's approval."""
    page = (await client.get("/v1/runs?status=WAITING_FOR_APPROVAL&approver=me")).json()
    return [r["id"] for r in page["items"]]
