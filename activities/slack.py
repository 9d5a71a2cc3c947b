"""``slack.post_message`` through slack-sdk's ``AsyncWebClient``.

Slack answers errors as ``{"ok": false, "error": "<code>"}``. Codes that mean "try later"
(rate limits, Slack's own failures) are retryable; every other code (``channel_not_found``,
``not_in_channel``, ``invalid_auth`` …) will not fix itself and is non-retryable.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import BENIGN, bad_params, network_reason, unreachable
from contracts.steps import VENDOR_CLIENT_ERROR, VENDOR_SERVER_ERROR, StepInput, StepResult

_TRANSIENT = {
    "ratelimited",
    "rate_limited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
}


# Codes that mean the bot token is wrong: the step's error points at GANTRY_SLACK_BOT_TOKEN.
_AUTH = {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"}


def slack_error(exc: Exception) -> ApplicationError:
    """A slack-sdk failure as a Temporal error (BENIGN: expected, logged as one line)."""
    if not isinstance(exc, SlackApiError):
        return unreachable("Slack", network_reason(exc), "")
    code = exc.response.get("error") or "unknown_error"
    status = exc.response.status_code
    message = f"Slack {status}: {code}"
    details = {"status": status, "auth": code in _AUTH}
    if code in _TRANSIENT or status >= 500 or status == 429:
        retry_after = exc.response.headers.get("Retry-After") or exc.response.headers.get("retry-after")
        delay = timedelta(seconds=int(retry_after)) if retry_after and str(retry_after).isdigit() else None
        return ApplicationError(
            message, details, type=VENDOR_SERVER_ERROR, next_retry_delay=delay, category=BENIGN
        )
    return ApplicationError(message, details, type=VENDOR_CLIENT_ERROR, non_retryable=True, category=BENIGN)


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


# A retry looks this far before its activity was scheduled for an earlier post of its own.
HISTORY_SLACK = timedelta(minutes=5)
HISTORY_PAGES = 5


async def post_once(
    client: AsyncWebClient, *, channel: str, text: str, blocks: list[dict[str, Any]], metadata: dict[str, Any]
) -> tuple[str, str]:
    """``chat.postMessage``, but on an activity retry first look for this execution's earlier post
    (same ``metadata``) in the channel's history, so a recipient never gets two. Returns the
    message's (channel, ts)."""
    ts = await _earlier_post(client, channel, metadata)
    if ts is not None:
        return channel, ts
    posted = await client.chat_postMessage(channel=channel, text=text, blocks=blocks, metadata=metadata)
    return str(posted["channel"]), str(posted["ts"])


async def _earlier_post(client: AsyncWebClient, channel: str, metadata: dict[str, Any]) -> str | None:
    info = activity.info()
    if info.attempt <= 1:
        return None
    oldest = (info.scheduled_time - HISTORY_SLACK).timestamp()
    cursor = None
    try:
        for _ in range(HISTORY_PAGES):
            page = await client.conversations_history(
                channel=channel,
                oldest=f"{max(oldest, 0):.6f}",
                include_all_metadata=True,
                limit=200,
                cursor=cursor,
            )
            for message in page.get("messages") or []:
                if message.get("metadata") == metadata:
                    return str(message["ts"])
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
    except SlackApiError as exc:
        if not slack_error(exc).non_retryable:
            raise
        # Without a history scope a retry cannot look; a rare duplicate beats no message at all.
        activity.logger.warning("cannot read %s history (%s): posting again", channel, exc)
    return None
