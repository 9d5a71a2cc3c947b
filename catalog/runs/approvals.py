"""Approval policies: who may approve an action (or an ``approval`` step), how many must, and
what happens when nobody answers in time.

A policy is checked when its action is saved (a policy no one could ever satisfy is a 422) and
resolved to the eligible people when a run is launched; the workflow then waits with that list.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.base import Strict
from catalog.durations import parse_duration
from catalog.errors import FieldError, pointer
from catalog.identity.permissions import SERVICE
from catalog.identity.service import SERVICE_USER
from catalog.models import Team, TeamMembership, User
from contracts.approvals import ApprovalPolicy as GatePolicy
from contracts.approvals import Approver
from contracts.wire import from_wire


class Approvers(Strict):
    users: list[str] = Field(default_factory=list)
    teams: list[str] = Field(default_factory=list)
    roles: list[Literal["admin", "member"]] = Field(default_factory=list)


class Notify(Strict):
    slack_channel: str | None = None
    # Also send each eligible approver a direct message.
    direct_messages: bool = True


class ApprovalPolicy(Strict):
    """A policy as its author writes it, checked when saved; :func:`resolve` turns it into the
    workflow's :class:`contracts.approvals.ApprovalPolicy` (``GatePolicy`` here)."""

    required_approvals: int = Field(1, ge=1, le=50)
    approvers: Approvers
    allow_self_approval: bool = False
    timeout: str = "PT24H"
    on_timeout: Literal["DECLINE", "ESCALATE"] = "DECLINE"
    escalation_approvers: Approvers | None = None
    escalation_timeout: str | None = None
    remind_before: list[str] = Field(default_factory=list, max_length=5)
    notify: Notify = Field(default_factory=Notify)


def parse_policy(raw: Any, where: str) -> tuple[ApprovalPolicy | None, list[FieldError]]:
    try:
        return ApprovalPolicy.model_validate(raw), []
    except ValidationError as exc:
        return None, [FieldError(where + pointer(*e["loc"]), e["msg"]) for e in exc.errors()]


def check_policy(session: Session, raw: Any, where: str) -> list[FieldError]:
    """Every reason this policy is malformed or could never be satisfied."""
    policy, errors = parse_policy(raw, where)
    if policy is None:
        return errors
    for name in ("timeout", "escalation_timeout"):
        value = getattr(policy, name)
        if value is not None:
            errors += _duration_problem(value, f"{where}/{name}")
    for index, value in enumerate(policy.remind_before):
        errors += _duration_problem(value, f"{where}/remind_before/{index}")
    errors += _unknown(session, policy.approvers, f"{where}/approvers")
    eligible = eligible_approvers(session, policy.approvers)
    if not errors and len(eligible) < policy.required_approvals:
        errors.append(
            FieldError(
                f"{where}/required_approvals",
                f"{policy.required_approvals} approvals are required but only {len(eligible)} people are eligible",
            )
        )
    if policy.on_timeout == "ESCALATE":
        if policy.escalation_approvers is None:
            errors.append(FieldError(f"{where}/escalation_approvers", "ESCALATE needs escalation_approvers"))
        else:
            errors += _unknown(session, policy.escalation_approvers, f"{where}/escalation_approvers")
            if not eligible_approvers(session, policy.escalation_approvers):
                errors.append(FieldError(f"{where}/escalation_approvers", "no one is eligible"))
    return errors


def _duration_problem(value: str, where: str) -> list[FieldError]:
    try:
        parse_duration(value)
    except ValueError as exc:
        return [FieldError(where, str(exc))]
    return []


def _unknown(session: Session, approvers: Approvers, where: str) -> list[FieldError]:
    errors = []
    known_users = set(session.scalars(select(User.identifier).where(User.identifier.in_(approvers.users))))
    known_teams = set(session.scalars(select(Team.identifier).where(Team.identifier.in_(approvers.teams))))
    errors += [
        FieldError(f"{where}/users/{i}", f"user '{u}' does not exist")
        for i, u in enumerate(approvers.users)
        if u not in known_users
    ]
    errors += [
        FieldError(f"{where}/teams/{i}", f"team '{t}' does not exist")
        for i, t in enumerate(approvers.teams)
        if t not in known_teams
    ]
    return errors


def eligible_approvers(session: Session, approvers: Approvers) -> list[dict[str, str]]:
    """The people named by users, teams and roles, once each, by identifier (the worker's
    service user is never a person who approves)."""
    stmt = select(User).where(
        User.identifier.in_(approvers.users)
        | User.role.in_(approvers.roles)
        | User.identifier.in_(select(TeamMembership.user).where(TeamMembership.team.in_(approvers.teams))),
        User.identifier != SERVICE_USER,
        User.role != SERVICE,
    )
    users = session.scalars(stmt.order_by(User.identifier))
    return [{"identifier": u.identifier, "email": u.email, "name": u.name} for u in users]


def resolve(session: Session, raw: dict[str, Any], requester: str | None = None) -> GatePolicy:
    """A saved policy with its eligible people, as the workflow receives it. Unless the policy
    allows self-approval, the run's ``requester`` is not among them: eligible means able to decide."""
    policy = ApprovalPolicy.model_validate(raw)

    def able(people: list[dict[str, str]]) -> list[Approver]:
        return [
            Approver(p["identifier"], p["email"], p["name"] or "")
            for p in people
            if policy.allow_self_approval or p["identifier"] != requester
        ]

    escalation = (
        eligible_approvers(session, policy.escalation_approvers) if policy.escalation_approvers else []
    )
    resolved = from_wire(GatePolicy, policy.model_dump(mode="json"))
    resolved.eligible = able(eligible_approvers(session, policy.approvers))
    resolved.escalation_eligible = able(escalation)
    return resolved
