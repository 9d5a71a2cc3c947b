"""Exemption operations that span the catalog and Temporal: request, revoke, expire.

A request commits the exemption with its approval run, then starts the exemption's timer
(``ExemptionExpiry``) and the run's ``ActionRun``, timer first: a run that could be approved
never lacks its expiry. Temporal down ends the run as not started, which declines the
exemption, and the caller gets the 503. Revocation and expiry are decided in the catalog first
and committed; cancelling the approval run or the timer afterwards is tidying (a run approved
after its exemption was revoked changes nothing, a timer that wakes finds nothing to do), so
Temporal being down never blocks a revocation. An approval run that ends without approving
its exemption (declined, timed out) cancels the exemption's timer once its end is recorded
(:meth:`ExemptionService.run_ended`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import replace
from functools import partial
from typing import Annotated, Any, TypeVar

import anyio.from_thread
from fastapi import Depends
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import SessionDep, SettingsDep, TemporalDep
from api.errors import ServiceUnavailable
from api.temporal import TemporalGateway
from catalog.audit import Actor
from catalog.exemptions import decisions
from catalog.exemptions import service as exemptions
from catalog.exemptions.service import ExemptionIn
from catalog.identity.permissions import Principal
from catalog.models import Run, Scorecard, ScorecardExemption, User
from catalog.runs import service as runs
from catalog.timefmt import format_instant
from config import Settings
from contracts.exemptions import EXPIRY_WORKFLOW, ExemptionExpiry, expiry_workflow_id

log = logging.getLogger(__name__)
T = TypeVar("T")


class ExemptionService:
    def __init__(self, session: Session, temporal: TemporalGateway, settings: Settings) -> None:
        self.session = session
        self.temporal = temporal
        self.settings = settings

    def request(self, sc: Scorecard, body: ExemptionIn, user: User, who: Principal) -> ScorecardExemption:
        requested = exemptions.request(
            self.session,
            sc,
            body,
            caller=user,
            who=who,
            api_url=self.settings.api_url,
            ui_url=lambda workflow_id: runs.temporal_ui_url(
                self.settings.temporal_ui_url, self.settings.temporal_namespace, workflow_id
            ),
        )
        self.session.commit()
        exemption, run = requested.exemption, requested.run
        timer = ExemptionExpiry(
            exemption_id=exemption.id,
            blueprint=exemption.blueprint,
            scorecard=exemption.scorecard,
            expires_at=format_instant(exemption.expires_at),
        )
        try:
            self._await(
                partial(
                    self.temporal.start_automation,
                    expiry_workflow_id(exemption.id),
                    EXPIRY_WORKFLOW,
                    timer,
                    f"exemption {exemption.entity} · {exemption.scorecard}/{exemption.rule}",
                )
            )
            self._await(
                partial(
                    self.temporal.start_action_run,
                    # A server without Gantry's search attributes (the test server) refuses upserts.
                    replace(
                        requested.workflow_input, search_attributes=self.settings.temporal_search_attributes
                    ),
                    workflow_id=run.workflow_id,
                    action=run.action,
                    blueprint=run.blueprint,
                    entity=run.entity,
                    requested_by=run.created_by,
                    summary=f"{run.action_title} · by {user.identifier}",
                )
            )
        except ServiceUnavailable:
            self.session.rollback()
            self.session.refresh(run)
            reason = f"Temporal unavailable at {self.settings.temporal_address}"
            runs.mark_not_started(self.session, run, reason, Actor(user.identifier, run.id))
            self.session.commit()
            self._tidy(exemption, cancel_run=False, cancel_timer=True)  # if its timer did start
            raise
        return exemption

    def revoke(self, exemption: ScorecardExemption, user: User, actor: Actor) -> ScorecardExemption:
        exemptions.check_open(exemption)
        pending = decisions.revoke(self.session, exemption, user.identifier, actor)
        self.session.commit()
        self._tidy(exemption, cancel_run=pending, cancel_timer=True)
        return exemption

    def expire(self, exemption: ScorecardExemption, actor: Actor) -> ScorecardExemption:
        pending = decisions.expire(self.session, exemption, actor)
        self.session.commit()
        self._tidy(exemption, cancel_run=pending, cancel_timer=False)
        return exemption

    def run_ended(self, run: Run) -> None:
        """After a run's end is committed: an exemption approval run that did not approve its
        exemption (declined, timed out, withdrawn) leaves no timer waiting for the exemption's
        date. Any other run is none of its business."""
        if run.action != decisions.EXEMPTION_ACTION or run.status == "SUCCESS":
            return
        exemption = self.session.scalar(select(ScorecardExemption).where(ScorecardExemption.run_id == run.id))
        if exemption is not None and exemption.status not in decisions.OPEN:
            self._tidy(exemption, cancel_run=False, cancel_timer=True)

    def _tidy(self, exemption: ScorecardExemption, *, cancel_run: bool, cancel_timer: bool) -> None:
        """Cancel what no longer needs to wait (best effort: the catalog has decided already)."""
        ids = ([f"action:{decisions.EXEMPTION_ACTION}:{exemption.run_id}"] if cancel_run else []) + (
            [expiry_workflow_id(exemption.id)] if cancel_timer else []
        )
        for workflow_id in ids:
            try:
                self._await(partial(self.temporal.cancel, workflow_id))
            except ServiceUnavailable:
                log.warning(
                    "could not cancel %s (Temporal unavailable): it will find nothing to do", workflow_id
                )

    def _await(self, call: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return anyio.from_thread.run(call)


def exemption_service(session: SessionDep, temporal: TemporalDep, settings: SettingsDep) -> ExemptionService:
    return ExemptionService(session, temporal, settings)


ExemptionServiceDep = Annotated[ExemptionService, Depends(exemption_service)]
