"""The whole stack for action-run tests, real parts only: a Temporal dev server, the catalog
API served over HTTP on 127.0.0.1 (SQLite), an in-process worker with the real activities, and
fake vendors speaking their HTTP APIs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import build_activities
from api.app import create_app
from config import Settings
from devtools.testing import eventually_async
from tests.fakes.github import FakeGitHub
from tests.fakes.jira import FakeJira
from tests.fakes.server import serve
from tests.fakes.webhook import FakeWebhookReceiver
from tests.temporal_env import start_dev_server
from workflows import ALL_WORKFLOWS

ADMIN_TOKEN = "admin-e2e-token"
SERVICE_TOKEN = "service-e2e-token"
WEBHOOK_SECRET = "whsec-e2e"


@contextmanager
def serve_api(settings: Settings) -> Iterator[str]:
    """The real API app (with its lifespan: migrations, bootstrap, the event relay)."""
    with serve(create_app(settings), lifespan="on") as url:
        yield url


@pytest.fixture(scope="session")
async def temporal() -> AsyncIterator[WorkflowEnvironment]:
    async with start_dev_server() as env:
        yield env


@pytest.fixture(scope="session")
def webhook() -> Iterator[FakeWebhookReceiver]:
    fake = FakeWebhookReceiver(WEBHOOK_SECRET)
    with serve(fake.app) as url:
        fake.url = url
        yield fake


@pytest.fixture(scope="session")
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub()
    with serve(fake.app) as url:
        fake.url = url
        yield fake


@pytest.fixture(scope="session")
def jira() -> Iterator[FakeJira]:
    fake = FakeJira()
    with serve(fake.app) as url:
        fake.url = url
        yield fake


@dataclass
class Stack:
    settings: Settings
    api: httpx.AsyncClient
    client: Client
    webhook: FakeWebhookReceiver
    github: FakeGitHub
    jira: FakeJira

    async def wait_for(self, run_id: str, statuses: set[str], timeout: float = 30) -> dict[str, Any]:
        """Poll the run until its status is one of ``statuses``."""

        async def reached() -> dict[str, Any]:
            run: dict[str, Any] = (await self.api.get(f"/v1/runs/{run_id}")).json()
            assert run["status"] in statuses, f"run {run_id} stayed {run['status']}: {run}"
            return run

        return await eventually_async(reached, timeout=timeout, interval=0.1, what=f"run {run_id}")

    async def launch(self, action: str, **body: Any) -> dict[str, Any]:
        response = await self.api.post(f"/v1/actions/{action}/runs", json=body)
        assert response.status_code == 202, response.text
        return dict(response.json())

    async def logs(self, run_id: str) -> list[str]:
        return [line["message"] for line in (await self.api.get(f"/v1/runs/{run_id}/logs")).json()["items"]]


def stack_settings(tmp_path: Path, temporal: WorkflowEnvironment, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "database_url": f"sqlite:///{tmp_path / 'catalog.db'}",
        "temporal_address": temporal.client.service_client.config.target_host,
        "task_queue": f"gantry-test-{uuid.uuid4().hex[:8]}",
        "admin_token": ADMIN_TOKEN,
        "service_token": SERVICE_TOKEN,
        "secret_key": "secret-key-e2e",
        "webhook_secret": WEBHOOK_SECRET,
        "vendor_poll_interval": 0.1,
        "run_converge_after": 0.0,
        # The fake vendors and receivers listen on 127.0.0.1, which http.request refuses unless allowed.
        "http_allowed_hosts": "127.0.0.1",
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def running_stack(
    settings: Settings,
    temporal: WorkflowEnvironment,
    webhook: FakeWebhookReceiver,
    github: FakeGitHub,
    jira: FakeJira,
) -> AsyncIterator[Stack]:
    """The one stack of the workflow tests: the API for ``settings`` served in a thread, an admin
    client of it, and a worker with every workflow and activity on ``temporal``."""
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
            yield Stack(settings, api, temporal.client, webhook, github, jira)


@pytest.fixture
async def stack(
    tmp_path: Path,
    temporal: WorkflowEnvironment,
    webhook: FakeWebhookReceiver,
    github: FakeGitHub,
    jira: FakeJira,
) -> AsyncIterator[Stack]:
    webhook.reset()
    github.reset()
    jira.reset()
    settings = stack_settings(
        tmp_path,
        temporal,
        github_token=FakeGitHub.token,
        github_api_url=github.url,
        jira_url=jira.url,
        jira_user="bot@example.com",
        jira_token="jira-token",
    )
    async with running_stack(settings, temporal, webhook, github, jira) as stack:
        yield stack
