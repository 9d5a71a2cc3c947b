"""An action's definition as the action-run workflow receives it (``RunInput.action``).

The catalog checks a definition when it is saved (``catalog.runs.actions``) and stores it as
JSON; the workflow reads the parts it acts on through these types. On the wire a step's
parameters and condition keep their authored keys ``with`` and ``if`` (see
:mod:`contracts.wire`), so running and recorded workflows read the same JSON as before. Parts
the workflow never reads (description, icon, permissions, preconditions) are not carried: a
reader ignores them, as it ignores a newer peer's additions.
"""

from __future__ import annotations

from collections.abc import Mapping
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

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ActionSpec:
        """A definition as the catalog stores it: unknown keys are dropped, a missing required
        one raises ``TypeError``."""
        return from_wire(cls, dict(data))

    def to_json(self) -> dict[str, Any]:
        """The definition in its stored shape (``with``/``if``; absent options left out)."""
        data: dict[str, Any] = to_wire(self)
        return data
