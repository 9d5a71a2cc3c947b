"""A launch whose API process died after committing the run and before starting its workflow.

Two API apps share one catalog: the first one's Temporal is a recorder that starts nothing (it
commits the run, then "dies" before the start reaches Temporal); the second one talks to a real
Temporal (the time-skipping server) with a worker. The client retrying the launch with the same
idempotency key on the second app starts the workflow, once; the reconciler starts one nobody
retries; after the start grace, or once its entity is gone, such a run ends as never started.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import build_activities
from api.app import create_app
from api.services.runs import WORKFLOW_START_GRACE
from catalog.db import make_engine, utcnow
from catalog.models import Run
from catalog.runs.service import NEVER_STARTED
from config import Settings
from devtools.testing import eventually_async
from tests.api.conftest import SERVICE_BLUEPRINT, SYSTEM_BLUEPRINT
from tests.api.test_run_service import MAKE, Recorder
from tests.temporal_env import start_time_skipping
from tests.workflows.conftest import ADMIN_TOKEN, SERVICE_TOKEN, serve_api, stack_settings
from workflows import ALL_WORKFLOWS

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SERVICE = {"Authorization": f"Bearer {SERVICE_TOKEN}"}


@pytest.fixture(scope="module")
async def skipping() -> AsyncIterator[WorkflowEnvironment]:
    """One time-skipping server for the module (each test has its own catalog and task queue)."""
    async with start_time_skipping() as env:
        yield env


@pytest.fixture
def settings(tmp_path: Path, skipping: WorkflowEnvironment) -> Settings:
    return stack_settings(tmp_path, skipping, temporal_search_attributes=False)


@pytest.fixture
def dying(settings: Settings) -> Iterator[tuple[TestClient, Recorder]]:
    """The API process that commits runs and dies before starting their workflows."""
    recorder = Recorder()
    with TestClient(create_app(settings, temporal=recorder), raise_server_exceptions=False) as client:  # type: ignore[arg-type]
        client.headers.update(ADMIN)
        for blueprint in (SYSTEM_BLUEPRINT, SERVICE_BLUEPRINT):
            assert client.post("/v1/blueprints", json=blueprint).status_code == 201
        assert client.post("/v1/actions", json=MAKE).status_code == 201
        yield client, recorder


@pytest.fixture
async def alive(settings: Settings, skipping: WorkflowEnvironment) -> AsyncIterator[httpx.AsyncClient]:
    """The other API process, on Temporal with a worker."""
    with serve_api(settings) as url:
        worker_settings = settings.model_copy(update={"api_url": url})
        async with (
            httpx.AsyncClient(base_url=url, headers=ADMIN, timeout=30) as client,
            Worker(
                skipping.client,
                task_queue=settings.task_queue,
                workflows=ALL_WORKFLOWS,
                activities=build_activities(worker_settings),
            ),
        ):
            yield client


def _committed_not_started(dying: tuple[TestClient, Recorder], key: str) -> dict[str, Any]:
    client, recorder = dying
    response = client.post("/v1/actions/make_service/runs", json={"idempotency_key": key})
    assert response.status_code == 202, response.text
    assert recorder.started[-1][1]["workflow_id"] == response.json()["workflow_id"]
    run: dict[str, Any] = response.json()
    return run


async def _ended(alive: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        run: dict[str, Any] = (await alive.get(f"/v1/runs/{run_id}")).json()
        return run if run["status"] not in ("IN_PROGRESS", "WAITING_FOR_APPROVAL") else None

    ended: dict[str, Any] = await eventually_async(
        done, timeout=30, interval=0.1, what=f"run {run_id} to end"
    )
    return ended


async def test_the_retried_launch_or_the_reconciler_starts_a_recorded_run_once(
    dying: tuple[TestClient, Recorder], alive: httpx.AsyncClient, skipping: WorkflowEnvironment
) -> None:
    # The client retries on the live process with the same key: the same run, started now.
    run = _committed_not_started(dying, "deploy-1")
    again = await alive.post("/v1/actions/make_service/runs", json={"idempotency_key": "deploy-1"})
    assert again.status_code == 200 and again.json()["id"] == run["id"]
    handle = skipping.client.get_workflow_handle(run["workflow_id"])
    first = await handle.describe()
    assert (await _ended(alive, run["id"]))["status"] == "SUCCESS"
    # Asked once more after it ended: nothing is started again (one execution ever).
    assert (
        await alive.post("/v1/actions/make_service/runs", json={"idempotency_key": "deploy-1"})
    ).status_code == 200
    after = await handle.describe()
    assert (after.run_id, after.status) == (first.run_id, WorkflowExecutionStatus.COMPLETED)

    # Nobody retries this one: the reconciler starts it.
    lone = _committed_not_started(dying, "deploy-2")
    reconciled = await alive.post("/v1/runs/reconcile", headers=SERVICE)
    assert reconciled.status_code == 200 and reconciled.json() == {"converged": []}
    assert (await _ended(alive, lone["id"]))["status"] == "SUCCESS"


def _age(settings: Settings, run_id: str, by: timedelta) -> None:
    assert settings.database_url is not None
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session, session.begin():
            then = utcnow() - by
            session.execute(update(Run).where(Run.id == run_id).values(created_at=then, updated_at=then))
    finally:
        engine.dispose()


async def test_past_its_grace_or_without_its_entity_a_recorded_run_ends_as_never_started(
    dying: tuple[TestClient, Recorder], alive: httpx.AsyncClient, settings: Settings
) -> None:
    old = _committed_not_started(dying, "old")
    _age(settings, old["id"], WORKFLOW_START_GRACE + timedelta(seconds=1))
    assert (
        await alive.post("/v1/actions/make_service/runs", json={"idempotency_key": "old"})
    ).status_code == 200
    assert (await alive.post("/v1/runs/reconcile", headers=SERVICE)).json() == {"converged": [old["id"]]}
    ended = (await alive.get(f"/v1/runs/{old['id']}")).json()
    assert (ended["status"], ended["status_label"]) == ("FAILURE", "Not started")
    assert ended["error"].startswith(NEVER_STARTED)

    # A DAY-2 run whose entity was deleted before anyone started it: not started, and said why.
    client, _recorder = dying
    day2 = {**MAKE, "identifier": "poke", "trigger": {"operation": "DAY-2"}}
    assert client.post("/v1/actions", json=day2).status_code == 201
    assert (
        client.post(
            "/v1/blueprints/service/entities", json={"identifier": "pay", "properties": {"language": "go"}}
        ).status_code
        == 201
    )
    response = client.post("/v1/actions/poke/runs", json={"entity": "pay", "idempotency_key": "p"})
    assert response.status_code == 202, response.text
    assert client.delete("/v1/blueprints/service/entities/pay").status_code == 204
    again = await alive.post("/v1/actions/poke/runs", json={"entity": "pay", "idempotency_key": "p"})
    assert again.status_code == 200
    ended = (await alive.get(f"/v1/runs/{response.json()['id']}")).json()
    assert (ended["status"], ended["status_label"]) == ("FAILURE", "Not started")
    assert "entity 'pay' of blueprint 'service' no longer exists" in ended["error"]
