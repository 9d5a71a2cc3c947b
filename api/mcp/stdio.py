"""``gantry mcp``: the MCP server over stdio, for agents that launch it as a subprocess.

It holds no catalog access of its own: every tool calls the API at ``api_url`` with ``token``
(``GANTRY_API_URL``, ``GANTRY_TOKEN``), so an agent token's guardrails apply as over ``/mcp``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp.server.stdio import stdio_server

from api.mcp.gantry import GantryApi, api_client
from api.mcp.server import build_server


async def serve(api_url: str, token: str) -> None:
    @asynccontextmanager
    async def api_for(ctx: Any) -> AsyncIterator[GantryApi]:
        api = api_client(api_url, token)
        async with api.client:
            yield api

    server = build_server(api_for)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def run(api_url: str, token: str) -> int:
    anyio.run(serve, api_url, token)
    return 0
