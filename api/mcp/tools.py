"""The MCP tools: each one is a Gantry API request made with the caller's token.

A tool holds no check of its own on purpose: the API's are the only ones, so a tool can neither
grant more than the caller's token allows nor drift from the routes.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from api.mcp.gantry import GantryApi

RUN_TOOL_PREFIX = "run_"
TOOL_NAME = re.compile(r"[^A-Za-z0-9_]")


def _obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required or [],
        "additionalProperties": False,
    }


STRING = {"type": "string"}
TARGET = {"entity": {"type": "string", "description": "the entity's identifier (DAY-2 and DELETE actions)"}}
INPUTS = {"inputs": {"type": "object", "description": "the action's user_inputs"}}
PAGING = {"limit": {"type": "integer", "minimum": 1, "maximum": 100}, "cursor": STRING}


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    input_schema: dict[str, Any]


FIXED_TOOLS = (
    ToolSpec(
        "search_entities",
        "Search the catalog: a query of rules (Gantry's search language), newest first.",
        _obj({"query": {"type": "object"}, **PAGING}),
    ),
    ToolSpec(
        "get_entity",
        "One entity with its scorecard levels and its timers.",
        _obj({"blueprint": STRING, "identifier": STRING}, ["blueprint", "identifier"]),
    ),
    ToolSpec("list_actions", "The self-service actions the caller may run.", _obj({})),
    ToolSpec(
        "dry_run_action",
        "Check and plan a launch without starting anything: the steps, which are destructive, and a "
        "plan_hash (a destructive launch by an agent needs it).",
        _obj({"action": STRING, **TARGET, **INPUTS}, ["action"]),
    ),
    ToolSpec(
        "launch_action",
        "Launch an action; pass the plan_hash of a dry run of the same inputs for a destructive one.",
        _obj({"action": STRING, **TARGET, **INPUTS, "plan_hash": STRING}, ["action"]),
    ),
    ToolSpec("get_run", "One run: status, steps, approval, links.", _obj({"run_id": STRING}, ["run_id"])),
    ToolSpec(
        "list_runs",
        "Runs the caller may see, newest first.",
        _obj({"action": STRING, "entity": STRING, "status": STRING, **PAGING}),
    ),
    ToolSpec(
        "decide_approval",
        "Approve or decline a run waiting for the caller's approval (humans only: agents are refused).",
        _obj(
            {"run_id": STRING, "decision": {"enum": ["APPROVE", "DECLINE"]}, "comment": STRING},
            ["run_id", "decision"],
        ),
    ),
)


def run_tool(action: dict[str, Any]) -> ToolSpec:
    """``run_{action}``: the action's own tool, whose inputs are its ``user_inputs``."""
    user_inputs = action.get("user_inputs") or {}
    inputs = {"type": "object", **user_inputs}
    properties: dict[str, Any] = {"inputs": inputs}
    required = ["inputs"] if user_inputs.get("required") else []
    if action.get("trigger", {}).get("operation") != "CREATE":
        properties.update(TARGET)
        required.append("entity")
    properties["plan_hash"] = STRING
    description = action.get("description") or action.get("title") or action["identifier"]
    return ToolSpec(
        RUN_TOOL_PREFIX + TOOL_NAME.sub("_", action["identifier"]),
        str(description),
        _obj(properties, required),
    )


async def runnable_actions(api: GantryApi) -> list[dict[str, Any]]:
    """The visible actions the caller's token may launch (an agent: its allow-list, none when
    read-only). Execute permissions per entity are the launch's to check."""
    me = await api.get("/v1/me")
    agent = me.get("agent")
    actions: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await api.get("/v1/actions", limit=100, cursor=cursor)
        actions += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    if agent is None:
        return actions
    if agent["read_only"]:
        return []
    return [a for a in actions if a["identifier"] in set(agent["allowed_actions"])]


def _segment(value: Any) -> str:
    return quote(str(value), safe="")


def _launch_body(arguments: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"inputs": arguments.get("inputs") or {}}
    if arguments.get("entity") is not None:
        body["entity"] = arguments["entity"]
    if arguments.get("plan_hash") is not None:
        body["plan_hash"] = arguments["plan_hash"]
    return body


async def _get_entity(api: GantryApi, a: dict[str, Any]) -> Any:
    blueprint, identifier = a["blueprint"], a["identifier"]
    entity = await api.get(f"/v1/blueprints/{_segment(blueprint)}/entities/{quote(str(identifier), safe='')}")
    timers: list[Any] = []
    cursor = None
    while True:
        page = await api.get("/v1/timers", blueprint=blueprint, limit=100, cursor=cursor)
        timers += [t for t in page["items"] if t["entity"] == identifier]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    return {**entity, "timers": timers}


async def _launch(api: GantryApi, a: dict[str, Any], *, dry_run: bool = False) -> Any:
    path = f"/v1/actions/{_segment(a['action'])}/runs"
    body = _launch_body(a)
    if dry_run:
        body.pop("plan_hash", None)
        return await api.post(path, body, dry_run="true")
    return await api.post(path, body)


Handler = Callable[[GantryApi, dict[str, Any]], Awaitable[Any]]

HANDLERS: dict[str, Handler] = {
    "search_entities": lambda api, a: api.post(
        "/v1/entities/search", {k: a[k] for k in ("query", "limit", "cursor") if a.get(k) is not None}
    ),
    "get_entity": _get_entity,
    "list_actions": lambda api, a: runnable_actions(api),
    "dry_run_action": lambda api, a: _launch(api, a, dry_run=True),
    "launch_action": _launch,
    "get_run": lambda api, a: api.get(f"/v1/runs/{_segment(a['run_id'])}"),
    "list_runs": lambda api, a: api.get(
        "/v1/runs", **{k: a.get(k) for k in ("action", "entity", "status", "limit", "cursor")}
    ),
    "decide_approval": lambda api, a: api.post(
        f"/v1/runs/{_segment(a['run_id'])}/approval",
        {"decision": a["decision"], "comment": a.get("comment", "")},
    ),
}


async def call(api: GantryApi, name: str, arguments: dict[str, Any]) -> Any:
    """Run the tool ``name``; ``run_{action}`` is ``launch_action`` of that action (found among the
    caller's runnable actions, so a tool name cannot reach an action the caller cannot see)."""
    if name in HANDLERS:
        return await HANDLERS[name](api, arguments)
    if name.startswith(RUN_TOOL_PREFIX):
        for action in await runnable_actions(api):
            if run_tool(action).name == name:
                return await _launch(api, {**arguments, "action": action["identifier"]})
    raise LookupError(f"unknown tool '{name}'")
