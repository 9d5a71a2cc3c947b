"""gitlab.pipeline against the fake GitLab API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.ci import GitLab, gitlab_project
from contracts.steps import STEP_FAILED, VENDOR_CLIENT_ERROR, VENDOR_SERVER_ERROR, StepInput
from tests.activities.conftest import POLL, Env, step
from tests.fakes.gitlab import FakeGitLab


@pytest.fixture
async def gl(gitlab: FakeGitLab) -> AsyncIterator[GitLab]:
    async with httpx.AsyncClient(base_url=gitlab.url, headers={"PRIVATE-TOKEN": gitlab.token}) as client:
        yield GitLab(client, poll_interval=POLL)


def pipeline(**params: Any) -> StepInput:
    return step("gitlab.pipeline", **{"project": "group/app", "ref": "main", **params})


async def test_pipeline_runs_to_success(env: Env, gitlab: FakeGitLab, gl: GitLab) -> None:
    gitlab.scripts.append((2, "success"))
    result = await env.run(
        gl.pipeline, pipeline(variables={"VERSION": "v2", "DRY": False}, wait_for_completion=True)
    )

    [create] = gitlab.calls("POST", "/pipeline$")
    assert create.raw_path == "/api/v4/projects/group%2Fapp/pipeline"
    assert create.headers["private-token"] == gitlab.token
    assert create.json["variables"] == [
        {"key": "VERSION", "value": "v2"},
        {"key": "DRY", "value": "false"},
        {"key": "GANTRY_RUN_ID", "value": "run-1:deploy"},
    ]
    pid = result.outputs["pipeline_id"]
    assert result.outputs == {
        "pipeline_id": pid,
        "pipeline_url": gitlab.pipelines[pid]["web_url"],
        "status": "success",
    }
    assert [h["status"] for h in env.heartbeats if h.get("status")] == ["running", "running", "success"]


async def test_failed_pipeline_fails_the_step(env: Env, gitlab: FakeGitLab, gl: GitLab) -> None:
    gitlab.scripts.append((0, "failed"))
    with pytest.raises(ApplicationError) as err:
        await env.run(gl.pipeline, pipeline(wait_for_completion=True))
    assert err.value.type == STEP_FAILED and err.value.non_retryable
    assert "/-/pipelines/" in err.value.message and "failed" in err.value.message


async def test_retry_finds_the_pipeline_by_its_gantry_variable(
    env: Env, gitlab: FakeGitLab, gl: GitLab
) -> None:
    await Env().run(gl.pipeline, pipeline(run_id="someone-else"))
    first = await Env().run(gl.pipeline, pipeline())
    result = await env.retrying().run(gl.pipeline, pipeline(project=42, wait_for_completion=True))
    assert len(gitlab.calls("POST", "/pipeline$")) == 2
    assert result.outputs["pipeline_id"] == first.outputs["pipeline_id"]
    assert result.outputs["status"] == "success"


async def test_unknown_ref_is_not_retried_with_gitlab_message(env: Env, gl: GitLab) -> None:
    with pytest.raises(ApplicationError) as err:
        await env.run(gl.pipeline, pipeline(ref="nope"))
    assert err.value.type == VENDOR_CLIENT_ERROR and err.value.non_retryable
    assert err.value.message == "GitLab 400: base: ['Reference not found']"


async def test_gitlab_down_is_retryable(env: Env, gitlab: FakeGitLab, gl: GitLab) -> None:
    gitlab.fail_next(500, {"message": "500 Internal Server Error"}, method="POST")
    with pytest.raises(ApplicationError) as err:
        await env.run(gl.pipeline, pipeline())
    assert err.value.type == VENDOR_SERVER_ERROR and not err.value.non_retryable


async def test_missing_ref_uses_the_default_branch(env: Env, gitlab: FakeGitLab, gl: GitLab) -> None:
    await env.run(gl.pipeline, pipeline(ref=None, project="https://gitlab.example/group/app.git"))
    assert gitlab.calls("POST", "/pipeline$")[0].json["ref"] == "main"


def test_project_paths_are_encoded() -> None:
    assert gitlab_project(42) == "42"
    assert gitlab_project("a/b/c") == "a%2Fb%2Fc"
    with pytest.raises(ApplicationError):
        gitlab_project("")
