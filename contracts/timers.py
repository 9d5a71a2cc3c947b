"""The TTL timer workflow's messages: its input, the ``arm`` signal, the ``extend`` Update, its
reports to the catalog, the run it starts on expiry and the notices for its owners."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_type_hints

from contracts.wire import WireError, from_wire, to_wire

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
class TimerExtension:
    """One accepted extension of a timer's deadline."""

    by: str  # an ISO 8601 duration
    user: str
    via: str = "api"
    at: str | None = None
    deadline: str | None = None  # the deadline it led to


@dataclass
class ReminderSent:
    at: str
    deadline: str | None = None


@dataclass
class NextReminder:
    """When the next reminder is due; ``at`` None: no reminder is left before the deadline."""

    at: str | None = None


@dataclass
class TimerNews:
    """A timer workflow's news for its record: a partial update, each field None (False) when
    there is nothing to say about it. On the HTTP wire (``POST /v1/timers/reports``) it is the
    object of the keys that say something (:meth:`to_json`); ``next_reminder`` is the one whose
    null is news (no reminder left), so it travels wrapped here and bare there."""

    # Readers take values they do not know yet as they come (a newer worker may send them).
    state: str | None = None  # active | cleared | expired
    deadline: str | None = None
    extensions: list[TimerExtension] | None = None
    reminder: ReminderSent | None = None
    next_reminder: NextReminder | None = None
    expired: bool = False
    teardown: str | None = None  # none | pending | running | done | failed
    on_expiry_run: str | None = None
    error: str | None = None
    # The text of a notice the owners are about to get: the answer names them.
    notify_owners: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            f.name: to_wire(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if getattr(self, f.name) not in (None, False)
        }
        if self.next_reminder is not None:
            data["next_reminder"] = self.next_reminder.at
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TimerNews:
        """A report body as it arrived: unknown keys (a newer worker's) are dropped, a malformed
        known one raises ``TypeError`` naming it."""
        known = {k: v for k, v in data.items() if k != "next_reminder" and v is not None}
        if "next_reminder" in data:
            known["next_reminder"] = {"at": data["next_reminder"]}
        hints = get_type_hints(cls)
        values = {}
        for name in (f.name for f in dataclasses.fields(cls) if f.name in known):
            try:
                values[name] = from_wire(hints[name], known[name])
            except (TypeError, ValueError) as exc:
                raise WireError(name, str(exc.__cause__ or exc)) from exc
        return cls(**values)

    @property
    def wants_owners(self) -> bool:
        """A reminder or a failed cleanup goes on to tell the owners: the answer names them."""
        return self.reminder is not None or bool(self.notify_owners)


@dataclass
class TimerReport:
    """A timer workflow's report for ``gantry.report_timer``."""

    timer_id: str
    report: TimerNews = field(default_factory=TimerNews)


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
