"""A webhook receiver that checks Gantry's signature, like a real receiver would, and records."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from activities.http import verify_signature
from tests.fakes.server import FakeVendor


class FakeWebhookReceiver(FakeVendor):
    def __init__(self, secret: str = "whsec-test") -> None:
        self.secret = secret
        super().__init__()
        self.reset()

    def reset(self) -> None:
        super().reset()
        # One entry per delivery: whether its signature verified.
        self.verified: list[bool] = []
        self.seen_keys: set[str] = set()

    def add_routes(self, app: FastAPI) -> None:
        @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        async def receive(path: str, request: Request) -> Any:
            body = await request.body()
            ok = verify_signature(
                self.secret,
                request.headers.get("x-gantry-timestamp", ""),
                body,
                request.headers.get("x-gantry-signature", ""),
                now=time.time(),
            )
            self.verified.append(ok)
            if not ok:
                return JSONResponse({"error": "bad signature"}, status_code=401)
            key = request.headers.get("idempotency-key", "")
            duplicate = key in self.seen_keys
            self.seen_keys.add(key)
            return {
                "received": True,
                "path": "/" + path,
                "duplicate": duplicate,
                "query": dict(request.query_params),
            }
