"""slack.notify_timer_owners against the fake Slack."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from temporalio.exceptions import ApplicationError

from activities.slack_approvals import ApprovalAction
from activities.slack_timers import SlackTimers, TimerNotice, TimerOwner, TimerRef
from tests.activities.conftest import Env
from tests.fakes.slack import FakeSlack

BOB = TimerOwner("bob", "bob@example.com", "Bob")
ALICE = TimerOwner("alice", "alice@example.com", "Alice")
CAROL = TimerOwner("carol", "carol@example.com", "Carol")  # no Slack account


@pytest.fixture
def timers(slack: FakeSlack) -> SlackTimers:
    return SlackTimers(AsyncWebClient(token=slack.token, base_url=f"{slack.url}/api/"))


def reminder(*owners: TimerOwner) -> TimerNotice:
    return TimerNotice(
        "reminder",
        "timer:environment:env-1:expires_at",
        "environment",
        "env-1",
        "expires_at",
        owners=list(owners),
        deadline="2030-01-06T10:00:00+00:00",
    )


def failure(*owners: TimerOwner) -> TimerNotice:
    return TimerNotice(
        "teardown_failed",
        "timer:environment:env-1:expires_at",
        "environment",
        "env-1",
        "expires_at",
        owners=list(owners),
        text="Cleanup of env-1 after its expires_at expired needs attention: 'destroy' ended FAILURE: boom",
    )


def posted(slack: FakeSlack) -> list[dict[str, Any]]:
    return [c.json for c in slack.calls("POST", r"chat\.postMessage$")]


def buttons(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]


async def test_a_reminder_dms_each_owner_with_two_extend_buttons(
    env: Env, slack: FakeSlack, timers: SlackTimers
) -> None:
    log = await env.run(timers.notify_timer_owners, reminder(BOB, ALICE))

    assert [p["channel"] for p in posted(slack)] == ["D0BOB", "D0ALICE"]
    message = posted(slack)[0]
    assert message["text"] == "⏰ env-1's expires_at expires at 2030-01-06 10:00 UTC"
    bob = buttons(message["blocks"])
    assert [b["text"]["text"] for b in bob] == ["Extend 1 day", "Extend 3 days"]
    assert {b["action_id"] for b in bob} == {ApprovalAction.EXTEND_TIMER.value}
    assert [json.loads(b["value"]) for b in bob] == [
        {
            "timer_id": "timer:environment:env-1:expires_at",
            "blueprint": "environment",
            "entity": "env-1",
            "property": "expires_at",
            "by": by,
        }
        for by in ("P1D", "P3D")
    ]
    assert TimerRef.model_validate_json(bob[1]["value"]).by == "P3D"
    assert log[0].startswith("Slack: reminder sent to bob (bob@example.com) (D0BOB ")
    assert len(log) == 2


async def test_a_teardown_failure_is_the_failure_text_without_buttons(
    env: Env, slack: FakeSlack, timers: SlackTimers
) -> None:
    await env.run(timers.notify_timer_owners, failure(BOB))

    [message] = posted(slack)
    assert message["text"] == failure().text
    assert buttons(message["blocks"]) == []
    assert "FAILURE: boom" in message["blocks"][0]["text"]["text"]


async def test_an_owner_without_slack_is_logged_and_the_others_still_get_it(
    env: Env, slack: FakeSlack, timers: SlackTimers
) -> None:
    log = await env.run(timers.notify_timer_owners, reminder(CAROL, BOB))

    assert [p["channel"] for p in posted(slack)] == ["D0BOB"]
    assert log[0] == "Slack: reminder not sent to carol (carol@example.com): no Slack account with that email"


async def test_slack_failing_on_its_side_is_retryable(
    env: Env, slack: FakeSlack, timers: SlackTimers
) -> None:
    slack.rate_limit_next(retry_after=7, method="users.lookupByEmail")
    with pytest.raises(ApplicationError) as err:
        await env.run(timers.notify_timer_owners, reminder(BOB))
    assert not err.value.non_retryable and posted(slack) == []


async def test_a_retry_after_a_partial_attempt_dms_each_owner_once(
    env: Env, slack: FakeSlack, timers: SlackTimers
) -> None:
    # What a first attempt that reached Bob and then failed left behind (same execution: same metadata).
    await env.run(timers.notify_timer_owners, reminder(BOB))

    log = await env.retrying(attempt=2).run(timers.notify_timer_owners, reminder(BOB, ALICE))

    assert [p["channel"] for p in posted(slack)] == ["D0BOB", "D0ALICE"]  # Bob's was found, not re-sent
    assert log[0].startswith("Slack: reminder sent to bob") and log[1].startswith(
        "Slack: reminder sent to alice"
    )
    again = await env.retrying(attempt=3).run(timers.notify_timer_owners, reminder(BOB, ALICE))
    assert len(posted(slack)) == 2 and len(again) == 2


async def test_a_later_reminder_is_a_new_message(env: Env, slack: FakeSlack, timers: SlackTimers) -> None:
    await env.run(timers.notify_timer_owners, reminder(BOB))
    env.info = dataclasses.replace(env.info, activity_id="2")  # the next reminder's own execution
    await env.retrying(attempt=2).run(timers.notify_timer_owners, reminder(BOB))
    assert [p["channel"] for p in posted(slack)] == ["D0BOB", "D0BOB"]


async def test_without_slack_it_only_logs(env: Env) -> None:
    log = await env.run(SlackTimers(None).notify_timer_owners, reminder(BOB))
    assert log == ["Slack is not configured: env-1's owners were not messaged"]
