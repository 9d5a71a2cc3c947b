"""slack.post_message through slack-sdk's AsyncWebClient against the fake Slack."""

from __future__ import annotations

from datetime import timedelta

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from temporalio.exceptions import ApplicationError

from activities.slack import SlackMessages
from contracts.steps import STEP_FAILED, VENDOR_CLIENT_ERROR, VENDOR_SERVER_ERROR
from tests.activities.conftest import Env, step
from tests.fakes.slack import FakeSlack


@pytest.fixture
def messages(slack: FakeSlack) -> SlackMessages:
    return SlackMessages(AsyncWebClient(token=slack.token, base_url=f"{slack.url}/api/"))


async def test_post_message(env: Env, slack: FakeSlack, messages: SlackMessages) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Deploying* v2"}}]
    result = await env.run(
        messages.post_message,
        step("slack.post_message", channel="C0DEPLOYS", text="Deploying v2", blocks=blocks),
    )
    ts = result.outputs["ts"]
    assert result.outputs == {"channel": "C0DEPLOYS", "ts": ts}
    stored = slack.messages[("C0DEPLOYS", ts)]
    assert stored["text"] == "Deploying v2" and stored["blocks"] == blocks
    assert stored["metadata"]["event_payload"] == {"idempotency_key": "run-1:deploy"}
    [call] = slack.calls("POST", "chat.postMessage")
    assert call.headers["authorization"] == f"Bearer {slack.token}"


async def test_channel_not_found_is_not_retried(env: Env, messages: SlackMessages) -> None:
    with pytest.raises(ApplicationError) as err:
        await env.run(messages.post_message, step("slack.post_message", channel="C0NOPE", text="hi"))
    assert err.value.type == VENDOR_CLIENT_ERROR and err.value.non_retryable
    assert err.value.message == "Slack 200: channel_not_found"


async def test_rate_limit_is_retryable_after_retry_after(
    env: Env, slack: FakeSlack, messages: SlackMessages
) -> None:
    slack.rate_limit_next(retry_after=3)
    with pytest.raises(ApplicationError) as err:
        await env.run(messages.post_message, step("slack.post_message", channel="C0DEPLOYS", text="hi"))
    assert err.value.type == VENDOR_SERVER_ERROR and not err.value.non_retryable
    assert err.value.next_retry_delay == timedelta(seconds=3)


async def test_slack_internal_error_is_retryable(env: Env, slack: FakeSlack, messages: SlackMessages) -> None:
    slack.error_next("internal_error")
    with pytest.raises(ApplicationError) as err:
        await env.run(messages.post_message, step("slack.post_message", channel="C0DEPLOYS", text="hi"))
    assert not err.value.non_retryable


async def test_bad_token_is_not_retried(env: Env, slack: FakeSlack) -> None:
    bad = SlackMessages(AsyncWebClient(token="xoxb-wrong", base_url=f"{slack.url}/api/"))
    with pytest.raises(ApplicationError) as err:
        await env.run(bad.post_message, step("slack.post_message", channel="C0DEPLOYS", text="hi"))
    assert err.value.non_retryable and "invalid_auth" in err.value.message


async def test_missing_text_is_a_bad_param(env: Env, messages: SlackMessages) -> None:
    with pytest.raises(ApplicationError) as err:
        await env.run(messages.post_message, step("slack.post_message", channel="C0DEPLOYS"))
    assert err.value.type == STEP_FAILED


async def test_fake_speaks_the_calls_approvals_need(slack: FakeSlack) -> None:
    client = AsyncWebClient(token=slack.token, base_url=f"{slack.url}/api/")
    user = await client.users_lookupByEmail(email="bob@example.com")
    dm = await client.conversations_open(users=user["user"]["id"])
    posted = await client.chat_postMessage(channel=dm["channel"]["id"], text="Approve?")
    updated = await client.chat_update(channel=posted["channel"], ts=posted["ts"], text="Approved by bob")
    await client.chat_postEphemeral(channel="C0DEPLOYS", user="U0BOB", text="only you")
    view = await client.views_open(
        trigger_id="t1", view={"type": "modal", "title": {"type": "plain_text", "text": "x"}}
    )
    assert updated["text"] == "Approved by bob" and view["view"]["id"] == "V0001"
    assert [c.path for c in slack.calls()] == [
        "/api/users.lookupByEmail",
        "/api/conversations.open",
        "/api/chat.postMessage",
        "/api/chat.update",
        "/api/chat.postEphemeral",
        "/api/views.open",
    ]
