"""jira.create_issue / jira.transition / jira.comment against the fake Jira."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.ticketing import Jira, gantry_label
from contracts.steps import STEP_FAILED, VENDOR_CLIENT_ERROR, VENDOR_SERVER_ERROR, StepInput
from tests.activities.conftest import Env, step
from tests.fakes.jira import FakeJira


@pytest.fixture
async def tickets(jira: FakeJira) -> AsyncIterator[Jira]:
    async with httpx.AsyncClient(base_url=jira.url, auth=(jira.user, jira.token)) as client:
        yield Jira(client, index_lag=0.01)


def create(**params: Any) -> StepInput:
    defaults = {
        "project": "OPS",
        "issue_type": "Task",
        "summary": "Readiness dropped",
        "description": "Silver -> Bronze",
        "labels": ["readiness"],
        "fields": {"priority": {"name": "High"}},
    }
    return step("jira.create_issue", step_id="ticket", **{**defaults, **params})


@pytest.mark.parametrize("cloud", [False, True])
async def test_create_issue_labels_it_and_returns_its_browse_url(
    env: Env, jira: FakeJira, tickets: Jira, cloud: bool
) -> None:
    jira.cloud = cloud
    result = await env.run(tickets.create_issue, create())

    [call] = jira.calls("POST", "/issue$")
    fields = call.json["fields"]
    assert fields["project"] == {"key": "OPS"} and fields["issuetype"] == {"name": "Task"}
    assert fields["labels"] == ["readiness", "gantry-run-1-ticket"]
    assert fields["priority"] == {"name": "High"} and fields["description"] == "Silver -> Bronze"
    assert result.outputs == {"key": "OPS-1", "id": "10000", "url": f"{jira.url}/browse/OPS-1"}
    # Cloud answers /search/jql; Server 404s it and answers /search (remembered for next time).
    search = jira.calls("GET", "/search")[-1]
    assert search.path == ("/rest/api/2/search/jql" if cloud else "/rest/api/2/search")
    assert search.query["jql"] == 'labels = "gantry-run-1-ticket" ORDER BY created ASC'


async def test_retried_create_finds_the_issue_instead_of_making_another(
    env: Env, jira: FakeJira, tickets: Jira
) -> None:
    jira.cloud = True
    first = await Env().run(tickets.create_issue, create())
    again = await env.retrying().run(tickets.create_issue, create())
    assert again.outputs == first.outputs
    assert len(jira.calls("POST", "/issue$")) == 1
    assert "earlier attempt" in again.log[0]


async def test_retry_searches_again_when_the_index_lags(env: Env, jira: FakeJira, tickets: Jira) -> None:
    first = await Env().run(tickets.create_issue, create())
    jira.index_lag = 1
    again = await env.retrying().run(tickets.create_issue, create())
    assert again.outputs == first.outputs
    assert len(jira.calls("POST", "/issue$")) == 1


async def test_field_errors_are_not_retried(env: Env, jira: FakeJira, tickets: Jira) -> None:
    with pytest.raises(ApplicationError) as err:
        await env.run(tickets.create_issue, create(project="NOPE"))
    assert err.value.type == VENDOR_CLIENT_ERROR and err.value.non_retryable
    assert err.value.message == "Jira 400: project: valid project is required"


async def test_jira_500_once_is_retryable_then_succeeds(env: Env, jira: FakeJira, tickets: Jira) -> None:
    jira.fail_next(500, {"errorMessages": ["Internal server error"]}, method="POST")
    with pytest.raises(ApplicationError) as err:
        await env.run(tickets.create_issue, create())
    assert err.value.type == VENDOR_SERVER_ERROR and not err.value.non_retryable
    result = await env.retrying().run(tickets.create_issue, create())
    assert result.outputs["key"] == "OPS-1"
    assert len(jira.issues) == 1


async def test_missing_summary_is_a_bad_param(env: Env, tickets: Jira) -> None:
    with pytest.raises(ApplicationError) as err:
        await env.run(tickets.create_issue, create(summary=""))
    assert err.value.type == STEP_FAILED and err.value.non_retryable


@pytest.mark.parametrize("transition", ["Resolve", "resolve", "21", "Done"])
async def test_transition_by_name_id_or_target_status(
    env: Env, jira: FakeJira, tickets: Jira, transition: str
) -> None:
    jira.add_issue("OPS-7")
    result = await env.run(tickets.transition, step("jira.transition", issue="OPS-7", transition=transition))
    assert jira.calls("POST", "/transitions$")[0].json == {"transition": {"id": "21"}}
    assert jira.issues["OPS-7"]["fields"]["status"] == {"name": "Done"}
    assert result.outputs["status"] == "Done"


async def test_transition_retried_after_it_went_through_succeeds(
    env: Env, jira: FakeJira, tickets: Jira
) -> None:
    jira.add_issue("OPS-7", status="In Progress")
    result = await env.retrying().run(
        tickets.transition,
        step("jira.transition", issue=f"{jira.url}/browse/OPS-7", transition="In Progress"),
    )
    assert result.outputs["status"] == "In Progress"
    assert jira.calls("POST") == []


async def test_unknown_transition_lists_the_available_ones(env: Env, jira: FakeJira, tickets: Jira) -> None:
    jira.add_issue("OPS-7")
    with pytest.raises(ApplicationError) as err:
        await env.run(tickets.transition, step("jira.transition", issue="OPS-7", transition="Reopen"))
    assert err.value.non_retryable and "Start progress (11), Resolve (21)" in err.value.message


async def test_missing_issue_is_not_retried(env: Env, tickets: Jira) -> None:
    with pytest.raises(ApplicationError) as err:
        await env.run(tickets.transition, step("jira.transition", issue="OPS-404", transition="Resolve"))
    assert err.value.type == VENDOR_CLIENT_ERROR and "404: Issue does not exist" in err.value.message


async def test_comment_once_even_when_retried(env: Env, jira: FakeJira, tickets: Jira) -> None:
    jira.add_issue("OPS-7")
    comment = step("jira.comment", step_id="note", issue="OPS-7", body="Deployed v2")
    first = await Env().run(tickets.comment, comment)
    again = await env.retrying().run(tickets.comment, comment)
    assert again.outputs == first.outputs
    assert len(jira.issues["OPS-7"]["comments"]) == 1
    assert jira.calls("POST", "/comment$")[0].json["properties"] == [
        {"key": "gantry", "value": {"idempotency_key": "run-1:note"}}
    ]


def test_labels_are_jira_safe() -> None:
    assert gantry_label("run 1:step/a") == "gantry-run-1-step-a"
    assert len(gantry_label("x" * 1000)) <= 255
