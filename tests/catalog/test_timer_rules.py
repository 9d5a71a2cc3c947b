"""TTL timer rules as pure functions: which extensions are refused and why, which reminders are
still ahead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from catalog.timers.rules import extension_problem, reminder_times

CREATED = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
FIRST = CREATED + timedelta(days=2)


def problem(**overrides: Any) -> str | None:
    """An active timer created at CREATED, first due at FIRST, allowed 1 day more, 7 days in all."""
    values: dict[str, Any] = {
        "state": "active",
        "deadline": FIRST,
        "original_deadline": FIRST,
        "by": timedelta(hours=12),
        "max_extension": "P1D",
        "max_ttl": "P7D",
        "created_at": CREATED,
    }
    values.update(overrides)
    return extension_problem(**values)


def test_an_extension_within_both_limits_is_allowed() -> None:
    assert problem() is None
    assert problem(by=timedelta(days=1)) is None, "exactly the maximum extension is allowed"
    assert problem(max_extension=None, max_ttl=None, by=timedelta(days=365)) is None


@pytest.mark.parametrize("by", [timedelta(0), timedelta(seconds=-1)])
def test_an_extension_must_be_positive(by: timedelta) -> None:
    assert problem(by=by) == "an extension must be positive"


@pytest.mark.parametrize("state", ["expired", "cancelled", "tearing_down"])
def test_only_an_active_timer_can_be_extended(state: str) -> None:
    assert problem(state=state) == f"the timer is {state}: only an active timer can be extended"


def test_a_timer_without_a_deadline_cannot_be_extended() -> None:
    assert problem(deadline=None) == "the timer is active: only an active timer can be extended"


def test_extensions_add_up_against_the_first_deadline() -> None:
    # Already extended by 20 hours: 4 more are allowed, 5 are not.
    extended = FIRST + timedelta(hours=20)
    assert problem(deadline=extended, by=timedelta(hours=4)) is None
    assert (
        problem(deadline=extended, by=timedelta(hours=5))
        == "extensions may add at most P1D to the first deadline"
    )


def test_a_timer_without_a_first_deadline_counts_no_extension_yet() -> None:
    assert problem(original_deadline=None, by=timedelta(days=3)) is None


def test_no_extension_runs_past_the_maximum_ttl_from_creation() -> None:
    late = CREATED + timedelta(days=6, hours=20)
    kwargs = {"deadline": late, "original_deadline": late, "max_extension": None}
    assert problem(**kwargs, by=timedelta(hours=4)) is None  # exactly 7 days
    assert (
        problem(**kwargs, by=timedelta(hours=5))
        == "the timer may not run past P7D from the entity's creation"
    )


def test_reminders_still_ahead_soonest_first() -> None:
    deadline = CREATED + timedelta(days=1)
    remind = ["PT1H", "P1D", "PT12H", "PT2H"]
    ahead = reminder_times(deadline, remind, now=CREATED + timedelta(hours=12))
    # P1D is at creation and PT12H exactly now: both gone; the rest soonest first.
    assert ahead == [deadline - timedelta(hours=2), deadline - timedelta(hours=1)]
    assert reminder_times(deadline, remind, now=deadline) == []
    assert reminder_times(deadline, [], now=CREATED) == []
