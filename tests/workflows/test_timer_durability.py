"""TTL timers fire once across crashes: a killed worker, a restarted Temporal server, an API killed
between committing an entity and relaying its timer.

Real processes throughout: ``python worker.py`` (SIGKILL), ``temporal server start-dev`` on a
database file, the API over HTTP on SQLite (in this process, or as a uvicorn subprocess when it is
the one that dies). The blueprint's ``on_expiry`` action calls a local receiver (``http.request``)
and then deletes the entity (``catalog.delete_entity``); the receiver counts calls per entity.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.processes import ApiProcess, WorkerProcess, gantry_env
from devtools.testing import eventually_async
from tests.fakes.server import serve
from tests.temporal_env import DevServerProcess, free_port
from tests.workflows.conftest import ADMIN_TOKEN, SERVICE_TOKEN, WEBHOOK_SECRET, serve_api

BLUEPRINT = "environment"
ACTION = "destroy_environment"


# ---- the parts every timer crash test shares ---------------------------------------------------


class TeardownReceiver:
    """A bare ASGI receiver counting teardown calls per environment (the body's ``environment``)."""

    def __init__(self) -> None:
        self.url = ""
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.keys: dict[str, set[str]] = {}

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.keys.clear()

    def hits(self, environment: str) -> int:
        with self._lock:
            return self.calls[environment]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        environment = str((json.loads(body or b"{}") or {}).get("environment", ""))
        key = dict(scope["headers"]).get(b"idempotency-key", b"").decode()
        with self._lock:
            self.calls[environment] += 1
            self.keys.setdefault(environment, set()).add(key)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"destroyed":true}'})


def environment_blueprint(**policy: Any) -> dict[str, Any]:
    """``environment`` with an ``expires_at`` timer torn down by ``ACTION``; ``policy`` adds to
    or replaces the timer's policy."""
    return {
        "identifier": BLUEPRINT,
        "title": "Environment",
        "schema": {"properties": {"expires_at": {"type": "string", "format": "timer"}}},
        "timers": {"expires_at": {"max_ttl": "P14D", "on_expiry": {"action": ACTION}, **policy}},
    }


def teardown_action(receiver_url: str, first_steps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """``ACTION``: ``first_steps``, then POST the environment to ``{receiver_url}/destroy`` and
    delete the entity."""
    return {
        "identifier": ACTION,
        "title": "Destroy environment",
        "blueprint": BLUEPRINT,
        "trigger": {"operation": "DELETE"},
        "steps": [
            *(first_steps or []),
            {
                "id": "teardown",
                "uses": "http.request",
                "with": {
                    "url": f"{receiver_url}/destroy",
                    "body": {"environment": "{{ entity.identifier }}"},
                },
            },
            {
                "id": "forget",
                "uses": "catalog.delete_entity",
                "with": {"blueprint": BLUEPRINT, "identifier": "{{ entity.identifier }}"},
            },
        ],
    }


def seconds_ahead(seconds: float) -> datetime:
    """A deadline ``seconds`` from now, whole milliseconds (what the catalog keeps)."""
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


async def setup_catalog(api: httpx.AsyncClient, receiver_url: str) -> None:
    for path, body in (
        ("/v1/blueprints", environment_blueprint()),
        ("/v1/actions", teardown_action(receiver_url)),
    ):
        response = await api.post(path, json=body)
        assert response.status_code == 201, response.text


async def create_environment(api: httpx.AsyncClient, identifier: str, expires_at: datetime) -> None:
    body = {"identifier": identifier, "properties": {"expires_at": iso(expires_at)}}
    response = await api.post(f"/v1/blueprints/{BLUEPRINT}/entities", json=body)
    assert response.status_code == 201, response.text


async def all_timers(api: httpx.AsyncClient, **query: Any) -> list[dict[str, Any]]:
    """Every timer record (``GET /v1/timers``, all pages)."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 1000, **query}
    while True:
        page = (await api.get("/v1/timers", params=params)).json()
        items += page["items"]
        if not page["next_cursor"]:
            return items
        params["cursor"] = page["next_cursor"]


async def timer_record(api: httpx.AsyncClient, entity: str) -> dict[str, Any]:
    return next(t for t in await all_timers(api) if t["entity"] == entity)


async def undelivered(api: httpx.AsyncClient, entity: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await api.get(f"/v1/events?entity={entity}&delivered=false")).json()[
        "items"
    ]
    return items


@dataclass
class TimerStack:
    api: httpx.AsyncClient
    worker: WorkerProcess
    receiver: TeardownReceiver

    def tail(self) -> str:
        return self.worker.tail()

    async def armed(self, entity: str) -> dict[str, Any]:
        """The entity's timer once its events are relayed and the record is active."""

        async def check() -> dict[str, Any] | None:
            if await undelivered(self.api, entity):
                return None
            record = await timer_record(self.api, entity)
            return record if record["state"] == "active" else None

        return dict(
            await eventually_async(check, timeout=40, what=f"{entity}'s timer to arm", context=self.tail)
        )

    async def torn_down(self, entity: str, timeout: float = 60) -> dict[str, Any]:
        """The entity's timer once its teardown is done; checks it fired once, after its deadline."""

        async def check() -> dict[str, Any] | None:
            record = await timer_record(self.api, entity)
            return record if record["teardown"] in ("done", "failed") else None

        record = dict(
            await eventually_async(check, timeout=timeout, what=f"{entity}'s teardown", context=self.tail)
        )
        assert record["state"] == "expired" and record["teardown"] == "done", (record, self.tail())
        assert datetime.fromisoformat(record["expired_at"]) >= datetime.fromisoformat(record["deadline"])
        assert (await self.api.get(f"/v1/blueprints/{BLUEPRINT}/entities/{entity}")).status_code == 404
        assert self.receiver.hits(entity) == 1, self.receiver.keys.get(entity)
        expired = await self.api.get(f"/v1/events?type=TIMER_EXPIRED&entity={entity}")
        assert len(expired.json()["items"]) == 1
        run = (await self.api.get(f"/v1/runs/{record['on_expiry_run']}")).json()
        assert run["status"] == "SUCCESS" and run["source"] == "AUTOMATION", run
        return record

    def restart_worker(self) -> None:
        self.worker = WorkerProcess(self.worker.env, self.worker.log_file).start()


def worker_env(
    tmp_path: Path, temporal_address: str, task_queue: str, api_url: str, **overrides: Any
) -> dict[str, str]:
    settings: dict[str, Any] = {
        "temporal_address": temporal_address,
        "task_queue": task_queue,
        "api_url": api_url,
        "service_token": SERVICE_TOKEN,
        "webhook_secret": WEBHOOK_SECRET,
        "vendor_poll_interval": 0.2,
        "data_dir": tmp_path,
    }
    return gantry_env(**{**settings, **overrides})


def api_env(tmp_path: Path, temporal_address: str, task_queue: str, api_url: str) -> dict[str, str]:
    return gantry_env(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'catalog.db'}",
        temporal_address=temporal_address,
        task_queue=task_queue,
        api_url=api_url,
        admin_token=ADMIN_TOKEN,
        service_token=SERVICE_TOKEN,
        secret_key="secret-key-e2e",
        webhook_secret=WEBHOOK_SECRET,
        run_converge_after=5.0,
    )


def admin_client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60
    )


@pytest.fixture(scope="module")
def receiver() -> Iterator[TeardownReceiver]:
    fake = TeardownReceiver()
    with serve(fake) as url:
        fake.url = url
        yield fake


@asynccontextmanager
async def timer_stack(
    tmp_path: Path, temporal_address: str, receiver: TeardownReceiver
) -> AsyncIterator[TimerStack]:
    """The API in this process (HTTP, SQLite), the worker as a child process, the catalog set up."""
    from config import Settings

    receiver.reset()
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'catalog.db'}",
        temporal_address=temporal_address,
        task_queue=f"gantry-timers-{uuid.uuid4().hex[:8]}",
        admin_token=ADMIN_TOKEN,
        service_token=SERVICE_TOKEN,
        secret_key="secret-key-e2e",
        webhook_secret=WEBHOOK_SECRET,
        run_converge_after=5.0,
    )
    with serve_api(settings) as api_url:
        worker = WorkerProcess(
            worker_env(tmp_path, temporal_address, settings.task_queue, api_url), tmp_path / "worker.log"
        )
        async with admin_client(api_url) as api:
            await asyncio.to_thread(worker.start)
            stack = TimerStack(api, worker, receiver)
            try:
                await setup_catalog(api, receiver.url)
                yield stack
            finally:
                stack.worker.kill()


# ---- the tests ---------------------------------------------------------------------------------

pytestmark = pytest.mark.slow


async def test_timer_fires_once_after_its_worker_is_killed_while_it_sleeps(
    tmp_path: Path, temporal: Any, receiver: TeardownReceiver
) -> None:
    address = temporal.client.service_client.config.target_host
    async with timer_stack(tmp_path, address, receiver) as stack:
        await create_environment(stack.api, "env-kill", seconds_ahead(8))
        await stack.armed("env-kill")
        first = stack.worker.pid
        stack.worker.kill()
        await asyncio.to_thread(stack.restart_worker)
        assert stack.worker.pid != first
        # The new worker was up before the deadline: the timer slept through the crash.
        assert (await timer_record(stack.api, "env-kill"))["state"] == "active"

        await stack.torn_down("env-kill")


async def test_timer_fires_once_across_a_temporal_restart(tmp_path: Path, receiver: TeardownReceiver) -> None:
    server = DevServerProcess(tmp_path / "temporal.db").start()
    try:
        async with timer_stack(tmp_path, server.address, receiver) as stack:
            deadline = seconds_ahead(6)
            await create_environment(stack.api, "env-restart", deadline)
            await stack.armed("env-restart")
            server.kill()  # a crash: nothing flushed on the way out
            # Down across the deadline: the timer is due while no server runs. The wait is the
            # scenario (wall-clock time passing a deadline with no server), not synchronisation.
            await asyncio.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds()) + 1)
            assert (await timer_record(stack.api, "env-restart"))["state"] == "active"
            await asyncio.to_thread(server.start)

            await stack.torn_down("env-restart")
            assert stack.worker.alive(), stack.tail()  # the same worker reconnected by itself
    finally:
        server.stop()


async def test_an_api_crash_between_commit_and_relay_loses_nothing(
    tmp_path: Path, receiver: TeardownReceiver
) -> None:
    receiver.reset()
    server = DevServerProcess(tmp_path / "temporal.db")  # not started: Temporal is down
    task_queue = f"gantry-timers-{uuid.uuid4().hex[:8]}"
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    env = api_env(tmp_path, server.address, task_queue, api_url)
    api_process = ApiProcess(env, tmp_path / "api.log", host="127.0.0.1", port=port)
    worker = WorkerProcess(worker_env(tmp_path, server.address, task_queue, api_url), tmp_path / "worker.log")
    try:
        await asyncio.to_thread(api_process.start)
        async with admin_client(api_url) as api:
            await setup_catalog(api, receiver.url)
            deadline = seconds_ahead(15)
            await create_environment(api, "env-outbox", deadline)

            async def tried() -> list[dict[str, Any]] | None:
                events = await undelivered(api, "env-outbox")
                return events if events and events[0]["attempts"] >= 1 else None

            # Committed, and the relay has already failed to deliver it at least once.
            (event,) = await eventually_async(
                tried, timeout=40, what="a failed delivery", context=api_process.tail
            )
            assert event["type"] == "ENTITY_CREATED" and event["last_error"]
            assert (await timer_record(api, "env-outbox"))["state"] == "active"
            api_process.kill()

            await asyncio.to_thread(server.start)
            api_process = ApiProcess(env, tmp_path / "api.log", host="127.0.0.1", port=port)
            await asyncio.to_thread(api_process.start)
            await asyncio.to_thread(worker.start)
            stack = TimerStack(api, worker, receiver)
            record = await stack.armed("env-outbox")
            assert datetime.fromisoformat(record["deadline"]) == deadline
            await stack.torn_down("env-outbox")
    finally:
        worker.kill()
        api_process.kill()
        server.stop()
