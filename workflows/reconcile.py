"""Housekeeping loops: converging run records, regrading scorecards.

A workflow terminated or timed out from outside cannot report its own end; ``ReconcileRuns``
asks the API to look at every quiet, unfinished run (``POST /v1/runs/reconcile``) so none stays
IN_PROGRESS forever. ``RegradeScorecards`` regrades every scorecard, for rules that depend on
time ("deployed within 30 days").

Each is one long-running workflow with a fixed id (the worker makes sure it runs): it loops
(a pass, then a durable sleep) and continues as new every ``PASSES_PER_EXECUTION`` passes, so
Temporal UI lists one execution per loop instead of one per pass. Histories recorded before
(one pass per execution, started by a Schedule) replay as a single pass.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

SCHEDULE_ID = "gantry-reconcile-runs"
EVERY = timedelta(minutes=1)
REGRADE_SCHEDULE_ID = "gantry-regrade-scorecards"
REGRADE_EVERY = timedelta(minutes=15)
# Bounds each execution's history (a pass is a handful of events).
PASSES_PER_EXECUTION = 60
LOOPING = "housekeeping-loops"


async def _pass(activity: str, timeout: timedelta, result_type: type) -> Any:
    return await workflow.execute_activity(
        activity,
        start_to_close_timeout=timeout,
        retry_policy=RetryPolicy(maximum_attempts=3),
        result_type=result_type,
    )


async def _loop(activity: str, timeout: timedelta, every: timedelta, result_type: type) -> NoReturn:
    """Pass, sleep, repeat; then continue as new with a fresh history."""
    for _ in range(PASSES_PER_EXECUTION):
        try:
            await _pass(activity, timeout, result_type)
        except ActivityError as exc:
            # One failed pass (the API down for a while) must not end the loop: the next one retries.
            workflow.logger.warning("%s failed, trying again in %s: %s", activity, every, exc)
        await workflow.sleep(every)
        if workflow.info().is_continue_as_new_suggested():
            break
    workflow.continue_as_new()


@workflow.defn(name="ReconcileRuns")
class ReconcileRuns:
    @workflow.run
    async def run(self) -> list[str]:
        if not workflow.patched(LOOPING):
            converged: list[str] = await _pass("gantry.reconcile_runs", timedelta(minutes=2), list)
            return converged
        await _loop("gantry.reconcile_runs", timedelta(minutes=2), EVERY, list)


@workflow.defn(name="RegradeScorecards")
class RegradeScorecards:
    @workflow.run
    async def run(self) -> dict[str, int]:
        if not workflow.patched(LOOPING):
            changed: dict[str, int] = await _pass("gantry.regrade_scorecards", timedelta(minutes=10), dict)
            return changed
        await _loop("gantry.regrade_scorecards", timedelta(minutes=10), REGRADE_EVERY, dict)
