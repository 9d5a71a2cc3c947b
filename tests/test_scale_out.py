"""Gantry scaled out: several API processes and workers on one PostgreSQL catalog and one Temporal.

- Two event relays (two API processes) on one outbox: an entity's later event never overtakes
  the earlier one another relay holds.
- The whole stack: two API processes and two workers against PostgreSQL and a Temporal dev
  server, driven with launches (approved), TTL timers, webhook deliveries and entity writes at
  once, one API process and one worker SIGKILLed mid-load and restarted; every run ends and is
  recorded once, every event is delivered once, every timer fires once, every delivery is applied
  once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

import api.relay
from api.relay import EventRelay
from catalog import events
from catalog.db import make_sessionmaker
from catalog.runs.service import NEVER_STARTED
from devtools.processes import ApiProcess, WorkerProcess, gantry_env
from devtools.testing import eventually_async
from tests.api.test_relay import Recorder, timer_event
from tests.temporal_env import DevServerProcess, free_port
from tests.workflows.conftest import ADMIN_TOKEN, SERVICE_TOKEN, WEBHOOK_SECRET
from tests.workflows.test_timer_durability import (
    ACTION,
    BLUEPRINT,
    TeardownReceiver,
    admin_client,
    environment_blueprint,
    iso,
    receiver,
    seconds_ahead,
    teardown_action,
    worker_env,
)

__all__ = ["receiver"]  # the fixture, shared with the timer durability tests


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_an_entitys_events_keep_their_order_across_two_relays(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory = make_sessionmaker(engine)
    with factory() as session, session.begin():
        events.emit(
            session,
            [
                timer_event("env-a", "2030-01-01T00:00:01+00:00"),
                timer_event("env-b", "2030-01-01T00:00:02+00:00"),
                timer_event("env-a", "2030-01-01T00:00:03+00:00"),
            ],
        )
    first, second = Recorder(hang=True), Recorder()
    second.armed = first.armed  # one record of what went out, in order, from either process
    relay_a = EventRelay(factory, first, max_depth=3)  # type: ignore[arg-type]
    relay_b = EventRelay(factory, second, max_depth=3)  # type: ignore[arg-type]

    # Relay A claims only env-a's first event and is stuck delivering it (its row stays locked).
    monkeypatch.setattr(api.relay, "BATCH", 1)
    batch_a = asyncio.create_task(relay_a.relay_batch())
    await eventually_async(lambda: first.in_flight == 1, timeout=10, what="relay A delivering")
    monkeypatch.setattr(api.relay, "BATCH", 200)

    # Relay B skips the locked row: env-b's event goes, env-a's later one waits for relay A.
    assert await relay_b.relay_batch() == (1, False)
    assert first.armed == [("env-b", "2030-01-01T00:00:02+00:00")]

    first.hang = False
    assert await batch_a == (1, False)
    assert await relay_b.relay_batch() == (1, False)
    assert first.armed == [
        ("env-b", "2030-01-01T00:00:02+00:00"),
        ("env-a", "2030-01-01T00:00:01+00:00"),
        ("env-a", "2030-01-01T00:00:03+00:00"),
    ]
    assert await relay_b.relay_batch() == (0, False)


# ---- the whole stack, scaled out ------------------------------------------------------------

SERVICE = "service"
SHIP = "ship"
HOOK_SECRET = "scale-out-hook-secret-4b7d9f1a3c5e"
RUNS, TIMERS, HOOKS, WRITES = 12, 8, 24, 24
ENTITIES_WRITTEN = 6
TERMINAL = {"SUCCESS", "FAILURE", "CANCELLED", "TIMED_OUT", "DECLINED"}


class Stack:
    """Two API processes and two workers; requests go to either API and fail over to the other
    when one is down (as a load balancer would), so the load goes on while one is dead."""

    def __init__(
        self, apis: list[ApiProcess], workers: list[WorkerProcess], receiver: TeardownReceiver
    ) -> None:
        self.apis, self.workers, self.receiver = apis, workers, receiver
        self.clients = [admin_client(api.url) for api in apis]
        self.approvers: list[httpx.AsyncClient] = []
        self.done = 0  # operations of the load that have completed
        self.notes = ""  # what the load saw, for a failure's message

    def tail(self) -> str:
        return "".join(process.tail(15) for process in [*self.apis, *self.workers])

    async def call(
        self, method: str, path: str, *, first: int = 0, approver: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """The request on API ``first``, else on the other; a 503 (Temporal or a worker busy
        while one is restarting) is asked again."""
        clients = self.approvers if approver else self.clients

        async def attempt() -> httpx.Response | None:
            for index in (first % 2, (first + 1) % 2):
                try:
                    response = await clients[index].request(method, path, **kwargs)
                except httpx.TransportError:
                    continue  # that API process is dead (or died answering): the other one
                if response.status_code != 503:
                    return response
            return None

        response: httpx.Response = await eventually_async(
            attempt, timeout=90, interval=0.5, what=f"{method} {path}", context=self.tail
        )
        return response

    async def pages(self, path: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        query: dict[str, Any] = {"limit": 100, **params}
        while True:
            page = (await self.call("GET", path, params=query)).json()
            items += page["items"]
            if not page["next_cursor"]:
                return items
            query["cursor"] = page["next_cursor"]

    async def aclose(self) -> None:
        for client in [*self.clients, *self.approvers]:
            await client.aclose()


def ship_action(receiver_url: str) -> dict[str, Any]:
    """A day-2 action on a service that waits for ``approver``, then calls the receiver."""
    return {
        "identifier": SHIP,
        "title": "Ship",
        "blueprint": SERVICE,
        "trigger": {"operation": "DAY-2"},
        "steps": [
            {
                "id": "gate",
                "uses": "approval",
                "with": {"approvers": {"users": ["approver"]}, "timeout": "PT1H"},
            },
            {
                "id": "ship",
                "uses": "http.request",
                "with": {
                    "url": f"{receiver_url}/ship",
                    "body": {"environment": "ship-{{ entity.identifier }}"},
                },
            },
        ],
    }


def hook_source() -> dict[str, Any]:
    mappings = {
        "identifier": ".body.name",
        "blueprint": f'"{SERVICE}"',
        "properties": {"version": ".body.version"},
    }
    return {
        "identifier": "hooks",
        "kind": "webhook",
        "security": {"secret_env": "GANTRY_WEBHOOK_SCALE_SECRET"},
        "resources": [{"kind": "release", "filter": "true", "port": {"entity": {"mappings": mappings}}}],
    }


async def setup_catalog_of(stack: Stack) -> None:
    service = {
        "identifier": SERVICE,
        "title": "Service",
        "schema": {"properties": {"version": {"type": "string"}}},
    }
    for path, body in (
        ("/v1/blueprints", service),
        ("/v1/blueprints", environment_blueprint()),
        ("/v1/actions", teardown_action(stack.receiver.url)),
        ("/v1/users", {"identifier": "approver", "email": "approver@example.com"}),
        ("/v1/actions", ship_action(stack.receiver.url)),
        ("/v1/data-sources", hook_source()),
    ):
        response = await stack.call("POST", path, json=body)
        assert response.status_code == 201, (path, response.text)
    token = (await stack.call("POST", "/v1/tokens", json={"user": "approver"})).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    stack.approvers = [httpx.AsyncClient(base_url=api.url, headers=headers, timeout=60) for api in stack.apis]
    for i in range(RUNS):
        body = {"identifier": f"svc-{i}", "properties": {"version": "0"}}
        response = await stack.call("POST", f"/v1/blueprints/{SERVICE}/entities", json=body)
        assert response.status_code == 201, response.text


async def launch_and_approve(stack: Stack, i: int) -> None:
    body = {"entity": f"svc-{i}", "idempotency_key": f"ship-{i}"}
    launched = await stack.call("POST", f"/v1/actions/{SHIP}/runs", first=i, json=body)
    assert launched.status_code in (200, 202), launched.text
    run_id = launched.json()["id"]

    async def gate_open() -> bool:
        # The launch records the run IN_PROGRESS (its gate is a step); the workflow's report of
        # the opened gate brings ``approval``. A run that never started ends instead.
        run = (await stack.call("GET", f"/v1/runs/{run_id}", first=i)).json()
        return run["status"] in TERMINAL or bool(run["approval"])

    await eventually_async(gate_open, timeout=90, what=f"run {run_id}'s approval to open", context=stack.tail)

    async def decide() -> httpx.Response | None:
        decided = await stack.call(
            "POST", f"/v1/runs/{run_id}/approval", first=i + 1, approver=True, json={"decision": "APPROVE"}
        )
        if decided.status_code != 409:
            return decided
        # 409: decided already (an earlier attempt went through, its answer lost with the API
        # process that died), or the gate is not open in the workflow yet: ask again.
        run = (await stack.call("GET", f"/v1/runs/{run_id}", first=i)).json()
        pending = (run["approval"] or {}).get("status") == "PENDING" and run["status"] not in TERMINAL
        return None if pending else decided

    decided = await eventually_async(decide, timeout=90, what=f"run {run_id}'s decision", context=stack.tail)
    stack.notes += f"\nrun {run_id}: decision {decided.status_code} {decided.text[:300]}"
    assert decided.status_code in (200, 409), decided.text
    stack.done += 1


async def arm_timer(stack: Stack, i: int) -> None:
    body = {"identifier": f"env-{i}", "properties": {"expires_at": iso(seconds_ahead(15))}}
    response = await stack.call("POST", f"/v1/blueprints/{BLUEPRINT}/entities", first=i, json=body)
    assert response.status_code in (201, 409), response.text  # 409: created before its API died
    stack.done += 1


async def deliver_hook(stack: Stack, i: int) -> None:
    raw = json.dumps({"name": f"hook-{i}", "version": str(i)}).encode()
    signature = "sha256=" + hmac.new(HOOK_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    headers = {
        "content-type": "application/json",
        "x-hub-signature-256": signature,
        "x-delivery-id": f"d-{i}",
    }
    for attempt in range(2 if i % 3 == 0 else 1):  # every third one delivered twice, as vendors do
        response = await stack.call(
            "POST", "/v1/webhooks/hooks", first=i + attempt, content=raw, headers=headers
        )
        assert response.status_code == 202, response.text
    stack.done += 1


async def write_entity(stack: Stack, n: int) -> None:
    """Four upserts of one new entity: the first on both API processes at the same instant (two
    writers racing to create it: both succeed, one creates and the other updates), the others in
    turn, alternating between the processes."""
    path = f"/v1/blueprints/{SERVICE}/entities"
    first = {"identifier": f"write-{n}", "properties": {"version": "0"}}
    both = await asyncio.gather(
        *(stack.call("POST", path, first=n + side, params={"upsert": "true"}, json=first) for side in (0, 1))
    )
    assert sorted(r.status_code for r in both) in ([200, 201], [200, 200]), [r.text for r in both]
    stack.done += 1
    for version in range(1, WRITES // ENTITIES_WRITTEN):
        body = {"identifier": f"write-{n}", "properties": {"version": str(version)}}
        response = await stack.call("POST", path, first=n + version, params={"upsert": "true"}, json=body)
        assert response.status_code in (200, 201), response.text
        stack.done += 1


async def crash_one_of_each(stack: Stack) -> None:
    """Mid-load: SIGKILL API process 0 and worker 0, then start them again."""
    total = RUNS + TIMERS + HOOKS + WRITES
    await eventually_async(lambda: stack.done >= total // 4, timeout=120, what="a quarter of the load")
    stack.apis[0].kill()
    stack.workers[0].kill()
    await asyncio.to_thread(stack.apis[0].start, 60)
    await asyncio.to_thread(stack.workers[0].start, 60)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_two_apis_and_two_workers_apply_everything_once_across_a_crash_of_each(
    database_url: str, tmp_path: Path, receiver: TeardownReceiver
) -> None:
    receiver.reset()
    server = DevServerProcess(tmp_path / "temporal.db").start()
    task_queue = f"gantry-scale-{uuid.uuid4().hex[:8]}"
    ports = [free_port(), free_port()]
    apis = [
        ApiProcess(
            gantry_env(
                data_dir=tmp_path,
                database_url=database_url,
                temporal_address=server.address,
                task_queue=task_queue,
                api_url=f"http://127.0.0.1:{port}",
                admin_token=ADMIN_TOKEN,
                service_token=SERVICE_TOKEN,
                secret_key="secret-key-scale-out",
                webhook_secret=WEBHOOK_SECRET,
                webhook_scale_secret=HOOK_SECRET,
                run_converge_after=5.0,
            ),
            tmp_path / f"api-{n}.log",
            host="127.0.0.1",
            port=port,
        )
        for n, port in enumerate(ports)
    ]
    workers = [
        WorkerProcess(worker_env(tmp_path, server.address, task_queue, api.url), tmp_path / f"worker-{n}.log")
        for n, api in enumerate(apis)
    ]
    stack = Stack(apis, workers, receiver)
    try:
        for process in [*apis, *workers]:  # one after the other: the first API migrates the catalog
            await asyncio.to_thread(process.start, 60)
        await setup_catalog_of(stack)

        await asyncio.gather(
            *(launch_and_approve(stack, i) for i in range(RUNS)),
            *(arm_timer(stack, i) for i in range(TIMERS)),
            *(deliver_hook(stack, i) for i in range(HOOKS)),
            *(write_entity(stack, n) for n in range(ENTITIES_WRITTEN)),
            crash_one_of_each(stack),
        )
        assert all(process.alive() for process in [*apis, *workers]), stack.tail()

        await assert_everything_applied_once(stack)
    finally:
        await stack.aclose()
        for process in [*workers, *apis]:
            process.kill()
        server.stop()


async def assert_everything_applied_once(stack: Stack) -> None:
    # Every launch: one run each (idempotency keys across the failover), ended, shipped once.
    async def ships_ended() -> list[dict[str, Any]] | None:
        runs = await stack.pages("/v1/runs", action=SHIP)
        for run in runs:
            if run["status"] not in TERMINAL:
                # Reading a quiet run checks it against its workflow: one its launch never
                # started (the API process died in between) ends once the start grace is over.
                await stack.call("GET", f"/v1/runs/{run['id']}")
        stack.notes += "\n" + str(sorted((r["id"], r["status"]) for r in runs))
        return runs if len(runs) >= RUNS and all(r["status"] in TERMINAL for r in runs) else None

    runs = await eventually_async(
        ships_ended, timeout=150, what="every ship run to end", context=lambda: stack.tail() + stack.notes
    )
    assert sorted(r["entity"] for r in runs) == sorted(f"svc-{i}" for i in range(RUNS))
    for run in runs:
        # The launch whose API process died between committing the run and starting its
        # workflow: the run ends as never started (and is not started twice by the retry).
        never_started = run["status"] == "FAILURE" and NEVER_STARTED in str(run.get("error"))
        assert run["status"] == "SUCCESS" or never_started, run
        hits = stack.receiver.hits(f"ship-{run['entity']}")
        assert hits == (0 if never_started else 1), (run, stack.receiver.keys.get(f"ship-{run['entity']}"))

    # Every timer fired once: one expiry, one teardown run, one call to the receiver.
    async def timers_done() -> list[dict[str, Any]] | None:
        timers = [t for t in await stack.pages("/v1/timers") if t["entity"].startswith("env-")]
        done = len(timers) == TIMERS and all(t["teardown"] in ("done", "failed") for t in timers)
        return timers if done else None

    timers = await eventually_async(
        timers_done, timeout=120, what="every timer's teardown", context=stack.tail
    )
    assert {(t["state"], t["teardown"]) for t in timers} == {("expired", "done")}, timers
    for i in range(TIMERS):
        assert stack.receiver.hits(f"env-{i}") == 1, stack.receiver.keys.get(f"env-{i}")
        expired = await stack.pages("/v1/events", type="TIMER_EXPIRED", entity=f"env-{i}")
        assert len(expired) == 1, expired
    teardowns = await stack.pages("/v1/runs", action=ACTION)
    assert sorted(r["entity"] for r in teardowns) == sorted(f"env-{i}" for i in range(TIMERS))

    # Every webhook delivery applied once, redeliveries not at all.
    async def hooks_applied() -> list[dict[str, Any]] | None:
        deliveries = await stack.pages("/v1/data-sources/hooks/deliveries")
        return deliveries if all(d["status"] == "APPLIED" for d in deliveries) else None

    deliveries = await eventually_async(
        hooks_applied, timeout=60, what="every delivery applied", context=stack.tail
    )
    assert len(deliveries) == HOOKS
    for i in range(HOOKS):
        entity = (await stack.call("GET", f"/v1/blueprints/{SERVICE}/entities/hook-{i}")).json()
        assert entity["properties"]["version"] == str(i)

    # Every entity write landed; every event went out; no run is left in progress.
    for n in range(ENTITIES_WRITTEN):
        entity = (await stack.call("GET", f"/v1/blueprints/{SERVICE}/entities/write-{n}")).json()
        assert entity["properties"]["version"] == str(WRITES // ENTITIES_WRITTEN - 1), entity
    await eventually_async(
        lambda: _none_undelivered(stack), timeout=60, what="every event delivered", context=stack.tail
    )
    for status in ("IN_PROGRESS", "WAITING_FOR_APPROVAL"):
        assert await stack.pages("/v1/runs", status=status) == []


async def _none_undelivered(stack: Stack) -> bool:
    return await stack.pages("/v1/events", delivered="false") == []
