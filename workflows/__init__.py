"""Deterministic workflow code: action runs, approvals, TTL timers, automations.

``ALL_WORKFLOWS`` is what the worker registers.
"""

from __future__ import annotations

from workflows.action_run import ActionRun
from workflows.reconcile import ReconcileRuns

ALL_WORKFLOWS: list[type] = [ActionRun, ReconcileRuns]
