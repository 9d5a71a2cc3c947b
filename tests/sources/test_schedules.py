"""Schedules and API syncs on a real Temporal dev server: saving a pull source with a
``schedule`` creates, updates or deletes ``datasource:{id}``; ``POST .../syncs`` starts
``sync:{id}:{sync_id}``. With Temporal down: a 503 with Retry-After and nothing half-done."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from temporalio.client import Client, ScheduleActionStartWorkflow
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from config import Settings
from contracts.search_attributes import GANTRY_DATA_SOURCE
from tests.api.conftest import ADMIN_TOKEN, SERVICE_BLUEPRINT, SERVICE_TOKEN, SYSTEM_BLUEPRINT
from tests.sources.catalog_fixtures import github_source
from tests.temporal_env import free_port, start_dev_server


def _client(database_url: str, tmp_path: Path, temporal_address: str) -> TestClient:
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path,
        admin_token=ADMIN_TOKEN,
        service_token=SERVICE_TOKEN,
        temporal_address=temporal_address,
        task_queue="sources-schedules",
    )
    return TestClient(create_app(settings), raise_server_exceptions=False)


def _seeded(client: TestClient) -> TestClient:
    client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    assert client.post("/v1/blueprints", json=SYSTEM_BLUEPRINT).status_code == 201
    assert client.post("/v1/blueprints", json=SERVICE_BLUEPRINT).status_code == 201
    return client


@pytest.fixture
def down(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with _client(database_url, tmp_path, f"127.0.0.1:{free_port()}") as client:
        yield _seeded(client)


def test_temporal_down_is_a_503_and_nothing_is_saved(down: TestClient) -> None:
    response = down.post("/v1/data-sources", json=github_source(schedule="PT1H"))
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert down.get("/v1/data-sources/github_acme").status_code == 404
    # without a schedule nothing needs Temporal
    assert down.post("/v1/data-sources", json=github_source()).status_code == 201
    assert down.put("/v1/data-sources/github_acme", json=github_source(schedule="PT1H")).status_code == 503
    assert down.get("/v1/data-sources/github_acme").json()["schedule"] is None


def test_temporal_down_ends_an_api_sync_as_not_started(down: TestClient) -> None:
    assert down.post("/v1/data-sources", json=github_source()).status_code == 201
    assert down.post("/v1/data-sources/github_acme/syncs").status_code == 503
    (record,) = down.get("/v1/data-sources/github_acme/syncs").json()["items"]
    assert record["status"] == "FAILURE" and record["trigger"] == "API" and record["ended_at"]
    assert "not started" in record["errors"][0]["message"]


@pytest.fixture(scope="module")
async def temporal() -> AsyncIterator[WorkflowEnvironment]:
    async with start_dev_server() as env:
        yield env


async def _interval(client: Client, identifier: str) -> timedelta | None:
    try:
        described = await client.get_schedule_handle(f"datasource:{identifier}").describe()
    except RPCError:
        return None
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == "DataSourceSync" and action.id == f"sync:{identifier}:scheduled"
    assert action.task_queue == "sources-schedules"
    (interval,) = described.schedule.spec.intervals
    return interval.every


async def test_saving_a_source_keeps_its_schedule_in_step(
    temporal: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> None:
    target = temporal.client.service_client.config.target_host
    with _client(database_url, tmp_path, target) as raw:
        api = _seeded(raw)
        assert api.post("/v1/data-sources", json=github_source(schedule="PT1H")).status_code == 201
        assert await _interval(temporal.client, "github_acme") == timedelta(hours=1)
        assert (
            api.put("/v1/data-sources/github_acme", json=github_source(schedule="PT30M")).status_code == 200
        )
        assert await _interval(temporal.client, "github_acme") == timedelta(minutes=30)
        assert api.put("/v1/data-sources/github_acme", json=github_source()).status_code == 200
        assert await _interval(temporal.client, "github_acme") is None
        assert api.put("/v1/data-sources/github_acme", json=github_source(schedule="PT2H")).status_code == 200
        assert await _interval(temporal.client, "github_acme") == timedelta(hours=2)
        assert api.delete("/v1/data-sources/github_acme").status_code == 204
        assert await _interval(temporal.client, "github_acme") is None


async def test_an_api_sync_starts_its_workflow_after_its_record(
    temporal: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> None:
    target = temporal.client.service_client.config.target_host
    with _client(database_url, tmp_path, target) as raw:
        api = _seeded(raw)
        assert api.post("/v1/data-sources", json=github_source("api_sync")).status_code == 201
        started = api.post("/v1/data-sources/api_sync/syncs")
        assert started.status_code == 202, started.text
        record = started.json()
        assert record["status"] == "RUNNING" and record["trigger"] == "API"
        handle = temporal.client.get_workflow_handle(f"sync:api_sync:{record['id']}")
        described = await handle.describe()
        assert described.workflow_type == "DataSourceSync"
        assert described.typed_search_attributes.get(GANTRY_DATA_SOURCE) == "api_sync"
        await handle.terminate("test over")
