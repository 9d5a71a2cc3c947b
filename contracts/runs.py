"""The action-run workflow's contract: what it starts with, what it reports, how it ends."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from temporalio.converter import TransferTypeConverter, transfer_type_convertible

from contracts.actions import ActionSpec, StepSpec, step_needs
from contracts.approvals import ApprovalPolicy
from contracts.wire import from_wire, to_wire

ACTION_RUN_WORKFLOW = "ActionRun"
REPORT_ACTIVITY = "gantry.report_run"


class RunStatus(StrEnum):
    WAITING_FOR_APPROVAL = "WAITING_FOR_APPROVAL"
    IN_PROGRESS = "IN_PROGRESS"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    DECLINED = "DECLINED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"


TERMINAL = frozenset(
    {RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.DECLINED, RunStatus.CANCELLED, RunStatus.TIMED_OUT}
)
# The unsuccessful ends a run's workflow fails with (ApplicationError type by status).
RUN_FAILED_TYPES = {
    RunStatus.FAILURE: "RunFailed",
    RunStatus.DECLINED: "RunDeclined",
    RunStatus.TIMED_OUT: "RunTimedOut",
}


@dataclass
class Requester:
    """Who launched the run; templates read it as ``user``."""

    identifier: str
    email: str = ""
    name: str = ""
    teams: list[str] = field(default_factory=list)


@dataclass
class RunInfo:
    """The run record as templates read it (``run``)."""

    id: str
    action: str
    source: str | None = None
    started_at: str = ""
    url: str = ""
    temporal_ui_url: str = ""


class _RunInputWire(TransferTypeConverter["RunInput", dict[str, Any]]):
    """RunInput as a workflow argument: Temporal's data converter (the default one, on every
    client, worker and replayer) calls this for the top-level value, so the action's steps go
    out and come back under their wire keys without a custom data converter."""

    transfer_type = dict[str, Any]

    def to_transfer_type(self, value: RunInput) -> dict[str, Any]:
        return value.to_json()

    def from_transfer_type(self, value: dict[str, Any], type_hint: type[RunInput]) -> RunInput:
        return RunInput.from_json(value)


@transfer_type_convertible(_RunInputWire)
@dataclass
class RunInput:
    """What an ActionRun workflow starts with. It converts itself to and from JSON (see
    :mod:`contracts.wire`): the action keeps its stored shape on the wire, so inputs from
    before it was typed, and recorded histories, decode as they are."""

    run_id: str
    # The saved action: its steps (``uses``/``with``/``if``…), user_inputs, approval.
    action: ActionSpec
    entity: dict[str, Any] | None
    inputs: dict[str, Any]
    user: Requester
    run: RunInfo
    event: dict[str, Any] | None = None
    # A retry resumes at this step, with the earlier steps' {"status", "outputs"}.
    resume_at: str | None = None
    previous_steps: dict[str, Any] = field(default_factory=dict)
    # First seq of this execution's log lines (a retry continues after the last one).
    log_base: int = 0
    # Approval policies with their eligible people, by gate ("action" or an approval step's id).
    approvals: dict[str, ApprovalPolicy] = field(default_factory=dict)
    # Keep GantryRunStatus current (off on servers without custom search attributes).
    search_attributes: bool = True
    # A retry passes only the gates that were APPROVED ("action"; approval steps it keeps as
    # earlier steps). None: an input from before this field, whose retries skipped the gate.
    approved_gates: list[str] | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunInput:
        """The input as JSON, read as the workflow will read it: unknown keys are dropped, a
        missing required one raises ``TypeError``."""
        return from_wire(cls, dict(data))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = to_wire(self)
        return data


@dataclass
class StepState:
    """One entry of a run's ``steps[]``: what the workflow reports and the catalog stores."""

    id: str
    uses: str
    title: str = ""
    # PENDING, IN_PROGRESS, SUCCESS, FAILURE, SKIPPED, COMPENSATED, or how the run ended while it
    # ran (CANCELLED, DECLINED). A plain string: a reader takes a newer worker's status as it is.
    status: str = "PENDING"
    started_at: str | None = None
    ended_at: str | None = None
    # A fanned-out step's (``for_each``) is the list of each item's outputs, in order.
    outputs: dict[str, Any] | list[Any] = field(default_factory=dict)
    error: str | None = None
    # The steps it waits for (the step before it, unless its definition names them).
    needs: list[str] = field(default_factory=list)

    @classmethod
    def pending(cls, step: StepSpec | Mapping[str, Any], needs: list[str] | None = None) -> StepState:
        """The state of a step before anything ran, from its definition and what it needs."""
        spec = step if isinstance(step, StepSpec) else from_wire(StepSpec, dict(step))
        return cls(id=spec.id, uses=spec.uses, title=spec.title or spec.id, needs=list(needs or []))

    @classmethod
    def skeleton(cls, steps: Sequence[StepSpec | Mapping[str, Any]]) -> list[StepState]:
        """Every step of an action before anything ran, each with the steps it needs."""
        specs = [s if isinstance(s, StepSpec) else from_wire(StepSpec, dict(s)) for s in steps]
        needs = step_needs([(s.id, s.needs) for s in specs])
        return [cls.pending(s, needs[s.id]) for s in specs]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StepState:
        """A stored or reported step (unknown keys dropped)."""
        return from_wire(cls, dict(data))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def again(self) -> StepState:
        """The step as a retry finds it when the retry runs it again: pending, no outputs."""
        return dataclasses.replace(self, status="PENDING", error=None, outputs={})


def initial_steps(steps: Sequence[StepSpec | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A run's ``steps[]`` before anything ran, as the catalog stores it: the catalog's new run
    record and the workflow's first report start from this one skeleton (:meth:`StepState.skeleton`)."""
    return [s.to_json() for s in StepState.skeleton(steps)]


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


@dataclass
class LogLine:
    seq: int
    message: str
    level: LogLevel = "INFO"
    step_id: str | None = None
    at: str | None = None


@dataclass
class RunReport:
    """What a workflow tells the catalog about its run; every field replaces the stored one."""

    status: RunStatus
    status_label: str
    steps: list[StepState] = field(default_factory=list)
    approval: dict[str, Any] | None = None
    links: list[dict[str, Any]] = field(default_factory=list)
    affected_entities: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    logs: list[LogLine] = field(default_factory=list)
    # Where the report stands in the run's life: the seq the workflow's next log line takes. A
    # retried report can arrive after a newer one; the catalog ignores one with a lower number
    # (all but its log lines). None from workers before this field: applied as it comes.
    report_seq: int | None = None


@dataclass
class ReportInput:
    """A workflow's report of its run's state, for ``gantry.report_run``."""

    run_id: str
    report: RunReport


@dataclass
class RunOutcome:
    """How a run ended: the workflow's result when it succeeded (or, in histories from before
    failed runs failed their workflow, ended otherwise), else its failure's first detail."""

    status: RunStatus
    error: str | None = None
    label: str = ""

    @classmethod
    def from_details(cls, details: Any) -> RunOutcome | None:
        """The outcome a failed run's ApplicationError carries, if it is one."""
        if not isinstance(details, dict) or details.get("status") not in RUN_FAILED_TYPES:
            return None
        return cls(RunStatus(details["status"]), details.get("error"), str(details.get("label") or ""))
