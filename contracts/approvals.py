"""Data the approval gate exchanges with the API and the Slack activities.

Kept free of heavy imports: the workflow sandbox imports it. New fields need defaults so
running histories stay decodable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DECIDE_UPDATE = "decide"

# ApplicationError types the ``decide`` validator raises; the API maps them to HTTP statuses.
NOT_ELIGIBLE = "NotEligible"  # 403
SELF_APPROVAL = "SelfApproval"  # 403
APPROVAL_CLOSED = "ApprovalClosed"  # 409
ALREADY_DECIDED = "AlreadyDecided"  # 409
NO_APPROVAL_PENDING = "NoApprovalPending"  # 409
REFUSAL_STATUS = {
    NOT_ELIGIBLE: 403,
    SELF_APPROVAL: 403,
    APPROVAL_CLOSED: 409,
    ALREADY_DECIDED: 409,
    NO_APPROVAL_PENDING: 409,
}


@dataclass
class Decision:
    """One approver's answer, from the API or a Slack button."""

    user: str
    decision: str  # APPROVE | DECLINE
    comment: str = ""
    via: str = "api"  # api | slack
    # The approval request (gate) the answer is for; None: the one that is open.
    request_id: str | None = None


@dataclass
class Approver:
    identifier: str
    email: str
    name: str = ""


@dataclass
class ApproverSelection:
    """Who a policy names: users, the members of teams, everyone with a role."""

    users: list[str] = field(default_factory=list)
    teams: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)


@dataclass
class ApprovalNotify:
    slack_channel: str | None = None
    # Also send each eligible approver a direct message.
    direct_messages: bool = True


@dataclass
class ApprovalPolicy:
    """An approval gate's policy: the action's own (``approval``) or an ``approval`` step's
    parameters. The catalog checks it when the action is saved (``catalog.runs.approvals``) and,
    at launch, resolves it to the people able to decide (``eligible``, ``escalation_eligible``:
    empty in a policy as saved). Durations are ISO 8601."""

    approvers: ApproverSelection
    required_approvals: int = 1
    allow_self_approval: bool = False
    timeout: str = "PT24H"
    on_timeout: str = "DECLINE"  # DECLINE | ESCALATE
    escalation_approvers: ApproverSelection | None = None
    escalation_timeout: str | None = None
    remind_before: list[str] = field(default_factory=list)
    notify: ApprovalNotify = field(default_factory=ApprovalNotify)
    eligible: list[Approver] = field(default_factory=list)
    escalation_eligible: list[Approver] = field(default_factory=list)

    def phases(self) -> list[tuple[str, list[Approver], str]]:
        """The phases a gate waits through: who may decide in each, and for how long."""
        phases = [("initial", self.eligible, self.timeout)]
        if self.on_timeout == "ESCALATE":
            phases.append(("escalated", self.escalation_eligible, self.escalation_timeout or self.timeout))
        return phases


@dataclass
class ApprovalRequest:
    """What approvers are asked, for ``slack.request_approval`` and reminders."""

    run_id: str
    request_id: str
    action_title: str
    requester: str
    entity: str | None
    inputs: dict[str, Any]
    required_approvals: int
    expires_at: str
    run_url: str
    temporal_ui_url: str
    approvers: list[Approver] = field(default_factory=list)
    channel: str | None = None
    reminder: bool = False


@dataclass
class SlackMessage:
    channel: str
    ts: str


@dataclass
class ApprovalMessages:
    """Where a request was posted, so the outcome can replace the buttons later."""

    messages: list[SlackMessage] = field(default_factory=list)
    log: list[str] = field(default_factory=list)


@dataclass
class ApprovalOutcome:
    run_id: str
    request_id: str
    outcome: str  # APPROVED | DECLINED | TIMED_OUT
    text: str
    messages: list[SlackMessage] = field(default_factory=list)
