"""Slack interactivity: Approve / Decline clicks, the decline-reason modal, and the Extend
buttons of TTL timer reminders.

Slack posts each interaction here (form field ``payload``, signed with the app's signing
secret) and wants a 200 within 3 s. The route verifies the signature, refuses replays (shared
by every API process through the database), answers 200 at once and does the work after the response: it maps the Slack user to a Gantry user by
email, applies the decision exactly as ``POST /v1/runs/{id}/approval`` does, and tells the user
privately (an ephemeral message) when the decision is refused. The workflow replaces every
approval message with the outcome itself (``slack.update_approval``). An Extend click goes the
way of ``POST …/timers/{property}/extend`` (``via: slack``) and the clicker is told privately
the new deadline, or why the policy refused it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import anyio.to_thread
from fastapi import APIRouter, BackgroundTasks, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.orm import Session

from activities.slack_approvals import (
    DECLINE_CALLBACK,
    REASON_BLOCK,
    REASON_INPUT,
    ApprovalAction,
    ApprovalRef,
    decline_modal,
)
from activities.slack_timers import TimerRef, readable
from api import approvals, timers
from api.errors import ServiceUnavailable, error_body
from api.slack_signature import ReplayGuard, SignatureError, verify
from catalog.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from catalog.identity.service import user_by_email
from catalog.models import User
from config import Settings

log = logging.getLogger("gantry.slack")
router = APIRouter(tags=["slack"])

EMAIL_TTL = 300.0  # seconds a Slack user's email is trusted before users.info is asked again
# Decisions applied at once. Each holds a database connection while its Update runs; a burst of
# clicks must leave the rest of the pool (15 by default) to the API's other requests, among them
# the worker's run reports that let the approved runs move on.
DECISIONS_AT_ONCE = 4
_SLACK_ERRORS = (SlackApiError, aiohttp.ClientError, TimeoutError)


@dataclass
class Clicker:
    """Who interacted, and where to answer them privately."""

    slack_user: str
    channel: str | None


class SlackInteractions:
    """What the interactions endpoint needs, built once per app from settings."""

    def __init__(self, app: FastAPI, signing_secret: str, client: AsyncWebClient) -> None:
        self.app = app
        self.signing_secret = signing_secret
        self.client = client
        self.replays = ReplayGuard(app.state.sessionmaker)
        self._decisions = anyio.CapacityLimiter(DECISIONS_AT_ONCE)
        self._emails: dict[str, tuple[str | None, float]] = {}
        self._lookups: dict[str, asyncio.Future[str | None]] = {}

    @classmethod
    def of(cls, app: FastAPI) -> SlackInteractions | None:
        """The app's instance, or None when Slack is not configured."""
        built: SlackInteractions | None = getattr(app.state, "slack_interactions", None)
        if built is not None:
            return built
        settings: Settings = app.state.settings
        secret, token = settings.secret("slack_signing_secret"), settings.secret("slack_bot_token")
        if not secret or not token:
            return None
        base_url = (
            settings.slack_api_url if settings.slack_api_url.endswith("/") else settings.slack_api_url + "/"
        )
        built = cls(app, secret, AsyncWebClient(token=token, base_url=base_url))
        app.state.slack_interactions = built
        return built

    # ---- the work after the ack --------------------------------------------------------------

    async def approve(self, payload: dict[str, Any], action: dict[str, Any]) -> None:
        ref = _ref(action.get("value"))
        if ref is not None:
            await self.decide(_clicker(payload), ref, "APPROVE", "")

    async def ask_decline_reason(self, payload: dict[str, Any], action: dict[str, Any]) -> None:
        """A Decline click opens a modal for the reason (its trigger_id lives 3 s)."""
        ref = _ref(action.get("value"))
        if ref is None:
            return
        clicker = _clicker(payload)
        modal = decline_modal(ref.model_copy(update={"channel": clicker.channel}))
        try:
            await self.client.views_open(trigger_id=payload.get("trigger_id"), view=modal)
        except _SLACK_ERRORS as exc:
            log.warning("could not open the decline modal for run %s: %s", ref.run_id, exc)
            await self.tell(clicker, f"Could not open the decline form ({exc}); try again.")

    async def decline_with_reason(self, payload: dict[str, Any]) -> None:
        view = payload.get("view") or {}
        ref = _ref(view.get("private_metadata"))
        if ref is None:
            return
        values = (view.get("state") or {}).get("values") or {}
        reason = str(((values.get(REASON_BLOCK) or {}).get(REASON_INPUT) or {}).get("value") or "").strip()
        slack_user = str((payload.get("user") or {}).get("id") or "")
        await self.decide(Clicker(slack_user, ref.channel), ref, "DECLINE", reason)

    async def decide(self, clicker: Clicker, ref: ApprovalRef, decision: str, comment: str) -> None:
        email = await self.email_of(clicker.slack_user)
        if email is None:
            await self.tell(
                clicker, "Gantry cannot see the email of your Slack account, so it cannot tell who you are."
            )
            return
        try:
            state = await anyio.to_thread.run_sync(
                self._apply, email, ref, decision, comment, limiter=self._decisions
            )
        except (Forbidden, Conflict, NotFound) as refused:
            await self.tell(clicker, f"Your decision on run {ref.run_id} was not applied: {refused.message}")
            return
        except ServiceUnavailable as busy:
            await self.tell(
                clicker, f"Your decision on run {ref.run_id} is not confirmed yet: {busy.message}"
            )
            return
        except Exception:
            log.exception("applying a Slack decision on run %s failed", ref.run_id)
            await self.tell(clicker, f"Gantry could not apply your decision on run {ref.run_id}; try again.")
            return
        if state is None:
            await self.tell(clicker, f"No Gantry user has the email {email}: ask an admin to add you.")
            return
        await self.tell(clicker, _recorded(ref.run_id, decision, state))

    def _apply(self, email: str, ref: ApprovalRef, decision: str, comment: str) -> dict[str, Any] | None:
        """In a worker thread: the same path as ``POST /v1/runs/{id}/approval``."""
        with self.app.state.sessionmaker() as session:
            user = _user_by_email(session, email)
            if user is None:
                return None
            return approvals.apply_decision(
                self.app.state.temporal,
                session,
                ref.run_id,
                user,
                decision,
                comment,
                via="slack",
                request_id=ref.request_id,
            )

    async def extend_timer(self, payload: dict[str, Any], action: dict[str, Any]) -> None:
        ref = _timer_ref(action.get("value"))
        if ref is None:
            return
        clicker = _clicker(payload)
        what = f"{ref.entity}'s {ref.property}"
        email = await self.email_of(clicker.slack_user)
        if email is None:
            await self.tell(
                clicker, "Gantry cannot see the email of your Slack account, so it cannot tell who you are."
            )
            return
        try:
            timer = await anyio.to_thread.run_sync(self._extend, email, ref, limiter=self._decisions)
        except (Forbidden, Conflict, NotFound, Invalid) as refused:
            await self.tell(clicker, f"{what} was not extended: {refused.message}")
            return
        except ServiceUnavailable as busy:
            await self.tell(clicker, f"The extension of {what} is not confirmed yet: {busy.message}")
            return
        except Exception:
            log.exception("extending %s from Slack failed", ref.timer_id)
            await self.tell(clicker, f"Gantry could not extend {what}; try again.")
            return
        if timer is None:
            await self.tell(clicker, f"No Gantry user has the email {email}: ask an admin to add you.")
            return
        await self.tell(clicker, f"Extended to {readable(timer['deadline'])}: {what}, by {ref.by}.")

    def _extend(self, email: str, ref: TimerRef) -> dict[str, Any] | None:
        """In a worker thread: the same path as ``POST …/timers/{property}/extend``."""
        with self.app.state.sessionmaker() as session:
            user = _user_by_email(session, email)
            if user is None:
                return None
            return timers.extend_timer(
                self.app.state.temporal,
                session,
                ref.blueprint,
                ref.entity,
                ref.property,
                ref.by,
                user,
                via="slack",
            )

    async def email_of(self, slack_user: str) -> str | None:
        """The Slack user's email, cached; concurrent clicks by one user share one users.info."""
        cached = self._emails.get(slack_user)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        lookup = self._lookups.get(slack_user)
        if lookup is None:
            lookup = self._lookups[slack_user] = asyncio.ensure_future(self._look_up_email(slack_user))
            lookup.add_done_callback(lambda _: self._lookups.pop(slack_user, None))
        return await asyncio.shield(lookup)

    async def _look_up_email(self, slack_user: str) -> str | None:
        try:
            found = await self.client.users_info(user=slack_user)
        except _SLACK_ERRORS as exc:
            log.warning("users.info %s failed: %s", slack_user, exc)
            return None
        email = ((found.get("user") or {}).get("profile") or {}).get("email")
        self._emails[slack_user] = (str(email) if email else None, time.monotonic() + EMAIL_TTL)
        return str(email) if email else None

    async def tell(self, clicker: Clicker, text: str) -> None:
        """An ephemeral message only the clicker sees, where they clicked."""
        channel = clicker.channel
        try:
            if channel is None:
                channel = (await self.client.conversations_open(users=clicker.slack_user))["channel"]["id"]
            await self.client.chat_postEphemeral(channel=channel, user=clicker.slack_user, text=text)
        except _SLACK_ERRORS as exc:
            log.warning("could not tell %s %r: %s", clicker.slack_user, text, exc)


# One handler per button.
ActionHandler = Callable[[SlackInteractions, dict[str, Any], dict[str, Any]], Awaitable[None]]
ACTIONS: dict[ApprovalAction, ActionHandler] = {
    ApprovalAction.APPROVE: SlackInteractions.approve,
    ApprovalAction.DECLINE: SlackInteractions.ask_decline_reason,
    ApprovalAction.EXTEND_TIMER: SlackInteractions.extend_timer,
}
ViewHandler = Callable[[SlackInteractions, dict[str, Any]], Awaitable[None]]
VIEWS: dict[str, ViewHandler] = {DECLINE_CALLBACK: SlackInteractions.decline_with_reason}


@router.post(
    "/v1/slack/interactions",
    response_class=Response,
    responses={
        200: {"description": "Acknowledged, with an empty body", "content": {}},
        401: {"description": "not signed by Slack"},
        404: {"description": "Slack is not configured"},
    },
)
async def slack_interactions(request: Request, background: BackgroundTasks) -> Response:
    """Slack's interactivity request URL (no bearer token: Slack's signature instead). Answers
    200 at once; the decision is applied after the response."""
    slack = SlackInteractions.of(request.app)
    if slack is None:
        return JSONResponse(error_body("not_found", "Slack is not configured"), status_code=404)
    body = await request.body()
    timestamp = request.headers.get("x-slack-request-timestamp")
    signature = request.headers.get("x-slack-signature")
    now = time.time()
    try:
        verify(slack.signing_secret, timestamp, body, signature, now)
        # Shared with the other API processes through the database: one short insert.
        await anyio.to_thread.run_sync(slack.replays.check, str(timestamp), str(signature), now)
    except SignatureError as exc:
        raise Unauthenticated(str(exc)) from None
    payload = _payload(body)
    kind = payload.get("type")
    if kind == "block_actions":
        for action in payload.get("actions") or []:
            action_id = _action_id(action)
            if action_id in ACTIONS:
                background.add_task(ACTIONS[action_id], slack, payload, action)
    elif kind == "view_submission":
        view_handler = VIEWS.get(str((payload.get("view") or {}).get("callback_id")))
        if view_handler is not None:
            background.add_task(view_handler, slack, payload)
    return Response(status_code=200)


def _payload(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(parse_qs(body.decode())["payload"][0])
    except (UnicodeDecodeError, KeyError, IndexError, ValueError):
        raise HTTPException(400, "expected a form field 'payload' holding JSON") from None
    if not isinstance(payload, dict):
        raise HTTPException(400, "the payload must be a JSON object")
    return payload


def _action_id(action: dict[str, Any]) -> ApprovalAction | None:
    try:
        return ApprovalAction(str(action.get("action_id")))
    except ValueError:
        return None


def _ref(value: Any) -> ApprovalRef | None:
    try:
        return ApprovalRef.model_validate_json(str(value))
    except ValidationError:
        log.warning("ignoring a Slack interaction whose value is not Gantry's: %.200r", value)
        return None


def _timer_ref(value: Any) -> TimerRef | None:
    try:
        return TimerRef.model_validate_json(str(value))
    except ValidationError:
        log.warning("ignoring a Slack interaction whose value is not Gantry's: %.200r", value)
        return None


def _user_by_email(session: Session, email: str) -> User | None:
    """Slack's email may differ in case from the one in Gantry: emails are one case-insensitively."""
    return user_by_email(session, email)


def _clicker(payload: dict[str, Any]) -> Clicker:
    channel = (payload.get("channel") or {}).get("id") or (payload.get("container") or {}).get("channel_id")
    return Clicker(str((payload.get("user") or {}).get("id") or ""), channel)


def _recorded(run_id: str, decision: str, state: dict[str, Any]) -> str:
    if decision == "DECLINE":
        return f"You declined run {run_id}."
    approved, required = len(state.get("approvals") or []), state.get("required")
    progress = f" ({approved} of {required} approvals)" if required else ""
    return f"Your approval of run {run_id} is recorded{progress}."
