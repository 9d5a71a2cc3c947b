"""Deterministic workflow code: action runs, approvals, TTL timers, automations.

``ALL_WORKFLOWS`` is what the worker registers.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # Imported on first use, not with the package: the workflow sandbox re-imports a workflow's
    # module (and so this package) for every run, and should not re-import every other workflow.
    if name == "ALL_WORKFLOWS":
        from workflows.action_run import ActionRun
        from workflows.automation import AutomationRun
        from workflows.data_source_sync import DataSourceSync
        from workflows.exemption import ExemptionExpiryTimer
        from workflows.initiative import InitiativeWorkflow
        from workflows.reconcile import ReconcileRuns, RegradeScorecards
        from workflows.timer import EntityTimer

        return [
            ActionRun,
            ReconcileRuns,
            RegradeScorecards,
            EntityTimer,
            AutomationRun,
            DataSourceSync,
            ExemptionExpiryTimer,
            InitiativeWorkflow,
        ]
    raise AttributeError(f"module 'workflows' has no attribute {name!r}")
