"""Dry runs: what a launch would do, checked like a launch, rendered like the workflow renders,
and nothing written or started.

The plan renders each step's ``with`` and evaluates its ``if`` with the template renderer the
ActionRun workflow uses, on the values a launch would give it: the inputs after defaults (secret
ones as their ``${secret:NAME}`` placeholder, never the value), the entity, the requester.
What only exists once a run does is not invented:

- ``run.id``, ``run.url`` and ``run.temporal_ui_url`` render as :data:`RUN_ID` placeholders;
- a string reading ``run.started_at`` or an earlier step's ``outputs`` is shown as its template,
  and an ``if`` reading them has ``would_run`` null (decided when the run gets there).

An earlier step's ``status`` reads ``SUCCESS`` when it would run and ``SKIPPED`` when not.
Each step shows the steps it ``needs`` (the step before it, unless it names them); a fanned-out
step shows its ``for_each`` items when they are known, its ``with`` leaving ``item`` and
``index`` as written (each item gets its own).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from sqlalchemy.orm import Session

from catalog.models import Action
from catalog.runs.service import LaunchRequest, build_workflow_input, check_launch, new_run
from catalog.runs.step_kinds import DESTRUCTIVE_KINDS
from catalog.sandbox.templates import TemplateFailure, evaluate_condition, references, render_string
from contracts.actions import step_needs

# What ``run.id`` reads in a dry run: the id is drawn when the run is launched.
RUN_ID = "<run.id>"


def dry_run(session: Session, request: LaunchRequest) -> dict[str, Any]:
    """The plan of a launch after the launch's own checks (the same 404, 403, 409 and 422); the
    session is only read. ``plan_hash`` is the same for the same action version, entity, inputs
    and rendered steps."""
    entity, inputs, sealed = check_launch(session, request)
    action = request.action
    run = new_run(request, RUN_ID, entity, inputs, sealed)
    launch_input = build_workflow_input(
        session, run, action.definition, entity=entity, caller=request.caller, api_url=request.api_url
    )
    info = dataclasses.asdict(launch_input.run)
    info["temporal_ui_url"] = RUN_ID  # run.url already names RUN_ID
    context: dict[str, Any] = {
        "inputs": launch_input.inputs,
        "entity": launch_input.entity,
        "steps": {},
        "run": info,
        "user": dataclasses.asdict(launch_input.user),
        "event": None,
    }
    steps = []
    definitions = action.definition["steps"]
    needs = step_needs([(step["id"], step.get("needs")) for step in definitions])
    for index, step in enumerate(definitions):
        planned = _plan_step(index, step, context)
        planned["destructive"] = planned["destructive"] or runs_destructive_action(session, step)
        planned["needs"] = needs[step["id"]]
        context["steps"][step["id"]] = {
            "outputs": {},
            "status": "SKIPPED" if planned["would_run"] is False else "SUCCESS",
        }
        steps.append(planned)
    plan = {
        "action": action.identifier,
        "action_version": action.version,
        "entity": entity.identifier if entity is not None else None,
        "steps": steps,
        "destructive": any(s["destructive"] for s in steps),
    }
    return plan | {"plan_hash": plan_hash(plan, launch_input.inputs)}


def plan_hash(plan: dict[str, Any], inputs: dict[str, Any]) -> str:
    """sha256 of the action, its version, the entity, the inputs after defaults (secret ones
    as placeholders) and the rendered steps, as canonical JSON."""
    material = {
        "action": plan["action"],
        "action_version": plan["action_version"],
        "entity": plan["entity"],
        "inputs": inputs,
        "steps": plan["steps"],
    }
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def is_destructive(step: dict[str, Any]) -> bool:
    """A step destroys something when it says so or its kind deletes."""
    return bool(step.get("destructive")) or step["uses"] in DESTRUCTIVE_KINDS


def runs_destructive_action(
    session: Session, step: dict[str, Any], seen: frozenset[str] = frozenset()
) -> bool:
    """Whether a sub-action step (``uses: action``) runs an action that is destructive, through
    however many sub-actions (each action once)."""
    name = (step.get("with") or {}).get("action") if step["uses"] == "action" else None
    child = session.get(Action, name) if isinstance(name, str) and name not in seen else None
    if child is None:
        return False
    return any(
        is_destructive(s) or runs_destructive_action(session, s, seen | {child.identifier})
        for s in child.definition["steps"]
    )


def _plan_step(index: int, step: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    where = f"/steps/{index}"
    planned: dict[str, Any] = {
        "id": step["id"],
        "uses": step["uses"],
        "with": {},
        "would_run": True,
        "destructive": is_destructive(step),
    }
    try:
        condition = step.get("if")
        if condition is not None:
            planned["would_run"] = (
                None
                if _unknown_yet(condition, expression=True)
                else evaluate_condition(condition, context, f"{where}/if")
            )
        for_each = step.get("for_each")
        if for_each is not None:
            # None when it reads what only the run knows (an earlier step's outputs).
            items = _render(for_each, context, f"{where}/for_each")
            planned["for_each"] = None if items == for_each else items
        planned["with"] = _render(step.get("with") or {}, context, f"{where}/with")
    except TemplateFailure as exc:
        # The run would fail at this step: shown, not refused (a launch is not refused either).
        planned["with"], planned["error"] = step.get("with") or {}, str(exc)
    if step.get("wait_for_completion") is not None:
        planned["with"]["wait_for_completion"] = step["wait_for_completion"]
    return planned


def _render(value: Any, context: dict[str, Any], where: str) -> Any:
    """``render_value``, leaving as written each string that reads what is not known yet."""
    if isinstance(value, dict):
        return {k: _render(v, context, f"{where}/{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, context, f"{where}/{i}") for i, v in enumerate(value)]
    if isinstance(value, str) and not _unknown_yet(value):
        return render_string(value, context, where)
    return value


def _unknown_yet(template: str, *, expression: bool = False) -> bool:
    """Whether the template reads a value only a running run has: an earlier step's outputs
    (or a whole step), or the run's start time."""
    paths = {ref.path for ref in references(template, expression=expression)}
    # The parser yields every prefix of a dotted name too (``run``, ``run.id``): judge whole names.
    names = [p for p in paths if not any(len(q) > len(p) and q[: len(p)] == p for q in paths)]
    for path in names:
        if path[0] in ("item", "index"):  # a fanned-out step's: each item has its own
            return True
        if path[0] == "steps" and (len(path) < 3 or path[2] != "status"):
            return True
        if path[0] == "run" and (len(path) < 2 or path[1] == "started_at"):
            return True
    return False
