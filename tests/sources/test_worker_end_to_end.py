"""A pull sync end to end: the real API (SQLite) over HTTP, the worker's workflow and activities
on a Temporal dev server, and the fake GitHub org. A sync creates entities; a later sync whose
page keeps failing is PARTIAL and deletes nothing, although a repository disappeared."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from devtools.testing import eventually_async
from tests.api.conftest import SERVICE_BLUEPRINT, SYSTEM_BLUEPRINT
from tests.fakes.github_org import FakeGitHubOrg
from tests.sources.live_stack import github_portal
from tests.sources.worker_fixtures import running
from tests.temporal_env import start_dev_server

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
    async with github_portal(tmp_path, temporal, github_server, "e2e") as api:
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
