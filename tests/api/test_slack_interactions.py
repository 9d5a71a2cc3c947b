"""POST /v1/slack/interactions: requests built and signed exactly as Slack sends them, against the
real app on uvicorn (so the 200 really leaves before the work) and the fake Slack Web API."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import select

import api.approvals
from activities.slack_approvals import ApprovalAction, ApprovalRef
from activities.slack_timers import TimerRef
from api.app import create_app
from api.errors import ServiceUnavailable
from api.slack_signature import ReplayGuard, SignatureError, sign, verify
from api.temporal import DecisionRefused
from catalog.db import make_engine, make_sessionmaker
from catalog.errors import Forbidden
from catalog.models import AuditRecord, Run, RunApprover, Timer, User
from config import Settings
from contracts.approvals import NOT_ELIGIBLE, Decision
from contracts.timers import EXTENSION_REFUSED, Arm, Extension
from devtools.testing import eventually
from tests.api.conftest import ADMIN_TOKEN
from tests.fakes.server import serve
from tests.fakes.slack import FakeSlack

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = 1_700_000_000.0


# ---- the signature, as a unit ----------------------------------------------------------------


def test_verify_accepts_what_slack_signs() -> None:
    body = b"payload=%7B%7D"
    signature = SignatureVerifier(SECRET).generate_signature(timestamp=str(int(NOW)), body=body)
    assert signature == sign(SECRET, str(int(NOW)), body)
    verify(SECRET, str(int(NOW)), body, signature, now=NOW + 299)


@pytest.mark.parametrize(
    ("timestamp", "body", "signature", "now", "why"),
    [
        (str(int(NOW)), b"payload=x", "v0=" + "0" * 64, NOW, "does not match"),
        (str(int(NOW)), b"payload=y", sign(SECRET, str(int(NOW)), b"payload=x"), NOW, "does not match"),
        (str(int(NOW)), b"payload=x", sign("other", str(int(NOW)), b"payload=x"), NOW, "does not match"),
        (str(int(NOW)), b"payload=x", sign(SECRET, str(int(NOW)), b"payload=x"), NOW + 301, "old"),
        (str(int(NOW)), b"payload=x", sign(SECRET, str(int(NOW)), b"payload=x"), NOW - 301, "future"),
        ("yesterday", b"payload=x", "v0=abc", NOW, "not a Unix timestamp"),
        (None, b"payload=x", "v0=abc", NOW, "required"),
        (str(int(NOW)), b"payload=x", None, NOW, "required"),
    ],
)
def test_verify_refuses(
    timestamp: str | None, body: bytes, signature: str | None, now: float, why: str
) -> None:
    with pytest.raises(SignatureError, match=why):
        verify(SECRET, timestamp, body, signature, now=now)


def test_the_replay_guard_refuses_a_second_delivery_until_the_window_closes(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        guard = ReplayGuard(make_sessionmaker(engine), tolerance=300)
        guard.check(str(int(NOW)), "v0=a", now=NOW)
        guard.check(str(int(NOW)), "v0=b", now=NOW)
        with pytest.raises(SignatureError, match="replay"):
            guard.check(str(int(NOW)), "v0=a", now=NOW + 299)
        if engine.dialect.name == "postgresql":
            # Another API process shares what the first one saw: the database is the memory.
            # (SQLite serves one API process: its guard remembers in that process.)
            other_process = ReplayGuard(make_sessionmaker(engine), tolerance=300)
            with pytest.raises(SignatureError, match="replay"):
                other_process.check(str(int(NOW)), "v0=b", now=NOW + 1)
        guard.check(str(int(NOW)), "v0=a", now=NOW + 302)  # verify refuses it as stale by then anyway
    finally:
        engine.dispose()


# ---- the stack: the real app on uvicorn, a stub Temporal gateway, the fake Slack ----------------


@dataclass
class Gateway:
    """Stands in for ``TemporalGateway``: ``decide`` records each decision and answers like the
    gate; ``arm_timer`` / ``extend_timer`` keep each timer's deadline like the timer workflow."""

    decisions: list[tuple[str, Decision]] = field(default_factory=list)
    refuse: Exception | None = None  # a DecisionRefused, or Temporal's ServiceUnavailable
    deadlines: dict[str, datetime] = field(default_factory=dict)
    extensions: list[tuple[str, Extension]] = field(default_factory=list)
    refuse_extension: DecisionRefused | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def arm_timer(self, timer: dict[str, Any], arm: Arm, *, blueprint: str, entity: str) -> None:
        if arm.deadline is not None:
            self.deadlines[timer["id"]] = datetime.fromisoformat(arm.deadline.replace("Z", "+00:00"))

    async def extend_timer(self, timer_id: str, extension: Extension) -> dict[str, Any]:
        with self.lock:
            self.extensions.append((timer_id, extension))
        if self.refuse_extension is not None:
            raise self.refuse_extension
        self.deadlines[timer_id] += timedelta(days=int(extension.by.strip("PD")))
        deadline = self.deadlines[timer_id].isoformat()
        return {
            "state": "active",
            "deadline": deadline,
            "extensions": [
                {"by": extension.by, "user": extension.user, "via": extension.via, "deadline": deadline}
            ],
        }

    async def decide(self, workflow_id: str, decision: Decision) -> dict[str, Any]:
        with self.lock:
            self.decisions.append((workflow_id, decision))
        if self.refuse is not None:
            raise self.refuse
        approvals = [{"user": decision.user}] if decision.decision == "APPROVE" else []
        declines = [{"user": decision.user, "comment": decision.comment}] if not approvals else []
        status = "APPROVED" if approvals else "DECLINED"
        return {"required": 1, "status": status, "approvals": approvals, "declines": declines}


@dataclass
class Stack:
    url: str
    app: FastAPI
    gateway: Gateway
    slack: FakeSlack

    def click(
        self, action: ApprovalAction, run_id: str, user: str = "U0BOB", channel: str = "C0DEPLOYS"
    ) -> bytes:
        return form(block_actions(action, run_id, user, channel))

    def post(self, body: bytes, **headers: str) -> httpx.Response:
        # A generous timeout: the acknowledgement's speed is the benchmark's business
        # (bench.approvals), and a loaded CI machine has taken more than httpx's default 5 s.
        return httpx.post(
            f"{self.url}/v1/slack/interactions", content=body, headers=signed(body) | headers, timeout=30
        )

    def add_run(self, run_id: str, status: str = "WAITING_FOR_APPROVAL") -> str:
        with self.app.state.sessionmaker() as session:
            session.add(
                Run(
                    id=run_id,
                    action="deploy",
                    status=status,
                    created_by="dave",
                    workflow_id=f"action:deploy:{run_id}",
                    approval={"required": 1, "status": "PENDING", "approvals": [], "declines": []},
                )
            )
            session.add(RunApprover(run_id=run_id, user="bob"))  # a launch records its approvers
            session.commit()
        return run_id

    def audit(self, run_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
        with self.app.state.sessionmaker() as session:
            rows = session.scalars(
                select(AuditRecord).where(AuditRecord.identifier == run_id).order_by(AuditRecord.id)
            )
            return [(r.operation, r.actor, r.after) for r in rows]


def block_actions(action: ApprovalAction, run_id: str, user: str, channel: str) -> dict[str, Any]:
    """What Slack posts when a Gantry button is clicked."""
    value = ApprovalRef(run_id=run_id, request_id=f"{run_id}:approve").encode()
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T0GANTRY"},
        "api_app_id": "A0GANTRY",
        "team": {"id": "T0GANTRY", "domain": "gantry"},
        "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": channel},
        "channel": {"id": channel, "name": "deploys"},
        "trigger_id": f"{uuid.uuid4().int % 10**12}.98765.{uuid.uuid4().hex}",
        "response_url": "https://hooks.slack.com/actions/T0GANTRY/1/abc",
        "actions": [
            {
                "type": "button",
                "action_id": action.value,
                "block_id": "gantry_approval_actions",
                "value": value,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def view_submission(view: dict[str, Any], reason: str, user: str = "U0BOB") -> dict[str, Any]:
    """What Slack posts when the decline modal is submitted."""
    return {
        "type": "view_submission",
        "user": {"id": user, "team_id": "T0GANTRY"},
        "team": {"id": "T0GANTRY"},
        "view": {
            "id": "V0001",
            "type": "modal",
            "callback_id": view["callback_id"],
            "private_metadata": view["private_metadata"],
            "state": {"values": {"reason": {"reason_input": {"type": "plain_text_input", "value": reason}}}},
        },
    }


def form(payload: dict[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def signed(body: bytes, timestamp: int | None = None, secret: str = SECRET) -> dict[str, str]:
    ts = str(timestamp if timestamp is not None else int(time.time()))
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": SignatureVerifier(secret).generate_signature(timestamp=ts, body=body) or "",
    }


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """``app`` with its lifespan (migrations, bootstrap) on uvicorn and an ephemeral port."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    eventually(lambda: _started(server, thread), timeout=20, what="the API to start")
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _started(server: uvicorn.Server, thread: threading.Thread) -> bool:
    """Whether uvicorn serves yet; a thread that ended has failed, which no waiting mends."""
    if not thread.is_alive():
        raise RuntimeError("the API's thread ended before it started serving")
    return bool(server.started)


@pytest.fixture(scope="module")
def fake_slack() -> Iterator[FakeSlack]:
    fake = FakeSlack()
    with serve(fake.app) as url:
        fake.url = url
        yield fake


@pytest.fixture
def stack(database_url: str, tmp_path: Any, fake_slack: FakeSlack) -> Iterator[Stack]:
    fake_slack.reset()
    fake_slack.users["carol@example.com"] = "U0CAROL"  # in Slack, not in Gantry
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path,
        admin_token=ADMIN_TOKEN,
        slack_signing_secret=SECRET,
        slack_bot_token=fake_slack.token,
        slack_api_url=f"{fake_slack.url}/api",
    )
    gateway = Gateway()
    app = create_app(settings, temporal=gateway)  # type: ignore[arg-type]
    with serving(app) as url:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        for who in ("bob", "alice"):
            user = {"identifier": who, "email": f"{who.capitalize()}@Example.com", "name": who.capitalize()}
            assert httpx.post(f"{url}/v1/users", json=user, headers=admin).status_code == 201
        yield Stack(url, app, gateway, fake_slack)


@pytest.fixture
def applied(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str, str, str]]:
    """Replaces apply_decision: records (run, user, decision, comment, via)."""
    calls: list[tuple[str, str, str, str, str]] = []

    def apply(
        app: FastAPI,
        session: Any,
        run_id: str,
        user: User,
        decision: str,
        comment: str,
        via: str,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        calls.append((run_id, user.identifier, decision, comment, via))
        return {"required": 2, "approvals": [{"user": user.identifier}], "declines": []}

    monkeypatch.setattr(api.approvals, "apply_decision", apply)
    return calls


def ephemeral_to(slack: FakeSlack, user: str) -> list[str]:
    return [str(m["text"]) for m in list(slack.ephemeral) if m["user"] == user]


# A Slack user whose email Slack does not give: their click is answered privately and never
# applied, so it marks how far the API got without adding a decision.
MARKER = "U0MARKER"


def worked_through(stack: Stack) -> list[Any]:
    """The Slack calls of the interactions posted so far, once they have been worked through.

    Their work was queued when they were answered; a click posted after them, whose own work
    (an email look-up, then a private answer) has ended, shows the API got past the point where
    theirs would have run. So "nothing happened" is asserted after a signal, not after a nap."""
    assert stack.post(stack.click(ApprovalAction.APPROVE, "r_marker", user=MARKER)).status_code == 200
    eventually(lambda: ephemeral_to(stack.slack, MARKER), what="the marker click's answer")
    return [c for c in stack.slack.calls() if MARKER not in f"{c.query}{c.body!r}"]


# ---- refusals before anything is applied -------------------------------------------------------


def test_without_a_signing_secret_the_endpoint_is_unavailable(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/v1/slack/interactions", content=b"payload=%7B%7D", headers=signed(b"payload=%7B%7D")
        )
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "not_found",
        "message": "Slack is not configured",
        "details": [],
    }


def test_a_bad_signature_is_401_and_applies_nothing(stack: Stack, applied: list[Any]) -> None:
    body = stack.click(ApprovalAction.APPROVE, "r_1")
    response = httpx.post(
        f"{stack.url}/v1/slack/interactions", content=body, headers=signed(body, secret="not-it")
    )

    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "unauthenticated" and "signature does not match" in error["message"]
    assert worked_through(stack) == [] and applied == []


def test_a_stale_or_future_timestamp_is_401(stack: Stack, applied: list[Any]) -> None:
    body = stack.click(ApprovalAction.APPROVE, "r_1")
    stale = httpx.post(
        f"{stack.url}/v1/slack/interactions", content=body, headers=signed(body, int(time.time()) - 600)
    )
    future = httpx.post(
        f"{stack.url}/v1/slack/interactions", content=body, headers=signed(body, int(time.time()) + 600)
    )

    assert (stale.status_code, future.status_code) == (401, 401)
    assert "old" in stale.json()["error"]["message"] and "future" in future.json()["error"]["message"]
    worked_through(stack)
    assert applied == []


def test_a_replayed_request_is_refused(stack: Stack, applied: list[Any]) -> None:
    body = stack.click(ApprovalAction.APPROVE, "r_1")
    headers = signed(body)
    first = httpx.post(f"{stack.url}/v1/slack/interactions", content=body, headers=headers)
    replay = httpx.post(f"{stack.url}/v1/slack/interactions", content=body, headers=headers)

    assert (first.status_code, replay.status_code) == (200, 401)
    assert "replay" in replay.json()["error"]["message"]
    eventually(lambda: applied)
    worked_through(stack)
    assert applied == [("r_1", "bob", "APPROVE", "", "slack")]


def test_a_body_without_payload_is_400(stack: Stack) -> None:
    assert stack.post(b"nothing=here").status_code == 400


# ---- approve -----------------------------------------------------------------------------------


def test_the_click_is_acked_before_the_decision_is_applied(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    release, started, done = threading.Event(), threading.Event(), threading.Event()

    def slow_apply(*args: Any, **kwargs: Any) -> dict[str, Any]:
        started.set()
        release.wait(10)
        done.set()
        return {"required": 1, "approvals": [{"user": "bob"}], "declines": []}

    monkeypatch.setattr(api.approvals, "apply_decision", slow_apply)
    response = stack.post(stack.click(ApprovalAction.APPROVE, "r_1"))

    # The ack came back while the decision was still blocked: ordering, not a stopwatch (the
    # latency itself is measured by bench/approvals.py).
    assert response.status_code == 200 and response.content == b""
    assert not done.is_set()
    assert started.wait(5)  # the work goes on after the response
    release.set()
    eventually(lambda: ephemeral_to(stack.slack, "U0BOB"))
    assert ephemeral_to(stack.slack, "U0BOB") == ["Your approval of run r_1 is recorded (1 of 1 approvals)."]


def test_approve_maps_the_slack_user_by_email_and_applies_it_via_slack(
    stack: Stack, applied: list[Any]
) -> None:
    assert stack.post(stack.click(ApprovalAction.APPROVE, "r_1", user="U0ALICE")).status_code == 200

    eventually(lambda: ephemeral_to(stack.slack, "U0ALICE"))
    assert applied == [("r_1", "alice", "APPROVE", "", "slack")]
    [info] = stack.slack.calls(path=r"users\.info$")
    assert (info.query.get("user") or info.form.get("user")) == "U0ALICE"
    assert ephemeral_to(stack.slack, "U0ALICE") == [
        "Your approval of run r_1 is recorded (1 of 2 approvals)."
    ]
    assert stack.slack.ephemeral[0]["channel"] == "C0DEPLOYS"


def test_the_slack_users_email_is_cached(stack: Stack, applied: list[Any]) -> None:
    for count, run_id in enumerate(("r_1", "r_2"), start=1):
        assert stack.post(stack.click(ApprovalAction.APPROVE, run_id)).status_code == 200
        eventually(lambda count=count: len(applied) == count)  # type: ignore[misc]
    assert len(stack.slack.calls(path=r"users\.info$")) == 1


def test_approve_through_the_real_apply_decision(stack: Stack) -> None:
    run_id = stack.add_run("r_real")
    assert stack.post(stack.click(ApprovalAction.APPROVE, run_id)).status_code == 200

    eventually(lambda: ephemeral_to(stack.slack, "U0BOB"))
    [(workflow_id, decision)] = stack.gateway.decisions
    assert workflow_id == "action:deploy:r_real"
    assert (decision.user, decision.decision, decision.via) == ("bob", "APPROVE", "slack")
    assert stack.audit(run_id) == [
        (
            "APPROVE",
            "bob",
            {"decision": "APPROVE", "comment": "", "via": "slack", "approval_status": "APPROVED"},
        )
    ]
    with stack.app.state.sessionmaker() as session:
        assert session.get(Run, run_id).approval["status"] == "APPROVED"


def test_an_ineligible_approver_is_told_privately(stack: Stack) -> None:
    run_id = stack.add_run("r_real")
    stack.gateway.refuse = DecisionRefused(403, NOT_ELIGIBLE, "alice is not an eligible approver of this run")
    assert (
        stack.post(stack.click(ApprovalAction.APPROVE, run_id, user="U0ALICE", channel="D0ALICE")).status_code
        == 200
    )

    [text] = eventually(lambda: ephemeral_to(stack.slack, "U0ALICE"))
    assert (
        text == "Your decision on run r_real was not applied: alice is not an eligible approver of this run"
    )
    assert stack.slack.ephemeral[0]["channel"] == "D0ALICE"
    assert stack.audit(run_id)[0][:2] == ("DECISION_REFUSED", "alice")


def test_a_closed_run_is_told_privately(stack: Stack) -> None:
    run_id = stack.add_run("r_done", status="SUCCESS")
    assert stack.post(stack.click(ApprovalAction.APPROVE, run_id)).status_code == 200
    [text] = eventually(lambda: ephemeral_to(stack.slack, "U0BOB"))
    assert "its approval is closed" in text and stack.gateway.decisions == []


def test_a_refusal_from_a_patched_apply_decision_is_told_privately(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise Forbidden("you requested this run; the action does not allow self-approval")

    monkeypatch.setattr(api.approvals, "apply_decision", refuse)
    assert stack.post(stack.click(ApprovalAction.APPROVE, "r_1")).status_code == 200
    [text] = eventually(lambda: ephemeral_to(stack.slack, "U0BOB"))
    assert text.endswith("the action does not allow self-approval")


def test_a_slack_user_unknown_to_gantry_is_told_privately(stack: Stack, applied: list[Any]) -> None:
    assert stack.post(stack.click(ApprovalAction.APPROVE, "r_1", user="U0CAROL")).status_code == 200
    assert stack.post(stack.click(ApprovalAction.APPROVE, "r_1", user="U0GHOST")).status_code == 200

    [carol] = eventually(lambda: ephemeral_to(stack.slack, "U0CAROL"))
    [ghost] = eventually(lambda: ephemeral_to(stack.slack, "U0GHOST"))
    assert carol == "No Gantry user has the email carol@example.com: ask an admin to add you."
    assert "cannot see the email of your Slack account" in ghost
    assert applied == []


def test_unknown_actions_and_foreign_values_are_acked_and_ignored(stack: Stack, applied: list[Any]) -> None:
    payload = block_actions(ApprovalAction.APPROVE, "r_1", "U0BOB", "C0DEPLOYS")
    payload["actions"][0]["value"] = "not-ours"
    other = block_actions(ApprovalAction.APPROVE, "r_1", "U0BOB", "C0DEPLOYS")
    other["actions"][0]["action_id"] = "someone_elses_button"
    assert stack.post(form(payload)).status_code == 200
    assert stack.post(form(other)).status_code == 200
    assert stack.post(form({"type": "shortcut", "callback_id": "x"})).status_code == 200
    assert worked_through(stack) == [] and applied == []


# ---- decline -----------------------------------------------------------------------------------


def test_decline_asks_for_a_reason_then_declines_with_it(stack: Stack, applied: list[Any]) -> None:
    click = block_actions(ApprovalAction.DECLINE, "r_1", "U0BOB", "C0DEPLOYS")
    assert stack.post(form(click)).status_code == 200

    [view] = eventually(lambda: stack.slack.views)
    [opened] = stack.slack.calls(path=r"views\.open$")
    assert opened.json["trigger_id"] == click["trigger_id"]
    assert ApprovalRef.model_validate_json(view["private_metadata"]) == ApprovalRef(
        run_id="r_1", request_id="r_1:approve", channel="C0DEPLOYS"
    )
    assert applied == []  # nothing decided until the reason comes

    response = stack.post(form(view_submission(view, "  the change window is closed ")))
    assert response.status_code == 200 and response.content == b""  # an empty 200 closes the modal
    eventually(lambda: applied)
    assert applied == [("r_1", "bob", "DECLINE", "the change window is closed", "slack")]
    [text] = eventually(lambda: ephemeral_to(stack.slack, "U0BOB"))
    assert text == "You declined run r_1." and stack.slack.ephemeral[0]["channel"] == "C0DEPLOYS"


def test_decline_through_the_real_apply_decision_refused_is_told_privately(stack: Stack) -> None:
    run_id = stack.add_run("r_real")
    assert stack.post(stack.click(ApprovalAction.DECLINE, run_id)).status_code == 200
    [view] = eventually(lambda: stack.slack.views)
    stack.gateway.refuse = DecisionRefused(409, "AlreadyDecided", "bob has already decided")
    assert stack.post(form(view_submission(view, "no"))).status_code == 200

    [text] = eventually(lambda: ephemeral_to(stack.slack, "U0BOB"))
    assert text == "Your decision on run r_real was not applied: bob has already decided"
    [(_, decision)] = stack.gateway.decisions
    assert (decision.decision, decision.comment, decision.via) == ("DECLINE", "no", "slack")


def test_a_decision_no_worker_confirmed_in_time_is_not_called_refused(stack: Stack) -> None:
    """The Update timed out: Temporal may still apply it, so the approver is not told it failed."""
    run_id = stack.add_run("r_real")
    stack.gateway.refuse = ServiceUnavailable(
        "no worker answered in time; the decision may still apply once one does: "
        "look at the run before deciding again"
    )
    assert stack.post(stack.click(ApprovalAction.APPROVE, run_id)).status_code == 200

    [text] = eventually(lambda: ephemeral_to(stack.slack, "U0BOB"))
    assert text == (
        "Your decision on run r_real is not confirmed yet: no worker answered in time; the decision "
        "may still apply once one does: look at the run before deciding again"
    )


# ---- a burst -----------------------------------------------------------------------------------


def test_a_burst_of_50_clicks_on_different_runs_is_acked_and_applied_once_each(stack: Stack) -> None:
    runs = [stack.add_run(f"r_{i:02d}") for i in range(50)]
    bodies = [stack.click(ApprovalAction.APPROVE, run_id) for run_id in runs]

    def post(body: bytes) -> int:
        return stack.post(body).status_code

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(post, bodies))

    # Every click acked (how fast, under load, is bench/approvals.py's measurement).
    assert answers == [200] * 50
    eventually(lambda: len(ephemeral_to(stack.slack, "U0BOB")) == 50, timeout=30)
    applied = sorted(workflow_id for workflow_id, _ in stack.gateway.decisions)
    assert applied == sorted(f"action:deploy:{run_id}" for run_id in runs)
    assert all(stack.audit(run_id)[0][0] == "APPROVE" for run_id in runs)
    assert len(stack.slack.calls(path=r"users\.info$")) == 1  # one look-up shared by the burst


# ---- Extend buttons of TTL timer reminders ---------------------------------------------------

TIMER_ID = "timer:environment:env-1:expires_at"
ENVIRONMENT = {
    "identifier": "environment",
    "title": "Environment",
    "schema": {"properties": {"expires_at": {"type": "string", "format": "timer"}}},
    "timers": {"expires_at": {"max_ttl": "P14D", "max_extension": "P3D", "remind_before": ["PT12H"]}},
}


@pytest.fixture
def environment(stack: Stack) -> datetime:
    """``env-1`` of team platform (Bob's), its timer armed a day ahead; its deadline."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    deadline = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    calls = [
        ("POST", "/v1/blueprints", ENVIRONMENT),
        ("POST", "/v1/teams", {"identifier": "platform", "title": "Platform"}),
        ("PATCH", "/v1/users/bob", {"teams": ["platform"]}),
        (
            "POST",
            "/v1/blueprints/environment/entities",
            {"identifier": "env-1", "team": ["platform"], "properties": {"expires_at": deadline.isoformat()}},
        ),
    ]
    for method, path, body in calls:
        response = httpx.request(method, f"{stack.url}{path}", json=body, headers=admin)
        assert response.is_success, response.text
    eventually(lambda: TIMER_ID in stack.gateway.deadlines)  # the relay armed it
    return deadline


def extend_click(by: str, user: str = "U0BOB", channel: str = "D0BOB") -> bytes:
    """What Slack posts when an Extend button of a reminder DM is clicked."""
    payload = block_actions(ApprovalAction.EXTEND_TIMER, "unused", user, channel)
    ref = TimerRef(timer_id=TIMER_ID, blueprint="environment", entity="env-1", property="expires_at", by=by)
    payload["actions"][0] |= {"block_id": "gantry_timer_actions", "value": ref.encode()}
    return form(payload)


def timer_audit(stack: Stack) -> list[tuple[str, str, dict[str, Any] | None]]:
    with stack.app.state.sessionmaker() as session:
        rows = session.scalars(
            select(AuditRecord).where(AuditRecord.resource_type == "timer").order_by(AuditRecord.id)
        )
        return [(r.operation, r.actor, r.after) for r in rows]


def test_an_extend_click_extends_the_timer_via_slack(stack: Stack, environment: datetime) -> None:
    assert stack.post(extend_click("P1D")).status_code == 200

    [text] = eventually(lambda: ephemeral_to(stack.slack, "U0BOB"))
    new_deadline = environment + timedelta(days=1)
    assert text == f"Extended to {new_deadline:%Y-%m-%d %H:%M} UTC: env-1's expires_at, by P1D."
    assert stack.slack.ephemeral[0]["channel"] == "D0BOB"
    [(timer_id, extension)] = stack.gateway.extensions
    assert (timer_id, extension) == (TIMER_ID, Extension(by="P1D", user="bob", via="slack"))
    # The entity's property, the timer record and the audit log agree.
    entity = httpx.get(
        f"{stack.url}/v1/blueprints/environment/entities/env-1",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ).json()
    assert datetime.fromisoformat(entity["properties"]["expires_at"]) == new_deadline
    with stack.app.state.sessionmaker() as session:
        record = session.get(Timer, TIMER_ID)
        assert record is not None and record.deadline == new_deadline
        assert [e["via"] for e in record.extensions] == ["slack"]
    [(operation, actor, after)] = timer_audit(stack)
    assert (operation, actor) == ("EXTEND", "bob")
    assert after is not None and (after["by"], after["via"]) == ("P1D", "slack")
    assert datetime.fromisoformat(after["deadline"]) == new_deadline


def test_an_extension_past_the_policy_is_refused_privately(stack: Stack, environment: datetime) -> None:
    reason = "extensions may add at most P3D to the first deadline"
    stack.gateway.refuse_extension = DecisionRefused(409, EXTENSION_REFUSED, reason)
    assert stack.post(extend_click("P3D")).status_code == 200

    [text] = eventually(lambda: ephemeral_to(stack.slack, "U0BOB"))
    assert text == f"env-1's expires_at was not extended: {reason}"
    [(operation, actor, after)] = timer_audit(stack)
    assert (operation, actor, after) == (
        "EXTEND_REFUSED",
        "bob",
        {"by": "P3D", "reason": reason, "via": "slack"},
    )
    with stack.app.state.sessionmaker() as session:
        record = session.get(Timer, TIMER_ID)
        assert record is not None and record.deadline == environment and record.extensions == []


def test_someone_not_owning_the_environment_cannot_extend_it(stack: Stack, environment: datetime) -> None:
    assert stack.post(extend_click("P1D", user="U0ALICE", channel="D0ALICE")).status_code == 200

    [text] = eventually(lambda: ephemeral_to(stack.slack, "U0ALICE"))
    assert text.startswith("env-1's expires_at was not extended: you may not update entity 'env-1'")
    assert stack.gateway.extensions == [] and timer_audit(stack) == []


def test_an_extend_click_with_a_foreign_value_is_ignored(stack: Stack, environment: datetime) -> None:
    payload = block_actions(ApprovalAction.EXTEND_TIMER, "r_1", "U0BOB", "D0BOB")  # an ApprovalRef value
    assert stack.post(form(payload)).status_code == 200
    worked_through(stack)
    assert stack.gateway.extensions == [] and ephemeral_to(stack.slack, "U0BOB") == []
