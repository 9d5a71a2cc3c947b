"""The baseline of ``bench.timers``: a bare Temporal timer of the same shape as an expiry.

Sleep until the deadline, then one local activity, where ``EntityTimer`` reports the expiry to
the catalog. Kept apart from the benchmark so the workflow sandbox imports nothing else.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

BARE_WORKFLOW = "BenchBareTimer"
BARE_QUEUE = "bench-bare-timers"


@activity.defn(name="bench.note_expiry")
async def note_expiry() -> float:
    """Where ours reports the expiry to the catalog, the baseline notes the wall clock."""
    return time.time()


@workflow.defn(name=BARE_WORKFLOW)
class BareTimer:
    @workflow.run
    async def run(self, deadline: float) -> float:
        await workflow.sleep(max(0.0, deadline - workflow.now().timestamp()))
        return await workflow.execute_local_activity(
            note_expiry, start_to_close_timeout=timedelta(seconds=30)
        )


async def run_bare_worker(address: str) -> None:
    client = await Client.connect(address)
    async with Worker(client, task_queue=BARE_QUEUE, workflows=[BareTimer], activities=[note_expiry]):
        print(f"bare worker polling task queue {BARE_QUEUE!r}", flush=True)
        await asyncio.Event().wait()
