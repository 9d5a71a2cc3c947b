"""The Temporal worker: builds clients from settings, registers workflows and activities, runs.

``python worker.py`` connects to ``GANTRY_TEMPORAL_ADDRESS``, makes sure Gantry's search
attributes and the housekeeping loops (run reconciling, scorecard regrading) exist, and polls ``GANTRY_TASK_QUEUE`` until SIGINT/SIGTERM, then shuts down
gracefully (running activities get ``GRACEFUL_SHUTDOWN`` to finish).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import timedelta

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from catalog.timefmt import configure_logging
from config import Settings, get_settings
from contracts.search_attributes import NAMES
from workflows.reconcile import REGRADE_SCHEDULE_ID, SCHEDULE_ID

log = logging.getLogger("gantry.worker")

# Set on every Gantry workflow so operators can filter runs in Temporal UI (README: Runs).
SEARCH_ATTRIBUTES = NAMES
GRACEFUL_SHUTDOWN = timedelta(seconds=20)
CONNECT_PATIENCE = timedelta(seconds=60)


async def connect(settings: Settings) -> Client:
    """A client for the configured Temporal address, namespace and TLS flag."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        tls=settings.temporal_tls,
        identity=f"gantry-worker@{settings.task_queue}",
    )


async def ensure_search_attributes(client: Client, namespace: str) -> None:
    """Register Gantry's Keyword search attributes; the ones that already exist are left alone."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    known = set(existing.custom_attributes) | set(existing.system_attributes)
    missing = [name for name in SEARCH_ATTRIBUTES if name not in known]
    if not missing:
        return
    request = AddSearchAttributesRequest(
        namespace=namespace,
        search_attributes={name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for name in missing},
    )
    try:
        await client.operator_service.add_search_attributes(request)
    except RPCError as exc:
        # Another worker registered them between our list and add.
        if exc.status != RPCStatusCode.ALREADY_EXISTS:
            raise
    log.info("registered search attributes %s in namespace %s", ", ".join(missing), namespace)


HOUSEKEEPING = {
    SCHEDULE_ID: ("ReconcileRuns", "Converge run records on their workflows' real ends"),
    REGRADE_SCHEDULE_ID: ("RegradeScorecards", "Regrade scorecards (time-based rules)"),
}


async def ensure_housekeeping(
    client: Client, workflow_id: str, workflow: str, summary: str, task_queue: str
) -> None:
    """Make sure the housekeeping loop runs on ``task_queue``: one long-running workflow with a
    fixed id (not a Schedule starting one per pass, which filled Temporal UI's list)."""
    # A Schedule from before the loops would keep starting one-pass executions next to the loop.
    with contextlib.suppress(RPCError):
        await client.get_schedule_handle(workflow_id).delete()
    handle = await client.start_workflow(
        workflow,
        id=workflow_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary=summary,
    )
    described = await handle.describe()
    if described.task_queue != task_queue:
        # The worker moved to another task queue: restart the loop there.
        await handle.terminate(f"moved to task queue {task_queue}")
        await client.start_workflow(
            workflow,
            id=workflow_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=summary,
        )
        log.info("restarted %s on task queue %s", workflow_id, task_queue)


async def prepare_namespace(client: Client, settings: Settings) -> None:
    """What every worker start makes sure of, idempotently, before it polls."""
    await ensure_search_attributes(client, settings.temporal_namespace)
    for workflow_id, (workflow, summary) in HOUSEKEEPING.items():
        await ensure_housekeeping(client, workflow_id, workflow, summary, settings.task_queue)


async def build_worker(client: Client, settings: Settings) -> Worker:
    """The worker for ``settings.task_queue`` with every workflow and activity registered."""
    from activities import build_activities
    from workflows import ALL_WORKFLOWS

    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=ALL_WORKFLOWS,
        activities=build_activities(settings),
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        # Temporal's default sticky schedule-to-start timeout (10 s) on purpose: with 3 s, a burst
        # (1,000 timers due together) overflowed it and each overflowed workflow task was replayed
        # from its whole history on the normal queue, 1.6x the expiry lag in bench.timers. The
        # price: a crashed worker's cached workflows move to another worker after 10 s.
    )


async def _connect_with_patience(settings: Settings) -> Client:
    """Connect, retrying while Temporal starts (compose starts us alongside it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CONNECT_PATIENCE.total_seconds()
    while True:
        try:
            return await connect(settings)
        except RuntimeError as exc:
            if loop.time() > deadline:
                raise
            log.warning("Temporal at %s not reachable yet (%s); retrying", settings.temporal_address, exc)
            await asyncio.sleep(2)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def run(settings: Settings) -> None:
    stop = _stop_on_signals()
    client = await _connect_with_patience(settings)
    await prepare_namespace(client, settings)
    try:
        worker = await build_worker(client, settings)
    except ValueError as exc:
        # Temporal refuses a worker with nothing to run; stay up so the stack stays up.
        log.warning("no workflows registered yet (%s); idling until stopped", exc)
        await stop.wait()
        return
    log.info(
        "worker polling task queue %r on %s (namespace %s)",
        settings.task_queue,
        settings.temporal_address,
        settings.temporal_namespace,
    )
    async with worker:
        await stop.wait()
        log.info("stopping: waiting up to %ss for running activities", GRACEFUL_SHUTDOWN.seconds)
    log.info("worker stopped")


def main() -> None:
    configure_logging()
    asyncio.run(run(get_settings()))


if __name__ == "__main__":
    main()
