"""The gate on an agent's destructive launch: it must show the plan it saw, and a human approves.

An agent launching something destructive (a step that deletes, or says it is destructive) must
send the ``plan_hash`` of a dry run of the same launch, so what runs is what it was shown (409
asking for one otherwise); and the run always waits for a human approval, even when the action
has none. The gate is an action-level approval policy added to the run's pinned definition, so
the workflow's own approval gate enforces it: approvers are those of the action's approval
steps if it has any, else the agent's owner and the admins.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from catalog.errors import Conflict, FieldError
from catalog.runs.plan import dry_run, is_destructive, runs_destructive_action
from catalog.runs.service import LaunchRequest


def is_destructive_action(session: Session, definition: dict[str, Any]) -> bool:
    """Any step destroys something, itself or through the actions its sub-action steps run."""
    return any(is_destructive(step) or runs_destructive_action(session, step) for step in definition["steps"])


def gated_definition(session: Session, request: LaunchRequest) -> dict[str, Any]:
    """The definition this launch runs: the action's own, or for an agent's destructive launch
    (after its ``plan_hash`` is checked) the action's with the forced approval gate."""
    definition: dict[str, Any] = request.action.definition
    if request.who.agent is None or not is_destructive_action(session, definition):
        return definition
    expected = dry_run(session, request)["plan_hash"]
    sent = request.body.plan_hash
    if sent != expected:
        problem = (
            "missing" if sent is None else "does not match this launch's plan (inputs or action changed)"
        )
        raise Conflict(
            f"'{request.action.identifier}' is destructive: an agent must dry-run it first "
            "(?dry_run=true) and launch with the plan_hash of that dry run",
            [FieldError("/plan_hash", problem)],
        )
    if definition.get("approval"):
        return definition
    return {**definition, "approval": _forced_policy(definition, request.caller.identifier)}


def _forced_policy(definition: dict[str, Any], owner: str) -> dict[str, Any]:
    """The approvers of the action's approval steps, else the owner and the admins. The owner is
    the run's requester, so self-approval is allowed: the agent itself can never approve."""
    approvers: dict[str, list[str]] = {"users": [], "teams": [], "roles": []}
    for step in definition["steps"]:
        if step["uses"] == "approval":
            for kind, names in (step.get("with") or {}).get("approvers", {}).items():
                approvers[kind] += [n for n in names if n not in approvers[kind]]
    if not any(approvers.values()):
        approvers = {"users": [owner], "teams": [], "roles": ["admin"]}
    return {"approvers": approvers, "allow_self_approval": True, "required_approvals": 1}
