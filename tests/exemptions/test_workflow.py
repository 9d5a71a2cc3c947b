"""Exemptions on Temporal's time-skipping server with the real API, worker and workflows:
requested, approved through the approval run (the requester refused), EXEMPT, and at its date
the durable timer expires it and the level drops with SCORECARD_LEVEL_CHANGED; declined and
revoked (their timers cancelled)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from slack_sdk.signature import SignatureVerifier
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import build_activities
from activities.slack_approvals import ApprovalAction, ApprovalRef
from catalog.db import utcnow
from catalog.timefmt import format_instant
from config import Settings
from contracts.exemptions import expiry_workflow_id
from devtools.testing import eventually_async
from tests.exemptions.conftest import BASE, PEOPLE, READINESS
from tests.fakes.server import serve
from tests.fakes.slack import FakeSlack
from tests.temporal_env import start_time_skipping
from tests.workflows.conftest import ADMIN_TOKEN, serve_api, stack_settings
from workflows import ALL_WORKFLOWS

SLACK_SECRET = "slack-signing-secret-exemptions"


@contextlib.asynccontextmanager
async def exemption_stack(settings: Settings, skipping: WorkflowEnvironment) -> AsyncIterator[dict[str, Any]]:
    """The API served over HTTP, a worker with every workflow and activity, and a client per person."""
    with serve_api(settings) as api_url:
        settings = settings.model_copy(update={"api_url": api_url})
        async with (
            httpx.AsyncClient(base_url=api_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin,
            Worker(
                skipping.client,
                task_queue=settings.task_queue,
                workflows=ALL_WORKFLOWS,
                activities=build_activities(settings),
            ),
        ):
            clients = {"admin": admin}
            for team in ("payments-team", "search-team", "platform"):
                assert (
                    await admin.post("/v1/teams", json={"identifier": team, "title": team})
                ).status_code == 201
            for user, (role, teams) in PEOPLE.items():
                body = {"identifier": user, "email": f"{user}@example.com", "role": role, "teams": teams}
                assert (await admin.post("/v1/users", json=body)).status_code == 201
                token = (await admin.post("/v1/tokens", json={"user": user})).json()["token"]
                clients[user] = httpx.AsyncClient(
                    base_url=api_url, headers={"Authorization": f"Bearer {token}"}
                )
            blueprint = {
                "identifier": "service",
                "title": "Service",
                "schema": {"properties": {"repo": {"type": "string"}}},
                "moderators": {"users": [], "teams": ["platform"]},
            }
            assert (await admin.post("/v1/blueprints", json=blueprint)).status_code == 201
            entity = {"identifier": "pay", "team": ["payments-team"]}
            assert (await admin.post("/v1/blueprints/service/entities", json=entity)).status_code == 201
            assert (await admin.post("/v1/blueprints/service/scorecards", json=READINESS)).status_code == 201
            try:
                yield clients
            finally:
                for user in PEOPLE:
                    await clients[user].aclose()


@pytest.fixture
async def skipping() -> AsyncIterator[WorkflowEnvironment]:
    async with start_time_skipping() as env:
        yield env


@pytest.fixture
async def people(tmp_path: Path, skipping: WorkflowEnvironment) -> AsyncIterator[dict[str, Any]]:
    settings = stack_settings(tmp_path, skipping, temporal_search_attributes=False)
    async with exemption_stack(settings, skipping) as clients:
        yield clients


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    fake = FakeSlack()
    fake.users |= {"mo@example.com": "U0MO", "olive@example.com": "U0OLIVE"}
    with serve(fake.app) as url:
        fake.url = url
        yield fake


@pytest.fixture
async def slack_people(
    tmp_path: Path, skipping: WorkflowEnvironment, fake_slack: FakeSlack
) -> AsyncIterator[dict[str, Any]]:
    """The stack with Slack configured against the fake, in the API and the worker."""
    settings = stack_settings(
        tmp_path,
        skipping,
        temporal_search_attributes=False,
        slack_bot_token=fake_slack.token,
        slack_signing_secret=SLACK_SECRET,
        slack_api_url=f"{fake_slack.url}/api",
    )
    async with exemption_stack(settings, skipping) as clients:
        yield clients


async def ask(people: dict[str, Any], days: int = 10) -> dict[str, Any]:
    body = {
        "entity": "pay",
        "rule": "has_repo",
        "reason": "the repository moves next month",
        "expires_at": format_instant(utcnow() + timedelta(days=days)),
    }
    response = await people["olive"].post(BASE, json=body)
    assert response.status_code == 201, response.text
    exemption: dict[str, Any] = response.json()
    admin = people["admin"]

    async def gate_open() -> bool:
        run = (await admin.get(f"/v1/runs/{exemption['run_id']}")).json()
        return (run.get("approval") or {}).get("status") == "PENDING"

    await eventually_async(gate_open, what="the approval run to wait for its approvers")
    return exemption


async def status_of(people: dict[str, Any], exemption: dict[str, Any], wanted: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        found: dict[str, Any] = (await people["admin"].get(f"{BASE}/{exemption['id']}")).json()
        return found if found["status"] == wanted else None

    return await eventually_async(reached, what=f"exemption {exemption['id']} to be {wanted}")


async def card(people: dict[str, Any]) -> dict[str, Any]:
    entity = (await people["admin"].get("/v1/blueprints/service/entities/pay")).json()
    found = entity["scorecards"]["readiness"]
    return {"level": found["level"], **{r["identifier"]: r["status"] for r in found["rules"]}}


async def test_approved_exempt_then_expired_by_its_timer(
    people: dict[str, Any], skipping: WorkflowEnvironment
) -> None:
    exemption = await ask(people)
    decide = f"/v1/runs/{exemption['run_id']}/approval"
    refused = await people["olive"].post(decide, json={"decision": "APPROVE"})
    assert refused.status_code == 403 and "self-approval" in refused.text
    assert (await people["oscar"].post(decide, json={"decision": "APPROVE"})).status_code == 403
    approved = await people["mo"].post(decide, json={"decision": "APPROVE", "comment": "ok for a month"})
    assert approved.status_code == 200, approved.text

    shown = await status_of(people, exemption, "APPROVED")
    assert shown["decided_by"] == "mo"
    assert await card(people) == {"level": "Silver", "has_owner": "SUCCESS", "has_repo": "EXEMPT"}
    run = (await people["admin"].get(f"/v1/runs/{exemption['run_id']}")).json()
    assert run["status"] == "SUCCESS"

    # ten days later (skipped): the timer expires it and the entity drops back
    await skipping.sleep(timedelta(days=11))
    await status_of(people, exemption, "EXPIRED")
    assert await card(people) == {"level": "Bronze", "has_owner": "SUCCESS", "has_repo": "FAILURE"}
    events = (await people["admin"].get("/v1/events?type=SCORECARD_LEVEL_CHANGED&entity=pay")).json()["items"]
    assert events[0]["scorecard"]["direction"] == "DROPPED"
    assert events[0]["scorecard"]["exemptions_ended"] == ["has_repo"]
    # the timer workflow ended with what the API answered
    handle = skipping.client.get_workflow_handle(expiry_workflow_id(exemption["id"]))
    assert await handle.result() == {"status": "EXPIRED"}


async def test_declined_and_revoked(people: dict[str, Any], skipping: WorkflowEnvironment) -> None:
    first = await ask(people)
    declined = await people["admin"].post(
        f"/v1/runs/{first['run_id']}/approval", json={"decision": "DECLINE", "comment": "add the repo"}
    )
    assert declined.status_code == 200, declined.text
    assert (await status_of(people, first, "DECLINED"))["decided_by"] == "admin"
    assert (await card(people))["has_repo"] == "FAILURE"
    await timer_cancelled(skipping, first, "the declined exemption's timer to be cancelled")

    second = await ask(people)
    approved = await people["admin"].post(
        f"/v1/runs/{second['run_id']}/approval", json={"decision": "APPROVE"}
    )
    assert approved.status_code == 200, approved.text
    await status_of(people, second, "APPROVED")
    revoked = await people["olive"].delete(f"{BASE}/{second['id']}")
    assert revoked.status_code == 200 and revoked.json()["status"] == "REVOKED"
    assert (await card(people))["level"] == "Bronze"
    await timer_cancelled(skipping, second, "the revoked exemption's timer to be cancelled")


async def timer_cancelled(skipping: WorkflowEnvironment, exemption: dict[str, Any], what: str) -> None:
    """The exemption's ExemptionExpiry workflow ends as cancelled (long before its date)."""
    handle = skipping.client.get_workflow_handle(expiry_workflow_id(exemption["id"]))

    async def cancelled() -> bool:
        return (await handle.describe()).status == WorkflowExecutionStatus.CANCELED

    await eventually_async(cancelled, what=what)


def click(run_id: str, slack_user: str) -> tuple[bytes, dict[str, str]]:
    """A signed Approve click on the approval's Slack message, as Slack posts it."""
    value = ApprovalRef(run_id=run_id, request_id=f"{run_id}:action").encode()
    payload = {
        "type": "block_actions",
        "user": {"id": slack_user, "team_id": "T0GANTRY"},
        "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": "D0DM"},
        "channel": {"id": "D0DM"},
        "actions": [{"type": "button", "action_id": ApprovalAction.APPROVE.value, "value": value}],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(SLACK_SECRET).generate_signature(timestamp=timestamp, body=body) or ""
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
    }
    return body, headers


async def test_a_moderator_approves_from_slack(slack_people: dict[str, Any], fake_slack: FakeSlack) -> None:
    people = slack_people
    exemption = await ask(people)

    def asked_mo() -> bool:
        # a direct message to each approver (mo's conversation is D0MO), never to olive
        return any(channel == "D0MO" for channel, _ts in fake_slack.messages)

    await eventually_async(asked_mo, what="the approval request in mo's Slack")
    anonymous = httpx.AsyncClient(base_url=str(people["admin"].base_url))
    async with anonymous:
        body, headers = click(exemption["run_id"], "U0OLIVE")
        assert (
            await anonymous.post("/v1/slack/interactions", content=body, headers=headers)
        ).status_code == 200
        assert (await people["admin"].get(f"{BASE}/{exemption['id']}")).json()["status"] == "PENDING"
        body, headers = click(exemption["run_id"], "U0MO")
        assert (
            await anonymous.post("/v1/slack/interactions", content=body, headers=headers)
        ).status_code == 200
    shown = await status_of(people, exemption, "APPROVED")
    assert shown["decided_by"] == "mo"
    assert (await card(people))["has_repo"] == "EXEMPT"
    assert not any(channel == "D0OLIVE" for channel, _ts in fake_slack.messages)
