"""Sub-actions (``uses: action``): another action runs as a child run of the same requester, with
that person's permissions and the child's own approvals; the child's outputs are the step's; the
parent's cancellation cancels the child. Dev server, the real API and worker, the fake webhook
receiver recording what the child's steps sent."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from devtools.testing import eventually_async
from tests.workflows.conftest import SERVICE_TOKEN, Stack

pytestmark = pytest.mark.temporal

ENDED = {"SUCCESS", "FAILURE", "DECLINED", "CANCELLED", "TIMED_OUT"}


def register(stack: Stack, **extra: Any) -> dict[str, Any]:
    """The child: registers an environment with the webhook receiver."""
    return {
        "identifier": "register_environment",
        "title": "Register environment",
        "trigger": {"operation": "CREATE"},
        "user_inputs": {"properties": {"name": {"type": "string"}}, "required": ["name"]},
        "steps": [
            {
                "id": "call",
                "uses": "http.request",
                "with": {
                    "url": f"{stack.webhook.url}/registry/{{{{ inputs.name }}}}",
                    "body": {"by": "{{ user.identifier }}"},
                },
            }
        ],
        **extra,
    }


def provision(stack: Stack) -> dict[str, Any]:
    """The parent: runs register_environment as a sub-action, then uses its outputs."""
    return {
        "identifier": "provision",
        "title": "Provision",
        "trigger": {"operation": "CREATE"},
        "user_inputs": {"properties": {"name": {"type": "string"}}, "required": ["name"]},
        "steps": [
            {
                "id": "register",
                "uses": "action",
                "with": {"action": "register_environment", "inputs": {"name": "{{ inputs.name }}"}},
            },
            {
                "id": "announce",
                "uses": "http.request",
                "with": {
                    "url": f"{stack.webhook.url}/announce",
                    "body": {"registered": "{{ steps.register.outputs.call.body.path }}"},
                },
            },
        ],
    }


async def member(stack: Stack, identifier: str) -> httpx.AsyncClient:
    user = {"identifier": identifier, "email": f"{identifier}@example.com"}
    assert (await stack.api.post("/v1/users", json=user)).status_code == 201
    token = (await stack.api.post("/v1/tokens", json={"user": identifier})).json()["token"]
    return httpx.AsyncClient(base_url=stack.api.base_url, headers={"Authorization": f"Bearer {token}"})


async def save(stack: Stack, *actions: dict[str, Any]) -> None:
    for action in actions:
        response = await stack.api.post("/v1/actions", json=action)
        assert response.status_code == 201, response.text


async def launch_as(client: httpx.AsyncClient, action: str, **body: Any) -> dict[str, Any]:
    response = await client.post(f"/v1/actions/{action}/runs", json=body)
    assert response.status_code == 202, response.text
    return dict(response.json())


async def waiting_child(stack: Stack, parent_id: str) -> dict[str, Any]:
    """The parent's (one) child run once its workflow has asked for approval (the record says
    WAITING_FOR_APPROVAL from its launch on; the gate opens once the approvers are told)."""

    async def found() -> dict[str, Any]:
        parent = (await stack.api.get(f"/v1/runs/{parent_id}")).json()
        assert parent["child_runs"], f"run {parent_id} has no child yet"
        child = (await stack.api.get(f"/v1/runs/{parent['child_runs'][0]['id']}")).json()
        assert child["status"] == "WAITING_FOR_APPROVAL", f"child {child['id']} is {child['status']}"
        assert (child["approval"] or {}).get("status") == "PENDING", f"child {child['id']}'s gate is not open"
        return dict(child)

    return await eventually_async(found, timeout=30, interval=0.1, what=f"run {parent_id}'s child")


async def test_a_sub_action_runs_as_a_child_of_the_same_requester_and_gives_its_outputs(stack: Stack) -> None:
    carol = await member(stack, "carol")
    await save(stack, register(stack), provision(stack))
    parent = await launch_as(carol, "provision", inputs={"name": "qa-7"})
    done = await stack.wait_for(parent["id"], ENDED)
    assert done["status"] == "SUCCESS", done

    (link,) = done["child_runs"]
    assert (link["action"], link["step"], link["status"]) == ("register_environment", "register", "SUCCESS")
    child = (await stack.api.get(f"/v1/runs/{link['id']}")).json()
    assert (child["created_by"], child["source"], child["parent_run_id"]) == ("carol", "ACTION", parent["id"])
    assert child["inputs"] == {"name": "qa-7"} and child["child_runs"] == []
    assert done["parent_run_id"] is None

    # The child's outputs (its steps' outputs by step id) are the step's, read by the next step.
    register_step = next(s for s in done["steps"] if s["id"] == "register")
    assert register_step["outputs"]["call"]["body"]["path"] == "/registry/qa-7"
    (registered,) = stack.webhook.calls("POST", "/registry/")
    assert registered.json == {"by": "carol"}
    (announced,) = stack.webhook.calls("POST", "/announce")
    assert announced.json == {"registered": "/registry/qa-7"}
    assert any(
        "Sub-action 'register_environment' runs as run" in line for line in await stack.logs(parent["id"])
    )
    # The catalog lists the child among the requester's runs, by its source.
    listed = (await carol.get("/v1/runs", params={"source": "ACTION"})).json()["items"]
    assert [r["id"] for r in listed] == [link["id"]]
    await carol.aclose()


async def test_a_child_waiting_for_approval_keeps_its_parent_waiting(stack: Stack) -> None:
    carol, bob = await member(stack, "carol"), await member(stack, "bob")
    approval = {"required_approvals": 1, "approvers": {"users": ["bob"]}, "timeout": "PT1H"}
    await save(stack, register(stack, approval=approval), provision(stack))
    parent = await launch_as(carol, "provision", inputs={"name": "qa-8"})

    child = await waiting_child(stack, parent["id"])
    assert child["approval"]["eligible"] == ["bob"]
    waiting = (await stack.api.get(f"/v1/runs/{parent['id']}")).json()
    assert waiting["status"] == "IN_PROGRESS"
    assert [s["status"] for s in waiting["steps"]] == ["IN_PROGRESS", "PENDING"]
    assert stack.webhook.calls("POST", "/registry/") == []

    # The step's activity retried (same step, same execution of the parent): the same child.
    execution = (await stack.client.get_workflow_handle(parent["workflow_id"]).describe()).run_id
    body = {"step_id": "register", "action": "register_environment", "inputs": {"name": "qa-8"}}
    async with httpx.AsyncClient(
        base_url=stack.api.base_url, headers={"Authorization": f"Bearer {SERVICE_TOKEN}"}
    ) as service:
        again = await service.post(f"/v1/runs/{parent['id']}/children", json={**body, "execution": execution})
    assert again.status_code == 200, again.text
    assert (again.json()["run_id"], again.json()["workflow_id"]) == (child["id"], child["workflow_id"])
    assert again.json()["workflow_input"]["run_id"] == child["id"]

    async def decided() -> httpx.Response:
        response = await bob.post(f"/v1/runs/{child['id']}/approval", json={"decision": "APPROVE"})
        assert response.status_code == 200, response.text
        return response

    await eventually_async(decided, what="bob's approval of the child")
    done = await stack.wait_for(parent["id"], ENDED)
    assert done["status"] == "SUCCESS", done
    assert done["child_runs"][0]["status"] == "SUCCESS"
    assert len(stack.webhook.calls("POST", "/announce")) == 1
    await carol.aclose()
    await bob.aclose()


async def test_cancelling_the_parent_cancels_its_child(stack: Stack) -> None:
    carol, bob = await member(stack, "carol"), await member(stack, "bob")
    approval = {"required_approvals": 1, "approvers": {"users": ["bob"]}, "timeout": "PT1H"}
    await save(stack, register(stack, approval=approval), provision(stack))
    parent = await launch_as(carol, "provision", inputs={"name": "qa-9"})
    child = await waiting_child(stack, parent["id"])

    assert (await carol.post(f"/v1/runs/{parent['id']}/cancel")).status_code == 202
    assert (await stack.wait_for(parent["id"], ENDED))["status"] == "CANCELLED"
    assert (await stack.wait_for(child["id"], ENDED))["status"] == "CANCELLED"
    described = await stack.client.get_workflow_handle(child["workflow_id"]).describe()
    assert described.status is not None and described.status.name == "CANCELED"
    assert stack.webhook.calls("POST", "/registry/") == [] and stack.webhook.calls("POST", "/announce") == []
    await carol.aclose()
    await bob.aclose()


async def test_cancelling_only_the_child_cancels_its_parent(stack: Stack) -> None:
    bob = await member(stack, "bob")
    approval = {"required_approvals": 1, "approvers": {"users": ["bob"]}, "timeout": "PT1H"}
    await save(stack, register(stack, approval=approval), provision(stack))
    parent = await stack.launch("provision", inputs={"name": "qa-13"})
    child = await waiting_child(stack, parent["id"])

    assert (await stack.api.post(f"/v1/runs/{child['id']}/cancel")).status_code == 202
    assert (await stack.wait_for(child["id"], ENDED))["status"] == "CANCELLED"
    done = await stack.wait_for(parent["id"], ENDED)
    assert done["status"] == "CANCELLED", done
    assert [s["status"] for s in done["steps"]] == ["CANCELLED", "PENDING"]
    await bob.aclose()


async def test_a_requester_who_may_not_run_the_child_fails_the_step_with_the_refusal(stack: Stack) -> None:
    carol = await member(stack, "carol")
    admins_only = register(stack, permissions={"execute": {"roles": ["admin"]}, "see": {"roles": ["member"]}})
    await save(stack, admins_only, provision(stack))
    parent = await launch_as(carol, "provision", inputs={"name": "qa-10"})
    done = await stack.wait_for(parent["id"], ENDED)

    assert done["status"] == "FAILURE", done
    step = next(s for s in done["steps"] if s["id"] == "register")
    assert step["status"] == "FAILURE"
    assert "you may not run 'register_environment'" in step["error"], step
    assert done["child_runs"] == [] and stack.webhook.calls("POST", "/registry/") == []
    await carol.aclose()


async def test_saving_refuses_a_sub_action_that_is_unknown_or_the_action_itself(stack: Stack) -> None:
    await save(stack, register(stack))
    cases = {
        "nope": ("/steps/0/with/action", "action 'nope' does not exist"),
        "provision": ("/steps/0/with/action", "an action cannot run itself as a sub-action"),
    }
    for target, (where, message) in cases.items():
        body = provision(stack)
        body["steps"][0]["with"]["action"] = target
        response = await stack.api.post("/v1/actions", json=body)
        assert response.status_code == 422, response.text
        assert {"pointer": where, "message": message}.items() <= response.json()["error"]["details"][
            0
        ].items()

    # A cycle through another action, and what the child's trigger and inputs ask for.
    await save(stack, provision(stack))
    calls_back = register(stack)
    calls_back["steps"].append(
        {"id": "again", "uses": "action", "with": {"action": "provision", "inputs": {}}}
    )
    response = await stack.api.put("/v1/actions/register_environment", json=calls_back)
    assert response.status_code == 422, response.text
    (detail,) = response.json()["error"]["details"]
    assert detail["pointer"] == "/steps/1/with/action"
    assert detail["message"] == "'provision' runs this action again (provision → register_environment)"
    careless = provision(stack)
    careless["identifier"] = "careless"
    careless["steps"][0]["with"] = {"action": "register_environment", "entity": "x", "inputs": {"nam": "y"}}
    response = await stack.api.post("/v1/actions", json=careless)
    assert response.status_code == 422, response.text
    assert {(d["pointer"], d["message"]) for d in response.json()["error"]["details"]} == {
        ("/steps/0/with/entity", "'register_environment' is a CREATE action: it takes no entity"),
        ("/steps/0/with/inputs/nam", "is not an input of 'register_environment'"),
        ("/steps/0/with/inputs", "'register_environment' requires input 'name'"),
    }


async def test_a_parents_secret_input_reaches_the_child_as_a_secret(stack: Stack) -> None:
    child = register(stack)
    child["user_inputs"]["properties"]["token"] = {"type": "string", "secret": True}
    child["steps"][0]["with"]["body"]["token"] = "{{ inputs.token }}"
    parent = provision(stack)
    parent["user_inputs"]["properties"]["token"] = {"type": "string", "secret": True}
    parent["steps"][0]["with"]["inputs"]["token"] = "{{ inputs.token }}"
    await save(stack, child, parent)
    run = await stack.launch("provision", inputs={"name": "qa-11", "token": "s3cr3t-canary"})
    done = await stack.wait_for(run["id"], ENDED)
    assert done["status"] == "SUCCESS", done

    (registered,) = stack.webhook.calls("POST", "/registry/")
    assert registered.json == {"by": "admin", "token": "s3cr3t-canary"}
    child_run = (await stack.api.get(f"/v1/runs/{done['child_runs'][0]['id']}")).json()
    assert child_run["inputs"] == {"name": "qa-11", "token": "********"}
    assert "s3cr3t-canary" not in json.dumps([done, child_run])


async def test_a_dry_run_flags_a_step_whose_sub_action_is_destructive(stack: Stack) -> None:
    wipe = register(stack)
    wipe["steps"][0]["destructive"] = True
    await save(stack, wipe, provision(stack))
    response = await stack.api.post(
        "/v1/actions/provision/runs?dry_run=true", json={"inputs": {"name": "qa-12"}}
    )
    assert response.status_code == 200, response.text
    plan = response.json()
    step = plan["steps"][0]
    assert (step["uses"], step["destructive"], plan["destructive"]) == ("action", True, True)
    assert step["with"] == {"action": "register_environment", "inputs": {"name": "qa-12"}}
