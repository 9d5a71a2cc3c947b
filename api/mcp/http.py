"""``/mcp`` on the API: streamable HTTP, authenticated by the same bearer tokens as the API.

A request without a valid token is refused before any MCP message is read. The tools then call
the API in process (no network hop) with that same token, so its guardrails apply unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
from fastapi import FastAPI
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from api.mcp.gantry import GantryApi, api_client
from api.mcp.server import build_server
from catalog.db import utcnow
from catalog.identity.service import authenticate

PATH = "/mcp"
INTERNAL_BASE = "http://gantry.internal"


def bearer(headers: Any) -> str | None:
    value = headers.get("authorization") or ""
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class McpEndpoint:
    """The ASGI endpoint: check the token, then hand the request to the MCP session manager."""

    def __init__(self, app: FastAPI, server: Any) -> None:
        self.app = app
        self.server = server
        # A session manager runs once: each start of the app (its lifespan) gets a new one.
        self.manager: StreamableHTTPSessionManager | None = None

    def start(self) -> StreamableHTTPSessionManager:
        self.manager = StreamableHTTPSessionManager(app=self.server, stateless=True, json_response=True)
        return self.manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        token = bearer(headers)
        if token is None or not await anyio.to_thread.run_sync(self._known, token):
            answer = JSONResponse(
                {
                    "error": {
                        "code": "unauthenticated",
                        "message": "a valid bearer token is required",
                        "details": [],
                    }
                },
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
            await answer(scope, receive, send)
            return
        if self.manager is None:  # the app is not started (or stopping)
            await JSONResponse(
                {"error": {"code": "unavailable", "message": "the MCP server is not running", "details": []}},
                status_code=503,
            )(scope, receive, send)
            return
        await self.manager.handle_request(scope, receive, send)

    def _known(self, token: str) -> bool:
        with self.app.state.sessionmaker() as session:
            return authenticate(session, token, utcnow()) is not None


def mount(app: FastAPI) -> None:
    """Serve MCP at ``/mcp`` and run its session manager for the app's lifetime."""

    @asynccontextmanager
    async def api_for(ctx: Any) -> AsyncIterator[GantryApi]:
        token = bearer(ctx.request.headers) if ctx.request is not None else None
        api = api_client(INTERNAL_BASE, token or "", httpx.ASGITransport(app=app))
        async with api.client:
            yield api

    endpoint = McpEndpoint(app, build_server(api_for))
    app.router.routes.append(Route(PATH, endpoint=endpoint, include_in_schema=False))
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        async with inner(application) as state, endpoint.start().run():
            try:
                yield state
            finally:
                endpoint.manager = None

    app.router.lifespan_context = lifespan
