"""The action-run workflow's contract: what it starts with, what it reports, how it ends."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from temporalio.converter import value_to_type

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


@dataclass
class RunInput:
    run_id: str
    # The saved action definition (steps with ``uses``/``with``/``if``…, user_inputs, approval):
    # user data the workflow renders and evaluates, passed as the catalog stores it.
    action: dict[str, Any]
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
    approvals: dict[str, Any] = field(default_factory=dict)
    # Keep GantryRunStatus current (off on servers without custom search attributes).
    search_attributes: bool = True
    # A retry passes only the gates that were APPROVED ("action"; approval steps it keeps as
    # earlier steps). None: an input from before this field, whose retries skipped the gate.
    approved_gates: list[str] | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunInput:
        """The input the catalog stored (and a retry patched) as JSON, checked as the workflow will
        read it: unknown keys are dropped, a missing required one raises ``TypeError``."""
        run_input: RunInput = value_to_type(cls, dict(data), [])
        return run_input


def initial_steps(steps: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A run's ``steps[]`` before anything ran, from the action's step definitions: the catalog's
    new run record and the workflow's first report start from this one skeleton."""
    return [
        {
            "id": s["id"],
            "title": s.get("title") or s["id"],
            "uses": s["uses"],
            "status": "PENDING",
            "started_at": None,
            "ended_at": None,
            "outputs": {},
            "error": None,
        }
        for s in steps
    ]


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
    steps: list[dict[str, Any]] = field(default_factory=list)
    approval: dict[str, Any] | None = None
    links: list[dict[str, Any]] = field(default_factory=list)
    affected_entities: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    logs: list[LogLine] = field(default_factory=list)


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
