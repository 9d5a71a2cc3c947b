"""The TTL timer workflow's messages: its input, the ``arm`` signal, the ``extend`` Update, its
reports to the catalog, the run it starts on expiry and the notices for its owners."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

TIMER_WORKFLOW = "EntityTimer"
ARM_SIGNAL = "arm"
RUN_ENDED_SIGNAL = "run_ended"
EXTEND_UPDATE = "extend"
# ApplicationError type of a refused extension; the API answers 409.
EXTENSION_REFUSED = "ExtensionRefused"


@dataclass
class TimerInput:
    timer_id: str
    blueprint: str
    entity: str
    property: str


@dataclass
class Arm:
    """A new deadline (ISO time) for the timer, or None: the timer was cleared."""

    deadline: str | None
    policy: dict[str, Any] = field(default_factory=dict)
    entity_created_at: str = ""
    event_id: int = 0


@dataclass
class Extension:
    by: str  # an ISO 8601 duration
    user: str
    via: str = "api"


@dataclass
class TimerReport:
    """A timer workflow's news for the catalog (``gantry.report_timer``). ``report`` is a partial
    update: a key's presence matters (``next_reminder: None`` clears it), so it stays a mapping
    of the keys the catalog knows (state, deadline, extensions, next_reminder, reminder, expired,
    teardown, on_expiry_run, error, notify_owners); the catalog ignores keys it does not know."""

    timer_id: str
    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExpiryRun:
    """The run a timer starts when it expires (``gantry.start_expiry_run``)."""

    action: str
    blueprint: str
    entity: str
    idempotency_key: str
    # The timer: its run's trigger names it, so the run's end is signalled to the timer.
    timer_id: str = ""


@dataclass
class TimerOwner:
    identifier: str
    email: str
    name: str = ""


@dataclass
class TimerNotice:
    """What to tell a timer's owners: a ``reminder`` of ``deadline``, or a ``teardown_failed``
    with its ``text``."""

    kind: Literal["reminder", "teardown_failed"]
    timer_id: str
    blueprint: str
    entity: str
    property: str
    owners: list[TimerOwner] = field(default_factory=list)
    deadline: str | None = None
    text: str = ""
