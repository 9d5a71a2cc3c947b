"""github.workflow_dispatch against the fake GitHub API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.ci import GitHubActions, parse_github_repo
from contracts.steps import STEP_FAILED, VENDOR_CLIENT_ERROR, VENDOR_SERVER_ERROR, StepInput
from devtools.testing import eventually_async
from tests.activities.conftest import POLL, Env, step
from tests.fakes.github import FakeGitHub, RunScript, Workflow

DISPATCH = "/actions/workflows/deploy.yml/dispatches"


@pytest.fixture
async def actions(github: FakeGitHub) -> AsyncIterator[GitHubActions]:
    headers = {"Authorization": f"Bearer {github.token}"}
    async with httpx.AsyncClient(base_url=github.url, headers=headers) as client:
        yield GitHubActions(client, poll_interval=POLL, discovery_timeout=2)


def dispatch(**params: Any) -> StepInput:
    defaults = {"repo": "acme/payments", "workflow": "deploy.yml", "ref": "main", "inputs": {"version": "v2"}}
    return step("github.workflow_dispatch", **{**defaults, **params})


async def test_dispatch_waits_for_the_run_and_heartbeats(
    env: Env, github: FakeGitHub, actions: GitHubActions
) -> None:
    github.scripts.append(RunScript(conclusion="success", polls=3))
    result = await env.run(
        actions.workflow_dispatch, dispatch(wait_for_completion=True, inputs={"version": "v2", "dry": True})
    )

    [call] = github.calls("POST", DISPATCH)
    assert call.json == {
        "ref": "main",
        "inputs": {"version": "v2", "dry": "true", "gantry_run_id": "run-1:deploy"},
    }
    run = github.runs[result.outputs["run_id"]]
    assert result.outputs == {
        "run_id": run["id"],
        "run_url": run["html_url"],
        "status": "completed",
        "conclusion": "success",
    }
    assert result.links[0].url == run["html_url"]
    polls = [h for h in env.heartbeats if isinstance(h, dict) and h.get("status")]
    assert [h["status"] for h in polls] == ["in_progress"] * 3 + ["completed"]
    assert all(h["run_id"] == run["id"] for h in polls)


async def test_without_wait_it_returns_the_queued_run(
    env: Env, github: FakeGitHub, actions: GitHubActions
) -> None:
    result = await env.run(actions.workflow_dispatch, dispatch())
    assert result.outputs["status"] == "queued" and result.outputs["conclusion"] is None
    assert len(github.calls("GET", r"/actions/runs/\d+$")) == 0


async def test_failed_conclusion_fails_the_step_with_the_run_url(
    env: Env, github: FakeGitHub, actions: GitHubActions
) -> None:
    github.scripts.append(RunScript(conclusion="failure", polls=1))
    with pytest.raises(ApplicationError) as err:
        await env.run(actions.workflow_dispatch, dispatch(wait_for_completion=True))
    assert err.value.type == STEP_FAILED and err.value.non_retryable
    [run] = github.runs.values()
    assert run["html_url"] in err.value.message and "failure" in err.value.message


async def test_workflow_without_gantry_input_is_found_by_ref_and_time(
    env: Env, github: FakeGitHub, actions: GitHubActions
) -> None:
    github.workflows["deploy.yml"] = Workflow("Deploy", inputs={"version"}, run_name_has_gantry_id=False)
    older = github.add_run("deploy.yml", status="in_progress", conclusion=None)
    github.add_run("deploy.yml", head_branch="other")
    github.scripts.append(RunScript(hidden_for_lists=2))  # GitHub lists new runs late
    result = await env.run(actions.workflow_dispatch, dispatch(repo="https://github.com/acme/payments.git"))

    first, second = github.calls("POST", DISPATCH)
    assert "gantry_run_id" in first.json["inputs"] and second.json["inputs"] == {"version": "v2"}
    [ours] = [r for r in github.runs.values() if r.get("inputs")]
    assert result.outputs["run_id"] == ours["id"] != older["id"]


async def test_retry_finds_the_run_an_earlier_attempt_dispatched(
    env: Env, github: FakeGitHub, actions: GitHubActions
) -> None:
    first = await Env().run(actions.workflow_dispatch, dispatch())
    # The worker died before its heartbeat reached Temporal: the retry has no progress to go on.
    result = await env.retrying(attempt=2).run(actions.workflow_dispatch, dispatch(wait_for_completion=True))
    assert len(github.calls("POST", DISPATCH)) == 1
    assert result.outputs["run_id"] == first.outputs["run_id"]
    assert result.outputs["conclusion"] == "success"


async def test_retry_with_heartbeat_resumes_the_run_without_listing(
    env: Env, github: FakeGitHub, actions: GitHubActions
) -> None:
    run = github.add_run("deploy.yml", status="in_progress", conclusion=None)
    github.runs[run["id"]]["_script"] = RunScript(conclusion="success", polls=1)
    result = await env.retrying(progress={"run_id": run["id"]}).run(
        actions.workflow_dispatch, dispatch(wait_for_completion=True)
    )
    assert result.outputs["run_id"] == run["id"]
    assert github.calls("POST") == [] and github.calls("GET", "/runs$") == []


async def test_retry_after_dispatch_without_title_match_uses_the_dispatch_time(
    env: Env, github: FakeGitHub, actions: GitHubActions
) -> None:
    github.workflows["deploy.yml"] = Workflow("Deploy", inputs={"version"}, run_name_has_gantry_id=False)
    await Env().run(actions.workflow_dispatch, dispatch())
    from datetime import UTC, datetime, timedelta

    dispatched_at = (datetime.now(UTC) - timedelta(seconds=2)).isoformat()
    result = await env.retrying(progress={"dispatched_at": dispatched_at}).run(
        actions.workflow_dispatch, dispatch()
    )
    assert len(github.calls("POST", DISPATCH)) == 2  # the first attempt's dispatch and its 422 fallback only
    assert result.outputs["run_id"] in github.runs


async def test_first_attempt_never_reuses_a_run(env: Env, github: FakeGitHub, actions: GitHubActions) -> None:
    await Env().run(actions.workflow_dispatch, dispatch())
    await env.run(actions.workflow_dispatch, dispatch(run_id="run-2"))
    assert len(github.calls("POST", DISPATCH)) == 2


async def test_bad_credentials_are_not_retried(env: Env, github: FakeGitHub) -> None:
    async with httpx.AsyncClient(base_url=github.url, headers={"Authorization": "Bearer nope"}) as client:
        with pytest.raises(ApplicationError) as err:
            await env.run(GitHubActions(client, poll_interval=POLL).workflow_dispatch, dispatch())
    assert err.value.type == VENDOR_CLIENT_ERROR and err.value.non_retryable
    assert err.value.message == "GitHub 401: Bad credentials"


async def test_unknown_workflow_is_not_retried(env: Env, actions: GitHubActions) -> None:
    with pytest.raises(ApplicationError) as err:
        await env.run(actions.workflow_dispatch, dispatch(workflow="nope.yml"))
    assert err.value.non_retryable and "404: Not Found" in err.value.message


async def test_server_error_on_dispatch_is_retryable(
    env: Env, github: FakeGitHub, actions: GitHubActions
) -> None:
    github.fail_next(502, {"message": "Server Error"}, method="POST", path=DISPATCH)
    with pytest.raises(ApplicationError) as err:
        await env.run(actions.workflow_dispatch, dispatch())
    assert err.value.type == VENDOR_SERVER_ERROR and not err.value.non_retryable
    assert github.runs == {}


async def test_cancelling_the_step_cancels_the_run(
    env: Env, github: FakeGitHub, actions: GitHubActions
) -> None:
    github.scripts.append(RunScript(polls=10_000))
    task = asyncio.ensure_future(env.run(actions.workflow_dispatch, dispatch(wait_for_completion=True)))
    await eventually_async(
        lambda: len([h for h in env.heartbeats if isinstance(h, dict) and h.get("status")]) >= 2,
        what="two heartbeats with the build's status",
    )
    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [run] = github.runs.values()
    assert run["conclusion"] == "cancelled"
    assert len(github.calls("POST", r"/runs/\d+/cancel$")) == 1


async def test_missing_ref_uses_the_default_branch(
    env: Env, github: FakeGitHub, actions: GitHubActions
) -> None:
    await env.run(actions.workflow_dispatch, dispatch(ref=None))
    assert github.calls("POST", DISPATCH)[0].json["ref"] == "main"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("acme/app", "acme/app"),
        ("https://github.com/acme/app", "acme/app"),
        ("https://github.com/acme/app.git", "acme/app"),
        ("https://ghe.example/acme/app/tree/main", "acme/app"),
    ],
)
def test_parse_repo(text: str, expected: str) -> None:
    assert parse_github_repo(text) == expected


@pytest.mark.parametrize("text", ["", "acme", "a/b/c", "https://github.com/acme"])
def test_parse_repo_refuses(text: str) -> None:
    with pytest.raises(ApplicationError):
        parse_github_repo(text)
