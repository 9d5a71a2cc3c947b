"""An agent's destructive launch: a dry run's plan_hash first (409 without), then it waits for a
human approval although the action has none; the agent cannot approve it, its owner can."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.workflows.conftest import Stack

pytestmark = [pytest.mark.temporal, pytest.mark.slow]

RETIRE: dict[str, Any] = {
    "identifier": "retire_service",
    "title": "Retire service",
    "blueprint": "service",
    "trigger": {"operation": "DAY-2"},
    "user_inputs": {"properties": {"reason": {"type": "string"}}, "required": ["reason"]},
    "steps": [
        {
            "id": "mark",
            "uses": "catalog.upsert_entity",
            "destructive": True,
            "with": {
                "blueprint": "service",
                "identifier": "{{ entity.identifier }}",
                "properties": {"lifecycle": "retired"},
            },
        }
    ],
}


async def _portal(stack: Stack) -> tuple[str, str]:
    """Bob, his token and his agent's token (allowed to retire services)."""
    api = stack.api
    blueprint = {
        "identifier": "service",
        "title": "Service",
        "schema": {"properties": {"lifecycle": {"type": "string"}}},
    }
    for path, body in [
        ("/v1/teams", {"identifier": "payments-team", "title": "Payments"}),
        (
            "/v1/users",
            {"identifier": "bob", "email": "bob@example.com", "name": "Bob", "teams": ["payments-team"]},
        ),
        ("/v1/blueprints", blueprint),
        ("/v1/blueprints/service/entities", {"identifier": "payments", "team": ["payments-team"]}),
        ("/v1/actions", RETIRE),
    ]:
        answer = await api.post(path, json=body)
        assert answer.status_code == 201, answer.text
    bob = (await api.post("/v1/tokens", json={"user": "bob"})).json()["token"]
    agent = {"user": "bob", "kind": "agent", "name": "janitor", "allowed_actions": ["retire_service"]}
    answer = await api.post("/v1/tokens", json=agent, headers={"Authorization": f"Bearer {bob}"})
    assert answer.status_code == 201, answer.text
    return bob, answer.json()["token"]


def _json(result: Any) -> Any:
    return json.loads(result.content[0].text)


async def test_destructive_launch_needs_the_plan_and_waits_for_the_owner(stack: Stack) -> None:
    bob, agent = await _portal(stack)
    url = str(stack.api.base_url).rstrip("/")
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {agent}"}, timeout=30)
    launch = {"action": "retire_service", "entity": "payments", "inputs": {"reason": "merged"}}
    async with Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client:
        blind = await client.call_tool("launch_action", launch)
        assert blind.is_error and _json(blind)["status"] == 409
        assert _json(blind)["error"]["details"][0]["pointer"] == "/plan_hash"

        plan = _json(await client.call_tool("dry_run_action", launch))
        assert plan["destructive"] is True
        stale = await client.call_tool(
            "launch_action", {**launch, "inputs": {"reason": "other"}, "plan_hash": plan["plan_hash"]}
        )
        assert stale.is_error and _json(stale)["status"] == 409

        run = _json(
            await client.call_tool(
                "run_retire_service",
                {"entity": "payments", "inputs": {"reason": "merged"}, "plan_hash": plan["plan_hash"]},
            )
        )
        assert run["status"] == "WAITING_FOR_APPROVAL"  # the action itself has no approval

        refused = await client.call_tool("decide_approval", {"run_id": run["id"], "decision": "APPROVE"})
        assert refused.is_error and _json(refused)["status"] == 403

    entity = (await stack.api.get("/v1/blueprints/service/entities/payments")).json()
    assert entity["properties"].get("lifecycle") != "retired"  # nothing ran before the approval

    owner = {"Authorization": f"Bearer {bob}"}
    inbox = (
        await stack.api.get(
            "/v1/runs", params={"status": "WAITING_FOR_APPROVAL", "approver": "me"}, headers=owner
        )
    ).json()
    assert [r["id"] for r in inbox["items"]] == [run["id"]]
    approved = await stack.api.post(
        f"/v1/runs/{run['id']}/approval", json={"decision": "APPROVE"}, headers=owner
    )
    assert approved.status_code == 200, approved.text
    await stack.wait_for(run["id"], {"SUCCESS"})
    entity = (await stack.api.get("/v1/blueprints/service/entities/payments")).json()
    assert entity["properties"]["lifecycle"] == "retired"

    audit = (
        await stack.api.get("/v1/audit-log", params={"resource_type": "run", "identifier": run["id"]})
    ).json()
    created = [r for r in audit["items"] if r["operation"] == "CREATE"]
    assert [(r["actor"], r["on_behalf_of"]) for r in created] == [("agent:janitor", "bob")]


async def test_a_human_launch_of_a_destructive_action_needs_no_plan(stack: Stack) -> None:
    bob, _ = await _portal(stack)
    answer = await stack.api.post(
        "/v1/actions/retire_service/runs",
        json={"entity": "payments", "inputs": {"reason": "merged"}},
        headers={"Authorization": f"Bearer {bob}"},
    )
    assert answer.status_code == 202, answer.text
    await stack.wait_for(answer.json()["id"], {"SUCCESS"})
