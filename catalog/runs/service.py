"""Action runs: launching (inputs, trigger and condition checks, idempotency), the state the
workflow reports, listing and logs. Starting the workflow itself is the API's job."""

from __future__ import annotations

import hashlib
import itertools
import secrets as pysecrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

from jsonschema import Draft202012Validator
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, func, or_, select, true, update
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.sql.elements import ColumnElement, False_, True_

from catalog import audit, events
from catalog.audit import Actor
from catalog.base import Strict
from catalog.blueprints.properties import FORMAT_CHECKER
from catalog.db import utcnow
from catalog.entities.service import entity_view
from catalog.errors import Conflict, FieldError, Forbidden, Invalid, NotFound, pointer
from catalog.exemptions import decisions as exemptions
from catalog.identity.permissions import Principal, is_moderator, may, passes, principal_of, readable_clause
from catalog.identity.service import get_user, missing_teams, missing_users, user_teams
from catalog.models import Action, Blueprint, Entity, Run, RunApprover, RunLog, User
from catalog.pagination import Page, check_limit, decode_cursor, encode_cursor
from catalog.query.compiler import compile_query, team_overlaps
from catalog.runs import approvals, secrets
from catalog.runs.actions import may_execute, may_see, moderates, see_policy
from catalog.scorecards import service as scorecards
from catalog.timefmt import canonical_times, format_instant, format_optional
from contracts.actions import ActionSpec
from contracts.approvals import ApprovalPolicy
from contracts.runs import Requester, RunInfo, RunInput, StepState, initial_steps
from contracts.sub_actions import ChildRunRequest

TERMINAL = frozenset({"SUCCESS", "FAILURE", "DECLINED", "CANCELLED", "TIMED_OUT"})
STATUSES = frozenset({"WAITING_FOR_APPROVAL", "IN_PROGRESS"}) | TERMINAL
Source = Literal["API", "CLI", "UI", "AUTOMATION"]


class RunRequest(Strict):
    entity: str | None = Field(None, max_length=256)
    inputs: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)
    source: Source | None = None
    # Set by automations (service token only): which automation and event started the run.
    trigger: dict[str, Any] | None = None
    # The plan_hash of a dry run of this launch: an agent's destructive launch needs it.
    plan_hash: str | None = Field(None, max_length=100)


class WorkerMessage(BaseModel):
    """A message from the worker. Tolerant: during a rolling upgrade a newer worker's extra
    fields are ignored (refusing them would fail every run mid-step); required ones are checked."""

    model_config = ConfigDict(extra="ignore")


class LogLine(WorkerMessage):
    seq: int | None = Field(None, ge=0)
    message: str
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    step_id: str | None = None
    at: datetime | None = None


class RunReport(WorkerMessage):
    """What a workflow tells the catalog about its run; every field replaces the stored one."""

    status: str | None = None
    status_label: str | None = None
    # Read as StepState: unknown keys of a newer worker are dropped, id and uses are required.
    steps: list[StepState] | None = None
    approval: dict[str, Any] | None = None
    links: list[dict[str, Any]] | None = None
    affected_entities: list[dict[str, Any]] | None = None
    error: str | None = None
    logs: list[LogLine] = Field(default_factory=list)
    # The workflow's log sequence when it reported: a lower one than the run's is an older
    # report retried late (see :func:`apply_report`). None: a worker that does not number them.
    report_seq: int | None = Field(None, ge=0)


def workflow_id_for(action: str, run_id: str) -> str:
    return f"action:{action}:{run_id}"


def temporal_ui_url(base: str, namespace: str, workflow_id: str) -> str:
    return f"{base.rstrip('/')}/namespaces/{quote(namespace)}/workflows/{quote(workflow_id, safe='')}"


# Times the workflow records in steps and approvals (workers before the one format wrote
# ``+00:00`` with microseconds; such stored runs are shown in the one format too).
RECORDED_TIMES = frozenset({"at", "started_at", "ended_at", "expires_at"})
VENDOR_DATA = frozenset({"outputs"})


def run_view(run: Run, *, ui_base: str, namespace: str) -> dict[str, Any]:
    return {
        "trigger": run.trigger,
        "id": run.id,
        "action": run.action,
        "action_title": run.action_title,
        "action_version": run.action_version,
        "blueprint": run.blueprint,
        "entity": run.entity,
        "inputs": run.inputs,
        "status": run.status,
        "status_label": run.status_label,
        "source": run.source,
        "created_by": run.created_by,
        "created_at": format_instant(run.created_at),
        "updated_at": format_instant(run.updated_at),
        "ended_at": format_optional(run.ended_at),
        "steps": canonical_times(run.steps, RECORDED_TIMES, skip=VENDOR_DATA),
        "approval": canonical_times(run.approval, RECORDED_TIMES),
        "links": run.links,
        "affected_entities": run.affected_entities,
        "error": run.error,
        "workflow_id": run.workflow_id,
        "temporal_ui_url": temporal_ui_url(ui_base, namespace, run.workflow_id),
        "parent_run_id": run.parent_run_id,
        "child_runs": [child_view(child) for child in run.child_runs],
        "visibility": "full",
    }


def child_view(child: Run) -> dict[str, Any]:
    """A sub-action's run as its parent lists it: which step launched it, and how it stands."""
    return {
        "id": child.id,
        "action": child.action,
        "step": (child.trigger or {}).get("step"),
        "status": child.status,
    }


SUMMARY_FIELDS = (
    "id",
    "action",
    "action_title",
    "blueprint",
    "entity",
    "status",
    "status_label",
    "source",
    "created_by",
    "created_at",
    "updated_at",
    "ended_at",
    "workflow_id",
)
Visibility = Literal["full", "summary"]


def summary_view(full: dict[str, Any]) -> dict[str, Any]:
    """What people who may only see the action learn of a run: no inputs, outputs, approvals,
    links or errors."""
    return {name: full[name] for name in SUMMARY_FIELDS} | {"visibility": "summary"}


def run_event(run: Run) -> dict[str, Any]:
    """What events carry of a run (automation conditions read it as ``.run``)."""
    return {
        "id": run.id,
        "action": run.action,
        "status": run.status,
        "source": run.source,
        "entity": run.entity,
        "blueprint": run.blueprint,
        "inputs": run.inputs,
        "created_by": run.created_by,
        "error": run.error,
        "trigger": run.trigger,
    }


def get_run(session: Session, run_id: str) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run '{run_id}' not found")
    return run


# ---- who sees what of a run --------------------------------------------------------------


def visibility(session: Session, run: Run, who: Principal) -> Visibility | None:
    """``full`` for the requester, the entity's owners, the run's eligible approvers, the
    blueprint's moderators and admins; ``summary`` for others who may see the action (and read
    the entity); None (a 404) for everyone else."""
    if who.is_admin or run.created_by == who.identifier:
        return "full"
    bp = session.get(Blueprint, run.blueprint) if run.blueprint else None
    if bp is not None and is_moderator(bp, who):
        return "full"
    if session.get(RunApprover, (run.id, who.identifier)) is not None:
        return "full"
    entity = (
        session.scalar(
            select(Entity).where(Entity.blueprint == run.blueprint, Entity.identifier == run.entity)
        )
        if run.entity
        else None
    )
    owners = list(entity.team or []) if entity is not None else []
    if who.teams & set(owners):
        return "full"
    action = session.get(Action, run.action)
    if action is None or not may_see(session, action, who, owners if entity is not None else None):
        return None
    if entity is not None and bp is not None and not may(bp, who, "read", owners):
        return None
    return "summary"


def visible_runs_clause(session: Session, who: Principal) -> ColumnElement[bool]:
    """SQL keeping the runs ``who`` may see at least the summary of (applied before paging)."""
    if who.is_admin:
        return true()
    dialect = session.get_bind().dialect.name
    blueprints = list(session.scalars(select(Blueprint)))
    moderated = [bp.identifier for bp in blueprints if is_moderator(bp, who)]
    shown: list[ColumnElement[bool]] = [
        Run.created_by == who.identifier,
        Run.id.in_(select(RunApprover.run_id).where(RunApprover.user == who.identifier)),
        Run.blueprint.in_(moderated),
    ]
    if who.teams:
        owned = select(Entity.id).where(
            Entity.blueprint == Run.blueprint,
            Entity.identifier == Run.entity,
            team_overlaps(Entity.team, sorted(who.teams), dialect),
        )
        shown.append(owned.exists())
    # Summaries: actions whose see policy passes whatever the entity (one that needs the caller
    # to own the entity is covered by ownership above), on entities the caller may read.
    seen = [a.identifier for a in session.scalars(select(Action)) if passes(see_policy(a), who, ())]
    readable: list[ColumnElement[bool]] = [Run.entity.is_(None)]
    for bp in blueprints:
        clause = readable_clause(bp, who, dialect)
        if isinstance(clause, True_):
            readable.append(Run.blueprint == bp.identifier)
        elif not isinstance(clause, False_):
            entity = select(Entity.id).where(
                Entity.blueprint == bp.identifier, Entity.identifier == Run.entity, clause
            )
            readable.append(and_(Run.blueprint == bp.identifier, entity.exists()))
    shown.append(and_(Run.action.in_(seen), or_(*readable)))
    return or_(*shown)


# ---- launching ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchRequest:
    """One launch as the caller asked for it, with what the checks and the record need."""

    action: Action
    body: RunRequest
    caller: User
    who: Principal
    source: str
    secret_key: str | None
    api_url: str
    # The run's Temporal UI address, from its workflow id.
    ui_url: Callable[[str], str] = lambda workflow_id: ""

    @property
    def scope(self) -> str | None:
        """What an idempotency key is unique within: the action and the caller."""
        key = self.body.idempotency_key
        return f"{self.action.identifier}:{self.caller.identifier}:{key}" if key else None

    @property
    def run_id(self) -> str:
        """Derived from the idempotency scope when there is one, so a repeated launch (even a
        concurrent one) names the same run and the same workflow."""
        scope = self.scope
        return "r_" + (hashlib.sha256(scope.encode()).hexdigest()[:24] if scope else pysecrets.token_hex(12))


@dataclass
class Launch:
    """A checked launch: its run record (added, not committed) and the workflow's input; or,
    for an idempotency key seen before, the earlier run (``created`` False, no input)."""

    run: Run
    workflow_input: RunInput | None
    created: bool


def prepare_run(session: Session, request: LaunchRequest) -> Launch:
    """Check a launch and add its run record (not committed); an idempotency key that was seen
    before returns the earlier run instead. In order: the action is visible (404), the entity
    exists and is readable (404), the caller may see and execute the action on it (404, 403),
    the trigger condition and preconditions hold (409), the inputs are valid (422)."""
    action = request.action
    run_id = request.run_id
    if not may_see(session, action, request.who):
        raise NotFound(f"action '{action.identifier}' not found")
    if request.scope is not None and (earlier := session.get(Run, run_id)) is not None:
        return Launch(earlier, None, created=False)
    entity, inputs, sealed = check_launch(session, request)
    # Imported here: the gate dry-runs the launch, and the dry run builds on this module.
    from catalog.runs.agent_gate import gated_definition

    definition = gated_definition(session, request)
    run = new_run(request, run_id, entity, inputs, sealed, definition=definition)
    workflow_input = build_workflow_input(
        session,
        run,
        definition,
        entity=entity,
        caller=request.caller,
        api_url=request.api_url,
        ui_url=request.ui_url(run.workflow_id),
    )
    record_launch(session, run, workflow_input, agent=request.who.agent)
    return Launch(run, workflow_input, created=True)


# ---- sub-actions: a run launched by another run's step -----------------------------------

CHILD_SOURCE = "ACTION"
# How deep sub-actions may nest (a run's child's child …): a cycle through edited actions stops here.
MAX_SUB_ACTION_DEPTH = 5


def prepare_child_run(
    session: Session,
    parent: Run,
    request: ChildRunRequest,
    *,
    secret_key: str | None,
    api_url: str,
    ui_url: Callable[[str], str] = lambda workflow_id: "",
) -> Launch:
    """Check and add (not committed) the run a sub-action step of ``parent`` launches, exactly as
    a launch by the parent's requester would be checked (404, 403, 409, 422): the requester, with
    the permissions they have now, is the child's. The same step of the same execution of the
    parent names the same child (its ``idempotency_key``); an earlier one comes back with its
    workflow input rebuilt (``created`` False). Secret values reach the child only from the
    parent's own secret inputs, through placeholders bearing the parent's ``secret_marker``."""
    if parent.status in TERMINAL:
        raise Conflict(f"run '{parent.id}' has ended ({parent.status}): it launches no sub-action")
    _check_depth(session, parent)
    caller = get_user(session, parent.created_by)
    who = principal_of(session, caller)
    action = session.get(Action, request.action)
    if action is None:
        raise NotFound(f"action '{request.action}' not found")
    inputs = secrets.resolve(request.inputs, sealed_inputs(parent, secret_key), request.secret_marker)
    body = RunRequest(
        entity=request.entity,
        inputs=inputs,
        idempotency_key=f"{parent.id}:{request.step_id}:{request.execution}",
        trigger={"parent_run_id": parent.id, "step": request.step_id},
    )
    launch_request = LaunchRequest(
        action=action,
        body=body,
        caller=caller,
        who=who,
        source=CHILD_SOURCE,
        secret_key=secret_key,
        api_url=api_url,
        ui_url=ui_url,
    )
    launch = prepare_run(session, launch_request)
    if launch.created:
        launch.run.parent_run_id = parent.id
        return launch
    earlier = launch.run
    # The child recorded by an earlier attempt of the same step: its input rebuilt from the record.
    rebuilt = launch_input(
        session, earlier, api_url=launch_request.api_url, ui_url=launch_request.ui_url(earlier.workflow_id)
    )
    return Launch(earlier, rebuilt, created=False)


def _check_depth(session: Session, parent: Run) -> None:
    depth, ancestor = 1, parent.parent_run_id
    while ancestor is not None:
        depth += 1
        if depth >= MAX_SUB_ACTION_DEPTH:
            raise Conflict(
                f"sub-actions nest at most {MAX_SUB_ACTION_DEPTH} runs deep: run '{parent.id}' is too deep"
            )
        ancestor = session.scalar(select(Run.parent_run_id).where(Run.id == ancestor))


def child_run_outputs(run: Run) -> dict[str, Any]:
    """What a run gives the sub-action step that launched it: its steps' outputs by step id."""
    return {step["id"]: step.get("outputs") or {} for step in run.steps}


def check_launch(
    session: Session, request: LaunchRequest
) -> tuple[Entity | None, dict[str, Any], dict[str, str]]:
    """A launch's checks after the action's visibility (a dry run makes the same ones): the
    target entity, the inputs with defaults applied and the secret ones split off."""
    entity = check_target(session, request.action, request.body.entity, request.who)
    schema = request.action.definition.get("user_inputs") or {}
    inputs, sealed = _check_inputs(session, schema, request.body.inputs, request.secret_key)
    return entity, inputs, sealed


def new_run(
    request: LaunchRequest,
    run_id: str,
    entity: Entity | None,
    inputs: dict[str, Any],
    sealed: dict[str, str],
    *,
    definition: dict[str, Any] | None = None,
) -> Run:
    """The new run's record: secret inputs sealed and shown redacted, every step PENDING.
    ``definition`` (default: the action's) is what the run pins and runs."""
    action, key = request.action, request.secret_key
    definition = definition if definition is not None else action.definition
    gated = bool(definition.get("approval"))
    now = utcnow()
    return Run(
        id=run_id,
        action=action.identifier,
        action_title=action.title,
        blueprint=definition.get("blueprint"),
        entity=entity.identifier if entity else None,
        inputs={k: (secrets.REDACTED if k in sealed else v) for k, v in inputs.items()},
        secret_inputs=secrets.seal(sealed, key) if sealed and key else None,
        status="WAITING_FOR_APPROVAL" if gated else "IN_PROGRESS",
        status_label="Waiting for approval" if gated else "Starting",
        source=request.source,
        created_by=request.caller.identifier,
        created_at=now,
        updated_at=now,
        steps=initial_steps(definition["steps"]),
        approval=None,
        links=[],
        affected_entities=[],
        workflow_id=workflow_id_for(action.identifier, run_id),
        idempotency_scope=request.scope,
        trigger=request.body.trigger,
        action_version=action.version,
        definition=definition,
    )


def record_launch(session: Session, run: Run, workflow_input: RunInput, *, agent: str | None = None) -> None:
    """Add the run with its approvers, audit entry and RUN_CREATED event. All of it is committed
    before the workflow starts (the caller's job): a workflow never runs without its record. An
    agent's launch is audited as the agent on behalf of its owner, the run's requester."""
    actor = Actor(agent, run.id, on_behalf_of=run.created_by) if agent else Actor(run.created_by, run.id)
    session.add(run)
    audit.record(
        session,
        actor,
        "CREATE",
        "run",
        run.id,
        blueprint=run.blueprint,
        after={"action": run.action, "entity": run.entity, "inputs": run.inputs},
    )
    add_approvers(session, run, workflow_input.approvals)
    events.add(
        session,
        events.event_row(
            "RUN_CREATED",
            actor,
            blueprint=run.blueprint,
            entity=run.entity,
            run_id=run.id,
            payload={"run": run_event(run)},
        ),
    )


def add_approvers(session: Session, run: Run, gates: dict[str, ApprovalPolicy]) -> None:
    """Record who may decide the run's approval ``gates`` (those not recorded yet: a retry
    re-resolves)."""
    approvers = {
        person.identifier for gate in gates.values() for person in gate.eligible + gate.escalation_eligible
    }
    known = set(session.scalars(select(RunApprover.user).where(RunApprover.run_id == run.id)))
    session.add_all(RunApprover(run_id=run.id, user=user) for user in sorted(approvers - known))


def check_target(session: Session, action: Action, identifier: str | None, who: Principal) -> Entity | None:
    """The entity a launch (or retry) acts on, after every check that depends on it."""
    definition = action.definition
    entity = _resolve_entity(session, definition, identifier, who)
    owners = list(entity.team or []) if entity is not None else None
    if entity is not None and not may_see(session, action, who, owners):
        raise NotFound(f"action '{action.identifier}' not found")
    if not may_execute(session, action, who, owners or []):
        raise Forbidden(
            f"you may not run '{action.identifier}'"
            + (f" on '{entity.identifier}'" if entity is not None else "")
            + ": its execute permission does not include you"
        )
    if entity is not None:
        condition = definition["trigger"].get("condition")
        failing = _failing_rules(session, entity, condition) if condition else []
        if failing:
            raise Conflict(f"entity '{entity.identifier}' does not meet the action's condition", failing)
        required = (definition.get("preconditions") or {}).get("scorecards")
        if required:
            _check_preconditions(session, entity, required)
    return entity


def build_workflow_input(
    session: Session,
    run: Run,
    definition: dict[str, Any],
    *,
    entity: Entity | None,
    caller: User,
    api_url: str,
    ui_url: str = "",
) -> RunInput:
    """What the ActionRun workflow starts with. Secret inputs appear only as placeholders;
    approval policies come with the people eligible to decide them (``approvals``, by gate:
    ``action`` for the action's own policy, else the ``approval`` step's id), never the caller
    unless the policy allows self-approval."""
    secret_names = {
        n for n, d in (definition.get("user_inputs") or {}).get("properties", {}).items() if d.get("secret")
    }
    return RunInput(
        run_id=run.id,
        action=ActionSpec.from_json(definition),
        entity=entity_view(entity) if entity else None,
        inputs={k: (secrets.placeholder(k) if k in secret_names else v) for k, v in run.inputs.items()},
        user=Requester(
            identifier=caller.identifier,
            email=caller.email,
            name=caller.name,
            teams=user_teams(session, caller.identifier),
        ),
        run=RunInfo(
            id=run.id,
            action=run.action,
            source=run.source,
            started_at=format_instant(run.created_at),
            url=f"{api_url.rstrip('/')}/v1/runs/{run.id}",
            temporal_ui_url=ui_url,
        ),
        approvals=_approval_gates(session, definition, caller.identifier),
    )


def _approval_gates(
    session: Session, definition: dict[str, Any], requester: str
) -> dict[str, ApprovalPolicy]:
    """The action's approval policies with their eligible people, by gate."""
    gates = (
        {"action": approvals.resolve(session, definition["approval"], requester)}
        if definition.get("approval")
        else {}
    )
    for step in definition["steps"]:
        if step["uses"] == "approval":
            gates[step["id"]] = approvals.resolve(session, step.get("with", {}), requester)
    return gates


def _resolve_entity(
    session: Session, definition: dict[str, Any], identifier: str | None, who: Principal
) -> Entity | None:
    """The target entity; one that does not exist and one the caller may not read are the same
    404 (existence is not leaked)."""
    operation = definition["trigger"]["operation"]
    blueprint = str(definition.get("blueprint") or "")
    if operation == "CREATE":
        if identifier is not None:
            raise Invalid("invalid run", [FieldError("/entity", "CREATE actions do not take an entity")])
        return None
    if identifier is None:
        raise Invalid(
            "invalid run", [FieldError("/entity", f"{operation} actions need an entity of '{blueprint}'")]
        )
    entity = session.scalar(
        select(Entity).where(Entity.blueprint == blueprint, Entity.identifier == identifier)
    )
    bp = session.get(Blueprint, blueprint)
    if entity is None or bp is None or not may(bp, who, "read", entity.team or []):
        raise NotFound(f"entity '{identifier}' of blueprint '{blueprint}' not found")
    return entity


def _check_preconditions(session: Session, entity: Entity, required: dict[str, str]) -> None:
    """409 unless the entity holds at least the required level of each scorecard, naming the
    rules that keep it below."""
    graded = scorecards.for_entities(session, [entity.id]).get(entity.id, {})
    problems: list[FieldError] = []
    for name, level in required.items():
        definitions = scorecards.list_scorecards(session, entity.blueprint)
        definition = next((s.definition for s in definitions if s.identifier == name), None)
        if definition is None:
            problems.append(
                FieldError(f"/preconditions/scorecards/{name}", f"there is no scorecard '{name}'")
            )
            continue
        titles = [lvl["title"] for lvl in definition["levels"]]
        held = graded.get(name, {}).get("level", titles[0])
        if titles.index(held) >= titles.index(level) if level in titles else False:
            continue
        failing = [
            r["identifier"]
            for r in graded.get(name, {}).get("rules", [])
            if r["status"] == "FAILURE"
            and level in titles
            and titles.index(r["level"]) <= titles.index(level)
        ]
        problems.append(
            FieldError(
                f"/preconditions/scorecards/{name}",
                f"needs {level}, entity is {held}; failing rules: {', '.join(failing) or 'none'}",
            )
        )
    if problems:
        raise Conflict(
            f"entity '{entity.identifier}' does not meet the action's scorecard preconditions", problems
        )


def _failing_rules(session: Session, entity: Entity, condition: dict[str, Any]) -> list[FieldError]:
    """The condition's failing top-level rules (for an ``and``), or the whole condition."""
    dialect = session.get_bind().dialect.name
    now = utcnow()

    def holds(query: dict[str, Any]) -> bool:
        resolved = scorecards.resolve(session, query)
        predicate = compile_query(resolved, dialect=dialect, now=now, pointer="/trigger/condition")
        return session.scalar(select(Entity.id).where(Entity.id == entity.id, predicate)) is not None

    if holds(condition):
        return []
    rules = condition.get("rules") or []
    if condition.get("combinator", "and") == "and" and rules:
        return [
            FieldError(f"/trigger/condition/rules/{i}", f"not met: {rule}")
            for i, rule in enumerate(rules)
            if not holds({"combinator": "and", "rules": [rule]})
        ]
    return [FieldError("/trigger/condition", "not met")]


def _check_inputs(
    session: Session, schema: dict[str, Any], given: dict[str, Any], secret_key: str | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Inputs with defaults applied, and the secret ones split off; 422 naming each bad input."""
    properties: dict[str, dict[str, Any]] = schema.get("properties", {})
    values = {name: d["default"] for name, d in properties.items() if "default" in d}
    values.update(given)
    errors = [
        FieldError(pointer("inputs", n), "is not an input of this action")
        for n in given
        if n not in properties
    ]
    errors += [
        FieldError(pointer("inputs", n), "is required")
        for n in schema.get("required", [])
        if values.get(n) is None
    ]
    clean = {
        name: {k: v for k, v in definition.items() if k not in ("secret", "blueprint", "format")}
        | (
            {"format": definition["format"]}
            if definition.get("format") not in (None, "entity", "user", "team")
            else {}
        )
        for name, definition in properties.items()
    }
    validator = Draft202012Validator({"type": "object", "properties": clean}, format_checker=FORMAT_CHECKER)
    present = {k: v for k, v in values.items() if k in properties and v is not None}
    for error in validator.iter_errors(present):
        path = "/inputs" + "".join(f"/{p}" for p in error.absolute_path)
        name = str(error.absolute_path[0]) if error.absolute_path else ""
        secret = bool(properties.get(name, {}).get("secret"))
        errors.append(FieldError(path, _secret_message(error.validator) if secret else error.message))
    errors += _check_references(session, properties, present)
    sealed = {n: v for n, v in present.items() if properties[n].get("secret")}
    if sealed and not secret_key:
        errors.append(
            FieldError(pointer("inputs", next(iter(sealed))), "secret inputs need GANTRY_SECRET_KEY set")
        )
    if errors:
        raise Invalid("invalid inputs", errors)
    return present, {k: str(v) for k, v in sealed.items()}


def _secret_message(rule: Any) -> str:
    """jsonschema's messages quote the value: a secret input's problem names only the rule."""
    return f"does not satisfy the input's '{rule}' rule (the value is secret and not shown)"


def _check_references(
    session: Session, properties: dict[str, Any], values: dict[str, Any]
) -> list[FieldError]:
    errors: list[FieldError] = []
    for name, value in values.items():
        definition = properties[name]
        fmt = definition.get("format")
        where = pointer("inputs", name)
        shown = "the secret value" if definition.get("secret") else f"'{value}'"
        if fmt == "entity" and isinstance(value, str):
            found = session.scalar(
                select(Entity.id).where(
                    Entity.blueprint == definition["blueprint"], Entity.identifier == value
                )
            )
            if found is None:
                errors.append(FieldError(where, f"no '{definition['blueprint']}' entity {shown}"))
        elif fmt == "user" and isinstance(value, str) and missing_users(session, {value}):
            errors.append(FieldError(where, f"user {shown} does not exist"))
        elif fmt == "team" and isinstance(value, str) and missing_teams(session, {value}):
            errors.append(FieldError(where, f"team {shown} does not exist"))
    return errors


def sealed_inputs(run: Run, secret_key: str | None) -> dict[str, str]:
    if not run.secret_inputs:
        return {}
    if not secret_key:
        raise Conflict("GANTRY_SECRET_KEY is not set: the run's secret inputs cannot be read")
    return secrets.unseal(run.secret_inputs, secret_key)


# ---- what the workflow reports -----------------------------------------------------------


def apply_report(session: Session, run: Run, report: RunReport, actor: Actor) -> Run:
    """Record a workflow's report. A finished run is not reopened by a late report, and a report
    older than the one applied last (a lower ``report_seq``: the workflow's local activity
    retried it, or a worker that lost its workflow task sent it again after another worker went
    on) moves nothing back: only its log lines not stored yet are kept.

    Reports of one run are applied one at a time: the run's row is claimed (and its order
    checked) by one conditional UPDATE, then read again, so two API processes applying two
    reports at once cannot interleave their read and write."""
    now = utcnow()
    if report.status is not None and report.status not in STATUSES:
        raise Invalid("invalid report", [FieldError("/status", f"unknown run status '{report.status}'")])
    current = _claim_for_report(session, run, report.report_seq)
    if current and run.status not in TERMINAL:
        for name in ("status_label", "approval", "links", "affected_entities", "error"):
            value = getattr(report, name)
            if value is not None:
                setattr(run, name, value)
        if report.steps is not None:
            run.steps = [step.to_json() for step in report.steps]
        if report.status is not None and report.status != run.status:
            before = run.status
            run.status = report.status
            events.emit(
                session,
                [
                    events.event_row(
                        "RUN_UPDATED",
                        actor,
                        blueprint=run.blueprint,
                        entity=run.entity,
                        run_id=run.id,
                        payload={"run": run_event(run), "previous_status": before},
                    )
                ],
            )
            if report.status in TERMINAL:
                run.ended_at = now
                audit.record(
                    session,
                    actor,
                    "UPDATE",
                    "run",
                    run.id,
                    blueprint=run.blueprint,
                    before={"status": before},
                    after={"status": run.status, "error": run.error},
                )
                # An exemption's approval run decides its exemption as it ends.
                exemptions.settle(session, run, actor)
        run.updated_at = now
    append_logs(session, run.id, report.logs)
    return run


def _claim_for_report(session: Session, run: Run, report_seq: int | None) -> bool:
    """Lock the run's row for this report and read it again; False when the run has already
    applied a newer report (a higher ``report_seq``). An unnumbered report (an older worker's, or
    the catalog's own ending of a run) claims the row whatever the order."""
    claim = update(Run).where(Run.id == run.id)
    if report_seq is not None:
        claim = claim.where(or_(Run.report_seq.is_(None), Run.report_seq <= report_seq)).values(
            report_seq=report_seq
        )
    else:
        claim = claim.values(report_seq=Run.report_seq)
    # RETURNING reads the claimed row back into ``run`` in the same statement.
    claimed = session.scalars(
        claim.returning(Run).execution_options(populate_existing=True, synchronize_session=False)
    ).first()
    if claimed is None:
        session.refresh(run)  # a newer report was applied: the run as it stands, to present
    return claimed is not None


def append_logs(session: Session, run_id: str, lines: list[LogLine]) -> None:
    """Insert log lines, skipping those (by seq) already stored: reports are retried."""
    if not lines:
        return
    known = set(
        session.scalars(
            select(RunLog.seq).where(RunLog.run_id == run_id, RunLog.seq.in_([ln.seq for ln in lines]))
        )
    )
    now = utcnow()
    session.add_all(
        RunLog(
            run_id=run_id, seq=ln.seq, level=ln.level, step_id=ln.step_id, message=ln.message, at=ln.at or now
        )
        for ln in lines
        if ln.seq is None or ln.seq not in known
    )


def next_log_seq(session: Session, run_id: str) -> int:
    """The seq after the workflow's last numbered line (lines the API wrote have none; PostgreSQL
    would sort those first in a descending order, so the highest is taken with ``max``)."""
    last = session.scalar(select(func.max(RunLog.seq)).where(RunLog.run_id == run_id))
    return 0 if last is None else last + 1


def finish(session: Session, run: Run, status: str, label: str, error: str | None, actor: Actor) -> None:
    """Converge a run on its workflow's real end (the reconciler's write)."""
    if run.status in TERMINAL:
        return
    apply_report(
        session,
        run,
        RunReport(
            status=status,
            status_label=label,
            error=error,
            logs=[LogLine(seq=next_log_seq(session, run.id), level="WARNING", message=label)],
        ),
        actor,
    )


def log_page(
    session: Session, run_id: str, *, after: int | None = None, limit: int = 1000, cursor: str | None = None
) -> Page[RunLog]:
    """The run's log lines in the order they arrived; ``after`` is the ``id`` of the last line
    already seen, ``cursor`` resumes after the last line of the page before (its full-precision
    time and id)."""
    check_limit(limit)
    stmt = select(RunLog).where(RunLog.run_id == run_id)
    if after is not None:
        stmt = stmt.where(RunLog.id > after)
    if cursor:
        moment, last_id = _time_key(cursor)
        stmt = stmt.where(or_(RunLog.at > moment, and_(RunLog.at == moment, RunLog.id > last_id)))
    rows = list(session.scalars(stmt.order_by(RunLog.at, RunLog.id).limit(limit + 1)))
    more = len(rows) > limit
    return Page(
        rows[:limit], encode_cursor([rows[limit - 1].at.isoformat(), rows[limit - 1].id]) if more else None
    )


def _time_key(cursor: str) -> tuple[datetime, int]:
    at, last_id = decode_cursor(cursor, size=2)
    try:
        return datetime.fromisoformat(str(at)), int(last_id)
    except (TypeError, ValueError) as exc:
        raise Invalid("invalid cursor", [FieldError("/cursor", "not a cursor returned by this API")]) from exc


def log_view(line: RunLog) -> dict[str, Any]:
    return {
        "id": line.id,
        "seq": line.seq,
        "at": format_instant(line.at),
        "level": line.level,
        "step_id": line.step_id,
        "message": line.message,
    }


def list_runs(
    session: Session,
    *,
    action: str | None = None,
    entity: str | None = None,
    status: str | None = None,
    source: str | None = None,
    created_by: str | None = None,
    approver: str | None = None,
    who: Principal | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> Page[Run]:
    """Newest first. ``approver``: runs that user may decide an approval of; ``who``: only the
    runs they may see."""
    check_limit(limit)
    # A page's children (sub-action runs) in one query, not one per run.
    stmt = select(Run).options(selectinload(Run.child_runs))
    if who is not None:
        stmt = stmt.where(visible_runs_clause(session, who))
    if approver is not None:
        stmt = stmt.where(decidable_by(session, approver))
    for column, value in (
        (Run.action, action),
        (Run.entity, entity),
        (Run.status, status),
        (Run.source, source),
        (Run.created_by, created_by),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if cursor:
        at, last_id = decode_cursor(cursor, size=2)
        try:
            moment = datetime.fromisoformat(str(at))
        except ValueError as exc:
            raise Invalid(
                "invalid cursor", [FieldError("/cursor", "not a cursor returned by this API")]
            ) from exc
        stmt = stmt.where(or_(Run.created_at < moment, and_(Run.created_at == moment, Run.id < str(last_id))))
    rows = list(session.scalars(stmt.order_by(Run.created_at.desc(), Run.id.desc()).limit(limit + 1)))
    # The cursor is opaque and keeps microseconds: the one (millisecond) format would skip or
    # repeat runs created within the same millisecond.
    next_cursor = (
        encode_cursor([rows[limit - 1].created_at.isoformat(), rows[limit - 1].id])
        if len(rows) > limit
        else None
    )
    return Page(rows[:limit], next_cursor)


def decidable_by(session: Session, approver: str) -> ColumnElement[bool]:
    """The runs ``approver`` may decide an approval of: they are among its approvers, and a run
    they requested only when its action lets a requester approve their own run (the decision
    would be refused otherwise, so an inbox must not offer it)."""
    self_approvable = [
        a.identifier for a in session.scalars(select(Action)) if _allows_self_approval(a.definition)
    ]
    # A run's pinned definition may allow it when its action does not (an agent's destructive
    # launch waits for its owner): the approver's own waiting runs are few, judged one by one.
    own_waiting = session.execute(
        select(Run.id, Run.definition).where(Run.created_by == approver, Run.status == "WAITING_FOR_APPROVAL")
    )
    own_self_approvable = [
        run_id for run_id, pinned in own_waiting if pinned and _allows_self_approval(pinned)
    ]
    return and_(
        Run.id.in_(select(RunApprover.run_id).where(RunApprover.user == approver)),
        or_(Run.created_by != approver, Run.action.in_(self_approvable), Run.id.in_(own_self_approvable)),
    )


def _allows_self_approval(definition: dict[str, Any]) -> bool:
    policies = [definition.get("approval") or {}] + [
        step.get("with") or {} for step in definition.get("steps", []) if step.get("uses") == "approval"
    ]
    return any(bool(policy.get("allow_self_approval")) for policy in policies)


def active_runs(session: Session, *, older_than: datetime, limit: int = 500) -> list[Run]:
    stmt = select(Run).where(Run.status.not_in(TERMINAL), Run.updated_at <= older_than)
    return list(session.scalars(stmt.order_by(Run.updated_at).limit(limit)))


# ---- cancel and retry --------------------------------------------------------------------


def may_manage(session: Session, run: Run, who: Principal) -> bool:
    """Who may cancel and retry a run: the requester, the moderators of its blueprint, admins."""
    if who.is_admin or run.created_by == who.identifier:
        return True
    action = session.get(Action, run.action)
    return action is not None and moderates(session, action, who)


def record_cancel_request(session: Session, run: Run, by: str, actor: Actor) -> None:
    """Audit and log a cancellation the workflow was asked for (its report ends the run)."""
    audit.record(
        session, actor, "CANCEL", "run", run.id, blueprint=run.blueprint, before={"status": run.status}
    )
    append_logs(session, run.id, [LogLine(level="WARNING", message=f"Cancellation requested by {by}")])


def prepare_retry(
    session: Session, run: Run, *, who: Principal, by: str, actor: Actor, api_url: str, ui_url: str = ""
) -> RunInput:
    """Reopen an ended run for a retry (not committed) and return its workflow's input. A retry
    is a new decision: the caller's execute permission, the entity, the trigger condition and
    the preconditions are checked again as at launch, approvers are resolved again, and only
    gates that were APPROVED are passed (a declined run re-asks its approvers). It resumes at
    the step :func:`retry_plan` names, with the outputs of the steps before it.

    The retry runs the definition the run was launched with (``run.definition``, pinned), not
    the action as edited since: its earlier steps' outputs belong to those steps. Who may retry,
    and whether the entity still meets the condition and preconditions, are today's rules of the
    live action, which must still exist. Runs recorded before definitions were pinned use the
    live action's."""
    check_retryable(run)
    action = session.get(Action, run.action)
    if action is None:
        raise Conflict(f"action '{run.action}' no longer exists: the run cannot be retried")
    definition = run.definition or action.definition
    resume_at, earlier = retry_plan(run, definition)
    entity = check_target(session, action, run.entity, who)
    fresh = build_workflow_input(
        session,
        run,
        definition,
        entity=entity,
        caller=get_user(session, run.created_by),
        api_url=api_url,
        ui_url=ui_url,
    )
    approved = approved_gates(run, definition)
    workflow_input = replace(
        fresh,
        resume_at=resume_at,
        previous_steps=earlier,
        log_base=next_log_seq(session, run.id),
        approved_gates=approved,
    )
    before = run.status
    _reset_for_retry(run, resume_at, earlier, waits="action" in workflow_input.approvals and not approved)
    add_approvers(session, run, workflow_input.approvals)
    append_logs(session, run.id, [LogLine(message=f"Retry requested by {by}: resuming at step {resume_at}")])
    audit.record(
        session,
        actor,
        "RETRY",
        "run",
        run.id,
        blueprint=run.blueprint,
        before={"status": before},
        after={"status": run.status, "resume_at": resume_at},
    )
    return workflow_input


def _reset_for_retry(run: Run, resume_at: str, earlier: dict[str, Any], *, waits: bool) -> None:
    """The record as the retried workflow starts: waiting for approval when the action's gate is
    asked again, the steps from ``resume_at`` on PENDING again."""
    if waits:
        run.status, run.status_label, run.approval = "WAITING_FOR_APPROVAL", "Waiting for approval", None
    else:
        run.status, run.status_label = "IN_PROGRESS", f"Retrying from step {resume_at}"
    run.error, run.ended_at, run.updated_at = None, None, utcnow()
    run.steps = [
        s if s["id"] in earlier else {**s, **StepState.from_json({"uses": "", **s}).again().to_json()}
        for s in run.steps
    ]


RETRYABLE = ("FAILURE", "CANCELLED", "TIMED_OUT", "DECLINED")


def retry_plan(run: Run, definition: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """Where a retry resumes, and the outputs of the steps kept. A retry resumes at the failed
    (or declined) step, or earlier at the first step whose effect compensation undid, keeping
    the steps before it. An action whose steps run as a graph (``needs``, ``for_each``) keeps
    every step that succeeded, wherever it is listed: a branch listed after the failed step
    that finished is not run again."""
    check_retryable(run)
    steps = run.steps
    resume = next(
        (s for s in steps if s["status"] in ("COMPENSATED", "FAILURE", "CANCELLED", "DECLINED", "PENDING")),
        None,
    )
    if resume is None:
        raise Conflict(f"run '{run.id}' has no step to resume from")
    if _is_graph(definition):
        kept = [s for s in steps if s["status"] == "SUCCESS"]
    else:
        kept = list(itertools.takewhile(lambda s: s["id"] != resume["id"], steps))
    earlier = {s["id"]: {"status": s["status"], "outputs": s.get("outputs") or {}} for s in kept}
    return resume["id"], earlier


def check_retryable(run: Run) -> None:
    if run.status not in RETRYABLE:
        raise Conflict(
            f"run '{run.id}' is {run.status}: only failed, cancelled, declined or timed-out runs can be retried"
        )


def _is_graph(definition: dict[str, Any] | None) -> bool:
    steps = (definition or {}).get("steps") or []
    return any(isinstance(s, dict) and ("needs" in s or "for_each" in s) for s in steps)


def approved_gates(run: Run, definition: dict[str, Any]) -> list[str]:
    """The approval gates a retry may pass without asking again: only what was APPROVED. The
    action's own gate was approved when any step got past PENDING (steps run only after it);
    an approval step was approved when it succeeded (the retry keeps it as an earlier step)."""
    if not definition.get("approval"):
        return []
    if any(step["status"] != "PENDING" for step in run.steps):
        return ["action"]
    approval = run.approval or {}
    return ["action"] if approval.get("gate") == "action" and approval.get("status") == "APPROVED" else []


# ---- a workflow that never started -------------------------------------------------------

NEVER_STARTED = "its workflow never started"


def mark_not_started(session: Session, run: Run, reason: str, actor: Actor) -> None:
    """End a run whose workflow could not be started, so no run is left IN_PROGRESS."""
    finish(session, run, "FAILURE", "Not started", f"{NEVER_STARTED}: {reason}", actor)


def never_reported(run: Run) -> bool:
    """Whether the run is as its launch recorded it: no workflow has reported on it (a report
    moves ``updated_at``). Only such a run can be one whose workflow was never started."""
    return run.status not in TERMINAL and run.report_seq is None and run.updated_at == run.created_at


def started_by_the_api(run: Run) -> bool:
    """Whether the API starts the run's workflow (launches and retries do); a run another
    workflow records for itself to start (a sub-action's, named by its trigger) is not the API's
    to start."""
    return not (run.trigger or {}).get("parent_run_id")


def launch_input(
    session: Session, run: Run, *, api_url: str, ui_url: str = "", search_attributes: bool = True
) -> RunInput:
    """The workflow input of a launched run whose workflow was never started (the API process
    that committed it died before starting it), rebuilt from the record: its pinned definition,
    its entity, its requester. The launch's checks were made when it was recorded. Raises
    NotFound or Conflict when that is no longer possible (the entity, the requester or the
    action is gone)."""
    definition = run.definition
    if definition is None:
        action = session.get(Action, run.action)
        if action is None:
            raise Conflict(f"action '{run.action}' no longer exists")
        definition = action.definition
    entity = None
    if run.entity is not None:
        entity = session.scalar(
            select(Entity).where(Entity.blueprint == run.blueprint, Entity.identifier == run.entity)
        )
        if entity is None:
            raise NotFound(f"entity '{run.entity}' of blueprint '{run.blueprint}' no longer exists")
    workflow_input = build_workflow_input(
        session,
        run,
        definition,
        entity=entity,
        caller=get_user(session, run.created_by),
        api_url=api_url,
        ui_url=ui_url,
    )
    return replace(workflow_input, search_attributes=search_attributes)
