"""How a vendor's answer becomes a Temporal error.

A vendor's 4xx is the caller's fault and will not change on retry: non-retryable
``VENDOR_CLIENT_ERROR``. A 5xx, 408, 429 (and GitHub's 403 rate limit) or a network error is
transient: retryable ``VENDOR_SERVER_ERROR``, honouring ``Retry-After``. Bad step params are a
non-retryable ``STEP_FAILED``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from temporalio.exceptions import ApplicationError

from activities.types import STEP_FAILED, VENDOR_CLIENT_ERROR, VENDOR_SERVER_ERROR

_TRANSIENT = {408, 429}
_MAX_MESSAGE = 500


def vendor_error(
    vendor: str, response: httpx.Response | None = None, *, exc: Exception | None = None
) -> ApplicationError:
    """The ApplicationError for a failed vendor response, or for a network error (``exc``)."""
    if response is None:
        return ApplicationError(
            f"{vendor} unreachable: {exc.__class__.__name__}: {exc}", type=VENDOR_SERVER_ERROR
        )
    status = response.status_code
    message = f"{vendor} {status}: {vendor_message(response)}"
    if status >= 500 or status in _TRANSIENT or _rate_limited(response):
        return ApplicationError(
            message, type=VENDOR_SERVER_ERROR, next_retry_delay=retry_after(response.headers)
        )
    return ApplicationError(message, type=VENDOR_CLIENT_ERROR, non_retryable=True)


def check(vendor: str, response: httpx.Response) -> httpx.Response:
    """Return ``response`` when it succeeded, else raise its :func:`vendor_error`."""
    if response.is_success:
        return response
    raise vendor_error(vendor, response)


async def request(
    client: httpx.AsyncClient, vendor: str, method: str, url: str, **kwargs: Any
) -> httpx.Response:
    """One request to a vendor, any status; a network error becomes a retryable ApplicationError."""
    try:
        return await client.request(method, url, **kwargs)
    except httpx.TransportError as exc:
        raise vendor_error(vendor, exc=exc) from exc


async def send(
    client: httpx.AsyncClient, vendor: str, method: str, url: str, **kwargs: Any
) -> httpx.Response:
    """One request to a vendor: a successful response, or the mapped ApplicationError."""
    return check(vendor, await request(client, vendor, method, url, **kwargs))


def bad_params(message: str) -> ApplicationError:
    """A step whose params cannot work: retrying will not help."""
    return ApplicationError(message, type=STEP_FAILED, non_retryable=True)


def step_failed(message: str) -> ApplicationError:
    """The vendor did the work and it failed (a red CI run, a rolled-back stack)."""
    return ApplicationError(message, type=STEP_FAILED, non_retryable=True)


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
