"""The rules of TTL timers as pure functions, shared by the catalog and the timer workflow
(which checks extensions in its Update validator). No I/O, no clock: callers pass ``now``."""

from __future__ import annotations

from datetime import datetime, timedelta

from catalog.durations import parse_duration


def extension_problem(
    *,
    state: str,
    deadline: datetime | None,
    original_deadline: datetime | None,
    by: timedelta,
    max_extension: str | None,
    max_ttl: str | None,
    created_at: datetime,
) -> str | None:
    """Why extending a timer by ``by`` is refused, or None."""
    if by <= timedelta(0):
        return "an extension must be positive"
    if state != "active" or deadline is None:
        return f"the timer is {state}: only an active timer can be extended"
    new_deadline = deadline + by
    extended = new_deadline - original_deadline if original_deadline is not None else timedelta(0)
    if max_extension and extended > parse_duration(max_extension):
        return f"extensions may add at most {max_extension} to the first deadline"
    if max_ttl and new_deadline > created_at + parse_duration(max_ttl):
        return f"the timer may not run past {max_ttl} from the entity's creation"
    return None


def reminder_times(deadline: datetime, remind_before: list[str], now: datetime) -> list[datetime]:
    """The reminders still ahead, soonest first."""
    return sorted(t for t in (deadline - parse_duration(r) for r in remind_before) if t > now)
