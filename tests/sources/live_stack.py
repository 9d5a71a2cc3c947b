"""The real API, a worker and a Temporal dev server, with GitHub faked: the stack the data-source
tests that sync end to end run on."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import build_activities
from config import Settings
from tests.api.conftest import ADMIN_TOKEN, SERVICE_TOKEN
from tests.fakes.github_org import FakeGitHubOrg
from tests.workflows.conftest import serve_api
from workflows import ALL_WORKFLOWS


@asynccontextmanager
async def github_portal(
    tmp_path: Path, temporal: WorkflowEnvironment, github_server: FakeGitHubOrg, name: str
) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client of a fresh API whose worker (on its own task queue) pulls from the fake."""
    github_server.reset()
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'catalog.db'}",
        temporal_address=temporal.client.service_client.config.target_host,
        task_queue=f"sources-{name}-{uuid.uuid4().hex[:8]}",
        admin_token=ADMIN_TOKEN,
        service_token=SERVICE_TOKEN,
        secret_key=f"secret-key-{name}",
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
            yield api
