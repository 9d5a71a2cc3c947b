"""A local deploy webhook: what a team's deploy service would be to ``http.request`` steps.

``make run`` serves it on 127.0.0.1:8099. Every delivery must carry a valid
``X-Gantry-Signature`` (HMAC with ``GANTRY_WEBHOOK_SECRET``, see :mod:`activities.http`); it is
logged, kept in memory and answered ``{"accepted": true, "deployment_id": ...}``. A repeated
``Idempotency-Key`` (a retried step) gets the deployment id it got the first time.
``GET /deliveries`` lists what arrived, newest last.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections import deque
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from activities.http import verify_signature
from catalog.timefmt import configure_logging

log = logging.getLogger("gantry.receiver")
KEPT_DELIVERIES = 200


def create_app(secret: str | None = None) -> FastAPI:
    secret = secret or os.environ.get("GANTRY_WEBHOOK_SECRET")
    if not secret:
        raise RuntimeError("the receiver needs GANTRY_WEBHOOK_SECRET to check signatures")
    # uvicorn configures only its own loggers; deliveries go to the same output.
    configure_logging()
    app = FastAPI(title="Gantry demo deploy receiver")
    deliveries: deque[dict[str, Any]] = deque(maxlen=KEPT_DELIVERIES)
    deployments: dict[str, str] = {}  # Idempotency-Key -> deployment id

    @app.get("/deliveries")
    def list_deliveries() -> dict[str, Any]:
        """The signed deliveries received, oldest first."""
        return {"items": list(deliveries)}

    @app.api_route("/{path:path}", methods=["POST", "PUT", "PATCH", "DELETE"])
    async def receive(path: str, request: Request) -> Any:
        """Any signed request is a deployment to start."""
        body = await request.body()
        headers = request.headers
        signed = verify_signature(
            secret,
            headers.get("x-gantry-timestamp", ""),
            body,
            headers.get("x-gantry-signature", ""),
            now=time.time(),
        )
        if not signed:
            log.warning("refused %s /%s: missing or bad X-Gantry-Signature", request.method, path)
            return JSONResponse({"accepted": False, "error": "bad signature"}, status_code=401)
        key = headers.get("idempotency-key", "")
        duplicate = bool(key) and key in deployments
        deployment_id = deployments.get(key) or f"dep_{secrets.token_hex(6)}"
        if key:
            deployments[key] = deployment_id
        delivery = {
            "method": request.method,
            "path": f"/{path}",
            "idempotency_key": key,
            "duplicate": duplicate,
            "deployment_id": deployment_id,
            "body": _parse(body),
        }
        deliveries.append(delivery)
        log.info("delivery %s", json.dumps(delivery, separators=(",", ":")))
        return {"accepted": True, "deployment_id": deployment_id}

    return app


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return body.decode(errors="replace")
