"""Scheduled housekeeping: converging run records, regrading scorecards.

Converges run records on their workflows' real ends, on a Temporal Schedule.

A workflow terminated or timed out from outside cannot report its own end; this one asks the
API to look at every quiet, unfinished run (``POST /v1/runs/reconcile``) so none stays
IN_PROGRESS forever.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

SCHEDULE_ID = "gantry-reconcile-runs"
EVERY = timedelta(minutes=1)
REGRADE_SCHEDULE_ID = "gantry-regrade-scorecards"
REGRADE_EVERY = timedelta(minutes=15)


@workflow.defn(name="ReconcileRuns")
class ReconcileRuns:
    @workflow.run
    async def run(self) -> list[str]:
        converged: list[str] = await workflow.execute_activity(
            "gantry.reconcile_runs",
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_attempts=3),
            result_type=list,
        )
        return converged


@workflow.defn(name="RegradeScorecards")
class RegradeScorecards:
    """Regrades every scorecard on a schedule, for rules that depend on time ("deployed within
    30 days")."""

    @workflow.run
    async def run(self) -> dict[str, int]:
        changed: dict[str, int] = await workflow.execute_activity(
            "gantry.regrade_scorecards",
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=RetryPolicy(maximum_attempts=3),
            result_type=dict,
        )
        return changed
