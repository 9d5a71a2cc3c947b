"""The TTL timer workflow ``timer:{blueprint}:{entity}:{property}``: an updatable deadline.

Armed (and re-armed, or cleared) by the ``arm`` signal the event relay sends with
signal-with-start, so a concurrent second write never makes two. Sends reminders before the
deadline, accepts extensions through the ``extend`` Update (its validator enforces the
blueprint's policy), and at the deadline reports the expiry (the catalog emits
``TIMER_EXPIRED``) and runs the blueprint's ``on_expiry`` action, waiting for its outcome.
Reminders and a failed teardown also go to the timer's owners in Slack
(``slack.notify_timer_owners``); a Slack failure is reported, never fatal to the timer.
"""

from __future__ import annotations

import contextlib
import dataclasses
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from catalog.durations import parse_duration
    from catalog.timefmt import format_instant, format_optional
    from catalog.timers.rules import extension_problem, reminder_times
    from contracts.timers import (
        ARM_SIGNAL,
        EXTEND_UPDATE,
        EXTENSION_REFUSED,
        RUN_ENDED_SIGNAL,
        Arm,
        ExpiryRun,
        Extension,
        NextReminder,
        ReminderSent,
        TimerExtension,
        TimerInput,
        TimerNews,
        TimerNotice,
        TimerOwner,
        TimerReport,
    )

REPORT = RetryPolicy(maximum_interval=timedelta(seconds=30))
NOTIFY = RetryPolicy(maximum_attempts=5, maximum_interval=timedelta(minutes=1))


@workflow.defn(name="EntityTimer")
class EntityTimer:
    def __init__(self) -> None:
        self._deadline: datetime | None = None
        self._original: datetime | None = None
        self._created_at: datetime | None = None
        self._policy: dict[str, Any] = {}
        self._state = "waiting"  # waiting | active | cleared | expired
        self._extensions: list[TimerExtension] = []
        self._reminded: set[str] = set()
        self._changed = False
        self._ended_runs: set[str] = set()

    @workflow.signal(name=ARM_SIGNAL)
    def arm(self, arm: Arm) -> None:
        if self._state == "expired":
            return  # the expiry's cleanup is under way; a late write does not revive it
        self._policy = arm.policy or self._policy
        if arm.entity_created_at:
            self._created_at = datetime.fromisoformat(arm.entity_created_at)
        if arm.deadline is None:
            self._state = "cleared"
        else:
            deadline = datetime.fromisoformat(arm.deadline.replace("Z", "+00:00"))
            if self._state != "active":
                self._original, self._extensions, self._reminded = deadline, [], set()
            self._deadline, self._state = deadline, "active"
        self._changed = True

    @workflow.signal(name=RUN_ENDED_SIGNAL)
    def run_ended(self, run_id: str) -> None:
        """The on-expiry run ended (the relay, on its RUN_UPDATED): look now, not at the next poll."""
        self._ended_runs.add(run_id)

    @workflow.update(name=EXTEND_UPDATE)
    def extend(self, extension: Extension) -> dict[str, Any]:
        assert self._deadline is not None
        self._deadline += parse_duration(extension.by)
        self._extensions.append(
            TimerExtension(
                by=extension.by,
                user=extension.user,
                via=extension.via,
                at=format_instant(workflow.now()),
                deadline=format_instant(self._deadline),
            )
        )
        self._changed = True
        return self.view()

    @extend.validator
    def _check_extension(self, extension: Extension) -> None:
        try:
            by = parse_duration(extension.by)
        except ValueError as exc:
            raise ApplicationError(str(exc), type=EXTENSION_REFUSED) from exc
        problem = extension_problem(
            state=self._state,
            deadline=self._deadline,
            original_deadline=self._original,
            by=by,
            max_extension=self._policy.get("max_extension"),
            max_ttl=self._policy.get("max_ttl"),
            created_at=self._created_at or workflow.now(),
        )
        if problem is not None:
            raise ApplicationError(problem, type=EXTENSION_REFUSED)

    @workflow.query
    def view(self) -> dict[str, Any]:
        return {
            "state": self._state,
            "deadline": format_optional(self._deadline),
            "original_deadline": format_optional(self._original),
            "extensions": [dataclasses.asdict(e) for e in self._extensions],
        }

    @workflow.run
    async def run(self, timer: TimerInput) -> dict[str, Any]:
        await workflow.wait_condition(lambda: self._state != "waiting")
        while self._state == "active":
            assert self._deadline is not None
            now = workflow.now()
            if now >= self._deadline:
                break
            upcoming = [
                t
                for t in reminder_times(self._deadline, self._policy.get("remind_before", []), now)
                if t.isoformat() not in self._reminded
            ]
            wake = min([*upcoming, self._deadline])
            workflow.set_current_details(f"**Expires** {format_instant(self._deadline)}")
            self._changed = False
            try:
                await workflow.wait_condition(lambda: self._changed, timeout=wake - now)
            except TimeoutError:
                if upcoming and wake == upcoming[0]:
                    self._reminded.add(wake.isoformat())
                    await self._remind(timer)
                continue
            await self._report(
                timer,
                TimerNews(
                    state=self._state,
                    deadline=self._iso(self._deadline),
                    extensions=list(self._extensions),
                    next_reminder=self._next_reminder(),
                ),
            )
        if self._state == "cleared":
            await self._report(timer, TimerNews(state="cleared"))
            return self.view()
        await self._expire(timer)
        return self.view()

    async def _expire(self, timer: TimerInput) -> None:
        self._state = "expired"
        workflow.set_current_details("**Expired**")
        action = (self._policy.get("on_expiry") or {}).get("action")
        await self._report(
            timer, TimerNews(state="expired", expired=True, teardown="pending" if action else "none")
        )
        if not action:
            return
        key = f"{timer.timer_id}@{self._iso(self._deadline)}"
        try:
            run_id = await workflow.execute_activity(
                "gantry.start_expiry_run",
                ExpiryRun(action, timer.blueprint, timer.entity, key, timer.timer_id),
                result_type=str,
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=RetryPolicy(maximum_attempts=10, maximum_interval=timedelta(minutes=1)),
                summary=f"start {action}",
            )
        except ActivityError as exc:
            await self._teardown_failed(timer, None, f"could not start '{action}': {_message(exc)}")
            return
        await self._report(timer, TimerNews(teardown="running", on_expiry_run=run_id))
        final = await self._wait_for_run(run_id, action)
        if final.get("status") == "SUCCESS":
            await self._report(timer, TimerNews(teardown="done"))
        else:
            await self._teardown_failed(
                timer, run_id, f"'{action}' ended {final.get('status')}: {final.get('error')}"
            )

    async def _wait_for_run(self, run_id: str, action: str) -> dict[str, Any]:
        """Poll the run with short activities and a durable sleep between them, so a thousand
        waiting timers hold no worker slots. The ``run_ended`` signal cuts a sleep short: the
        poll then finds the run ended at once; without it (a lost signal), the polls still do."""
        delay = timedelta(seconds=2)
        while True:
            state = await workflow.execute_activity(
                "gantry.run_status",
                run_id,
                result_type=dict,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
                summary=f"is {action} done?",
            )
            if state.get("status") in ("SUCCESS", "FAILURE", "DECLINED", "CANCELLED", "TIMED_OUT"):
                return dict(state)
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(lambda: run_id in self._ended_runs, timeout=delay)
            self._ended_runs.discard(run_id)
            delay = min(delay * 2, timedelta(minutes=1))

    async def _teardown_failed(self, timer: TimerInput, run_id: str | None, error: str) -> None:
        text = f"Cleanup of {timer.entity} after its {timer.property} expired needs attention: {error}"
        answer = await self._report(
            timer, TimerNews(teardown="failed", error=error, on_expiry_run=run_id, notify_owners=text)
        )
        notice = TimerNotice(
            "teardown_failed",
            timer.timer_id,
            timer.blueprint,
            timer.entity,
            timer.property,
            owners=_owners(answer),
            text=text,
        )
        problem = await self._notify(notice)
        if problem:
            await self._report(timer, TimerNews(error=f"{error} ({problem})"))

    async def _remind(self, timer: TimerInput) -> None:
        deadline = self._iso(self._deadline)
        answer = await self._report(
            timer,
            TimerNews(
                reminder=ReminderSent(at=format_instant(workflow.now()), deadline=deadline),
                next_reminder=self._next_reminder(),
            ),
        )
        notice = TimerNotice(
            "reminder",
            timer.timer_id,
            timer.blueprint,
            timer.entity,
            timer.property,
            owners=_owners(answer),
            deadline=deadline,
        )
        problem = await self._notify(notice)
        if problem:
            await self._report(timer, TimerNews(error=problem))

    async def _notify(self, notice: TimerNotice) -> str | None:
        """Tell the owners in Slack; what went wrong, if anything (the timer goes on regardless)."""
        if not notice.owners:
            return None
        try:
            await workflow.execute_activity(
                "slack.notify_timer_owners",
                notice,
                result_type=list[str],
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=NOTIFY,
                summary=f"tell owners: {notice.kind}",
            )
        except ActivityError as exc:
            return f"Slack: owners not told of the {notice.kind.replace('_', ' ')}: {_message(exc)}"
        return None

    def _next_reminder(self) -> NextReminder:
        if self._deadline is None:
            return NextReminder(None)
        upcoming = [
            t
            for t in reminder_times(self._deadline, self._policy.get("remind_before", []), workflow.now())
            if t.isoformat() not in self._reminded
        ]
        return NextReminder(format_instant(upcoming[0]) if upcoming else None)

    async def _report(self, timer: TimerInput, report: TimerNews) -> dict[str, Any]:
        """Tell the catalog; its answer names the timer's ``owners`` when they are to be told.

        A local activity: a short call to our own API, run in the worker within the workflow task,
        so a thousand timers expiring together cost the server one workflow task each rather
        than three (reports while the API is down retry in the worker, durably)."""
        return await workflow.execute_local_activity(
            "gantry.report_timer",
            TimerReport(timer.timer_id, report),
            result_type=dict,
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(days=1),
            retry_policy=REPORT,
            summary=next(iter(report.to_json()), "report"),
        )

    @staticmethod
    def _iso(moment: datetime | None) -> str | None:
        return format_optional(moment)


def _owners(answer: dict[str, Any]) -> list[TimerOwner]:
    """The owners ``gantry.report_timer`` answered with (those who have an email)."""
    return [
        TimerOwner(str(o["identifier"]), str(o["email"]), str(o.get("name") or ""))
        for o in answer.get("owners") or []
        if o.get("email")
    ]


def _message(exc: BaseException) -> str:
    cause: BaseException | None = exc
    message = str(exc)
    while cause is not None:
        if isinstance(cause, ApplicationError):
            message = cause.message
        cause = cause.__cause__
    return message
