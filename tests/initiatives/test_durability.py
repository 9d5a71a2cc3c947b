"""A reminder survives a crashed worker without messaging anyone twice; a deadline survives a
crashed Temporal server.

The worker is a real ``python worker.py`` process on a Temporal dev server, killed with SIGKILL
while Slack holds one of the reminder's DMs; a new worker takes the activity over after its
heartbeat timeout, and the retry looks in each DM for this reminder's earlier message before
posting: every member gets exactly one. The dev server (a child process with its own database
file) is killed before a deadline and started again after it: the deadline is reported once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from config import Settings
from devtools.processes import WorkerProcess, gantry_env
from devtools.testing import eventually_async
from tests.fakes.server import serve
from tests.fakes.slack import FakeSlack
from tests.initiatives.test_workflow import PEOPLE, _catalog, _initiative
from tests.temporal_env import DevServerProcess
from tests.workflows.conftest import ADMIN_TOKEN, SERVICE_TOKEN, serve_api, temporal

pytestmark = pytest.mark.slow
__all__ = ["temporal"]  # the session's Temporal dev server

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class SlowSlack(FakeSlack):
    """The Slack fake, noting each ``chat.postMessage`` as it arrives and holding the next ones
    for ``delays`` seconds each: a Slack still answering when the worker calling it dies."""

    def reset(self) -> None:
        super().reset()
        self.posts_arrived = 0
        self.delays: list[float] = []

    def asgi(self) -> ASGIApp:
        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["path"].endswith("/chat.postMessage"):
                self.posts_arrived += 1
                if self.posts_arrived > 1 and self.delays:
                    await asyncio.sleep(self.delays.pop(0))  # the behaviour under test
            await self.app(scope, receive, send)

        return app


@pytest.fixture(scope="module")
def slow_slack() -> Iterator[SlowSlack]:
    fake = SlowSlack()
    with serve(fake.asgi()) as url:
        fake.url = url
        yield fake


@pytest.fixture
async def stack(
    tmp_path: Path, temporal: WorkflowEnvironment, slow_slack: SlowSlack
) -> AsyncIterator[tuple[httpx.AsyncClient, list[WorkerProcess]]]:
    slow_slack.reset()
    slow_slack.users |= {f"{user}@example.com": slack_id for user, (_, slack_id) in PEOPLE.items()}
    address = temporal.client.service_client.config.target_host
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'catalog.db'}",
        temporal_address=address,
        task_queue=f"gantry-initiatives-{uuid.uuid4().hex[:8]}",
        admin_token=ADMIN_TOKEN,
        service_token=SERVICE_TOKEN,
    )
    with serve_api(settings) as api_url:
        env = gantry_env(
            temporal_address=address,
            task_queue=settings.task_queue,
            api_url=api_url,
            service_token=SERVICE_TOKEN,
            slack_bot_token=FakeSlack.token,
            slack_api_url=f"{slow_slack.url}/api",
            data_dir=tmp_path,
        )
        workers = [WorkerProcess(env, tmp_path / "worker.log")]
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as api:
            await asyncio.to_thread(workers[0].start)
            await _catalog(api)
            try:
                yield api, workers
            finally:
                workers[-1].kill()


async def test_a_worker_killed_between_a_reminders_posts_messages_each_member_once(
    stack: tuple[httpx.AsyncClient, list[WorkerProcess]], slow_slack: SlowSlack, temporal: WorkflowEnvironment
) -> None:
    api, workers = stack
    slow_slack.delays = [6.0]  # the second DM hangs while the worker dies
    deadline = datetime.now(UTC) + timedelta(days=1, seconds=6)
    body = {**_initiative("all-gold", deadline), "remind_before": ["P1D"]}
    created = await api.post("/v1/initiatives", json=body)
    assert created.status_code == 201, created.text

    async def one_posted() -> bool:
        return slow_slack.posts_arrived >= 2  # the first DM went out, the second is held

    await eventually_async(one_posted, timeout=30, what="the reminder's first DMs", context=workers[0].tail)
    workers[0].kill()
    workers.append(WorkerProcess(workers[0].env, workers[0].log_file))
    await asyncio.to_thread(workers[-1].start)

    async def everyone_messaged() -> dict[str, int] | None:
        counts: dict[str, int] = {}
        for channel, _ in list(slow_slack.messages):
            counts[channel] = counts.get(channel, 0) + 1
        return counts if len(counts) == 4 else None

    counts = await eventually_async(everyone_messaged, timeout=60, what="every DM", context=workers[-1].tail)

    handle = temporal.client.get_workflow_handle("initiative:all-gold")

    async def reminder_done() -> list[str] | None:
        log: list[str] = (await handle.query("view"))["log"]
        return log if sum("reminder sent to" in line for line in log) == 4 else None

    await eventually_async(
        reminder_done, timeout=60, what="the retried reminder to finish", context=workers[-1].tail
    )
    assert counts == {"D0PAT": 1, "D0PIA": 1, "D0SAM": 1, "D0MO": 1}, counts
    attempts = [
        event.activity_task_started_event_attributes.attempt
        async for event in handle.fetch_history_events()
        if event.HasField("activity_task_started_event_attributes")
    ]
    assert attempts == [2], attempts  # the reminder's activity ran again on the new worker
    assert slow_slack.posts_arrived >= 4
    reminders = (await api.get("/v1/initiatives/all-gold")).json()["reminders"]
    assert len(reminders) == 1  # recorded once, though the activity ran twice
    events = (await api.get("/v1/events", params={"type": "INITIATIVE_REMINDER"})).json()["items"]
    assert len(events) == 1


async def test_a_deadline_passed_while_temporal_was_down_is_reported_once(tmp_path: Path) -> None:
    """Temporal crashes before the deadline and is down when it passes: once it is back, the
    same worker reports the deadline (the report stored once, its events emitted once)."""
    server = DevServerProcess(tmp_path / "temporal.db").start()
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'catalog.db'}",
        temporal_address=server.address,
        task_queue=f"gantry-initiatives-{uuid.uuid4().hex[:8]}",
        admin_token=ADMIN_TOKEN,
        service_token=SERVICE_TOKEN,
    )
    try:
        with serve_api(settings) as api_url:
            env = gantry_env(
                temporal_address=server.address,
                task_queue=settings.task_queue,
                api_url=api_url,
                service_token=SERVICE_TOKEN,
                data_dir=tmp_path,
            )
            worker = WorkerProcess(env, tmp_path / "worker.log")
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as api:
                await asyncio.to_thread(worker.start)
                try:
                    await _catalog(api)
                    deadline = datetime.now(UTC) + timedelta(seconds=5)
                    body = {**_initiative("restart", deadline), "remind_before": []}
                    assert (await api.post("/v1/initiatives", json=body)).status_code == 201
                    server.kill()  # a crash before the deadline: nothing flushed on the way out
                    # Down across the deadline. The wait is the scenario (wall-clock time passing
                    # the deadline with no server), not synchronisation.
                    await asyncio.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds()) + 1)
                    assert (await api.get("/v1/initiatives/restart")).json()["final_report"] is None
                    await asyncio.to_thread(server.start)

                    async def reported() -> dict[str, Any] | None:
                        found: dict[str, Any] = (await api.get("/v1/initiatives/restart")).json()
                        return found if found["final_report"] is not None else None

                    stored = await eventually_async(
                        reported, timeout=60, what="the deadline's report", context=worker.tail
                    )
                    report = stored["final_report"]
                    assert (report["total"], report["passing"]) == (3, 1), report
                    passed = (
                        await api.get("/v1/events", params={"type": "INITIATIVE_DEADLINE_PASSED"})
                    ).json()
                    assert sorted(e["team"] or "" for e in passed["items"]) == ["", "payments", "search"]
                    assert worker.alive(), worker.tail()  # the same worker reconnected by itself
                finally:
                    worker.kill()
    finally:
        server.stop()
