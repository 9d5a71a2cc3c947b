"""A real MCP client session against ``/mcp`` on a served API, with human and agent tokens."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import TextResourceContents

from config import Settings
from tests.agents.test_agent_tokens import ACTION
from tests.workflows.conftest import serve_api

ADMIN = "admin-mcp-token"


@pytest.fixture
def api_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    settings = Settings(
        database_url=database_url, data_dir=tmp_path, admin_token=ADMIN, service_token="svc-mcp"
    )
    with serve_api(settings) as url:
        admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"})
        for path, body in [
            ("/v1/teams", {"identifier": "payments-team", "title": "Payments"}),
            (
                "/v1/users",
                {"identifier": "bob", "email": "bob@example.com", "name": "Bob", "teams": ["payments-team"]},
            ),
            (
                "/v1/blueprints",
                {
                    "identifier": "service",
                    "title": "Service",
                    "schema": {"properties": {"language": {"type": "string"}}},
                },
            ),
            (
                "/v1/blueprints/service/entities",
                {"identifier": "payments", "team": ["payments-team"], "properties": {"language": "python"}},
            ),
            ("/v1/actions", ACTION),
            ("/v1/actions", {**ACTION, "identifier": "other_action", "title": "Other"}),
        ]:
            answer = admin.post(path, json=body)
            assert answer.status_code == 201, answer.text
        yield url


def token(url: str, body: dict[str, Any]) -> str:
    answer = httpx.post(f"{url}/v1/tokens", json=body, headers={"Authorization": f"Bearer {ADMIN}"})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["token"])


def session(url: str, secret: str) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {secret}"}, timeout=30)
    return Client(streamable_http_client(f"{url}/mcp", http_client=http))


def payload(result: Any) -> Any:
    return json.loads(result.content[0].text)


async def test_an_agent_lists_its_tools_searches_and_dry_runs(api_url: str) -> None:
    secret = token(
        api_url, {"user": "bob", "kind": "agent", "name": "helper", "allowed_actions": ["tag_service"]}
    )
    async with session(api_url, secret) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"search_entities", "get_entity", "list_actions", "dry_run_action", "launch_action"} <= names
        assert {"get_run", "list_runs", "decide_approval", "run_tag_service"} <= names
        assert "run_other_action" not in names  # outside the allow-list
        tool = next(t for t in (await client.list_tools()).tools if t.name == "run_tag_service")
        assert tool.input_schema["properties"]["inputs"]["properties"] == {"tag": {"type": "string"}}

        found = payload(await client.call_tool("search_entities", {"query": None}))
        assert [e["identifier"] for e in found["items"]] == ["payments"]
        entity = payload(
            await client.call_tool("get_entity", {"blueprint": "service", "identifier": "payments"})
        )
        assert entity["identifier"] == "payments" and entity["timers"] == []
        actions = payload(await client.call_tool("list_actions", {}))
        assert [a["identifier"] for a in actions] == ["tag_service"]

        refused = await client.call_tool(
            "launch_action", {"action": "other_action", "entity": "payments", "inputs": {"tag": "x"}}
        )
        assert refused.is_error and payload(refused)["status"] == 403
        decided = await client.call_tool("decide_approval", {"run_id": "r_x", "decision": "APPROVE"})
        assert decided.is_error and payload(decided)["status"] == 403

        resources = {str(r.uri) for r in (await client.list_resources()).resources}
        assert "gantry://blueprints/service" in resources
        blueprint = await client.read_resource("gantry://blueprints/service")
        contents = blueprint.contents[0]
        assert isinstance(contents, TextResourceContents)
        assert json.loads(contents.text)["identifier"] == "service"


async def test_mcp_refuses_a_request_without_a_valid_token(api_url: str) -> None:
    answer = httpx.post(f"{api_url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert answer.status_code == 401
    forged = httpx.post(f"{api_url}/mcp", json={}, headers={"Authorization": "Bearer nope"})
    assert forged.status_code == 401


async def test_gantry_mcp_over_stdio_calls_the_api_with_the_agent_token(api_url: str) -> None:
    secret = token(
        api_url, {"user": "bob", "kind": "agent", "name": "stdio-helper", "allowed_actions": ["tag_service"]}
    )
    env = {**os.environ, "GANTRY_API_URL": api_url, "GANTRY_TOKEN": secret}
    command = StdioServerParameters(
        command=str(Path(sys.executable).parent / "gantry"), args=["mcp"], env=env
    )
    async with Client(command) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"search_entities", "run_tag_service"} <= names and "run_other_action" not in names
        found = payload(await client.call_tool("search_entities", {}))
        assert [e["identifier"] for e in found["items"]] == ["payments"]
        plan = await client.call_tool(
            "dry_run_action", {"action": "tag_service", "entity": "payments", "inputs": {"tag": "x"}}
        )
        assert not plan.is_error, payload(plan)
        assert payload(plan)["plan_hash"].startswith("sha256:")
        refused = await client.call_tool(
            "launch_action", {"action": "other_action", "entity": "payments", "inputs": {"tag": "x"}}
        )
        assert refused.is_error and payload(refused)["status"] == 403
