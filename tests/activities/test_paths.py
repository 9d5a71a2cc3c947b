"""Identifiers are data, never paths: the catalog refuses ``.``/``..`` segments in entity
identifiers, and the worker percent-encodes every segment it builds from data (and refuses
``.``/``..`` itself) — against the real API and the fake vendors that record what they got."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.catalog import CatalogActivities, GantryApi
from activities.ci import GitHubActions, GitLab, Jenkins
from activities.ticketing import Jira
from api.app import create_app
from config import Settings
from contracts.steps import STEP_FAILED
from tests.activities.conftest import POLL, Env, step
from tests.fakes.github import FakeGitHub
from tests.fakes.gitlab import FakeGitLab
from tests.fakes.jenkins import FakeJenkins
from tests.fakes.jira import FakeJira
from tests.fakes.server import serve

ADMIN_TOKEN = "admin-paths-token"
SERVICE_TOKEN = "service-paths-token"
CLIMBING = "../../../users/alice"


@pytest.fixture
def api_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    settings = Settings(
        database_url=database_url, data_dir=tmp_path, admin_token=ADMIN_TOKEN, service_token=SERVICE_TOKEN
    )
    with serve(create_app(settings), lifespan="on") as url:
        yield url


@pytest.fixture
def admin(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        blueprint = {
            "identifier": "service",
            "title": "Service",
            "relations": {"depends_on": {"target": "service", "many": True}},
        }
        assert client.post("/v1/blueprints", json=blueprint).status_code == 201
        alice = {"identifier": "alice", "email": "alice@example.com"}
        assert client.post("/v1/users", json=alice).status_code == 201
        yield client


@pytest.fixture
async def worker_api(api_url: str) -> AsyncIterator[tuple[CatalogActivities, list[str]]]:
    """The worker's catalog activities with the service token; the raw paths it sent."""
    sent: list[str] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request.url.raw_path.decode())

    async with httpx.AsyncClient(
        base_url=api_url,
        headers={"Authorization": f"Bearer {SERVICE_TOKEN}"},
        event_hooks={"request": [record]},
    ) as client:
        yield CatalogActivities(GantryApi(client)), sent


def _pointers(response: httpx.Response) -> list[str]:
    return [d["pointer"] for d in response.json()["error"]["details"]]


@pytest.mark.parametrize("identifier", [CLIMBING, "..", ".", "a/./b", "svc/.."])
def test_catalog_refuses_dot_segments_everywhere_entities_are_written(
    admin: httpx.Client, identifier: str
) -> None:
    single = admin.post("/v1/blueprints/service/entities", json={"identifier": identifier})
    assert single.status_code == 422 and _pointers(single) == ["/identifier"]
    assert "'.' or '..'" in single.text
    upsert = admin.post("/v1/blueprints/service/entities?upsert=true", json={"identifier": identifier})
    assert upsert.status_code == 422 and _pointers(upsert) == ["/identifier"]
    bulk = admin.post("/v1/blueprints/service/entities/bulk", json={"entities": [{"identifier": identifier}]})
    (result,) = bulk.json()["results"]
    assert result["status"] != "created"
    assert [d["pointer"] for d in result["error"]["details"]] == ["/entities/0/identifier"]
    stub = admin.post(
        "/v1/blueprints/service/entities?create_missing_related_entities=true",
        json={"identifier": "api", "relations": {"depends_on": [identifier]}},
    )
    assert stub.status_code == 422 and _pointers(stub) == ["/relations/depends_on"]
    assert admin.get("/v1/blueprints/service/entities").json()["items"] == []


def test_dots_inside_a_segment_stay_allowed(admin: httpx.Client) -> None:
    for identifier in ("api.v2", "...", ".hidden/x..y"):
        created = admin.post("/v1/blueprints/service/entities", json={"identifier": identifier})
        assert created.status_code == 201, created.text


async def test_worker_never_sends_a_climbing_identifier(
    admin: httpx.Client, worker_api: tuple[CatalogActivities, list[str]]
) -> None:
    activities, sent = worker_api
    request = step("catalog.delete_entity", blueprint="service", identifier=CLIMBING)
    with pytest.raises(ApplicationError) as refused:
        await Env().run(activities.delete_entity, request)
    assert refused.value.type == STEP_FAILED and refused.value.non_retryable
    assert sent == []
    assert admin.get("/v1/users/alice").status_code == 200


async def test_worker_encodes_an_identifier_with_a_slash_as_one_segment(
    admin: httpx.Client, worker_api: tuple[CatalogActivities, list[str]]
) -> None:
    assert admin.post("/v1/blueprints/service/entities", json={"identifier": "team-a/api"}).status_code == 201
    activities, sent = worker_api
    result = await Env().run(
        activities.delete_entity, step("catalog.delete_entity", blueprint="service", identifier="team-a/api")
    )
    assert result.outputs == {"deleted": True}
    assert sent == ["/v1/blueprints/service/entities/team-a%2Fapi"]
    assert admin.get("/v1/blueprints/service/entities/team-a/api").status_code == 404


async def test_worker_refuses_climbing_upserts_before_sending(
    worker_api: tuple[CatalogActivities, list[str]],
) -> None:
    activities, sent = worker_api
    with pytest.raises(ApplicationError, match="not a usable URL path segment"):
        await Env().run(
            activities.upsert_entity,
            step("catalog.upsert_entity", blueprint="service", identifier="x/../../users/alice"),
        )
    with pytest.raises(ApplicationError, match="not a usable URL path segment"):
        await Env().run(
            activities.upsert_entity, step("catalog.upsert_entity", blueprint="..", identifier="svc")
        )
    assert sent == []


# ---- vendors ------------------------------------------------------------------------------


async def _refused(env: Env, fn: Any, *args: Any) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await env.run(fn, *args)
    assert caught.value.type == STEP_FAILED and caught.value.non_retryable
    return caught.value


async def test_github_repo_and_workflow_are_segments(github: FakeGitHub) -> None:
    async with httpx.AsyncClient(
        base_url=github.url, headers={"Authorization": f"Bearer {github.token}"}
    ) as client:
        actions = GitHubActions(client, poll_interval=POLL, discovery_timeout=1)
        await _refused(
            Env(), actions.workflow_dispatch, step("github.workflow_dispatch", repo="../users", workflow="x")
        )
        await _refused(
            Env(), actions.workflow_dispatch, step("github.workflow_dispatch", repo="acme/app", workflow="..")
        )
    assert github.requests == []


async def test_gitlab_project_is_one_segment(gitlab: FakeGitLab) -> None:
    async with httpx.AsyncClient(base_url=gitlab.url, headers={"PRIVATE-TOKEN": gitlab.token}) as client:
        ci = GitLab(client, poll_interval=POLL)
        await _refused(Env(), ci.pipeline, step("gitlab.pipeline", project="..", ref="main"))
        with pytest.raises(ApplicationError):
            await Env().run(ci.pipeline, step("gitlab.pipeline", project="../../user", ref="main"))
    assert [r.raw_path for r in gitlab.requests] == ["/api/v4/projects/..%2F..%2Fuser/pipeline"]


async def test_jenkins_job_refuses_dot_segments(jenkins: FakeJenkins) -> None:
    async with httpx.AsyncClient(base_url=jenkins.url, auth=(jenkins.user, jenkins.token)) as client:
        ci = Jenkins(client, poll_interval=POLL)
        await _refused(Env(), ci.build, step("jenkins.build", job="team/../../credentials"))
    assert jenkins.requests == []


async def test_jira_issue_is_one_segment(jira: FakeJira) -> None:
    sent: list[str] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request.url.raw_path.decode())

    async with httpx.AsyncClient(
        base_url=jira.url, auth=(jira.user, jira.token), event_hooks={"request": [record]}
    ) as client:
        tickets = Jira(client, index_lag=0.01)
        await _refused(Env(), tickets.comment, step("jira.comment", issue="..", body="hi"))
        with pytest.raises(ApplicationError):
            await Env().run(tickets.comment, step("jira.comment", issue="../../myself", body="hi"))
    assert sent == ["/rest/api/2/issue/..%2F..%2Fmyself/comment"]
