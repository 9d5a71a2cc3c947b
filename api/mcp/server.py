"""The MCP server: Gantry's tools and resources, over any transport.

``api_for`` gives the Gantry API client of the caller behind a request (the bearer token of the
HTTP request, or the configured token over stdio). Tool lists are the caller's: the fixed tools
and one ``run_{action}`` per action they may run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import quote, unquote

import mcp.types as types
from mcp.server.lowlevel import Server

from api.mcp import tools
from api.mcp.gantry import ApiRefused, GantryApi

ApiFor = Callable[[Any], AbstractAsyncContextManager[GantryApi]]
BLUEPRINTS = "gantry://blueprints/"
SCORECARDS = "gantry://scorecards/"


def _text(value: Any, *, error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=json.dumps(value))], is_error=error
    )


def build_server(api_for: ApiFor) -> Server[Any]:
    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        async with api_for(ctx) as api:
            specs = list(tools.FIXED_TOOLS) + [tools.run_tool(a) for a in await tools.runnable_actions(api)]
        return types.ListToolsResult(
            tools=[
                types.Tool(name=s.name, description=s.description, input_schema=s.input_schema) for s in specs
            ]
        )

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        try:
            async with api_for(ctx) as api:
                return _text(await tools.call(api, params.name, dict(params.arguments or {})))
        except ApiRefused as refused:
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=refused.as_text())], is_error=True
            )
        except (LookupError, KeyError) as problem:
            return _text({"error": {"message": str(problem)}}, error=True)

    async def list_resources(ctx: Any, params: Any) -> types.ListResourcesResult:
        resources: list[types.Resource] = []
        async with api_for(ctx) as api:
            for bp in await _all(api, "/v1/blueprints"):
                resources.append(
                    _resource(
                        BLUEPRINTS + quote(bp["identifier"], safe=""), bp.get("title") or bp["identifier"]
                    )
                )
                for card in await _all(api, f"/v1/blueprints/{quote(bp['identifier'], safe='')}/scorecards"):
                    uri = (
                        SCORECARDS
                        + quote(bp["identifier"], safe="")
                        + "/"
                        + quote(card["identifier"], safe="")
                    )
                    resources.append(_resource(uri, card.get("title") or card["identifier"]))
        return types.ListResourcesResult(resources=resources)

    async def read_resource(ctx: Any, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        uri = str(params.uri)
        if uri.startswith(BLUEPRINTS):
            path = "/v1/blueprints/" + quote(unquote(uri.removeprefix(BLUEPRINTS)), safe="")
        elif uri.startswith(SCORECARDS) and uri.count("/") == 4:
            blueprint, scorecard = (unquote(p) for p in uri.removeprefix(SCORECARDS).split("/"))
            path = f"/v1/blueprints/{quote(blueprint, safe='')}/scorecards/{quote(scorecard, safe='')}"
        else:
            raise ValueError(f"unknown resource '{uri}'")
        async with api_for(ctx) as api:
            body = await api.get(path)
        return types.ReadResourceResult(
            contents=[
                types.TextResourceContents(uri=uri, mime_type="application/json", text=json.dumps(body))
            ]
        )

    return Server(
        "gantry",
        instructions="Gantry, the developer portal: search the catalog, read entities and runs, dry-run "
        "and launch self-service actions. Destructive actions need a dry run's plan_hash and a human approval.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_read_resource=read_resource,
    )


def _resource(uri: str, name: str) -> types.Resource:
    return types.Resource(uri=uri, name=name, mime_type="application/json")


async def _all(api: GantryApi, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await api.get(path, limit=100, cursor=cursor)
        items += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return items
