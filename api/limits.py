"""Request limits enforced before anything parses a body: size, JSON nesting and numbers.

An ASGI middleware reads the body itself, refusing it as soon as it passes its route's limit
(``Content-Length`` first, then a running count for chunked bodies): 413 ``too_large``. A JSON
body is then checked without building it: nesting deeper than ``GANTRY_MAX_JSON_DEPTH``, an
integer beyond 64 bits or a non-finite number (``1e400``, ``NaN``) is a 422 naming the field,
so FastAPI's own parser and the database never see one. The checked body is passed on as is.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_body
from catalog.errors import pointer
from config import Settings

# Bulk bodies: entity bulk writes, and the pages of raw vendor items a data-source sync sends.
BULK_PATH = re.compile(r"^/v1/(blueprints/[^/]+/entities/bulk|data-sources/[^/]+/syncs/[^/]+/items)/?$")
SLACK_PREFIX = "/v1/slack/"
INT64 = 2**63
# Cheap tests that say a body may hold a number the careful pass must look at: a run of 19+
# digits (a 64-bit integer has at most 19), an exponent of 3+ digits, or NaN/Infinity.
_SUSPICIOUS_NUMBER = re.compile(rb"\d{19}|[eE][-+]?\d{3}|NaN|Infinity")
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


class RequestRefused(Exception):
    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


@dataclass(frozen=True)
class BodyLimits:
    default: int
    bulk: int
    slack: int
    json_depth: int

    @classmethod
    def of(cls, settings: Settings) -> BodyLimits:
        return cls(
            settings.max_body_bytes,
            settings.max_bulk_body_bytes,
            settings.max_slack_body_bytes,
            settings.max_json_depth,
        )

    def for_path(self, path: str) -> tuple[int, str]:
        """The byte limit of a route and the setting that sets it."""
        if path.startswith(SLACK_PREFIX):
            return self.slack, "GANTRY_MAX_SLACK_BODY_BYTES"
        if BULK_PATH.match(path):
            return self.bulk, "GANTRY_MAX_BULK_BODY_BYTES"
        return self.default, "GANTRY_MAX_BODY_BYTES"


class RequestLimits:
    """The middleware (``app.add_middleware(RequestLimits, limits=BodyLimits.of(settings))``)."""

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        try:
            body = await self._read(scope, receive)
            if _is_json(scope) and body:
                check_json(body, self.limits.json_depth)
        except RequestRefused as refused:
            await _refuse(send, refused)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, scope: Scope, receive: Receive) -> bytes:
        limit, setting = self.limits.for_path(scope["path"])
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit, setting)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit, setting)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def check_json(body: bytes, max_depth: int) -> None:
    """Refuse a JSON body nested deeper than ``max_depth`` or holding a number the catalog
    cannot store. A body that is not JSON at all is left to the route to refuse."""
    # So few brackets cannot nest too deep: the common case, without a scan.
    few = body.count(b"[") + body.count(b"{") <= max_depth
    depth = 0 if few else json_depth(body)
    if depth > max_depth:
        raise RequestRefused(
            422,
            "validation_error",
            f"the JSON body is nested {depth} levels deep; the limit is {max_depth} (GANTRY_MAX_JSON_DEPTH)",
            [{"pointer": "/", "message": f"nested deeper than {max_depth} levels (GANTRY_MAX_JSON_DEPTH)"}],
        )
    if _SUSPICIOUS_NUMBER.search(body):
        bad = _bad_numbers(body)
        if bad:
            raise RequestRefused(
                422,
                "validation_error",
                "numbers must be finite and integers within 64 bits",
                [{"pointer": where, "message": message} for where, message in bad],
            )


def json_depth(body: bytes) -> int:
    """How deeply a JSON text nests, counted over its brackets outside strings (no parse)."""
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    return max(accumulate(1 if b in b"[{" else -1 for b in brackets), default=0)


class _Bad:
    """A number parsed out of range, marked so its place can be named."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _bad_numbers(body: bytes) -> list[tuple[str, str]]:
    def parse_int(text: str) -> int | _Bad:
        value = int(text) if len(text) < 100 else INT64  # a 4,300-digit int raises otherwise
        return value if -INT64 <= value < INT64 else _Bad("integers must fit in 64 bits")

    def parse_float(text: str) -> float | _Bad:
        value = float(text)
        return value if math.isfinite(value) else _Bad("numbers must be finite")

    def parse_constant(text: str) -> _Bad:
        return _Bad(f"{text} is not a number JSON allows")

    try:
        parsed = json.loads(body, parse_int=parse_int, parse_float=parse_float, parse_constant=parse_constant)
    except ValueError:
        return []  # not JSON: the route answers with its own 422
    return [(where, bad.reason) for where, bad in _walk(parsed, ())][:20]


def _walk(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[str, _Bad]]:
    if isinstance(value, _Bad):
        yield pointer(*path) or "/", value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, (*path, index))


def _is_json(scope: Scope) -> bool:
    """FastAPI parses a body as JSON when it says so, or says nothing."""
    content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
    return not content_type or content_type == "application/json" or content_type.endswith("+json")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _too_large(limit: int, setting: str) -> RequestRefused:
    message = f"the request body is larger than {limit} bytes ({setting})"
    return RequestRefused(413, "too_large", message, [{"pointer": "/", "message": message}])


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then waits for the client as before."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(send: Send, refused: RequestRefused) -> None:
    payload = json.dumps(error_body(refused.code, refused.message, refused.details)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if refused.status == 413:
        headers.append((b"connection", b"close"))  # the rest of the body is not read
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
