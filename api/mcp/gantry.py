"""The Gantry API as the MCP tools call it: over HTTP with the caller's own token.

Every tool is an API request made with the token the MCP client presented, so it passes the
same authentication, agent guardrails, rate limits, permission checks and audit as any other
request; the MCP server holds no privilege of its own. Mounted on the API, the requests go
to the same application in process; over stdio (``gantry mcp``) to ``GANTRY_API_URL``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx


class ApiRefused(Exception):
    """The API answered 4xx or 5xx: the tool reports its status and error body to the agent."""

    def __init__(self, status: int, body: Any, retry_after: str | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.retry_after = retry_after

    def as_text(self) -> str:
        answer: dict[str, Any] = {"status": self.status, **(self.body if isinstance(self.body, dict) else {})}
        if self.retry_after is not None:
            answer["retry_after"] = self.retry_after
        return json.dumps(answer)


@dataclass
class GantryApi:
    """An HTTP client for one caller's token."""

    client: httpx.AsyncClient

    async def call(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None
    ) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        answer = await self.client.request(method, path, params=query, json=body)
        if answer.status_code >= 400:
            try:
                payload = answer.json()
            except ValueError:
                payload = {"error": {"message": answer.text[:500]}}
            raise ApiRefused(answer.status_code, payload, answer.headers.get("Retry-After"))
        return answer.json() if answer.content else None

    async def get(self, path: str, **params: Any) -> Any:
        return await self.call("GET", path, params=params)

    async def post(self, path: str, body: Any, **params: Any) -> Any:
        return await self.call("POST", path, params=params, body=body)


def api_client(base_url: str, token: str, transport: httpx.AsyncBaseTransport | None = None) -> GantryApi:
    headers = {"Authorization": f"Bearer {token}", "X-Gantry-Source": "API"}
    return GantryApi(httpx.AsyncClient(base_url=base_url, headers=headers, transport=transport, timeout=60))
