"""Requesting, reading and listing scorecard exemptions.

An exemption request is an approval like any other, so it is one: a run of the built-in action
``gantry.exemption`` (:data:`~catalog.exemptions.decisions.EXEMPTION_ACTION`), synthesized per
request and never saved. Its one gate is the action's own approval policy: the blueprint's
moderators and every admin may approve, the requester never (as for any run). The run has no
steps; its end decides (:func:`catalog.exemptions.decisions.settle`, called where the catalog
records a run's end). So the run id, the Slack prompt and its buttons,
``POST /v1/runs/{id}/approval``, reminders, the approval timeout, Temporal UI and the audit all
come from the run machinery unchanged, and there is no step kind an action author could use to
approve an exemption without an approval.

The expiry is a durable ``ExemptionExpiry`` workflow per exemption, started by the API with the
approval run; it sleeps until ``expires_at`` and asks the API to expire the exemption, which
regrades the entity. Grading itself only applies APPROVED exemptions whose date is ahead, so a
late timer never keeps a rule excused in a regrade after the date.
"""

from __future__ import annotations

import secrets as pysecrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, Field
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from catalog import audit
from catalog.audit import Actor
from catalog.base import Strict
from catalog.db import utcnow
from catalog.errors import Conflict, FieldError, Forbidden, Invalid, NotFound
from catalog.exemptions.decisions import EXEMPTION_ACTION, PENDING, effective_status
from catalog.identity.permissions import Moderators, Principal, is_moderator, may, readable_clause
from catalog.models import Blueprint, Entity, Run, Scorecard, ScorecardExemption, ScorecardResult, User
from catalog.pagination import Page, check_limit, decode_cursor, encode_cursor
from catalog.runs import service as runs
from catalog.runs.service import workflow_id_for
from catalog.timefmt import format_instant
from contracts.runs import RunInput

# How far ahead an exemption may end: at least an hour (anything shorter is not worth an
# approval), at most a year (an exemption is a reprieve, not a waiver; ask again to renew).
SHORTEST = timedelta(hours=1)
LONGEST = timedelta(days=365)
# How long approvers have to decide, and when they are reminded.
APPROVAL_TIMEOUT = "P7D"
APPROVAL_REMINDERS = ["P1D"]


class ExemptionIn(Strict):
    entity: str = Field(min_length=1, max_length=256)
    rule: str = Field(min_length=1, max_length=100)
    reason: str = Field(min_length=1, max_length=2000)
    expires_at: AwareDatetime


@dataclass
class Requested:
    """A checked request: the exemption and its approval run (added, not committed) and the
    run's workflow input."""

    exemption: ScorecardExemption
    run: Run
    workflow_input: RunInput


def request(
    session: Session,
    sc: Scorecard,
    body: ExemptionIn,
    *,
    caller: User,
    who: Principal,
    api_url: str,
    ui_url: Any = lambda workflow_id: "",
) -> Requested:
    """Check a request and add the exemption with its approval run (not committed). In order:
    the caller is a person who may write (403), the entity exists and is readable (422 at
    ``/entity``), the caller owns it, moderates its blueprint or is an admin (403), the rule,
    the date and the entity's grading are valid (422, every problem at once), no other request
    for the same rule waits (409), someone other than the caller can approve (409)."""
    bp = session.get(Blueprint, sc.blueprint)
    assert bp is not None  # a scorecard's blueprint cascades
    if who.is_service or not who.may_write:
        raise Forbidden("only the entity's owners, the blueprint's moderators and admins ask for exemptions")
    entity = session.scalar(
        select(Entity).where(Entity.blueprint == bp.identifier, Entity.identifier == body.entity)
    )
    if entity is None or not may(bp, who, "read", entity.team or []):
        raise Invalid(
            "invalid exemption", [FieldError("/entity", f"no '{bp.identifier}' entity '{body.entity}'")]
        )
    if not (is_moderator(bp, who) or who.teams & set(entity.team or [])):
        raise Forbidden(
            f"only the owners of '{entity.identifier}', the moderators of '{bp.identifier}' and admins "
            "may ask to exempt it"
        )
    _check(session, sc, entity, body)
    waiting = session.scalar(
        select(ScorecardExemption.id).where(
            ScorecardExemption.entity_id == entity.id,
            ScorecardExemption.scorecard == sc.identifier,
            ScorecardExemption.rule == body.rule,
            ScorecardExemption.status == PENDING,
        )
    )
    if waiting is not None:
        raise Conflict(f"exemption '{waiting}' for this rule is waiting for approval already")
    definition = _action(session, bp, sc, body)
    now = utcnow()
    run_id = "r_" + pysecrets.token_hex(12)
    run = Run(
        id=run_id,
        action=EXEMPTION_ACTION,
        action_title=definition["title"],
        blueprint=bp.identifier,
        entity=entity.identifier,
        inputs=_inputs(sc, body),
        status="WAITING_FOR_APPROVAL",
        status_label="Waiting for approval",
        source="API",
        created_by=caller.identifier,
        created_at=now,
        updated_at=now,
        steps=[],
        approval=None,
        links=[],
        affected_entities=[],
        workflow_id=workflow_id_for(EXEMPTION_ACTION, run_id),
    )
    workflow_input = runs.build_workflow_input(
        session,
        run,
        definition,
        entity=entity,
        caller=caller,
        api_url=api_url,
        ui_url=ui_url(run.workflow_id),
    )
    if not workflow_input.approvals["action"].eligible:
        raise Conflict(
            f"nobody but you may approve an exemption on '{bp.identifier}': "
            "its moderators and admins approve, and never their own request"
        )
    runs.record_launch(session, run, workflow_input)
    exemption = ScorecardExemption(
        id="ex_" + pysecrets.token_hex(12),
        blueprint=bp.identifier,
        scorecard=sc.identifier,
        entity_id=entity.id,
        entity=entity.identifier,
        rule=body.rule,
        reason=body.reason,
        expires_at=body.expires_at,
        status=PENDING,
        run_id=run.id,
        requested_by=caller.identifier,
        created_at=now,
        updated_at=now,
    )
    session.add(exemption)
    audit.record(
        session,
        Actor(caller.identifier, run.id),
        "CREATE",
        "exemption",
        exemption.id,
        blueprint=bp.identifier,
        after={"scorecard": sc.identifier, **run.inputs, "entity": entity.identifier},
    )
    session.flush()
    return Requested(exemption, run, workflow_input)


def _check(session: Session, sc: Scorecard, entity: Entity, body: ExemptionIn) -> None:
    errors: list[FieldError] = []
    rules = [r["identifier"] for r in sc.definition.get("rules", [])]
    if body.rule not in rules:
        errors.append(
            FieldError(
                "/rule", f"is not a rule of scorecard '{sc.identifier}': {', '.join(rules) or 'it has none'}"
            )
        )
    now = utcnow()
    if body.expires_at < now + SHORTEST:
        errors.append(FieldError("/expires_at", "must be at least an hour ahead"))
    elif body.expires_at > now + LONGEST:
        errors.append(FieldError("/expires_at", "must be at most a year (365 days) ahead"))
    graded = session.scalar(
        select(ScorecardResult.entity_id).where(
            ScorecardResult.entity_id == entity.id,
            ScorecardResult.blueprint == sc.blueprint,
            ScorecardResult.scorecard == sc.identifier,
        )
    )
    if graded is None:
        errors.append(FieldError("/entity", f"is not graded by scorecard '{sc.identifier}' (its filter)"))
    if errors:
        raise Invalid("invalid exemption", errors)


def _inputs(sc: Scorecard, body: ExemptionIn) -> dict[str, Any]:
    """What approvers see (the run's inputs, in Slack and on the run)."""
    return {
        "scorecard": sc.identifier,
        "rule": body.rule,
        "reason": body.reason,
        "expires_at": format_instant(body.expires_at),
    }


def _action(session: Session, bp: Blueprint, sc: Scorecard, body: ExemptionIn) -> dict[str, Any]:
    """The built-in action one request runs: no steps, an approval by the blueprint's moderators
    (moderator entries may name users by email) and admins."""
    moderators = Moderators.model_validate(bp.moderators or {})
    named = list(moderators.users)
    users = (
        sorted(
            session.scalars(
                select(User.identifier).where(
                    or_(User.identifier.in_(named), func.lower(User.email).in_([n.lower() for n in named]))
                )
            )
        )
        if named
        else []
    )
    return {
        "identifier": EXEMPTION_ACTION,
        "title": f"Exempt {body.entity} from {sc.identifier}/{body.rule}",
        "blueprint": bp.identifier,
        "trigger": {"operation": "DAY-2"},
        "steps": [],
        "approval": {
            "approvers": {"users": users, "teams": list(moderators.teams), "roles": ["admin"]},
            "required_approvals": 1,
            "timeout": APPROVAL_TIMEOUT,
            "remind_before": APPROVAL_REMINDERS,
        },
    }


# ---- reading -----------------------------------------------------------------------------


def get(session: Session, sc: Scorecard, exemption_id: str, who: Principal) -> ScorecardExemption:
    """The exemption, when the caller may read its entity (else the same 404 as a missing one)."""
    exemption = session.get(ScorecardExemption, exemption_id)
    if exemption is None or (exemption.blueprint, exemption.scorecard) != (sc.blueprint, sc.identifier):
        raise NotFound(f"exemption '{exemption_id}' not found")
    bp = session.get(Blueprint, sc.blueprint)
    entity = session.get(Entity, exemption.entity_id)
    if bp is None or entity is None or not may(bp, who, "read", entity.team or []):
        raise NotFound(f"exemption '{exemption_id}' not found")
    return exemption


def list_exemptions(
    session: Session,
    sc: Scorecard,
    who: Principal,
    *,
    entity: str | None = None,
    status: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> Page[ScorecardExemption]:
    """The scorecard's exemptions on entities the caller may read, oldest first. ``status`` is
    the stored one, except that EXPIRED also finds APPROVED ones past their date."""
    check_limit(limit)
    bp = session.get(Blueprint, sc.blueprint)
    assert bp is not None
    table = ScorecardExemption
    stmt = (
        select(table)
        .join(Entity, Entity.id == table.entity_id)
        .where(table.blueprint == sc.blueprint, table.scorecard == sc.identifier)
        .where(readable_clause(bp, who, session.get_bind().dialect.name))
    )
    if entity is not None:
        stmt = stmt.where(table.entity == entity)
    if status is not None:
        stmt = stmt.where(_status_is(status))
    if cursor:
        at, last = decode_cursor(cursor, size=2)
        try:
            moment = datetime.fromisoformat(str(at))
        except ValueError as exc:
            raise Invalid(
                "invalid cursor", [FieldError("/cursor", "not a cursor returned by this API")]
            ) from exc
        stmt = stmt.where(
            or_(table.created_at > moment, and_(table.created_at == moment, table.id > str(last)))
        )
    rows = list(session.scalars(stmt.order_by(table.created_at, table.id).limit(limit + 1)))
    more = len(rows) > limit
    return Page(
        rows[:limit],
        encode_cursor([rows[limit - 1].created_at.isoformat(), rows[limit - 1].id]) if more else None,
    )


def _status_is(status: str) -> Any:
    table, now = ScorecardExemption, utcnow()
    if status == "EXPIRED":
        return or_(table.status == "EXPIRED", and_(table.status == "APPROVED", table.expires_at <= now))
    if status == "APPROVED":
        return and_(table.status == "APPROVED", table.expires_at > now)
    return table.status == status


def may_revoke(session: Session, exemption: ScorecardExemption, who: Principal) -> bool:
    """The requester (a person who may write), the blueprint's moderators, admins."""
    if who.is_service:
        return False
    bp = session.get(Blueprint, exemption.blueprint)
    return (who.may_write and exemption.requested_by == who.identifier) or (
        bp is not None and is_moderator(bp, who)
    )


def check_open(exemption: ScorecardExemption) -> None:
    status = effective_status(exemption)
    if status not in ("PENDING", "APPROVED"):
        raise Conflict(f"exemption '{exemption.id}' has ended ({status})")
