"""TTL timer news in Slack: ``slack.notify_timer_owners``.

The timer workflow calls it after a reminder (each owner gets a DM: "⏰ env-1's expires_at
expires at …" with "Extend 1 day" / "Extend 3 days" buttons, whose clicks come back to
``POST /v1/slack/interactions``) and after a failed teardown (the failure text, no buttons).
Owners are found by email (``users.lookupByEmail``); one without a Slack account is logged, not
an error. Without Slack configured the activity only says so in its log.

Retries never DM an owner twice: each message carries metadata naming this activity execution
and its recipient, and a retry first looks for it in the DM's recent history.

The button's value (:class:`TimerRef`) lives here, so both ends agree on it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiohttp
from pydantic import BaseModel
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from temporalio import activity

from activities.slack import post_once, slack_error
from activities.slack_approvals import ApprovalAction
from contracts.timers import TimerNotice, TimerOwner

NOT_CONFIGURED = "Slack is not configured: {entity}'s owners were not messaged"
METADATA_EVENT = "gantry_timer"
ACTIONS_BLOCK = "gantry_timer_actions"
# The extensions a reminder offers, as (button text, ISO 8601 duration).
EXTEND_CHOICES = (("Extend 1 day", "P1D"), ("Extend 3 days", "P3D"))
# How far before the activity was first scheduled a retry looks for its earlier posts (clock skew).
_SLACK_ERRORS = (SlackApiError, aiohttp.ClientError, TimeoutError)


class TimerRef(BaseModel):
    """An Extend button's ``value``: which timer, and by how much."""

    timer_id: str
    blueprint: str
    entity: str
    property: str
    by: str

    def encode(self) -> str:
        return self.model_dump_json()


class SlackTimers:
    """``client`` is None when Slack is not configured."""

    def __init__(self, client: AsyncWebClient | None) -> None:
        self._client = client

    @activity.defn(name="slack.notify_timer_owners")
    async def notify_timer_owners(self, notice: TimerNotice) -> list[str]:
        """DM each owner; the answer is a log line per owner."""
        if self._client is None:
            return [NOT_CONFIGURED.format(entity=notice.entity)]
        text, blocks = summary(notice), notice_blocks(notice)
        log = []
        for owner in notice.owners:
            log.append(await self._tell(owner, notice, text, blocks))
        return log

    async def _tell(
        self, owner: TimerOwner, notice: TimerNotice, text: str, blocks: list[dict[str, Any]]
    ) -> str:
        assert self._client is not None
        who = f"{owner.identifier} ({owner.email})"
        metadata = _metadata(notice, owner)
        try:
            found = await self._client.users_lookupByEmail(email=owner.email)
            channel = (await self._client.conversations_open(users=found["user"]["id"]))["channel"]["id"]
            channel, ts = await post_once(
                self._client, channel=channel, text=text, blocks=blocks, metadata=metadata
            )
        except _SLACK_ERRORS as exc:
            error = slack_error(exc)
            if not error.non_retryable:
                raise error from exc
            code = exc.response.get("error") if isinstance(exc, SlackApiError) else type(exc).__name__
            reason = (
                "no Slack account with that email" if code == "users_not_found" else f"Slack error {code}"
            )
            return f"Slack: {notice.kind} not sent to {who}: {reason}"
        return f"Slack: {notice.kind} sent to {who} ({channel} {ts})"


# ---- message shapes --------------------------------------------------------------------------


def summary(notice: TimerNotice) -> str:
    """The notification text (and the fallback where blocks do not render)."""
    if notice.kind == "teardown_failed":
        return notice.text
    return f"⏰ {notice.entity}'s {notice.property} expires at {readable(notice.deadline)}"


def notice_blocks(notice: TimerNotice) -> list[dict[str, Any]]:
    text = {"type": "section", "text": {"type": "mrkdwn", "text": _escape(summary(notice))[:3000]}}
    if notice.kind == "teardown_failed":
        return [text]
    buttons = [
        {
            "type": "button",
            "action_id": ApprovalAction.EXTEND_TIMER.value,
            "text": {"type": "plain_text", "text": label},
            "value": TimerRef(
                timer_id=notice.timer_id,
                blueprint=notice.blueprint,
                entity=notice.entity,
                property=notice.property,
                by=by,
            ).encode(),
        }
        for label, by in EXTEND_CHOICES
    ]
    return [text, {"type": "actions", "block_id": ACTIONS_BLOCK, "elements": buttons}]


def readable(deadline: str | None) -> str:
    """``2030-01-01T12:00:00+00:00`` → ``2030-01-01 12:00 UTC``."""
    if not deadline:
        return "an unknown time"
    try:
        moment = datetime.fromisoformat(deadline.replace("Z", "+00:00"))
    except ValueError:
        return deadline
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _metadata(notice: TimerNotice, owner: TimerOwner) -> dict[str, Any]:
    info = activity.info()
    return {
        "event_type": METADATA_EVENT,
        "event_payload": {
            "timer_id": notice.timer_id,
            "recipient": owner.identifier,
            # One activity execution (all its attempts): a later reminder is a new execution.
            "posting": f"{info.workflow_run_id}/{info.activity_id}",
        },
    }


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
