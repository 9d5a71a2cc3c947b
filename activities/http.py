"""``http.request``: a signed webhook call, and the check its receivers run.

The body is serialised once and those exact bytes are both sent and signed:
``X-Gantry-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>`` with
``X-Gantry-Timestamp: <unix seconds>``. ``Idempotency-Key: {run_id}:{step_id}`` stays the same
across retries so a receiver can drop duplicates.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from temporalio import activity

from activities.errors import bad_params, send
from activities.types import StepInput, StepResult

_KEPT_HEADERS = ("content-type", "location", "etag", "x-request-id")
_MAX_BODY_CHARS = 64_000  # keep workflow history small


def sign(secret: str, timestamp: int | str, body: bytes | str) -> str:
    """The ``X-Gantry-Signature`` value for ``body`` sent at ``timestamp``."""
    raw = body.encode() if isinstance(body, str) else body
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def verify_signature(
    secret: str, timestamp: str | int, body: bytes | str, signature: str, now: float, tolerance: int = 300
) -> bool:
    """True when ``signature`` signs ``body`` at ``timestamp`` and ``timestamp`` is within ``tolerance``."""
    try:
        sent_at = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs(now - sent_at) > tolerance:
        return False
    expected = sign(secret, sent_at, body)
    return any(hmac.compare_digest(expected, candidate.strip()) for candidate in signature.split(","))


class Webhooks:
    def __init__(self, client: httpx.AsyncClient, secret: str | None) -> None:
        self._client = client
        self._secret = secret

    @activity.defn(name="http.request")
    async def request(self, step: StepInput) -> StepResult:
        params = step.params
        url = str(params.get("url") or "")
        if urlsplit(url).scheme not in ("http", "https"):
            raise bad_params(f"http.request needs an http(s) url, got {url!r}")
        method = str(params.get("method") or "POST").upper()
        body = (
            b"" if params.get("body") is None else json.dumps(params["body"], separators=(",", ":")).encode()
        )
        headers = {str(k): str(v) for k, v in (params.get("headers") or {}).items()}
        headers["Idempotency-Key"] = step.idempotency_key
        if body:
            headers.setdefault("Content-Type", "application/json")
        log = []
        if self._secret:
            timestamp = int(time.time())
            headers["X-Gantry-Timestamp"] = str(timestamp)
            headers["X-Gantry-Signature"] = sign(self._secret, timestamp, body)
        else:
            log.append("GANTRY_WEBHOOK_SECRET is not set: the request is not signed")
        response = await send(
            self._client,
            "webhook",
            method,
            url,
            content=body,
            headers=headers,
            params=params.get("query") or None,
        )
        outputs = {
            "status_code": response.status_code,
            "headers": {k: response.headers[k] for k in _KEPT_HEADERS if k in response.headers},
            "body": _body(response),
        }
        log.append(f"{method} {url} -> {response.status_code}")
        return StepResult(outputs=outputs, log=log)


def _body(response: httpx.Response) -> Any:
    if "json" in response.headers.get("content-type", ""):
        try:
            return response.json()
        except ValueError:
            pass
    return response.text[:_MAX_BODY_CHARS]
