"""An action's definition as the action-run workflow receives it (``RunInput.action``).

The catalog checks a definition when it is saved (``catalog.runs.actions``) and stores it as
JSON; the workflow reads the parts it acts on through these types. On the wire a step's
parameters and condition keep their authored keys ``with`` and ``if`` (see
:mod:`contracts.wire`), so running and recorded workflows read the same JSON as before. Parts
the workflow never reads (description, icon, permissions, preconditions) are not carried: a
reader ignores them, as it ignores a newer peer's additions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from contracts.approvals import ApprovalPolicy
from contracts.wire import from_wire, to_wire


@dataclass
class TriggerSpec:
    """How the action is launched: ``CREATE``, ``DAY-2`` or ``DELETE``, and on which entities."""

    WIRE_NAMES: ClassVar[Mapping[str, str]] = {}

    operation: str
    condition: dict[str, Any] | None = None


@dataclass
class RetrySpec:
    """A step's retry policy as saved; None: the workflow's default for that number."""

    WIRE_NAMES: ClassVar[Mapping[str, str]] = {}

    maximum_attempts: int | None = None
    initial_interval: str | None = None  # ISO 8601 durations
    backoff_coefficient: float | None = None
    maximum_interval: str | None = None


@dataclass
class CompensationSpec:
    """What undoes a completed step when a later one fails or the run is cancelled."""

    WIRE_NAMES: ClassVar[Mapping[str, str]] = {"params": "with"}

    uses: str
    params: dict[str, Any] = field(default_factory=dict)
    timeout: str | None = None
    heartbeat_timeout: str | None = None
    retry: RetrySpec | None = None


@dataclass
class StepSpec:
    """One step of an action: the step kind it ``uses``, its templated parameters (``with``) and
    its condition (``if``), both rendered by the workflow."""

    WIRE_NAMES: ClassVar[Mapping[str, str]] = {"params": "with", "condition": "if"}

    id: str
    uses: str
    title: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    condition: str | None = None
    timeout: str | None = None
    # Waiting kinds only: how long a silent worker is trusted before the step moves to another.
    heartbeat_timeout: str | None = None
    retry: RetrySpec | None = None
    compensate: CompensationSpec | None = None
    wait_for_completion: bool | None = None
    # The steps it waits for. None: the step before it (none for the first); []: none at all.
    needs: list[str] | None = None
    # A template rendering to a list: the step runs once per item (templates see ``item`` and
    # ``index``), at most ``max_parallel`` at a time (None: all at once).
    for_each: str | None = None
    max_parallel: int | None = None


STOP = "stop"
CONTINUE = "continue"


@dataclass
class StrategySpec:
    """What a failed step does to the rest of a run whose steps run in parallel: ``stop``
    cancels the running steps and starts no more; ``continue`` lets the branches that do not
    need the failed step go on (its dependents are skipped), and the run fails at the end."""

    WIRE_NAMES: ClassVar[Mapping[str, str]] = {}

    on_failure: str = STOP


@dataclass
class ActionSpec:
    """A saved action, as much of it as a run needs."""

    WIRE_NAMES: ClassVar[Mapping[str, str]] = {}

    identifier: str
    steps: list[StepSpec]
    title: str = ""
    blueprint: str | None = None
    trigger: TriggerSpec | None = None
    # The inputs' JSON Schema (``properties``, ``required``); ``secret`` marks a secret input.
    user_inputs: dict[str, Any] = field(default_factory=dict)
    # The action's own approval policy as saved (the people eligible come in RunInput.approvals).
    approval: ApprovalPolicy | None = None
    strategy: StrategySpec | None = None

    @property
    def is_graph(self) -> bool:
        """Whether any step says what it needs or fans out: the run schedules a graph rather
        than walking the list."""
        return any(s.needs is not None or s.for_each is not None for s in self.steps)

    @property
    def on_failure(self) -> str:
        return self.strategy.on_failure if self.strategy is not None else STOP

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ActionSpec:
        """A definition as the catalog stores it: unknown keys are dropped, a missing required
        one raises ``TypeError``."""
        return from_wire(cls, dict(data))

    def to_json(self) -> dict[str, Any]:
        """The definition in its stored shape (``with``/``if``; absent options left out)."""
        data: dict[str, Any] = to_wire(self)
        return data


# ---- the steps as a graph -----------------------------------------------------------------


def step_needs(steps: Sequence[tuple[str, list[str] | None]]) -> dict[str, list[str]]:
    """Each step's ``needs`` as the run reads them, from ``(id, needs)`` in definition order: a
    step that names none follows the step before it (today's list of steps is a chain)."""
    resolved: dict[str, list[str]] = {}
    previous: str | None = None
    for step_id, needs in steps:
        resolved[step_id] = list(needs) if needs is not None else ([previous] if previous else [])
        previous = step_id
    return resolved


def needs_cycle(needs: Mapping[str, list[str]]) -> list[str] | None:
    """A cycle among the steps (its ids, the first repeated at the end), or None."""
    state: dict[str, str] = {}  # "open" while on the path, "done" once all it needs is

    def visit(step_id: str, path: list[str]) -> list[str] | None:
        if state.get(step_id) == "done" or step_id not in needs:
            return None
        if state.get(step_id) == "open":
            return [*path[path.index(step_id) :], step_id]
        state[step_id] = "open"
        for needed in needs[step_id]:
            found = visit(needed, [*path, step_id])
            if found:
                return found
        state[step_id] = "done"
        return None

    for step_id in needs:
        found = visit(step_id, [])
        if found:
            return found
    return None


def upstream(needs: Mapping[str, list[str]], step_id: str) -> set[str]:
    """Every step ``step_id`` waits for, directly or through the steps it needs."""
    seen: set[str] = set()
    todo = list(needs.get(step_id, []))
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo += needs.get(current, [])
    return seen
