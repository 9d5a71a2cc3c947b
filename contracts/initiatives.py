"""The initiative workflow's messages: its input, the ``schedule`` signal that arms, re-arms or
ends it, and what its reminder and deadline activities are asked to do."""

from __future__ import annotations

from dataclasses import dataclass, field

INITIATIVE_WORKFLOW = "Initiative"
SCHEDULE_SIGNAL = "schedule"
# ApplicationError type the deadline activity raises when the initiative is gone or its deadline moved.
INITIATIVE_GONE = "InitiativeGone"


def initiative_workflow_id(identifier: str) -> str:
    return f"initiative:{identifier}"


@dataclass
class InitiativeInput:
    identifier: str


@dataclass
class InitiativeSchedule:
    """The deadline (RFC 3339) and reminder offsets (ISO 8601 durations before it); a deadline
    of None ends the workflow (the initiative was deleted)."""

    deadline: str | None
    remind_before: list[str] = field(default_factory=list)


@dataclass
class InitiativeReminder:
    """One reminder: ``key`` names it for this deadline, so it is recorded and sent once."""

    identifier: str
    key: str
    remind_before: str


@dataclass
class InitiativeDeadline:
    identifier: str
    deadline: str
