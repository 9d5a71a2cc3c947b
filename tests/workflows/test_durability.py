"""Runs survive a crashed worker and a restarted Temporal server.

The worker here is a real ``python worker.py`` process (killed with SIGKILL: no graceful
shutdown, no last heartbeat), the API is served over HTTP on SQLite, vendors are local fakes.

What a crash costs, by step kind:

- a waiting kind (``github.workflow_dispatch``) heartbeats its build's id; when the worker dies,
  Temporal retries the step on another worker after ``heartbeat_timeout`` and the retry resumes
  the build it finds in the heartbeat (or by the idempotency key): **exactly one** dispatch;
- ``http.request`` cannot ask a receiver whether a call landed, so delivery is **at least
  once**: the step is retried after its ``timeout`` and every delivery carries the same
  ``Idempotency-Key: {run_id}:{step_id}`` for the receiver to drop duplicates.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from config import Settings
from devtools.processes import WorkerProcess, gantry_env
from devtools.testing import eventually_async
from tests.fakes.github import FakeGitHub, RunScript
from tests.fakes.server import serve
from tests.fakes.webhook import FakeWebhookReceiver
from tests.temporal_env import DevServerProcess
from tests.workflows.conftest import ADMIN_TOKEN, SERVICE_TOKEN, WEBHOOK_SECRET, serve_api

pytestmark = pytest.mark.slow

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class SlowWebhookReceiver(FakeWebhookReceiver):
    """The webhook receiver, noting each delivery as it *arrives* (before answering), and holding
    the next deliveries for ``delays`` seconds each: a slow receiver a worker can die on."""

    def reset(self) -> None:
        super().reset()
        self.arrivals: list[dict[str, str]] = []
        self.delays: list[float] = []

    def asgi(self) -> ASGIApp:
        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
                self.arrivals.append({"path": scope["path"], **headers})
                if self.delays:
                    # The delay is the behaviour under test: a receiver still answering when
                    # the worker calling it dies.
                    await asyncio.sleep(self.delays.pop(0))
            await self.app(scope, receive, send)

        return app


@dataclass
class ProcessStack:
    """API in this process (HTTP, SQLite), worker as a child process."""

    api: httpx.AsyncClient
    worker: WorkerProcess
    webhook: SlowWebhookReceiver
    github: FakeGitHub

    async def create_action(self, steps: list[dict[str, Any]]) -> None:
        action = {
            "identifier": "ship",
            "title": "Ship",
            "trigger": {"operation": "CREATE"},
            "steps": steps,
        }
        response = await self.api.post("/v1/actions", json=action)
        assert response.status_code == 201, response.text

    async def launch(self) -> dict[str, Any]:
        response = await self.api.post("/v1/actions/ship/runs", json={})
        assert response.status_code == 202, response.text
        return dict(response.json())

    async def run(self, run_id: str) -> dict[str, Any]:
        return dict((await self.api.get(f"/v1/runs/{run_id}")).json())

    async def until(self, what: str, check: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
        """Wait for ``check``; on timeout the worker's last log lines say why it never held."""
        await eventually_async(check, timeout=timeout, what=what, context=self.worker.tail)

    async def ended(self, run_id: str, timeout: float = 40) -> dict[str, Any]:
        terminal = {"SUCCESS", "FAILURE", "CANCELLED", "TIMED_OUT", "DECLINED"}

        async def done() -> bool:
            return (await self.run(run_id))["status"] in terminal

        await self.until(f"run {run_id} to end", done, timeout)
        return await self.run(run_id)

    def restart_worker(self) -> None:
        self.worker = WorkerProcess(self.worker.env, self.worker.log_file).start()


@pytest.fixture(scope="module")
def slow_webhook() -> Iterator[SlowWebhookReceiver]:
    fake = SlowWebhookReceiver(WEBHOOK_SECRET)
    with serve(fake.asgi()) as url:
        fake.url = url
        yield fake


@asynccontextmanager
async def process_stack(
    tmp_path: Path, temporal_address: str, webhook: SlowWebhookReceiver, github: FakeGitHub
) -> AsyncIterator[ProcessStack]:
    webhook.reset()
    github.reset()
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'catalog.db'}",
        temporal_address=temporal_address,
        task_queue=f"gantry-durability-{uuid.uuid4().hex[:8]}",
        admin_token=ADMIN_TOKEN,
        service_token=SERVICE_TOKEN,
        secret_key="secret-key-e2e",
        webhook_secret=WEBHOOK_SECRET,
    )
    with serve_api(settings) as api_url:
        env = gantry_env(
            temporal_address=temporal_address,
            task_queue=settings.task_queue,
            api_url=api_url,
            service_token=SERVICE_TOKEN,
            webhook_secret=WEBHOOK_SECRET,
            github_api_url=github.url,
            github_token=FakeGitHub.token,
            vendor_poll_interval=0.1,
            data_dir=tmp_path,
        )
        worker = WorkerProcess(env, tmp_path / "worker.log")
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as api:
            # Start the worker off the event loop: the API serves this loop's requests meanwhile.
            await asyncio.to_thread(worker.start)
            stack = ProcessStack(api, worker, webhook, github)
            try:
                yield stack
            finally:
                stack.worker.kill()


async def test_killed_worker_resumes_the_build_without_dispatching_again(
    tmp_path: Path, temporal: Any, slow_webhook: SlowWebhookReceiver, github: FakeGitHub
) -> None:
    address = temporal.client.service_client.config.target_host
    async with process_stack(tmp_path, address, slow_webhook, github) as stack:
        await stack.create_action(
            [
                {
                    "id": "deploy",
                    "uses": "github.workflow_dispatch",
                    "with": {"repo": "acme/payments", "workflow": "deploy.yml", "ref": "main"},
                    "wait_for_completion": True,
                    "heartbeat_timeout": "PT2S",
                }
            ]
        )
        # In progress for 40 polls (0.1 s apart): across the crash and into the next worker.
        github.scripts.append(RunScript(conclusion="success", polls=40))
        run = await stack.launch()

        async def dispatched_and_running() -> bool:
            step = (await stack.run(run["id"]))["steps"][0]
            return bool(github.calls("POST", "/dispatches$")) and step["status"] == "IN_PROGRESS"

        await stack.until("the dispatch", dispatched_and_running)
        first_worker = stack.worker.pid
        stack.worker.kill()
        await asyncio.to_thread(stack.restart_worker)
        assert stack.worker.pid != first_worker

        done = await stack.ended(run["id"])
        assert done["status"] == "SUCCESS", (done["error"], stack.worker.tail())
        assert len(github.calls("POST", "/dispatches$")) == 1
        (only_run,) = github.runs.values()
        assert done["steps"][0]["outputs"]["run_id"] == only_run["id"]
        assert only_run["conclusion"] == "success"


async def test_killed_worker_redelivers_the_webhook_with_the_same_idempotency_key(
    tmp_path: Path, temporal: Any, slow_webhook: SlowWebhookReceiver, github: FakeGitHub
) -> None:
    address = temporal.client.service_client.config.target_host
    async with process_stack(tmp_path, address, slow_webhook, github) as stack:
        await stack.create_action(
            [
                {
                    "id": "notify",
                    "uses": "http.request",
                    "with": {"url": f"{slow_webhook.url}/deploy", "body": {"version": "v1"}},
                    # A worker that dies mid-call is noticed when the attempt times out.
                    "timeout": "PT2S",
                    "retry": {"maximum_attempts": 5, "initial_interval": "PT0.2S"},
                }
            ]
        )
        slow_webhook.delays.append(8.0)  # the first delivery hangs until long after the crash
        run = await stack.launch()

        async def arrived() -> bool:
            return any(a["path"] == "/deploy" for a in slow_webhook.arrivals)

        await stack.until("the first delivery", arrived)
        stack.worker.kill()
        await asyncio.to_thread(stack.restart_worker)

        done = await stack.ended(run["id"])
        assert done["status"] == "SUCCESS", (done["error"], stack.worker.tail())
        deliveries = [a for a in slow_webhook.arrivals if a["path"] == "/deploy"]
        # At least once: the crashed attempt's delivery and the retry's, under one key.
        assert len(deliveries) == 2
        assert {d["idempotency-key"] for d in deliveries} == {f"{run['id']}:notify"}
        assert done["steps"][0]["outputs"]["status_code"] == 200


async def test_run_survives_a_temporal_restart_while_it_sleeps(
    tmp_path: Path, slow_webhook: SlowWebhookReceiver, github: FakeGitHub
) -> None:
    server = DevServerProcess(tmp_path / "temporal.db").start()
    try:
        async with process_stack(tmp_path, server.address, slow_webhook, github) as stack:
            await stack.create_action(
                [
                    {"id": "wait", "uses": "sleep", "with": {"duration": "PT3S"}},
                    {
                        "id": "notify",
                        "uses": "http.request",
                        "with": {"url": f"{slow_webhook.url}/after-sleep", "body": {"ok": True}},
                    },
                ]
            )
            run = await stack.launch()

            async def sleeping() -> bool:
                return (await stack.run(run["id"]))["steps"][0]["status"] == "IN_PROGRESS"

            await stack.until("the sleep step", sleeping)
            server.kill()  # a crash, not a shutdown: nothing is flushed on the way out
            await asyncio.to_thread(server.start)

            done = await stack.ended(run["id"])
            assert done["status"] == "SUCCESS", (done["error"], stack.worker.tail())
            assert [a["idempotency-key"] for a in slow_webhook.arrivals] == [f"{run['id']}:notify"]
            # The same worker process reconnected by itself.
            assert stack.worker.alive(), stack.worker.tail()
    finally:
        server.stop()


# ---- a run waiting for approval --------------------------------------------------------------


async def approver_client(stack: ProcessStack) -> httpx.AsyncClient:
    user = {"identifier": "approver", "email": "approver@example.com"}
    assert (await stack.api.post("/v1/users", json=user)).status_code == 201
    token = (await stack.api.post("/v1/tokens", json={"user": "approver"})).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.AsyncClient(base_url=stack.api.base_url, headers=headers, timeout=60)


async def approve(client: httpx.AsyncClient, run_id: str) -> httpx.Response:
    """Approve, retrying while no worker answers (503); the Update waits 20 s for a worker, longer
    than a failover, so the first answer normally is the decision."""

    async def decided() -> httpx.Response:
        response = await client.post(f"/v1/runs/{run_id}/approval", json={"decision": "APPROVE"})
        assert response.status_code != 503, response.text
        return response

    return await eventually_async(
        decided, timeout=90, interval=1, what=f"a worker to take run {run_id}'s decision"
    )


async def waiting_run(stack: ProcessStack, webhook: SlowWebhookReceiver) -> dict[str, Any]:
    steps = [
        {"id": "gate", "uses": "approval", "with": {"approvers": {"users": ["approver"]}, "timeout": "PT1H"}},
        {"id": "notify", "uses": "http.request", "with": {"url": f"{webhook.url}/approved", "body": {}}},
    ]
    await stack.create_action(steps)
    run = await stack.launch()

    async def waiting() -> bool:
        current = await stack.run(run["id"])
        return current["status"] == "WAITING_FOR_APPROVAL" and bool(current["approval"])

    await stack.until("the approval to open", waiting)
    return run


async def test_an_approval_applies_after_the_waiting_worker_was_killed(
    tmp_path: Path, temporal: Any, slow_webhook: SlowWebhookReceiver, github: FakeGitHub
) -> None:
    address = temporal.client.service_client.config.target_host
    async with process_stack(tmp_path, address, slow_webhook, github) as stack:
        approver = await approver_client(stack)
        run = await waiting_run(stack, slow_webhook)
        stack.worker.kill()
        await asyncio.to_thread(stack.restart_worker)
        decided = await approve(approver, run["id"])
        assert decided.status_code == 200, decided.text
        done = await stack.ended(run["id"])
        assert done["status"] == "SUCCESS", (done["error"], stack.worker.tail())
        assert [a["path"] for a in slow_webhook.arrivals] == ["/approved"]
        await approver.aclose()


async def test_an_approval_applies_after_temporal_restarted_while_waiting(
    tmp_path: Path, slow_webhook: SlowWebhookReceiver, github: FakeGitHub
) -> None:
    server = DevServerProcess(tmp_path / "temporal.db").start()
    try:
        async with process_stack(tmp_path, server.address, slow_webhook, github) as stack:
            approver = await approver_client(stack)
            run = await waiting_run(stack, slow_webhook)
            server.kill()
            await asyncio.to_thread(server.start)
            decided = await approve(approver, run["id"])
            assert decided.status_code == 200, decided.text
            done = await stack.ended(run["id"])
            assert done["status"] == "SUCCESS", (done["error"], stack.worker.tail())
            assert [a["path"] for a in slow_webhook.arrivals] == ["/approved"]
            await approver.aclose()
    finally:
        server.stop()
