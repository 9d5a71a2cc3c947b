"""A pull sync end to end: the real API (SQLite) over HTTP, the worker's workflow and activities
on a Temporal dev server, and the fake GitHub org. A sync creates entities; a later sync whose
page keeps failing is PARTIAL and deletes nothing, although a repository disappeared."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import build_activities
from config import Settings
from devtools.testing import eventually_async
from tests.api.conftest import ADMIN_TOKEN, SERVICE_BLUEPRINT, SERVICE_TOKEN, SYSTEM_BLUEPRINT
from tests.fakes.github_org import FakeGitHubOrg
from tests.sources.worker_fixtures import running
from tests.temporal_env import start_dev_server
from tests.workflows.conftest import serve_api
from workflows import ALL_WORKFLOWS

pytestmark = pytest.mark.temporal

SOURCE: dict[str, Any] = {
    "identifier": "github_acme",
    "kind": "github",
    "config": {"org": "acme"},
    "delete_stale": True,
    "deletion_threshold": 0.9,
    "create_missing_related_entities": True,
    "resources": [
        {
            "kind": "repository",
            "selector": {"query": ".archived == false"},
            "port": {
                "entity": {
                    "mappings": {
                        "identifier": ".name",
                        "title": ".name",
                        "blueprint": '"service"',
                        "team": '"payments-team"',
                        "properties": {"repo": ".html_url", "language": ".language | ascii_downcase"},
                        "relations": {"system": ".topics[0]"},
                    }
                }
            },
        }
    ],
}


@pytest.fixture(scope="module")
async def temporal() -> AsyncIterator[WorkflowEnvironment]:
    async with start_dev_server() as env:
        yield env


@pytest.fixture(scope="module")
def github_server() -> Iterator[FakeGitHubOrg]:
    yield from running(FakeGitHubOrg())


@pytest.fixture
async def portal(
    tmp_path: Path, temporal: WorkflowEnvironment, github_server: FakeGitHubOrg
) -> AsyncIterator[httpx.AsyncClient]:
    github_server.reset()
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'catalog.db'}",
        temporal_address=temporal.client.service_client.config.target_host,
        task_queue=f"sources-e2e-{uuid.uuid4().hex[:8]}",
        admin_token=ADMIN_TOKEN,
        service_token=SERVICE_TOKEN,
        secret_key="secret-key-e2e",
        github_token=FakeGitHubOrg.token,
        github_api_url=github_server.url,
    )
    with serve_api(settings) as api_url:
        settings = settings.model_copy(update={"api_url": api_url})
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with (
            httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as api,
            Worker(
                temporal.client,
                task_queue=settings.task_queue,
                workflows=ALL_WORKFLOWS,
                activities=build_activities(settings),
            ),
        ):
            for path, body in (
                ("/v1/teams", {"identifier": "payments-team", "title": "Payments"}),
                ("/v1/blueprints", SYSTEM_BLUEPRINT),
                ("/v1/blueprints", SERVICE_BLUEPRINT),
                ("/v1/data-sources", SOURCE),
            ):
                created = await api.post(path, json=body)
                assert created.status_code == 201, created.text
            yield api


async def run_sync(api: httpx.AsyncClient) -> dict[str, Any]:
    started = await api.post("/v1/data-sources/github_acme/syncs")
    assert started.status_code == 202, started.text
    sync_id = started.json()["id"]

    async def ended() -> dict[str, Any] | None:
        record = (await api.get(f"/v1/data-sources/github_acme/syncs/{sync_id}")).json()
        return record if record["status"] != "RUNNING" else None

    return await eventually_async(ended, timeout=60)


async def test_a_sync_creates_entities_and_a_partial_one_deletes_nothing(
    portal: httpx.AsyncClient, github_server: FakeGitHubOrg
) -> None:
    github = github_server
    github.add_repos(150)
    github.add_repo("legacy", archived=True)
    first = await run_sync(portal)
    assert first["status"] == "SUCCESS", first
    assert first["counts"]["seen"] == 150 and first["counts"]["created"] == 150
    entity = (await portal.get("/v1/blueprints/service/entities/svc-0007")).json()
    assert entity["properties"]["repo"] == "https://github.example/acme/svc-0007"
    assert entity["properties"]["language"] == "python"
    assert entity["relations"]["system"] == "payments"
    assert (await portal.get("/v1/blueprints/service/entities/legacy")).status_code == 404

    # svc-0000 is gone upstream, and the second page keeps failing: nothing may be deleted.
    github.repos = [r for r in github.repos if r["name"] != "svc-0000"]
    github.fail_page("repos", 2, 500, times=10)
    second = await run_sync(portal)
    assert second["status"] == "PARTIAL", second
    assert (await portal.get("/v1/blueprints/service/entities/svc-0000")).status_code == 200
    assert second["counts"]["unchanged"] == 99  # page 1: the archived legacy repository and 99 services
