"""Sub-actions: a step (``uses: action``) that runs another action as a child run.

The parent's workflow asks the catalog for the child's run record with a
:class:`ChildRunRequest` (``gantry.prepare_child_run``); the catalog checks the launch as the
parent's requester (execute permission, entity, trigger condition, preconditions, inputs,
approvals), records the child and answers a :class:`ChildRun`: its ids and the workflow input the
parent then starts as a child workflow. When the child succeeds, ``gantry.child_run_outputs``
reads its steps' outputs, which become the step's outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SUB_ACTION_KIND = "action"
PREPARE_CHILD_RUN_ACTIVITY = "gantry.prepare_child_run"
CHILD_RUN_OUTPUTS_ACTIVITY = "gantry.child_run_outputs"
# The catalog refused the child (403, 404, 409, 422): its message fails the step, never retried.
CHILD_RUN_REFUSED = "ChildRunRefused"


@dataclass
class ChildRunRequest:
    """A sub-action step's child run, as the parent's workflow asks the catalog for it."""

    parent_run_id: str
    step_id: str
    action: str
    entity: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    # The parent's execution (its Temporal run id): a retried activity gets the same child, a
    # retried parent run (a new execution) a new one.
    execution: str = ""
    # The parent's secret marker: its secret inputs' placeholders in ``inputs`` become the values
    # (sealed again as the child's secret inputs); any other placeholder-shaped text stays literal.
    secret_marker: str = ""


@dataclass
class ChildRun:
    """The child run the catalog recorded, not yet started."""

    run_id: str
    action: str
    workflow_id: str
    # The child's RunInput as JSON (``RunInput.to_json``): its action keeps its wire keys.
    workflow_input: dict[str, Any]
    status: str = "IN_PROGRESS"
    summary: str = ""
    url: str = ""


@dataclass
class ChildRunOutputs:
    """What a finished child run produced: its steps' outputs by step id."""

    run_id: str
    outputs: dict[str, Any] = field(default_factory=dict)
