"""An initiative's reminders and final report: ``initiatives.remind`` and
``initiatives.report_deadline``, called by the initiative workflow.

A reminder first has the API record it (``POST /v1/initiatives/{id}/reminders``: the
``INITIATIVE_REMINDER`` event, once per reminder, and who to tell), then reads every failing
entity from the progress route, then DMs in Slack each member of each team that owns failing
entities — one message per person listing their teams' failing entities and the rules to fix,
with links — and each member of the owner teams one summary. Every message carries metadata
naming this activity execution and its recipient; a retry (after a worker crash, say) looks for
it in the DM's recent history before posting, so nobody is messaged twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.catalog import GantryApi
from activities.slack import post_once, slack_error
from activities.urls import identifier as identifier_segment
from activities.urls import path
from config import Settings
from contracts.initiatives import INITIATIVE_GONE, InitiativeDeadline, InitiativeReminder

METADATA_EVENT = "gantry_initiative"
NOT_CONFIGURED = "Slack is not configured: nobody was messaged about {initiative}"
# Entities listed per message; the rest are counted, and the progress link shows them all.
LISTED = 20
_SLACK_ERRORS = (SlackApiError, aiohttp.ClientError, TimeoutError)


class InitiativeActivities:
    """``slack`` is None when Slack is not configured (reminders are then only recorded)."""

    def __init__(self, api: GantryApi, slack: AsyncWebClient | None, api_url: str) -> None:
        self._api = api
        self._slack = slack
        self._base = api_url.rstrip("/")

    @activity.defn(name="initiatives.remind")
    async def remind(self, reminder: InitiativeReminder) -> list[str]:
        route = path("v1", "initiatives", reminder.identifier, "reminders")
        response = await self._api.request(
            "POST", route, json={"key": reminder.key, "remind_before": reminder.remind_before}
        )
        if response.status_code == 404:
            return [f"initiative {reminder.identifier} is gone: no reminder"]
        if not response.is_success:
            await self._api.call("POST", route)  # raises the API's error as a Temporal one
        recorded: dict[str, Any] = response.json()
        if self._slack is None:
            return [NOT_CONFIGURED.format(initiative=reminder.identifier)]
        failing = await self._failing(reminder.identifier)
        messages = _per_member(recorded, failing, self._base)
        log: list[str] = []
        for member, text, blocks in messages:
            log.append(await self._tell(reminder, member, text, blocks))
            activity.heartbeat(len(log))
        return log

    @activity.defn(name="initiatives.report_deadline")
    async def report_deadline(self, deadline: InitiativeDeadline) -> dict[str, Any]:
        route = path("v1", "initiatives", deadline.identifier, "deadline")
        response = await self._api.request("POST", route, json={"deadline": deadline.deadline})
        if response.status_code in (404, 409):
            raise ApplicationError(
                f"initiative {deadline.identifier}: {response.json()['error']['message']}",
                type=INITIATIVE_GONE,
                non_retryable=True,
            )
        if not response.is_success:
            await self._api.call("POST", route, json={"deadline": deadline.deadline})
        report: dict[str, Any] = response.json()
        return {"total": report["total"], "passing": report["passing"]}

    async def _failing(self, identifier: str) -> list[dict[str, Any]]:
        """Every failing entity in scope, page by page."""
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params = {"limit": "1000", "points": "false", **({"cursor": cursor} if cursor else {})}
            page = await self._api.call(
                "GET", path("v1", "initiatives", identifier, "progress"), params=params
            )
            found += page["failing"]
            cursor = page.get("next_cursor")
            activity.heartbeat(len(found))
            if not cursor:
                return found

    async def _tell(
        self, reminder: InitiativeReminder, member: dict[str, Any], text: str, blocks: list[dict[str, Any]]
    ) -> str:
        assert self._slack is not None
        who = f"{member['identifier']} ({member['email']})"
        metadata = _metadata(reminder, member["recipient"])
        try:
            found = await self._slack.users_lookupByEmail(email=member["email"])
            opened = await self._slack.conversations_open(users=found["user"]["id"])
            channel, ts = await post_once(
                self._slack, channel=opened["channel"]["id"], text=text, blocks=blocks, metadata=metadata
            )
        except _SLACK_ERRORS as exc:
            error = slack_error(exc)
            if not error.non_retryable:
                raise error from exc
            code = exc.response.get("error") if isinstance(exc, SlackApiError) else type(exc).__name__
            reason = (
                "no Slack account with that email" if code == "users_not_found" else f"Slack error {code}"
            )
            return f"Slack: reminder not sent to {who}: {reason}"
        return f"Slack: reminder sent to {who} ({channel} {ts})"


# ---- who gets what -----------------------------------------------------------------------------


def _per_member(
    recorded: dict[str, Any], failing: list[dict[str, Any]], base: str = ""
) -> list[tuple[dict[str, Any], str, list[dict[str, Any]]]]:
    """(member, text, blocks) for each message: one per member of the failing teams (their
    teams' entities), then one summary per member of the owner teams."""
    initiative = recorded["initiative"]
    teams_of: dict[str, list[str]] = {}
    people: dict[str, dict[str, Any]] = {}
    for audience in recorded["failing_teams"]:
        for member in audience["members"]:
            people[member["identifier"]] = member
            teams_of.setdefault(member["identifier"], []).append(audience["team"])
    messages = []
    for identifier, teams in teams_of.items():
        theirs = [f for f in failing if set(f["team"]) & set(teams)]
        if not theirs:
            continue
        text = f"{initiative['title']}: {len(theirs)} of your team's entities still fail (deadline {initiative['deadline']})"
        member = {**people[identifier], "recipient": f"member:{identifier}"}
        messages.append((member, text, _member_blocks(initiative, teams, theirs, base)))
    for audience in recorded["owners"]:
        for member in audience["members"]:
            text = (
                f"{initiative['title']}: {recorded['passing']} of {recorded['total']} entities meet the "
                f"targets (deadline {initiative['deadline']})"
            )
            summary = {**member, "recipient": f"owner:{member['identifier']}"}
            if not any(m[0]["recipient"] == summary["recipient"] for m in messages):
                messages.append((summary, text, _summary_blocks(initiative, recorded, text, base)))
    return messages


def _member_blocks(
    initiative: dict[str, Any], teams: list[str], failing: list[dict[str, Any]], base: str
) -> list[dict[str, Any]]:
    lines = []
    for entry in failing[:LISTED]:
        rules = ", ".join(f"{r['title']} ({r['level']})" for r in entry["rules"]) or "not graded"
        link = f"{base}{path('v1', 'blueprints', entry['blueprint'], 'entities')}/{identifier_segment(entry['entity'])}"
        lines.append(f"• <{link}|{_escape(entry['entity'])}>: {_escape(rules)}")
    if len(failing) > LISTED:
        lines.append(f"…and {len(failing) - LISTED} more")
    heading = f"{initiative['title']}: fix by {initiative['deadline']}"
    return [
        {"type": "header", "text": {"type": "plain_text", "text": heading[:150]}},
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": _escape(f"Failing entities of {', '.join(teams)} and the rules to fix:")[:3000],
            },
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:3000]}},
        _progress_link(initiative, base),
    ]


def _summary_blocks(
    initiative: dict[str, Any], recorded: dict[str, Any], text: str, base: str
) -> list[dict[str, Any]]:
    teams = ", ".join(a["team"] for a in recorded["failing_teams"]) or "none"
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": _escape(text)[:3000]}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": _escape(f"Teams still failing: {teams}")[:3000]},
        },
        _progress_link(initiative, base),
    ]


def _progress_link(initiative: dict[str, Any], base: str) -> dict[str, Any]:
    link = f"{base}{path('v1', 'initiatives', initiative['identifier'], 'progress')}"
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{link}|Progress>"}]}


def _metadata(reminder: InitiativeReminder, recipient: str) -> dict[str, Any]:
    info = activity.info()
    return {
        "event_type": METADATA_EVENT,
        "event_payload": {
            "initiative": reminder.identifier,
            "reminder": reminder.key,
            "recipient": recipient,
            # One activity execution (all its attempts): a later reminder is a new execution.
            "posting": f"{info.workflow_run_id}/{info.activity_id}",
        },
    }


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def build_initiative_activities(settings: Settings) -> list[Callable[..., Any]]:
    slack = None
    if token := settings.secret("slack_bot_token"):
        url = settings.slack_api_url
        slack = AsyncWebClient(token=token, base_url=url if url.endswith("/") else url + "/")
    activities = InitiativeActivities(GantryApi.from_settings(settings), slack, settings.api_url)
    return [activities.remind, activities.report_deadline]
