"""ApprovalGate without a server: who may decide, N-of-M, declines, duplicates, closed gates."""

from __future__ import annotations

import pytest

from contracts.approvals import (
    ALREADY_DECIDED,
    APPROVAL_CLOSED,
    NOT_ELIGIBLE,
    SELF_APPROVAL,
    ApprovalPolicy,
    Approver,
    ApproverSelection,
    Decision,
)
from workflows.approval_gate import ApprovalGate

AT = "2030-01-01T00:00:00.000Z"
PEOPLE = [
    Approver("alice", "alice@example.com", "Alice"),
    Approver("bob", "bob@example.com"),
    Approver("carol", "carol@example.com"),
]


def gate(required: int = 1, *, requester: str = "alice", allow_self_approval: bool = False) -> ApprovalGate:
    opened = ApprovalGate(
        gate_id="approve",
        request_id="run-1:approve",
        required=required,
        requester=requester,
        allow_self_approval=allow_self_approval,
    )
    opened.start_phase("initial", PEOPLE, "2030-01-02T00:00:00.000Z")
    return opened


def approve(user: str, *, comment: str = "", request_id: str | None = None) -> Decision:
    return Decision(user=user, decision="APPROVE", comment=comment, request_id=request_id)


def test_the_requester_may_not_approve_their_own_run_even_when_eligible() -> None:
    opened = gate(requester="alice")
    refusal = opened.refusal(approve("alice"))
    assert refusal is not None and refusal[0] == SELF_APPROVAL
    assert [a.identifier for a in opened.undecided()] == ["bob", "carol"]


def test_self_approval_is_allowed_when_the_policy_says_so() -> None:
    opened = gate(requester="alice", allow_self_approval=True)
    assert opened.refusal(approve("alice")) is None
    opened.apply(approve("alice"), AT)
    assert opened.status == "APPROVED"
    assert "alice" in [a.identifier for a in gate(allow_self_approval=True).undecided()]


def test_only_eligible_people_decide() -> None:
    refusal = gate().refusal(approve("mallory"))
    assert refusal is not None and refusal[0] == NOT_ELIGIBLE and "mallory" in refusal[1]


def test_n_of_m_needs_n_distinct_approvals() -> None:
    opened = gate(required=2, requester="someone-else")
    opened.apply(approve("alice"), AT)
    assert opened.status == "PENDING" and opened.decisions == 1
    refusal = opened.refusal(approve("alice"))
    assert refusal is not None and refusal[0] == ALREADY_DECIDED
    assert opened.refusal(approve("bob")) is None
    opened.apply(approve("bob", comment="ship it"), AT)
    assert opened.status == "APPROVED"
    assert [(d["user"], d["comment"]) for d in opened.approvals] == [("alice", ""), ("bob", "ship it")]


def test_one_decline_declines_and_closes_the_gate() -> None:
    opened = gate(required=2, requester="someone-else")
    opened.apply(approve("alice"), AT)
    opened.apply(Decision(user="bob", decision="DECLINE", comment="not today", via="slack"), AT)
    assert opened.status == "DECLINED"
    assert opened.declines == [{"user": "bob", "at": AT, "via": "slack", "comment": "not today"}]
    refusal = opened.refusal(approve("carol"))
    assert refusal is not None and refusal[0] == APPROVAL_CLOSED


@pytest.mark.parametrize("request_id", ["run-1:approve", None])
def test_a_decision_for_this_request_or_the_open_one_is_accepted(request_id: str | None) -> None:
    assert gate(requester="x").refusal(approve("bob", request_id=request_id)) is None


def test_a_decision_for_another_request_is_refused() -> None:
    refusal = gate(requester="x").refusal(approve("bob", request_id="run-1:an-earlier-gate"))
    assert refusal is not None and refusal[0] == APPROVAL_CLOSED


def test_a_later_phase_replaces_who_is_eligible() -> None:
    opened = gate(requester="x")
    opened.start_phase("escalation", [Approver("dave", "dave@example.com")], AT)
    assert opened.phase == "escalation" and opened.expires_at == AT
    assert opened.view()["eligible"] == ["dave"]
    refusal = opened.refusal(approve("alice"))
    assert refusal is not None and refusal[0] == NOT_ELIGIBLE


def test_a_gate_opens_from_a_typed_policy() -> None:
    policy = ApprovalPolicy(
        ApproverSelection(users=["bob", "carol"]), required_approvals=2, allow_self_approval=True
    )
    opened = ApprovalGate.open("action", "run-9", policy, "alice")
    assert (opened.request_id, opened.required, opened.allow_self_approval) == ("run-9:action", 2, True)


def test_an_escalating_policy_waits_through_two_phases() -> None:
    policy = ApprovalPolicy(
        ApproverSelection(users=["bob"]),
        timeout="PT1H",
        on_timeout="ESCALATE",
        escalation_approvers=ApproverSelection(roles=["admin"]),
        eligible=PEOPLE[1:2],
        escalation_eligible=PEOPLE[2:],
    )
    assert policy.phases() == [("initial", PEOPLE[1:2], "PT1H"), ("escalated", PEOPLE[2:], "PT1H")]
    assert ApprovalPolicy(ApproverSelection()).phases() == [("initial", [], "PT24H")]
