"""Approval requests in Slack: ``slack.request_approval`` and ``slack.update_approval``.

The approval gate calls these by name. A request is posted to the action's channel (if any) and
sent as a DM to each approver found by email; each message carries Approve / Decline buttons
whose clicks come back to ``POST /v1/slack/interactions``. When the approval closes, every
message is replaced by the outcome, without buttons.

Retries never post twice to one recipient: each message carries metadata naming this activity
execution and its recipient, and a retry first looks for it in the channel's recent history.

The shapes the interactions endpoint shares (action ids, the button value, the decline modal's
callback id) live here too, so both ends agree on them.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

import aiohttp
from pydantic import BaseModel
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from temporalio import activity

from activities.slack import post_once, slack_error
from contracts.approvals import (
    ApprovalMessages,
    ApprovalOutcome,
    ApprovalRequest,
    Approver,
    SlackMessage,
)

NOT_CONFIGURED = "Slack is not configured: approvers decide with POST /v1/runs/{run_id}/approval"
METADATA_EVENT = "gantry_approval"
DECLINE_CALLBACK = "gantry_decline_reason"  # the decline modal's callback_id
REASON_BLOCK, REASON_INPUT = "reason", "reason_input"
ACTIONS_BLOCK = "gantry_approval_actions"
# How far before the activity was first scheduled a retry looks for its earlier posts (clock skew).
_OUTCOME_ICONS = {"APPROVED": ":white_check_mark:", "DECLINED": ":x:", "TIMED_OUT": ":hourglass:"}
_SLACK_ERRORS = (SlackApiError, aiohttp.ClientError, TimeoutError)


class ApprovalAction(StrEnum):
    """The ``action_id`` of each button Gantry puts in Slack."""

    APPROVE = "gantry_approve"
    DECLINE = "gantry_decline"
    EXTEND_TIMER = "gantry_extend_timer"  # reserved for TTL timers


class ApprovalRef(BaseModel):
    """A button's ``value`` and the decline modal's ``private_metadata``: which approval.

    ``channel`` (modal only) is where the button was clicked, for an ephemeral answer later.
    """

    run_id: str
    request_id: str
    channel: str | None = None

    def encode(self) -> str:
        return self.model_dump_json(exclude_none=True)


class SlackApprovals:
    """``client`` is None when Slack is not configured: approvers then use the API alone.

    ``ui_base`` resolves relative links (``/runs/…``) in the request into absolute ones.
    """

    def __init__(self, client: AsyncWebClient | None, ui_base: str) -> None:
        self._client = client
        self._ui_base = ui_base.rstrip("/")

    @activity.defn(name="slack.request_approval")
    async def request_approval(self, request: ApprovalRequest) -> ApprovalMessages:
        if self._client is None:
            return ApprovalMessages(log=[NOT_CONFIGURED.format(run_id=request.run_id)])
        result = ApprovalMessages()
        blocks = request_blocks(request, self._ui_base)
        text = summary(request)
        if request.channel:
            await self._post(request, f"channel:{request.channel}", request.channel, text, blocks, result)
        for approver in request.approvers:
            dm = await self._open_dm(approver, result)
            if dm is not None:
                await self._post(request, f"user:{approver.identifier}", dm, text, blocks, result)
        return result

    @activity.defn(name="slack.update_approval")
    async def update_approval(self, outcome: ApprovalOutcome) -> None:
        if self._client is None:
            return
        blocks = outcome_blocks(outcome)
        for message in outcome.messages:
            try:
                await self._client.chat_update(
                    channel=message.channel, ts=message.ts, text=outcome.text, blocks=blocks
                )
            except _SLACK_ERRORS as exc:
                if _transient(exc):
                    raise slack_error(exc) from exc
                # A deleted message or a left channel must not keep the run from finishing.
                activity.logger.warning("could not update %s/%s: %s", message.channel, message.ts, exc)

    async def _open_dm(self, approver: Approver, result: ApprovalMessages) -> str | None:
        """The DM channel with the approver, or None (logged) when they have no Slack account."""
        assert self._client is not None
        who = f"{approver.identifier} ({approver.email})"
        try:
            found = await self._client.users_lookupByEmail(email=approver.email)
            opened = await self._client.conversations_open(users=found["user"]["id"])
        except _SLACK_ERRORS as exc:
            if _transient(exc):
                raise slack_error(exc) from exc
            reason = "no Slack account with that email" if _code(exc) == "users_not_found" else _reason(exc)
            result.log.append(f"Slack: not sent to {who}: {reason}")
            return None
        channel: str = opened["channel"]["id"]
        return channel

    async def _post(
        self,
        request: ApprovalRequest,
        recipient: str,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]],
        result: ApprovalMessages,
    ) -> None:
        assert self._client is not None
        metadata = _metadata(request, recipient)
        try:
            channel, ts = await post_once(
                self._client, channel=channel, text=text, blocks=blocks, metadata=metadata
            )
        except _SLACK_ERRORS as exc:
            if _transient(exc):
                raise slack_error(exc) from exc
            result.log.append(f"Slack: not posted to {recipient}: {_reason(exc)}")
            return
        result.messages.append(SlackMessage(channel=channel, ts=ts))
        result.log.append(
            f"Slack: {'reminded' if request.reminder else 'asked'} {recipient} ({channel} {ts})"
        )


# ---- message shapes --------------------------------------------------------------------------


def summary(request: ApprovalRequest) -> str:
    """The notification text (and the fallback where blocks do not render)."""
    prefix = "Reminder: approval" if request.reminder else "Approval"
    target = f" on {request.entity}" if request.entity else ""
    return f"{prefix} needed: {request.action_title}{target}, requested by {request.requester}"


def request_blocks(request: ApprovalRequest, ui_base: str = "") -> list[dict[str, Any]]:
    ref = ApprovalRef(run_id=request.run_id, request_id=request.request_id).encode()
    heading = f"{'Reminder: ' if request.reminder else ''}Approval needed: {request.action_title}"
    fields = [
        ("Requested by", request.requester),
        ("Entity", request.entity or "—"),
        ("Approvals needed", str(request.required_approvals)),
        ("Expires", request.expires_at),
    ]
    links = [f"<{_absolute(request.run_url, ui_base)}|Open run {_escape(request.run_id)}>"]
    if request.temporal_ui_url:
        links.append(f"<{_absolute(request.temporal_ui_url, ui_base)}|Temporal UI>")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": heading[:150]}},
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": f"*{name}*\n{_escape(value)}"} for name, value in fields],
        },
    ]
    if request.inputs:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _inputs(request.inputs)}})
    blocks += [
        {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(links)}]},
        {
            "type": "actions",
            "block_id": ACTIONS_BLOCK,
            "elements": [
                _button("Approve", ApprovalAction.APPROVE, ref, "primary"),
                _button("Decline", ApprovalAction.DECLINE, ref, "danger"),
            ],
        },
    ]
    return blocks


def outcome_blocks(outcome: ApprovalOutcome) -> list[dict[str, Any]]:
    icon = _OUTCOME_ICONS.get(outcome.outcome, ":information_source:")
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} {_escape(outcome.text)}"[:3000]}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"Run {_escape(outcome.run_id)}"}]},
    ]


def decline_modal(ref: ApprovalRef, action_title: str = "") -> dict[str, Any]:
    """The modal a Decline click opens: the reason is required; ``ref`` rides along."""
    prompt = f"Why decline {action_title}?" if action_title else "Why decline?"
    return {
        "type": "modal",
        "callback_id": DECLINE_CALLBACK,
        "private_metadata": ref.encode(),
        "title": {"type": "plain_text", "text": "Decline run"},
        "submit": {"type": "plain_text", "text": "Decline"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": REASON_BLOCK,
                "label": {"type": "plain_text", "text": prompt[:2000]},
                "element": {
                    "type": "plain_text_input",
                    "action_id": REASON_INPUT,
                    "multiline": True,
                    "max_length": 2000,
                },
            }
        ],
    }


def _button(text: str, action: ApprovalAction, value: str, style: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action.value,
        "text": {"type": "plain_text", "text": text},
        "style": style,
        "value": value,
    }


def _inputs(inputs: dict[str, Any]) -> str:
    lines = ["*Inputs*"]
    for name, value in inputs.items():
        shown = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        lines.append(f"• `{_escape(name)}`: {_escape(shown[:300])}")
    text = "\n".join(lines)
    return text if len(text) <= 2900 else text[:2900] + "\n…"


def _metadata(request: ApprovalRequest, recipient: str) -> dict[str, Any]:
    info = activity.info()
    return {
        "event_type": METADATA_EVENT,
        "event_payload": {
            "run_id": request.run_id,
            "request_id": request.request_id,
            "recipient": recipient,
            # One activity execution (all its attempts): a later reminder is a new execution.
            "posting": f"{info.workflow_run_id}/{info.activity_id}",
        },
    }


def _absolute(url: str, base: str) -> str:
    return f"{base}{url}" if url.startswith("/") and base else url


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(exc: Exception) -> str:
    return str(exc.response.get("error")) if isinstance(exc, SlackApiError) else exc.__class__.__name__


def _reason(exc: Exception) -> str:
    return f"Slack error {_code(exc)}"


def _transient(exc: Exception) -> bool:
    """Worth a retry: Slack unreachable, rate limited or failing on its side."""
    return not slack_error(exc).non_retryable
