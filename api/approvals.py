"""Applying an approval decision, from the API or a Slack button: the same Update, the same
checks, the same audit trail."""

from __future__ import annotations

from typing import Any

import anyio.from_thread
from sqlalchemy.orm import Session

from api.temporal import DecisionRefused, TemporalGateway
from catalog import audit
from catalog.audit import Actor
from catalog.errors import Conflict, FieldError, Forbidden, Invalid
from catalog.identity.permissions import SERVICE
from catalog.models import RunApprover, User
from catalog.runs import service as runs
from contracts.approvals import Decision

DECISIONS = ("APPROVE", "DECLINE")


def apply_decision(
    temporal: TemporalGateway,
    session: Session,
    run_id: str,
    user: User,
    decision: str,
    comment: str,
    via: str,
    request_id: str | None = None,
) -> dict[str, Any]:
    """Decide a run's open approval as ``user``; returns the approval state. Refusals (403 not
    eligible or self-approval, 409 closed or already decided) are audited too and change nothing."""
    if decision not in DECISIONS:
        raise Invalid("invalid decision", [FieldError("/decision", "must be APPROVE or DECLINE")])
    if user.role == SERVICE:
        raise Forbidden("the worker's service principal never decides an approval")
    run = runs.get_run(session, run_id)
    actor = Actor(user.identifier, run_id)
    if run.status in runs.TERMINAL:
        _audit_refusal(session, actor, run_id, decision, via, "the run has ended")
        raise Conflict(f"run '{run_id}' has ended ({run.status}): its approval is closed")
    if session.get(RunApprover, (run_id, user.identifier)) is None:
        # Decided here, without asking the workflow: nobody outside the run's approvers decides.
        # The requester is among them only when the action allows self-approval.
        if run.created_by == user.identifier:
            reason = "you requested this run; the action does not allow self-approval"
        else:
            reason = f"{user.identifier} is not an eligible approver of this run"
        _audit_refusal(session, actor, run_id, decision, via, reason)
        raise Forbidden(reason)
    workflow_id = run.workflow_id
    # Give the connection back while the workflow decides: a burst of clicks must not drain the pool.
    session.rollback()
    try:
        state = anyio.from_thread.run(
            temporal.decide,
            workflow_id,
            Decision(
                user=user.identifier, decision=decision, comment=comment, via=via, request_id=request_id
            ),
        )
    except DecisionRefused as refused:
        _audit_refusal(session, actor, run_id, decision, via, refused.message)
        if refused.status == 403:
            raise Forbidden(refused.message) from refused
        raise Conflict(refused.message) from refused
    run = runs.get_run(session, run_id)
    run.approval = state
    audit.record(
        session,
        actor,
        decision,
        "run",
        run_id,
        blueprint=run.blueprint,
        after={"decision": decision, "comment": comment, "via": via, "approval_status": state.get("status")},
    )
    session.commit()
    return state


def _audit_refusal(session: Session, actor: Actor, run_id: str, decision: str, via: str, reason: str) -> None:
    audit.record(
        session,
        actor,
        "DECISION_REFUSED",
        "run",
        run_id,
        after={"decision": decision, "via": via, "reason": reason},
    )
    session.commit()
