"""How an exemption's state moves: its approval run's end, a revocation, its expiry.

Kept apart from :mod:`catalog.exemptions.service` (which prepares approval runs through
``catalog.runs.service``) so that ``catalog.runs.service`` can call :func:`settle` when a run
ends without importing what imports it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog import audit
from catalog.audit import Actor
from catalog.db import utcnow
from catalog.models import Blueprint, Run, Scorecard, ScorecardExemption
from catalog.scorecards import service as scorecards
from catalog.timefmt import format_instant, format_optional

# The built-in action whose runs are exemption approvals. Not a valid action identifier (the
# dot), so no saved action can take its name; it is never stored, listed or launchable.
EXEMPTION_ACTION = "gantry.exemption"

PENDING, APPROVED, DECLINED, REVOKED, EXPIRED = "PENDING", "APPROVED", "DECLINED", "REVOKED", "EXPIRED"
OPEN = frozenset({PENDING, APPROVED})


def effective_status(exemption: ScorecardExemption, now: datetime | None = None) -> str:
    """The status as it stands: an APPROVED exemption past its expiry is EXPIRED even before its
    timer has said so (grading already ignores it)."""
    if exemption.status == APPROVED and exemption.expires_at <= (now or utcnow()):
        return EXPIRED
    return exemption.status


def view(exemption: ScorecardExemption) -> dict[str, Any]:
    return {
        "id": exemption.id,
        "blueprint": exemption.blueprint,
        "scorecard": exemption.scorecard,
        "entity": exemption.entity,
        "rule": exemption.rule,
        "reason": exemption.reason,
        "expires_at": format_instant(exemption.expires_at),
        "status": effective_status(exemption),
        "run_id": exemption.run_id,
        "requested_by": exemption.requested_by,
        "decided_by": exemption.decided_by,
        "created_at": format_instant(exemption.created_at),
        "updated_at": format_instant(exemption.updated_at),
        "ended_at": format_optional(exemption.ended_at),
    }


def settle(session: Session, run: Run, actor: Actor) -> None:
    """Record what an exemption's approval run decided, when the run ends (in the transaction
    that records its end): SUCCESS approves it (EXPIRED at once if its date has passed
    meanwhile), CANCELLED withdraws it (REVOKED), any other end declines it. Only a PENDING
    exemption moves: one revoked or expired while its run waited stays as it is."""
    if run.action != EXEMPTION_ACTION:
        return
    exemption = session.scalar(select(ScorecardExemption).where(ScorecardExemption.run_id == run.id))
    if exemption is None or exemption.status != PENDING:
        return
    approval = run.approval or {}
    now = utcnow()
    if run.status == "SUCCESS":
        status = APPROVED if exemption.expires_at > now else EXPIRED
        deciders = approval.get("approvals") or []
    elif run.status == "CANCELLED":
        status, deciders = REVOKED, []
    else:
        status, deciders = DECLINED, approval.get("declines") or []
    by = ", ".join(d.get("user", "") for d in deciders) or None
    _move(session, exemption, status, actor, by=by, regrade=status == APPROVED)


def revoke(session: Session, exemption: ScorecardExemption, by: str, actor: Actor) -> bool:
    """End an open exemption at once; returns whether it was still PENDING (its approval run is
    then to be cancelled). Regraded in the same transaction when it was in force."""
    pending = exemption.status == PENDING
    _move(session, exemption, REVOKED, actor, by=by, regrade=not pending)
    return pending


def expire(session: Session, exemption: ScorecardExemption, actor: Actor) -> bool:
    """Its timer's end: an open exemption becomes EXPIRED and its entity is regraded (the level
    may drop: ``SCORECARD_LEVEL_CHANGED``). Returns whether it was still PENDING. An ended one
    is left as it is (the timer of a declined or revoked exemption wakes to nothing)."""
    if exemption.status not in OPEN:
        return False
    pending = exemption.status == PENDING
    _move(session, exemption, EXPIRED, actor, by=exemption.decided_by, regrade=not pending)
    return pending


def _move(
    session: Session,
    exemption: ScorecardExemption,
    status: str,
    actor: Actor,
    *,
    by: str | None,
    regrade: bool,
) -> None:
    before = exemption.status
    now = utcnow()
    exemption.status, exemption.updated_at, exemption.decided_by = status, now, by
    if status not in OPEN:
        exemption.ended_at = now
    audit.record(
        session,
        actor,
        status if status in (APPROVED, DECLINED, REVOKED, EXPIRED) else "UPDATE",
        "exemption",
        exemption.id,
        blueprint=exemption.blueprint,
        before={"status": before},
        after={"status": status, "decided_by": by},
    )
    session.flush()
    if regrade:
        regrade_entity(session, exemption, actor)


def regrade_entity(session: Session, exemption: ScorecardExemption, actor: Actor) -> None:
    """Grade the exemption's entity on its scorecard now (a level change is an event)."""
    bp = session.get(Blueprint, exemption.blueprint)
    sc = session.get(Scorecard, (exemption.blueprint, exemption.scorecard))
    if bp is not None and sc is not None:
        scorecards.grade(session, bp, [exemption.entity_id], actor, only=[sc])
