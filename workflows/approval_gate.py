"""One approval request inside a run: its state, and the checks a decision must pass.

Pure state (no I/O, no clock): :class:`workflows.action_run.ActionRun` owns the wait and the
notifications; the ``decide`` Update's validator asks :meth:`ApprovalGate.refusal` and its
handler calls :meth:`ApprovalGate.apply`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contracts.approvals import (
    ALREADY_DECIDED,
    APPROVAL_CLOSED,
    NOT_ELIGIBLE,
    SELF_APPROVAL,
    ApprovalPolicy,
    Approver,
    Decision,
    SlackMessage,
)


@dataclass
class ApprovalGate:
    gate_id: str
    request_id: str
    required: int
    requester: str
    allow_self_approval: bool
    eligible: dict[str, Approver] = field(default_factory=dict)
    phase: str = "initial"
    status: str = "PENDING"  # PENDING | APPROVED | DECLINED | TIMED_OUT
    expires_at: str | None = None
    approvals: list[dict[str, Any]] = field(default_factory=list)
    declines: list[dict[str, Any]] = field(default_factory=list)
    messages: list[SlackMessage] = field(default_factory=list)

    @classmethod
    def open(cls, gate_id: str, run_id: str, policy: ApprovalPolicy, requester: str) -> ApprovalGate:
        return cls(
            gate_id=gate_id,
            request_id=f"{run_id}:{gate_id}",
            required=policy.required_approvals,
            requester=requester,
            allow_self_approval=policy.allow_self_approval,
        )

    def start_phase(self, phase: str, people: list[Approver], expires_at: str) -> None:
        self.phase = phase
        self.eligible = {p.identifier: p for p in people}
        self.expires_at = expires_at

    @property
    def decisions(self) -> int:
        return len(self.approvals) + len(self.declines)

    def undecided(self) -> list[Approver]:
        decided = {d["user"] for d in self.approvals + self.declines}
        return [a for user, a in self.eligible.items() if user not in decided and self._may_decide(user)]

    def _may_decide(self, user: str) -> bool:
        return self.allow_self_approval or user != self.requester

    def refusal(self, decision: Decision) -> tuple[str, str] | None:
        """Why this decision cannot be applied (an error type and a message), or None."""
        if decision.request_id not in (None, self.request_id) or self.status != "PENDING":
            return APPROVAL_CLOSED, "this approval request is closed"
        if decision.user == self.requester and not self.allow_self_approval:
            return SELF_APPROVAL, "you requested this run; the action does not allow self-approval"
        if decision.user not in self.eligible:
            return NOT_ELIGIBLE, f"{decision.user} is not an eligible approver of this run"
        if any(d["user"] == decision.user for d in self.approvals + self.declines):
            return ALREADY_DECIDED, f"{decision.user} has already decided"
        return None

    def apply(self, decision: Decision, at: str) -> None:
        record = {"user": decision.user, "at": at, "via": decision.via, "comment": decision.comment}
        if decision.decision == "DECLINE":
            self.declines.append(record)
            self.status = "DECLINED"
        else:
            self.approvals.append(record)
            if len(self.approvals) >= self.required:
                self.status = "APPROVED"

    def view(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "gate": self.gate_id,
            "required": self.required,
            "status": self.status,
            "phase": self.phase,
            "expires_at": self.expires_at,
            "eligible": sorted(self.eligible),
            "approvals": self.approvals,
            "declines": self.declines,
        }
