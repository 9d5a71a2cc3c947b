"""The initiative workflow ``initiative:{identifier}``: durable timers to each reminder and the
deadline of one initiative.

The API starts it with signal-with-start when the initiative is created, signals a new
``schedule`` when its deadline or reminders change (the timers re-arm at once), and a schedule
without a deadline when the initiative is deleted (the workflow ends). At each reminder the
``initiatives.remind`` activity records it (an ``INITIATIVE_REMINDER`` event) and sends the
Slack DMs, each at most once even when the activity is retried after a worker crash. At the
deadline ``initiatives.report_deadline`` stores the final report and emits
``INITIATIVE_DEADLINE_PASSED``; the workflow then ends (a later deadline starts it again).
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from catalog.durations import parse_duration
    from catalog.timefmt import format_instant, format_optional
    from contracts.initiatives import (
        INITIATIVE_GONE,
        INITIATIVE_WORKFLOW,
        SCHEDULE_SIGNAL,
        InitiativeDeadline,
        InitiativeInput,
        InitiativeReminder,
        InitiativeSchedule,
    )

REMIND = RetryPolicy(maximum_attempts=10, maximum_interval=timedelta(minutes=1))
REPORT = RetryPolicy(maximum_interval=timedelta(minutes=1), non_retryable_error_types=[INITIATIVE_GONE])
# A worker that dies mid-reminder is noticed this fast; the retry looks before it posts again.
REMIND_HEARTBEAT = timedelta(seconds=10)


@workflow.defn(name=INITIATIVE_WORKFLOW)
class InitiativeWorkflow:
    def __init__(self) -> None:
        self._deadline: datetime | None = None
        self._remind_before: list[str] = []
        self._state = "waiting"  # waiting | active | ended | reported
        self._changed = False
        self._reminded: set[str] = set()
        self._log: list[str] = []

    @workflow.signal(name=SCHEDULE_SIGNAL)
    def schedule(self, schedule: InitiativeSchedule) -> None:
        if schedule.deadline is None:
            self._state = "ended"
        else:
            self._deadline = datetime.fromisoformat(schedule.deadline.replace("Z", "+00:00"))
            self._remind_before = list(schedule.remind_before)
            self._state = "active"
        self._changed = True

    @workflow.query
    def view(self) -> dict[str, Any]:
        return {
            "state": self._state,
            "deadline": format_optional(self._deadline),
            "remind_before": list(self._remind_before),
            "reminded": sorted(self._reminded),
            "log": list(self._log),
        }

    def _upcoming(self, now: datetime) -> list[tuple[datetime, str, str]]:
        """The reminders still ahead for the current deadline: (time, key, offset), soonest first."""
        assert self._deadline is not None
        deadline = format_instant(self._deadline)
        found = []
        for offset in self._remind_before:
            at = self._deadline - parse_duration(offset)
            key = f"{deadline}/{offset}"
            if at > now and key not in self._reminded:
                found.append((at, key, offset))
        return sorted(found)

    @workflow.run
    async def run(self, initiative: InitiativeInput) -> dict[str, Any]:
        await workflow.wait_condition(lambda: self._state != "waiting")
        while self._state == "active":
            assert self._deadline is not None
            now = workflow.now()
            if now >= self._deadline:
                await self._report(initiative)
                continue
            upcoming = self._upcoming(now)
            wake = upcoming[0][0] if upcoming else self._deadline
            workflow.set_current_details(f"**Deadline** {format_instant(self._deadline)}")
            self._changed = False
            try:
                await workflow.wait_condition(lambda: self._changed, timeout=wake - now)
            except TimeoutError:
                if upcoming and wake == upcoming[0][0]:
                    _, key, offset = upcoming[0]
                    self._reminded.add(key)
                    await self._remind(InitiativeReminder(initiative.identifier, key, offset))
        return self.view()

    async def _remind(self, reminder: InitiativeReminder) -> None:
        try:
            log: list[str] = await workflow.execute_activity(
                "initiatives.remind",
                reminder,
                result_type=list[str],
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=REMIND_HEARTBEAT,
                retry_policy=REMIND,
                summary=f"reminder {reminder.remind_before} before the deadline",
            )
        except ActivityError as exc:
            # A reminder that cannot be sent must not keep the deadline from being reported.
            self._log.append(f"reminder {reminder.key} failed: {exc.cause or exc}")
            return
        self._log += log

    async def _report(self, initiative: InitiativeInput) -> None:
        assert self._deadline is not None
        deadline = format_instant(self._deadline)
        try:
            await workflow.execute_activity(
                "initiatives.report_deadline",
                InitiativeDeadline(initiative.identifier, deadline),
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=REPORT,
                summary="final report",
            )
        except ActivityError as exc:
            # Gone, or its deadline moved: a new schedule re-arms the loop; none ends it.
            self._log.append(f"deadline {deadline} not reported: {exc.cause or exc}")
            # The API signals before it commits: a moved deadline's signal is here or on its way.
            if self._state == "active" and format_instant(self._deadline) == deadline:
                self._changed = False
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(lambda: self._changed, timeout=timedelta(minutes=1))
            if self._state == "active" and format_instant(self._deadline) != deadline:
                return  # re-armed: the loop waits for the new deadline
            if self._state == "active":
                self._state = "ended"
            return
        self._log.append(f"deadline {deadline} reported")
        self._state = "reported"
