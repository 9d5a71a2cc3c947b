"""How a vendor's answer becomes a Temporal error.

A vendor's 4xx is the caller's fault and will not change on retry: non-retryable
``VENDOR_CLIENT_ERROR``. A 5xx, 408, 429 (and GitHub's 403 rate limit) or a network error is
transient: retryable ``VENDOR_SERVER_ERROR``, honouring ``Retry-After``. Bad step params are a
non-retryable ``STEP_FAILED``.

These are expected failures, so they are BENIGN (the SDK logs them at DEBUG, without a
traceback; :mod:`activities.context` logs the one line an operator needs), and their first
detail says what happened — ``{"status": 401}`` or ``{"network": "connection refused", "host":
"127.0.0.1:9"}`` — so the step's error can suggest the fix.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from contracts.steps import STEP_FAILED, VENDOR_CLIENT_ERROR, VENDOR_SERVER_ERROR

_TRANSIENT = {408, 429}
_MAX_MESSAGE = 500
BENIGN = ApplicationErrorCategory.BENIGN


def vendor_error(
    vendor: str, response: httpx.Response | None = None, *, exc: Exception | None = None, host: str = ""
) -> ApplicationError:
    """The ApplicationError for a failed vendor response, or for a network error (``exc``) on the
    way to ``host``."""
    if response is None:
        return unreachable(vendor, network_reason(exc), host)
    status = response.status_code
    message = f"{vendor} {status}: {vendor_message(response)}"
    if status >= 500 or status in _TRANSIENT or _rate_limited(response):
        return ApplicationError(
            message,
            {"status": status},
            type=VENDOR_SERVER_ERROR,
            next_retry_delay=retry_after(response.headers),
            category=BENIGN,
        )
    return ApplicationError(
        message, {"status": status}, type=VENDOR_CLIENT_ERROR, non_retryable=True, category=BENIGN
    )


def unreachable(vendor: str, reason: str, host: str) -> ApplicationError:
    """A retryable error for a vendor the worker could not reach (``reason``: connection refused…)."""
    return ApplicationError(
        f"{vendor} unreachable: {reason}",
        {"network": reason, "host": host},
        type=VENDOR_SERVER_ERROR,
        category=BENIGN,
    )


def network_reason(exc: BaseException | None) -> str:
    """Why a connection failed, in a few words: httpx says "All connection attempts failed" for
    a refused connection; the OS error under it says which."""
    seen, depth = exc, 0
    while seen is not None and depth < 20:
        if isinstance(seen, socket.gaierror):
            return f"DNS lookup failed ({seen.strerror or seen})"
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, (httpx.TimeoutException, TimeoutError)):
            return "timed out"
        seen, depth = seen.__cause__ or seen.__context__, depth + 1
    return f"{exc.__class__.__name__}: {exc}" if exc is not None else "unreachable"


def check(vendor: str, response: httpx.Response) -> httpx.Response:
    """Return ``response`` when it succeeded, else raise its :func:`vendor_error`."""
    if response.is_success:
        return response
    raise vendor_error(vendor, response)


async def request(
    client: httpx.AsyncClient, vendor: str, method: str, url: str, *, host: str = "", **kwargs: Any
) -> httpx.Response:
    """One request to a vendor, any status; a network error becomes a retryable ApplicationError
    naming ``host`` (default: the host and port the request went to)."""
    try:
        return await client.request(method, url, **kwargs)
    except httpx.TransportError as exc:
        raise vendor_error(vendor, exc=exc, host=host or _host_of(client, url)) from exc


async def send(
    client: httpx.AsyncClient, vendor: str, method: str, url: str, *, host: str = "", **kwargs: Any
) -> httpx.Response:
    """One request to a vendor: a successful response, or the mapped ApplicationError."""
    return check(vendor, await request(client, vendor, method, url, host=host, **kwargs))


def bad_params(message: str) -> ApplicationError:
    """A step whose params cannot work: retrying will not help."""
    return ApplicationError(message, type=STEP_FAILED, non_retryable=True, category=BENIGN)


def step_failed(message: str) -> ApplicationError:
    """The vendor did the work and it failed (a red CI run, a rolled-back stack)."""
    return ApplicationError(message, type=STEP_FAILED, non_retryable=True, category=BENIGN)


def vendor_message(response: httpx.Response) -> str:
    """The human part of a vendor's error body (GitHub, GitLab, Jira, Jenkins, Slack shapes)."""
    try:
        body = response.json()
    except ValueError:
        return (response.text.strip() or response.reason_phrase)[:_MAX_MESSAGE]
    if not isinstance(body, dict):
        return str(body)[:_MAX_MESSAGE]
    parts: list[str] = []
    for key in ("message", "error", "error_description", "detail"):
        value = body.get(key)
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, dict):  # GitLab: {"message": {"base": ["Reference not found"]}}
            parts += [f"{field}: {text}" for field, text in value.items()]
    parts += [str(m) for m in body.get("errorMessages") or []]  # Jira
    errors = body.get("errors")
    if isinstance(errors, dict):  # Jira field errors
        parts += [f"{field}: {text}" for field, text in errors.items()]
    elif isinstance(errors, list):  # GitHub validation errors
        parts += [e.get("message") or str(e) if isinstance(e, dict) else str(e) for e in errors]
    return ("; ".join(parts) or response.text)[:_MAX_MESSAGE]


def retry_after(headers: httpx.Headers | dict[str, str], now: datetime | None = None) -> timedelta | None:
    """``Retry-After`` (seconds or an HTTP date), or GitHub's ``x-ratelimit-reset``, as a delay."""
    value = headers.get("retry-after") or headers.get("Retry-After")
    now = now or datetime.now(UTC)
    if value:
        if value.strip().isdigit():
            return timedelta(seconds=int(value))
        try:
            return max(parsedate_to_datetime(value) - now, timedelta(0))
        except (TypeError, ValueError):
            return None
    reset = headers.get("x-ratelimit-reset")
    if reset and reset.isdigit() and headers.get("x-ratelimit-remaining") == "0":
        return max(datetime.fromtimestamp(int(reset), UTC) - now, timedelta(0))
    return None


def _rate_limited(response: httpx.Response) -> bool:
    # GitHub answers 403 (not 429) when a primary or secondary rate limit is hit.
    return response.status_code == 403 and (
        response.headers.get("x-ratelimit-remaining") == "0" or "retry-after" in response.headers
    )


def _host_of(client: httpx.AsyncClient, url: str) -> str:
    """``host:port`` a request to ``url`` goes to (relative URLs join the client's base URL)."""
    try:
        target = client.base_url.join(url) if client.base_url else httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return ""
    port = target.port or {"http": 80, "https": 443}.get(target.scheme)
    return f"{target.host}:{port}" if port else target.host
