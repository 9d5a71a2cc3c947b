"""Fake Slack Web API: chat.postMessage, chat.update, chat.postEphemeral, users.lookupByEmail,
users.info, conversations.open, conversations.history, views.open. Answers like Slack: HTTP 200 with ``{"ok": false, "error": ...}``
for API errors, 429 with ``Retry-After`` for rate limits (script it with :meth:`rate_limit_next`).

The tests' workspace has two channels and two users. ``make run`` serves :func:`create_app` as
the Slack stand-in (bot token ``xoxb-test``), an open workspace: every channel exists and every
email has an account, so the example portal's posts and approval requests go through.
``GET /messages`` lists what was posted (channel messages and direct messages); each request is
a line in its log. No signing secret: Slack's buttons cannot call back into a local API.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from devtools.standins.server import FakeVendor, standin_logger


class FakeSlack(FakeVendor):
    token = "xoxb-test"

    def __init__(self, *, open_workspace: bool = False) -> None:
        # Open: any channel is found and any email is a user (ids derived from the email).
        self.open_workspace = open_workspace
        super().__init__()
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.channels = {"C0DEPLOYS", "C0GENERAL"}
        self.users = {"bob@example.com": "U0BOB", "alice@example.com": "U0ALICE"}
        # Every message as Slack stores it, keyed by (channel, ts).
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.ephemeral: list[dict[str, Any]] = []
        self.views: list[dict[str, Any]] = []
        self._ts = itertools.count(1)

    def next_ts(self) -> str:
        """Like Slack's: the current second, then a sequence that keeps them unique and ordered."""
        return f"{int(time.time())}.{next(self._ts):06d}"

    def user_id(self, email: str) -> str:
        return self.users[email]

    def rate_limit_next(self, retry_after: int = 1, method: str = "chat.postMessage") -> None:
        self.fail_next(
            429,
            {"ok": False, "error": "ratelimited"},
            headers={"Retry-After": str(retry_after)},
            path=f"/api/{method}$",
        )

    def error_next(self, error: str, method: str = "chat.postMessage") -> None:
        self.fail_next(200, {"ok": False, "error": error}, path=f"/api/{method}$")

    def add_routes(self, app: FastAPI) -> None:
        @app.get("/messages")
        def list_messages() -> dict[str, Any]:
            """Not Slack's: every message posted, oldest first (for a person looking)."""
            posted = sorted(self.messages.items(), key=lambda item: float(item[0][1]))
            return {"messages": [{"channel": channel, **message} for (channel, _), message in posted]}

        @app.api_route("/api/{method}", methods=["GET", "POST"])
        async def call(method: str, request: Request) -> Any:
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return {"ok": False, "error": "invalid_auth"}
            args: dict[str, Any] = dict(request.query_params)
            body = await request.body()
            if "json" in request.headers.get("content-type", "") and body:
                args.update(json.loads(body))
            elif body:
                args.update(parse_qsl(body.decode()))
            handler = getattr(self, "_" + method.replace(".", "_"), None)
            if handler is None:
                return JSONResponse({"ok": False, "error": "unknown_method"}, status_code=404)
            return handler(args)

    def _channel(self, args: dict[str, Any]) -> str | None:
        channel = str(args.get("channel") or "")
        if self.open_workspace:
            return channel or None
        return channel if channel in self.channels or channel.startswith("D") else None

    def _chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        if not args.get("text") and not args.get("blocks"):
            return {"ok": False, "error": "no_text"}
        ts = self.next_ts()
        message = {
            "ts": ts,
            "text": args.get("text"),
            "blocks": args.get("blocks"),
            "metadata": args.get("metadata"),
        }
        self.messages[(channel, ts)] = message
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        key = (str(args.get("channel")), str(args.get("ts")))
        if key not in self.messages:
            return {"ok": False, "error": "message_not_found"}
        self.messages[key].update({k: args[k] for k in ("text", "blocks") if k in args})
        return {"ok": True, "channel": key[0], "ts": key[1], "text": self.messages[key]["text"]}

    def _chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        if self._channel(args) is None:
            return {"ok": False, "error": "channel_not_found"}
        if not args.get("user"):
            return {"ok": False, "error": "user_not_found"}
        with self._lock:
            self.ephemeral.append({k: args.get(k) for k in ("channel", "user", "text", "blocks")})
        return {"ok": True, "message_ts": self.next_ts()}

    def _conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        """Newest first; ``oldest``, ``limit`` and ``cursor`` (an offset) as Slack pages them;
        ``metadata`` only with ``include_all_metadata``."""
        channel = self._channel(args)
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        oldest = float(args.get("oldest") or 0)
        with_metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        found = sorted(
            (m for (c, ts), m in list(self.messages.items()) if c == channel and float(ts) > oldest),
            key=lambda m: float(m["ts"]),
            reverse=True,
        )
        start, limit = int(args.get("cursor") or 0), int(args.get("limit") or 100)
        page = [
            {"type": "message", "ts": m["ts"], "text": m["text"], "blocks": m.get("blocks")}
            | ({"metadata": m["metadata"]} if with_metadata and m.get("metadata") else {})
            for m in found[start : start + limit]
        ]
        more = start + limit < len(found)
        return {
            "ok": True,
            "messages": page,
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = str(args.get("user"))
        email = next((e for e, u in self.users.items() if u == user), None)
        if email is None:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": {"id": user, "profile": {"email": email}}}

    def _users_lookupByEmail(self, args: dict[str, Any]) -> dict[str, Any]:
        email = str(args.get("email"))
        if self.open_workspace and email not in self.users:
            self.users[email] = "U" + hashlib.sha256(email.lower().encode()).hexdigest()[:10].upper()
        if email not in self.users:
            return {"ok": False, "error": "users_not_found"}
        return {"ok": True, "user": {"id": self.users[email], "profile": {"email": email}}}

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        users = str(args.get("users") or "")
        if not users:
            return {"ok": False, "error": "not_enough_users"}
        return {"ok": True, "channel": {"id": "D" + users.split(",")[0].removeprefix("U")}}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("trigger_id"):
            return {"ok": False, "error": "invalid_trigger_id"}
        view = args.get("view")
        view = json.loads(view) if isinstance(view, str) else view
        self.views.append(view or {})
        return {"ok": True, "view": {"id": f"V{len(self.views):04d}", **(view or {})}}


def create_app() -> FastAPI:
    """The stand-in ``make run`` serves (``uvicorn devtools.standins.slack:create_app --factory``)."""
    slack = FakeSlack(open_workspace=True)
    slack.log = standin_logger("slack")
    return slack.app
