"""ApprovalGate without a server: who may decide, N-of-M, declines, duplicates, closed gates."""

from __future__ import annotations

import pytest

from contracts.approvals import ALREADY_DECIDED, APPROVAL_CLOSED, NOT_ELIGIBLE, SELF_APPROVAL, Decision
from workflows.approval_gate import ApprovalGate

AT = "2030-01-01T00:00:00.000Z"
PEOPLE = [
    {"identifier": "alice", "email": "alice@example.com", "name": "Alice"},
    {"identifier": "bob", "email": "bob@example.com"},
    {"identifier": "carol", "email": "carol@example.com"},
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
    opened.start_phase("escalation", [{"identifier": "dave", "email": "dave@example.com"}], AT)
    assert opened.phase == "escalation" and opened.expires_at == AT
    assert opened.view()["eligible"] == ["dave"]
    refusal = opened.refusal(approve("alice"))
    assert refusal is not None and refusal[0] == NOT_ELIGIBLE
