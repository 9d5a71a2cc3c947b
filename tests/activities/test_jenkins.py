"""jenkins.build against the fake Jenkins: crumb, queue item, build."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.ci import Jenkins, jenkins_job_path
from contracts.steps import STEP_FAILED, VENDOR_CLIENT_ERROR, StepInput
from tests.activities.conftest import POLL, Env, step
from tests.fakes.jenkins import FakeJenkins


@pytest.fixture
async def ci(jenkins: FakeJenkins) -> AsyncIterator[Jenkins]:
    async with httpx.AsyncClient(base_url=jenkins.url, auth=(jenkins.user, jenkins.token)) as client:
        yield Jenkins(client, poll_interval=POLL)


def build(**params: Any) -> StepInput:
    return step("jenkins.build", **{"job": "team/deploy", "parameters": {"VERSION": "v2"}, **params})


async def test_build_follows_crumb_queue_and_build(env: Env, jenkins: FakeJenkins, ci: Jenkins) -> None:
    jenkins.scripts.append((2, 2, "SUCCESS"))
    result = await env.run(ci.build, build())

    assert len(jenkins.calls("GET", "/crumbIssuer")) == 1
    [trigger] = jenkins.calls("POST")
    assert trigger.path == "/job/team/job/deploy/buildWithParameters"
    assert trigger.headers["jenkins-crumb"] and "JSESSIONID" in trigger.headers["cookie"]
    assert trigger.form == {"VERSION": "v2", "GANTRY_RUN_ID": "run-1:deploy"}
    assert len(jenkins.calls("GET", "/queue/item/")) == 3
    url = f"{jenkins.url}/job/team/job/deploy/1/"
    assert result.outputs == {"build_number": 1, "build_url": url, "result": "SUCCESS"}
    assert {"build_url": url, "status": "SUCCESS"} in env.heartbeats


async def test_without_crumb_issuer_and_parameters(env: Env, jenkins: FakeJenkins, ci: Jenkins) -> None:
    jenkins.crumbs_enabled = False
    jenkins.jobs["plain"] = {"parameterized": False, "builds": []}
    result = await env.run(ci.build, build(job="plain", parameters={}))
    [trigger] = jenkins.calls("POST")
    assert trigger.path == "/job/plain/build" and "jenkins-crumb" not in trigger.headers
    assert result.outputs["result"] == "SUCCESS"


async def test_failed_build_fails_the_step(env: Env, jenkins: FakeJenkins, ci: Jenkins) -> None:
    jenkins.scripts.append((0, 0, "FAILURE"))
    with pytest.raises(ApplicationError) as err:
        await env.run(ci.build, build())
    assert err.value.type == STEP_FAILED and err.value.non_retryable
    assert "/job/team/job/deploy/1/" in err.value.message and "FAILURE" in err.value.message


async def test_no_wait_returns_the_running_build(env: Env, jenkins: FakeJenkins, ci: Jenkins) -> None:
    jenkins.scripts.append((0, 5, "SUCCESS"))
    result = await env.run(ci.build, build(wait_for_completion=False))
    assert result.outputs["result"] is None and result.outputs["build_number"] == 1


async def test_retry_with_queue_item_resumes_without_a_second_build(
    env: Env, jenkins: FakeJenkins, ci: Jenkins
) -> None:
    jenkins.scripts.append((3, 0, "SUCCESS"))
    await Env().run(ci.build, build(wait_for_completion=False))
    queue_url = f"{jenkins.url}/queue/item/7/"
    result = await env.retrying(progress={"queue_url": queue_url}).run(ci.build, build())
    assert len(jenkins.calls("POST")) == 1
    assert result.outputs["build_number"] == 1


async def test_retry_without_heartbeat_finds_the_build_by_parameter(
    env: Env, jenkins: FakeJenkins, ci: Jenkins
) -> None:
    await Env().run(ci.build, build(run_id="other"))
    await Env().run(ci.build, build())
    result = await env.retrying().run(ci.build, build())
    assert len(jenkins.calls("POST")) == 2
    assert result.outputs["build_number"] == 2


async def test_wrong_token_is_not_retried(env: Env, jenkins: FakeJenkins) -> None:
    jenkins.crumbs_enabled = False
    async with httpx.AsyncClient(base_url=jenkins.url, auth=("bot", "wrong")) as client:
        with pytest.raises(ApplicationError) as err:
            await env.run(Jenkins(client, poll_interval=POLL).build, build())
    assert err.value.type == VENDOR_CLIENT_ERROR and err.value.message == "Jenkins 401: Unauthorized"


def test_job_paths() -> None:
    assert jenkins_job_path("a/b c/d") == "/job/a/job/b%20c/job/d"
    with pytest.raises(ApplicationError):
        jenkins_job_path("")
