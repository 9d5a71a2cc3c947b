"""``slack.post_message`` through slack-sdk's ``AsyncWebClient``.

Slack answers errors as ``{"ok": false, "error": "<code>"}``. Codes that mean "try later"
(rate limits, Slack's own failures) are retryable; every other code (``channel_not_found``,
``not_in_channel``, ``invalid_auth`` …) will not fix itself and is non-retryable.
"""

from __future__ import annotations

from datetime import timedelta

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import bad_params
from activities.types import VENDOR_CLIENT_ERROR, VENDOR_SERVER_ERROR, StepInput, StepResult

_TRANSIENT = {
    "ratelimited",
    "rate_limited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
}


def slack_error(exc: Exception) -> ApplicationError:
    """A slack-sdk failure as a Temporal error."""
    if not isinstance(exc, SlackApiError):
        return ApplicationError(
            f"Slack unreachable: {exc.__class__.__name__}: {exc}", type=VENDOR_SERVER_ERROR
        )
    code = exc.response.get("error") or "unknown_error"
    status = exc.response.status_code
    message = f"Slack {status}: {code}"
    if code in _TRANSIENT or status >= 500 or status == 429:
        retry_after = exc.response.headers.get("Retry-After") or exc.response.headers.get("retry-after")
        delay = timedelta(seconds=int(retry_after)) if retry_after and str(retry_after).isdigit() else None
        return ApplicationError(message, type=VENDOR_SERVER_ERROR, next_retry_delay=delay)
    return ApplicationError(message, type=VENDOR_CLIENT_ERROR, non_retryable=True)


class SlackMessages:
    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client

    @activity.defn(name="slack.post_message")
    async def post_message(self, step: StepInput) -> StepResult:
        params = step.params
        if not params.get("channel") or not (params.get("text") or params.get("blocks")):
            raise bad_params("slack.post_message needs a channel and text (or blocks)")
        try:
            response = await self._client.chat_postMessage(
                channel=str(params["channel"]),
                text=str(params.get("text") or ""),
                blocks=params.get("blocks"),
                thread_ts=params.get("thread_ts"),
                # Lets a later look-up tie the message to its run step.
                metadata={
                    "event_type": "gantry_step",
                    "event_payload": {"idempotency_key": step.idempotency_key},
                },
            )
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
            raise slack_error(exc) from exc
        channel, ts = response["channel"], response["ts"]
        return StepResult(outputs={"channel": channel, "ts": ts}, log=[f"posted to {channel} at {ts}"])
