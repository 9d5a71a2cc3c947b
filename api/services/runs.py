"""Run operations: launch, retry, cancel and converge.

Each follows one path: check and prepare the record (``catalog.runs.service``), commit it, then start,
cancel or ask the workflow, then settle what Temporal answered. A workflow never runs without
its committed record, and a record is never left IN_PROGRESS for a workflow that could not be
started: Temporal down ends the run as not started (FAILURE) and the caller gets the 503.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Annotated, Any, TypeVar

import anyio.from_thread
from fastapi import Depends
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.deps import SessionDep, SettingsDep, TemporalDep
from api.errors import ServiceUnavailable
from api.temporal import TemporalGateway
from catalog.audit import Actor
from catalog.db import utcnow
from catalog.errors import Conflict, FieldError, Forbidden, Invalid, NotFound
from catalog.identity.permissions import Principal
from catalog.models import Run, User
from catalog.runs import actions, plan
from catalog.runs import service as runs
from catalog.runs.service import LaunchRequest, RunRequest
from config import Settings
from contracts.runs import RunInput
from contracts.sub_actions import ChildRun, ChildRunRequest

log = logging.getLogger(__name__)

# A run's record is committed before its workflow starts. Until this much later, a run whose
# workflow Temporal does not know was recorded by a launch that has not started it (yet, or ever:
# its API process died in between), and the same launch retried, or the reconciler, starts it;
# after it, the run is ended as never started. Longer than a quiet run's wait for a check (30 s)
# plus the reconciler's period (a minute), so the reconciler meets such a run within it.
WORKFLOW_START_GRACE = timedelta(minutes=5)
SOURCES = ("API", "CLI", "UI", "AUTOMATION")

T = TypeVar("T")


@dataclass
class Launched:
    """A launch's run; ``created`` False when its idempotency key had launched it already."""

    run: Run
    created: bool


class RunService:
    """Run operations for one request: its session, the app's Temporal gateway, the settings.
    Called from a route's worker thread (Temporal is awaited on the event loop)."""

    def __init__(self, session: Session, temporal: TemporalGateway, settings: Settings) -> None:
        self.session = session
        self.temporal = temporal
        self.settings = settings

    # ---- reading ------------------------------------------------------------------------

    def find(self, run_id: str, who: Principal) -> tuple[Run, runs.Visibility]:
        """The run and how much of it the caller sees; 404 when they may not see it at all."""
        run = runs.get_run(self.session, run_id)
        visibility = runs.visibility(self.session, run, who)
        if visibility is None:
            raise NotFound(f"run '{run_id}' not found")
        return run, visibility

    def ui_url(self, workflow_id: str) -> str:
        return runs.temporal_ui_url(
            self.settings.temporal_ui_url, self.settings.temporal_namespace, workflow_id
        )

    # ---- launch and retry -----------------------------------------------------------------

    def launch(
        self, action_id: str, body: RunRequest, user: User, who: Principal, *, source_header: str | None
    ) -> Launched:
        """Check the launch, commit its run, start its workflow. The same idempotency key
        answers the run it launched before (also when two requests race on it)."""
        launch = runs.prepare_run(self.session, self._request(action_id, body, user, who, source_header))
        if not launch.created or launch.workflow_input is None:
            # The same key again: perhaps because the API process that committed the run died
            # before starting its workflow. Then this request starts it.
            self.start_if_never_started(launch.run, Actor(user.identifier, launch.run.id))
            return Launched(launch.run, created=False)
        run = launch.run
        try:
            self.session.commit()
        except IntegrityError:
            # The same idempotency key launched concurrently: the other request's run (and its one
            # workflow, whose id is derived from the key) is the answer.
            self.session.rollback()
            return Launched(runs.get_run(self.session, run.id), created=False)
        summary = f"{run.action_title} · {run.entity or 'new'} · by {user.identifier}"
        # first_only: a new run's workflow id never ran; if the launch retried or the reconciler
        # started it (and it ended) while this request stalled, nothing is started twice.
        self._start(run, launch.workflow_input, summary, Actor(user.identifier, run.id), first_only=True)
        return Launched(run, created=True)

    def dry_run(
        self, action_id: str, body: RunRequest, user: User, who: Principal, *, source_header: str | None
    ) -> dict[str, Any]:
        """The plan of the launch, after the launch's checks; nothing is written (the session
        is rolled back) and Temporal is not called."""
        try:
            return plan.dry_run(self.session, self._request(action_id, body, user, who, source_header))
        finally:
            self.session.rollback()

    def _request(
        self, action_id: str, body: RunRequest, user: User, who: Principal, source_header: str | None
    ) -> LaunchRequest:
        """A launch of the action the caller may see (404 otherwise), from where they say."""
        action = actions.get_action(self.session, action_id)
        if not actions.may_see(self.session, action, who):
            raise NotFound(f"action '{action_id}' not found")
        return LaunchRequest(
            action=action,
            body=body,
            caller=user,
            who=who,
            source=_source(body, source_header, who),
            secret_key=self.settings.secret("secret_key"),
            api_url=self.settings.api_url,
            ui_url=self.ui_url,
        )

    def prepare_child(self, parent_id: str, request: ChildRunRequest) -> tuple[ChildRun, bool]:
        """Check and commit the run a parent's sub-action step launches, without starting it:
        the parent's workflow starts it as its child. ``created`` False: that step's child was
        recorded before (an activity retried), and is answered again."""
        parent = runs.get_run(self.session, parent_id)
        launch = runs.prepare_child_run(
            self.session,
            parent,
            request,
            secret_key=self.settings.secret("secret_key"),
            api_url=self.settings.api_url,
            ui_url=self.ui_url,
        )
        run, created = launch.run, launch.created
        try:
            self.session.commit()
        except IntegrityError:
            # The same request raced itself (the activity retried while its first call ran).
            self.session.rollback()
            return self.prepare_child(parent_id, request)
        assert launch.workflow_input is not None
        workflow_input = replace(
            launch.workflow_input, search_attributes=self.settings.temporal_search_attributes
        )
        child = ChildRun(
            run_id=run.id,
            action=run.action,
            workflow_id=run.workflow_id,
            workflow_input=workflow_input.to_json(),
            status=run.status,
            summary=f"{run.action_title} · {run.entity or 'new'} · sub-action of {parent_id}",
            url=workflow_input.run.url,
        )
        return child, created

    def retry(self, run_id: str, user: User, who: Principal, actor: Actor) -> Run:
        """Reopen an ended run from its failed step (see ``catalog.runs.service.prepare_retry``), commit
        it, start its workflow again."""
        run, _visibility = self.find(run_id, who)
        if not runs.may_manage(self.session, run, who):
            raise Forbidden("only the requester, the blueprint's moderators or an admin can retry a run")
        workflow_input = runs.prepare_retry(
            self.session,
            run,
            who=who,
            by=user.identifier,
            actor=actor,
            api_url=self.settings.api_url,
            ui_url=self.ui_url(run.workflow_id),
        )
        self.session.commit()
        summary = f"{run.action_title} · retry from {workflow_input.resume_at}"
        self._start(run, workflow_input, summary, Actor(user.identifier, run.id))
        return run

    def start_if_never_started(self, run: Run, actor: Actor) -> bool:
        """Start the workflow of a run its launch recorded but never started (the API process
        died between the commit and the start): one no workflow has reported on, within its
        start grace, that Temporal does not know. True when it was started now. Temporal is asked
        outside any transaction; no execution is started if one with its id ever ran."""
        if not (runs.never_reported(run) and runs.started_by_the_api(run) and self._within_grace(run)):
            return False
        self.session.commit()
        ended = self._await(partial(self.temporal.ended, run.workflow_id))
        if ended is None or not ended.missing:
            return False
        return self._start_recorded(run, actor)

    def _within_grace(self, run: Run) -> bool:
        return run.created_at > utcnow() - WORKFLOW_START_GRACE

    def _start_recorded(self, run: Run, actor: Actor) -> bool:
        """Start a recorded run's workflow from its record; a run whose entity, requester or
        action is gone since is ended as never started instead."""
        try:
            workflow_input = runs.launch_input(
                self.session,
                run,
                api_url=self.settings.api_url,
                ui_url=self.ui_url(run.workflow_id),
                search_attributes=self.settings.temporal_search_attributes,
            )
        except (NotFound, Conflict) as exc:
            runs.mark_not_started(self.session, run, str(exc), actor)
            self.session.commit()
            return False
        log.warning("run %s was recorded but its workflow never started: starting it now", run.id)
        summary = f"{run.action_title} · {run.entity or 'new'} · by {run.created_by}"
        self._start(run, workflow_input, summary, actor, first_only=True)
        return True

    def _start(
        self, run: Run, workflow_input: RunInput, summary: str, actor: Actor, *, first_only: bool = False
    ) -> None:
        """Start the run's workflow once its record is committed. Temporal down: the run is
        ended as not started (nothing is left IN_PROGRESS) and the 503 goes on to the caller.
        The record read here (expire_on_commit is off) is what the caller presents, not what
        a fast workflow may have reported meanwhile."""
        start = partial(
            self.temporal.start_action_run,
            workflow_input,
            workflow_id=run.workflow_id,
            action=run.action,
            blueprint=run.blueprint,
            entity=run.entity,
            requested_by=run.created_by,
            summary=summary,
            first_only=first_only,
        )
        try:
            self._await(start)
        except ServiceUnavailable:
            self.session.rollback()
            self.session.refresh(run)
            reason = f"Temporal unavailable at {self.settings.temporal_address}"
            runs.mark_not_started(self.session, run, reason, actor)
            self.session.commit()
            raise

    # ---- cancel ---------------------------------------------------------------------------

    def cancel(self, run_id: str, user: User, who: Principal, actor: Actor) -> Run:
        """Ask the run's workflow to cancel (its running step is cancelled, completed steps
        compensated; its report ends the run), then record the request."""
        run, _visibility = self.find(run_id, who)
        if not runs.may_manage(self.session, run, who):
            raise Forbidden("only the requester, the blueprint's moderators or an admin can cancel a run")
        if run.status in runs.TERMINAL:
            raise Conflict(f"run '{run_id}' has already ended ({run.status})")
        self._await(partial(self.temporal.cancel, run.workflow_id))
        runs.record_cancel_request(self.session, run, user.identifier, actor)
        self.session.commit()
        return run

    # ---- converge -------------------------------------------------------------------------

    def quiet_since(self) -> datetime:
        """Runs unchanged since then are checked against their workflow."""
        return utcnow() - timedelta(seconds=self.settings.run_converge_after)

    def converge(self, run: Run, actor: Actor) -> bool:
        """Bring a non-terminal run to its workflow's real end, if the workflow has ended.
        Temporal is asked outside any transaction (what the session did so far is committed
        first), so a slow answer holds no database connection; the run is read again before it
        is finished. Not committed."""
        if run.status in runs.TERMINAL:
            return False
        self.session.commit()
        ended = self._await(partial(self.temporal.ended, run.workflow_id))
        if ended is None:
            return False
        if ended.missing:
            if self._within_grace(run):
                if runs.never_reported(run) and runs.started_by_the_api(run):
                    self._start_recorded(run, actor)  # its launch recorded it, never started it
                return False
            ended = ended.never_started()
        self.session.refresh(run)  # its workflow may have reported meanwhile; finish() then does nothing
        runs.finish(self.session, run, ended.status, ended.label, ended.error, actor)
        return True

    def converge_if_quiet(self, run: Run, actor: Actor) -> None:
        """Reading a run that has not moved for a while checks it against its workflow, so a
        workflow terminated from Temporal UI never leaves its run IN_PROGRESS. Best effort: the
        read answers what is stored when the check fails (Temporal or the database down)."""
        if run.status in runs.TERMINAL or run.updated_at > self.quiet_since():
            return
        try:
            if self.converge(run, actor):
                self.session.commit()
        except Exception:
            log.warning("could not converge run %s on its workflow", run.id, exc_info=True)
            self.session.rollback()

    def reconcile(self, actor: Actor) -> list[str]:
        """Converge every quiet, unfinished run; the ids of those that ended. Committed."""
        converged = [
            run.id
            for run in runs.active_runs(self.session, older_than=self.quiet_since())
            if self.converge(run, actor)
        ]
        self.session.commit()
        return converged

    def _await(self, call: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run a gateway call on the event loop from the route's worker thread."""
        return anyio.from_thread.run(call)


def _source(body: RunRequest, header: str | None, who: Principal) -> str:
    """Where the launch comes from (the body, else ``X-Gantry-Source``, else API); 422 for an
    unknown one, 403 for an AUTOMATION launch or a trigger from anyone but the service user."""
    source = body.source or (header or "API").upper()
    if source not in SOURCES:
        raise Invalid("invalid source", [FieldError("/source", "must be API, CLI, UI or AUTOMATION")])
    if (source == "AUTOMATION" or body.trigger is not None) and not who.is_admin:
        raise Forbidden("only the service user launches AUTOMATION runs")
    return source


def run_service(session: SessionDep, temporal: TemporalDep, settings: SettingsDep) -> RunService:
    return RunService(session, temporal, settings)


RunServiceDep = Annotated[RunService, Depends(run_service)]
