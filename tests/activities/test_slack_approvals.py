"""slack.request_approval and slack.update_approval against the fake Slack."""

from __future__ import annotations

import dataclasses
import json

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from temporalio.exceptions import ApplicationError

from activities.slack_approvals import ApprovalAction, ApprovalRef, SlackApprovals
from contracts.approvals import (
    ApprovalMessages,
    ApprovalOutcome,
    ApprovalRequest,
    Approver,
    SlackMessage,
)
from tests.activities.conftest import Env
from tests.fakes.slack import FakeSlack

BOB = Approver("bob", "bob@example.com", "Bob")
ALICE = Approver("alice", "alice@example.com", "Alice")
CAROL = Approver("carol", "carol@example.com", "Carol")  # no Slack account


@pytest.fixture
def approvals(slack: FakeSlack) -> SlackApprovals:
    return SlackApprovals(AsyncWebClient(token=slack.token, base_url=f"{slack.url}/api/"), "http://gantry")


def request(**changes: object) -> ApprovalRequest:
    fields: dict[str, object] = {
        "run_id": "r_1",
        "request_id": "r_1:approve",
        "action_title": "Deploy service",
        "requester": "dave",
        "entity": "payments",
        "inputs": {"version": "v2", "environment": "production", "db_password": "********"},
        "required_approvals": 1,
        "expires_at": "2030-01-01T12:00:00Z",
        "run_url": "http://gantry/v1/runs/r_1",
        "temporal_ui_url": "http://temporal/namespaces/default/workflows/action:deploy:r_1",
        "approvers": [BOB, ALICE],
        "channel": "C0DEPLOYS",
    }
    fields.update(changes)
    return ApprovalRequest(**fields)  # type: ignore[arg-type]


def posts(slack: FakeSlack) -> list[str]:
    return [c.json["channel"] for c in slack.calls("POST", r"chat\.postMessage$")]


def buttons(blocks: list[dict[str, object]]) -> list[dict[str, object]]:
    return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]  # type: ignore[attr-defined]


async def test_posts_to_the_channel_and_dms_each_approver_by_email(
    env: Env, slack: FakeSlack, approvals: SlackApprovals
) -> None:
    sent = await env.run(approvals.request_approval, request())

    assert posts(slack) == ["C0DEPLOYS", "D0BOB", "D0ALICE"]
    assert [m.channel for m in sent.messages] == ["C0DEPLOYS", "D0BOB", "D0ALICE"]
    assert [c.query.get("email") or c.form.get("email") for c in slack.calls(path="lookupByEmail")] == [
        "bob@example.com",
        "alice@example.com",
    ]
    message = slack.messages[("D0BOB", sent.messages[1].ts)]
    assert message["text"] == "Approval needed: Deploy service on payments, requested by dave"
    rendered = json.dumps(message["blocks"])
    for shown in ("dave", "payments", "v2", "production", "********", "2030-01-01T12:00:00Z"):
        assert shown in rendered
    assert "<http://gantry/v1/runs/r_1|Open run r_1>" in rendered and "|Temporal UI>" in rendered
    approve, decline = buttons(message["blocks"])
    assert (approve["action_id"], decline["action_id"]) == (ApprovalAction.APPROVE, ApprovalAction.DECLINE)
    assert json.loads(str(approve["value"])) == {"run_id": "r_1", "request_id": "r_1:approve"}
    assert ApprovalRef.model_validate_json(str(decline["value"])).request_id == "r_1:approve"
    assert message["metadata"]["event_payload"]["recipient"] == "user:bob"
    assert "Slack: asked user:bob" in sent.log[1]


async def test_an_approver_without_slack_is_logged_not_fatal(
    env: Env, slack: FakeSlack, approvals: SlackApprovals
) -> None:
    sent = await env.run(approvals.request_approval, request(approvers=[CAROL, BOB], channel=None))

    assert posts(slack) == ["D0BOB"]
    assert [m.channel for m in sent.messages] == ["D0BOB"]
    assert "Slack: not sent to carol (carol@example.com): no Slack account with that email" in sent.log


async def test_an_unknown_channel_is_logged_and_dms_still_go(
    env: Env, slack: FakeSlack, approvals: SlackApprovals
) -> None:
    sent = await env.run(approvals.request_approval, request(channel="C0GONE", approvers=[BOB]))

    assert [m.channel for m in sent.messages] == ["D0BOB"]
    assert "Slack: not posted to channel:C0GONE: Slack error channel_not_found" in sent.log


async def test_a_retry_after_a_partial_attempt_posts_each_recipient_once(
    env: Env, slack: FakeSlack, approvals: SlackApprovals
) -> None:
    # The channel post lands, then Slack fails while opening Bob's DM: a retryable failure.
    slack.error_next("internal_error", method="conversations.open")
    with pytest.raises(ApplicationError) as err:
        await env.run(approvals.request_approval, request())
    assert not err.value.non_retryable
    assert posts(slack) == ["C0DEPLOYS"]

    sent = await env.retrying(attempt=2).run(approvals.request_approval, request())

    assert posts(slack) == ["C0DEPLOYS", "D0BOB", "D0ALICE"]
    assert len(slack.messages) == 3
    assert [m.channel for m in sent.messages] == ["C0DEPLOYS", "D0BOB", "D0ALICE"]
    assert {(m.channel, m.ts) for m in sent.messages} == set(slack.messages)


async def test_a_retry_after_everything_was_posted_posts_nothing(
    env: Env, slack: FakeSlack, approvals: SlackApprovals
) -> None:
    first = await env.run(approvals.request_approval, request())
    # e.g. the worker died before reporting the result: the next attempt finds every message.
    again = await env.retrying(attempt=3).run(approvals.request_approval, request())

    assert len(posts(slack)) == 3 and len(slack.messages) == 3
    assert again.messages == first.messages
    assert all(c.query.get("include_all_metadata") for c in slack.calls(path=r"conversations\.history$"))


async def test_the_first_attempt_does_not_read_history(
    env: Env, slack: FakeSlack, approvals: SlackApprovals
) -> None:
    await env.run(approvals.request_approval, request())
    assert slack.calls(path=r"conversations\.history$") == []


async def test_a_retry_without_history_scope_posts_rather_than_gives_up(
    env: Env, slack: FakeSlack, approvals: SlackApprovals
) -> None:
    slack.error_next("missing_scope", method="conversations.history")
    sent = await env.retrying(attempt=2).run(
        approvals.request_approval, request(channel=None, approvers=[BOB])
    )
    assert [m.channel for m in sent.messages] == ["D0BOB"]


async def test_reminders_go_to_the_listed_approvers_as_new_messages(
    env: Env, slack: FakeSlack, approvals: SlackApprovals
) -> None:
    await env.run(approvals.request_approval, request())
    # A reminder is a new activity execution (its own activity id), even on a retry.
    env.info = dataclasses.replace(env.info, activity_id="reminder-1")
    reminded = await env.retrying(attempt=2).run(
        approvals.request_approval, request(reminder=True, channel=None, approvers=[ALICE])
    )

    assert posts(slack) == ["C0DEPLOYS", "D0BOB", "D0ALICE", "D0ALICE"]
    [message] = reminded.messages
    stored = slack.messages[(message.channel, message.ts)]
    assert stored["text"].startswith("Reminder: approval needed: Deploy service")
    assert stored["blocks"][0]["text"]["text"].startswith("Reminder: ")
    assert len(buttons(stored["blocks"])) == 2
    assert reminded.log == [f"Slack: reminded user:alice (D0ALICE {message.ts})"]


async def test_rate_limits_are_retried_later(env: Env, slack: FakeSlack, approvals: SlackApprovals) -> None:
    slack.rate_limit_next(retry_after=7)
    with pytest.raises(ApplicationError) as err:
        await env.run(approvals.request_approval, request(approvers=[]))
    assert not err.value.non_retryable and err.value.next_retry_delay is not None


async def test_update_replaces_every_message_with_the_outcome_and_no_buttons(
    env: Env, slack: FakeSlack, approvals: SlackApprovals
) -> None:
    sent = await env.run(approvals.request_approval, request())
    gone = SlackMessage("D0BOB", "1.000001")  # deleted since: logged, not fatal
    outcome = ApprovalOutcome("r_1", "r_1:approve", "APPROVED", "Approved by alice", [*sent.messages, gone])

    await env.run(approvals.update_approval, outcome)

    updates = slack.calls("POST", r"chat\.update$")
    assert len(updates) == 4
    for message in sent.messages:
        stored = slack.messages[(message.channel, message.ts)]
        assert stored["text"] == "Approved by alice"
        assert "Approved by alice" in json.dumps(stored["blocks"])
        assert buttons(stored["blocks"]) == []


async def test_update_is_retried_when_slack_fails(
    env: Env, slack: FakeSlack, approvals: SlackApprovals
) -> None:
    sent = await env.run(approvals.request_approval, request(approvers=[]))
    slack.error_next("internal_error", method="chat.update")
    outcome = ApprovalOutcome("r_1", "r_1:approve", "DECLINED", "Declined by bob", sent.messages)
    with pytest.raises(ApplicationError):
        await env.run(approvals.update_approval, outcome)
    await env.run(approvals.update_approval, outcome)
    assert slack.messages[(sent.messages[0].channel, sent.messages[0].ts)]["text"] == "Declined by bob"


async def test_without_slack_the_request_says_how_to_decide(env: Env, slack: FakeSlack) -> None:
    approvals = SlackApprovals(None, "http://gantry")
    sent = await env.run(approvals.request_approval, request())
    await env.run(approvals.update_approval, ApprovalOutcome("r_1", "r_1:approve", "APPROVED", "ok"))

    assert sent == ApprovalMessages(
        log=["Slack is not configured: approvers decide with POST /v1/runs/r_1/approval"]
    )
    assert slack.calls() == []
