"""The ``DataSourceSync`` workflow on a Temporal dev server with the real ``sources.*``
activities, the fake GitHub org and the fake sync catalog: a sync ends SUCCESS, PARTIAL or
FAILURE as its resources did, a schedule starts syncs, and a worker SIGKILLed mid-sync
resumes at the page it was on with nothing counted twice."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleSpec,
)
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.sources import build_source_activities
from config import Settings
from contracts.search_attributes import GANTRY_DATA_SOURCE
from contracts.sources import SCHEDULED, SyncCompletion, SyncInput, SyncStatus, schedule_id, sync_workflow_id
from devtools.processes import WorkerProcess, gantry_env
from devtools.testing import eventually_async
from tests.fakes.github_org import FakeGitHubOrg
from tests.fakes.sync_catalog import FakeSyncCatalog
from tests.sources.worker_fixtures import running, settings_for
from tests.temporal_env import start_dev_server
from workflows.data_source_sync import DataSourceSync

pytestmark = pytest.mark.temporal


@pytest.fixture(scope="module")
async def temporal() -> AsyncIterator[WorkflowEnvironment]:
    async with start_dev_server() as env:
        yield env


@pytest.fixture(scope="module")
def github_server() -> Iterator[FakeGitHubOrg]:
    yield from running(FakeGitHubOrg())


@pytest.fixture
def github(github_server: FakeGitHubOrg) -> FakeGitHubOrg:
    github_server.reset()
    return github_server


def sync_settings(catalog: FakeSyncCatalog, github: FakeGitHubOrg) -> Settings:
    return settings_for(
        catalog,
        github_token=FakeGitHubOrg.token,
        github_api_url=github.url,
        task_queue=f"sources-{uuid.uuid4().hex[:8]}",
    )


async def sync(client: Client, settings: Settings, source: str, sync_id: str = "s1") -> SyncCompletion:
    async with Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[DataSourceSync],
        activities=build_source_activities(settings),
    ):
        return await client.execute_workflow(
            DataSourceSync.run,
            SyncInput(data_source=source, sync_id=sync_id, trigger="API"),
            id=sync_workflow_id(source, sync_id),
            task_queue=settings.task_queue,
        )


async def test_a_sync_pulls_every_resource_and_completes_success(
    temporal: WorkflowEnvironment, catalog: FakeSyncCatalog, github: FakeGitHubOrg
) -> None:
    github.add_repos(120)
    github.add_team("platform")
    catalog.add_source("gh", "github", {"org": "acme"}, "repository", "team")
    completion = await sync(temporal.client, sync_settings(catalog, github), "gh")
    assert completion.status == SyncStatus.SUCCESS and completion.errors == []
    record = catalog.syncs["gh", "s1"]
    assert record["status"] == "SUCCESS" and record["trigger"] == "API" and record["counts"]["seen"] == 121
    assert len(catalog.items("gh", "s1", 0)) == 120 and catalog.items("gh", "s1", 1)[0]["slug"] == "platform"
    described = await temporal.client.get_workflow_handle(sync_workflow_id("gh", "s1")).describe()
    assert described.typed_search_attributes.get(GANTRY_DATA_SOURCE) == "gh"


async def test_a_page_that_keeps_failing_makes_the_sync_partial(
    temporal: WorkflowEnvironment, catalog: FakeSyncCatalog, github: FakeGitHubOrg
) -> None:
    github.add_repos(250)
    github.add_team("platform")
    github.fail_page("repos", 2, 500, times=10)
    catalog.add_source("gh", "github", {"org": "acme"}, "repository", "team", "deployment")
    completion = await sync(temporal.client, sync_settings(catalog, github), "gh")
    assert completion.status == SyncStatus.PARTIAL
    errors = {e.resource: e.message for e in completion.errors}
    assert set(errors) == {0, 2}
    assert "GitHub 500" in errors[0]
    assert "github has no resource kind 'deployment'" in errors[2]
    record = catalog.syncs["gh", "s1"]
    assert record["status"] == "PARTIAL" and [e["resource"] for e in record["errors"]] == [0, 2]
    # The pages before the failure and the other resources still reached the catalog.
    assert len(catalog.items("gh", "s1", 0)) == 100 and len(catalog.items("gh", "s1", 1)) == 1
    # Retried (4 attempts), each from the page that failed.
    assert [r.query.get("page") for r in github.calls("GET", "/orgs/acme/repos")] == [
        None,
        "2",
        "2",
        "2",
        "2",
    ]


async def test_a_sync_where_nothing_could_be_pulled_fails(
    temporal: WorkflowEnvironment, catalog: FakeSyncCatalog, github: FakeGitHubOrg
) -> None:
    catalog.add_source("gh", "github", {"org": "acme"}, "environment")
    completion = await sync(temporal.client, sync_settings(catalog, github), "gh")
    assert completion.status == SyncStatus.FAILURE
    assert catalog.syncs["gh", "s1"]["status"] == "FAILURE"


async def test_a_source_the_catalog_does_not_answer_fails_the_sync_with_its_reason(
    temporal: WorkflowEnvironment, catalog: FakeSyncCatalog, github: FakeGitHubOrg
) -> None:
    catalog.sources["gone"] = {"identifier": "gone", "kind": "github", "config": {}, "resources": []}
    catalog.fail_next(403, {"error": {"code": "forbidden", "message": "not yours"}}, method="GET")
    completion = await sync(temporal.client, sync_settings(catalog, github), "gone")
    assert completion.status == SyncStatus.FAILURE and "403" in completion.errors[0].message
    assert catalog.syncs["gone", "s1"]["status"] == "FAILURE"


async def test_a_schedule_starts_syncs_that_name_themselves_after_their_workflow_id(
    temporal: WorkflowEnvironment, catalog: FakeSyncCatalog, github: FakeGitHubOrg
) -> None:
    github.add_repos(3)
    catalog.add_source("sched", "github", {"org": "acme"}, "repository")
    settings = sync_settings(catalog, github)
    client = temporal.client
    handle = await client.create_schedule(
        schedule_id(f"sched-{uuid.uuid4().hex[:6]}"),
        Schedule(
            action=ScheduleActionStartWorkflow(
                "DataSourceSync",
                SyncInput(data_source="sched"),
                id=sync_workflow_id("sched", SCHEDULED),
                task_queue=settings.task_queue,
            ),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
        ),
    )
    try:
        async with Worker(
            client,
            task_queue=settings.task_queue,
            workflows=[DataSourceSync],
            activities=build_source_activities(settings),
        ):
            await handle.trigger()

            async def completed() -> dict[str, Any]:
                done = [r for (s, _), r in catalog.syncs.items() if s == "sched" and r["status"] == "SUCCESS"]
                assert done
                return done[0]

            record = await eventually_async(completed, timeout=30)
    finally:
        await handle.delete()
    assert record["id"].startswith(f"{SCHEDULED}-") and record["trigger"] == "SCHEDULE"
    assert len(catalog.items("sched", record["id"])) == 3


@pytest.mark.slow
async def test_a_worker_killed_mid_sync_resumes_at_its_page_and_counts_nothing_twice(
    temporal: WorkflowEnvironment, catalog: FakeSyncCatalog, github: FakeGitHubOrg, tmp_path: Path
) -> None:
    github.add_repos(450)
    catalog.add_source("gh", "github", {"org": "acme"}, "repository")
    held = github.hold_page("repos", 3)
    settings = sync_settings(catalog, github)
    env = gantry_env(
        temporal_address=temporal.client.service_client.config.target_host,
        task_queue=settings.task_queue,
        api_url=catalog.url,
        service_token=FakeSyncCatalog.token,
        github_api_url=github.url,
        github_token=FakeGitHubOrg.token,
        data_dir=tmp_path,
        temporal_search_attributes="true",
    )
    worker = await asyncio.to_thread(WorkerProcess(env, tmp_path / "worker.log").start)
    try:
        handle = await temporal.client.start_workflow(
            DataSourceSync.run,
            SyncInput(data_source="gh", sync_id="s1", trigger="API"),
            id=sync_workflow_id("gh", "s1"),
            task_queue=settings.task_queue,
        )

        async def heartbeated_page_three() -> bool:
            pending = (await handle.describe()).raw_description.pending_activities
            assert pending and pending[0].heartbeat_details.payloads
            return b"page=3" in pending[0].heartbeat_details.payloads[0].data

        # The pull is waiting on page 3 and Temporal holds its cursor: kill the worker there.
        await eventually_async(heartbeated_page_three, timeout=60)
        worker.kill()
        held.set()
        worker = await asyncio.to_thread(WorkerProcess(env, tmp_path / "worker-2.log").start)
        result = await handle.result()
    finally:
        held.set()
        worker.kill()
    assert result.status == SyncStatus.SUCCESS
    pages = [r.query.get("page") for r in github.calls("GET", "/orgs/acme/repos")]
    assert pages.count(None) == 1 and pages.count("2") == 1 and pages.count("5") == 1
    names = [item["full_name"] for item in catalog.items("gh", "s1")]
    assert names == [f"acme/svc-{n:04d}" for n in range(450)]
    assert catalog.syncs["gh", "s1"]["counts"]["seen"] == 450
