"""Self-service action definitions: their shape, and every check that can be made when saved.

An action is stored whole (``Action.definition``) once it has passed :func:`check_action`:
unknown step kinds, duplicate step ids, bad durations, templates that cannot parse or read names
that cannot exist (an undeclared input, ``entity`` on a CREATE action, a later or unknown step)
are 422s naming their place by JSON pointer. So are the mistakes of a graph of parallel steps: a
``needs`` naming no step, steps that need each other in a cycle, a template reading the outputs
of a step that is not upstream (it may not have run yet), two approval steps that could wait at
the same time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import Field, StrictBool
from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog import audit
from catalog.audit import Actor
from catalog.base import Strict
from catalog.blueprints.properties import PROPERTY_NAME, PROPERTY_TYPES, STRING_FORMATS
from catalog.db import utcnow
from catalog.durations import parse_duration
from catalog.errors import Conflict, FieldError, Forbidden, Invalid, NotFound, pointer
from catalog.identity.permissions import (
    ADMIN,
    MEMBER,
    ActionPermissions,
    Policy,
    Principal,
    is_moderator,
    passes,
)
from catalog.models import Action, Blueprint, Entity
from catalog.query.compiler import team_overlaps, validate_query
from catalog.runs.approvals import check_policy
from catalog.runs.step_kinds import STEP_KINDS, Vendor, param_problems, vendor_of
from catalog.sandbox.templates import CONTEXT_NAMES, TemplateFailure, references
from catalog.schemas import BLUEPRINT_ID, SLUG
from catalog.timefmt import format_instant
from contracts.actions import needs_cycle, step_needs, upstream

STEP_ID = r"^[a-z][a-z0-9_]{0,63}$"
# What templates of a fanned-out step's ``with`` (and its compensation) see besides the context.
ITEM_NAMES = ("item", "index")

INPUT_FORMATS = STRING_FORMATS | {"entity"}


class Trigger(Strict):
    operation: Literal["CREATE", "DAY-2", "DELETE"]
    condition: dict[str, Any] | None = None


class Retry(Strict):
    maximum_attempts: int = Field(3, ge=1, le=50)
    initial_interval: str = "PT1S"
    backoff_coefficient: float = Field(2.0, ge=1.0, le=10.0)
    maximum_interval: str = "PT1M"


class Compensation(Strict):
    uses: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    timeout: str | None = None


class Step(Strict):
    id: str = Field(pattern=STEP_ID)
    uses: str
    title: str | None = None
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    if_: str | None = Field(None, alias="if")
    timeout: str | None = None
    # Waiting kinds only: how long a silent worker is trusted before the step moves to another.
    heartbeat_timeout: str | None = None
    retry: Retry | None = None
    compensate: Compensation | None = None
    wait_for_completion: bool | None = None
    # Marks a step that destroys something its kind does not say it does (a dry run flags it).
    destructive: StrictBool | None = None
    # The steps it waits for; absent: the step before it; []: none, it starts at once.
    needs: list[str] | None = None
    # A template rendering to a list: the step runs once per item, templates see item and index.
    for_each: str | None = None
    max_parallel: int | None = Field(None, ge=1, le=200)


class Strategy(Strict):
    """What a failed step does to parallel branches: ``stop`` cancels the running ones and
    starts no more; ``continue`` lets the others go on (its dependents are skipped)."""

    on_failure: Literal["stop", "continue"] = "stop"


class UserInputs(Strict):
    properties: dict[str, dict[str, Any]] = Field(default_factory=dict)
    required: list[str] = Field(default_factory=list)


class Preconditions(Strict):
    scorecards: dict[str, str] = Field(default_factory=dict)


class ActionIn(Strict):
    identifier: str = Field(pattern=SLUG)
    title: str = Field(min_length=1, max_length=256)
    description: str = ""
    icon: str | None = None
    blueprint: str | None = Field(None, pattern=BLUEPRINT_ID)
    trigger: Trigger
    user_inputs: UserInputs = Field(default_factory=UserInputs)
    preconditions: Preconditions | None = None
    approval: dict[str, Any] | None = None
    permissions: ActionPermissions | None = None
    strategy: Strategy | None = None
    steps: list[Step] = Field(min_length=1, max_length=100)


def action_to_dict(action: Action) -> dict[str, Any]:
    return {
        **action.definition,
        "version": action.version,
        "created_at": format_instant(action.created_at),
        "updated_at": format_instant(action.updated_at),
        "created_by": action.created_by,
        "updated_by": action.updated_by,
    }


def get_action(session: Session, identifier: str) -> Action:
    action = session.get(Action, identifier)
    if action is None:
        raise NotFound(f"action '{identifier}' not found")
    return action


def list_actions(
    session: Session, *, blueprint: str | None = None, who: Principal | None = None
) -> list[Action]:
    """Actions by identifier; with ``who``, only those they may see."""
    stmt = select(Action).order_by(Action.identifier)
    if blueprint is not None:
        stmt = stmt.where(Action.blueprint == blueprint)
    found = list(session.scalars(stmt))
    if who is None:
        return found
    return [a for a in found if may_see(session, a, who)]


# ---- who may see, run and write actions --------------------------------------------------


def action_permissions(action: Action) -> ActionPermissions:
    return ActionPermissions.model_validate(action.definition.get("permissions") or {})


def execute_policy(action: Action) -> Policy:
    """The explicit ``execute`` policy, else the default: members for CREATE actions, the
    owners of the target entity for DAY-2 and DELETE (moderators and admins always pass)."""
    explicit = action_permissions(action).execute
    if explicit is not None:
        return explicit
    if action.definition["trigger"]["operation"] == "CREATE":
        return Policy(roles=[ADMIN, MEMBER])
    return Policy(owned_by_team=True)


def see_policy(action: Action) -> Policy:
    """The explicit ``see`` policy, else whoever may execute."""
    return action_permissions(action).see or execute_policy(action)


def moderates(session: Session, action: Action, who: Principal) -> bool:
    """Admins, and the moderators of the action's blueprint, administer the action."""
    if who.is_admin:
        return True
    bp = session.get(Blueprint, action.blueprint) if action.blueprint else None
    return bp is not None and is_moderator(bp, who)


def may_see(session: Session, action: Action, who: Principal, owners: list[str] | None = None) -> bool:
    """Whether ``who`` may see the action: for the entity owned by ``owners``, or (None) for
    any entity of its blueprint that they own."""
    if moderates(session, action, who):
        return True
    return _passes(session, action, see_policy(action), who, owners)


def may_execute(session: Session, action: Action, who: Principal, owners: list[str]) -> bool:
    """Whether ``who`` may launch the action on an entity owned by ``owners``. Viewers never do."""
    if not who.may_write:
        return False
    if moderates(session, action, who):
        return True
    return passes(execute_policy(action), who, owners)


def _passes(
    session: Session, action: Action, policy: Policy, who: Principal, owners: list[str] | None
) -> bool:
    if owners is not None or passes(policy, who, ()):
        return passes(policy, who, owners or ())
    if not (policy.owned_by_team and who.teams and action.blueprint):
        return False
    dialect = session.get_bind().dialect.name
    owned = select(Entity.id).where(
        Entity.blueprint == action.blueprint, team_overlaps(Entity.team, sorted(who.teams), dialect)
    )
    return session.scalar(owned.limit(1)) is not None


def check_may_write(session: Session, who: Principal, *blueprints: str | None) -> None:
    """Action definitions are written by admins and by the moderators of every blueprint the
    change touches (the action's blueprint before and after)."""
    if who.is_admin:
        return
    for name in blueprints:
        bp = session.get(Blueprint, name) if name else None
        if bp is None or not is_moderator(bp, who):
            raise Forbidden("only admins and the blueprint's moderators can change its actions")


def save_action(
    session: Session, body: ActionIn, actor: Actor, *, create_only: bool = False
) -> tuple[Action, bool]:
    """Create or replace an action after :func:`check_action`; returns (action, created)."""
    check_action(session, body)
    definition = body.model_dump(mode="json", by_alias=True, exclude_none=True)
    action = session.get(Action, body.identifier)
    now = utcnow()
    if action is not None and create_only:
        raise Conflict(f"action '{body.identifier}' already exists")
    if action is None:
        action = Action(
            identifier=body.identifier,
            title=body.title,
            description=body.description,
            blueprint=body.blueprint,
            definition=definition,
            version=1,
            created_at=now,
            updated_at=now,
            created_by=actor.user,
            updated_by=actor.user,
        )
        session.add(action)
        session.flush()
        audit.record(session, actor, "CREATE", "action", action.identifier, after=definition)
        return action, True
    before = dict(action.definition)
    action.title, action.description, action.blueprint = body.title, body.description, body.blueprint
    action.definition, action.version = definition, action.version + 1
    action.updated_at, action.updated_by = now, actor.user
    audit.record(session, actor, "UPDATE", "action", action.identifier, before=before, after=definition)
    return action, False


def configuration_warnings(body: ActionIn, configured: Callable[[Vendor], bool]) -> list[dict[str, str]]:
    """``{pointer, message}`` for each step (or compensation) whose vendor is not ``configured``
    here: the action is saved, but its runs would fail at that step until it is."""
    kinds = [(f"/steps/{i}/uses", step.uses) for i, step in enumerate(body.steps)]
    kinds += [
        (f"/steps/{i}/compensate/uses", s.compensate.uses) for i, s in enumerate(body.steps) if s.compensate
    ]
    return [
        {"pointer": where, "message": vendor.not_configured}
        for where, uses in kinds
        if (vendor := vendor_of(uses)) is not None and not configured(vendor)
    ]


def delete_action(session: Session, identifier: str, actor: Actor) -> None:
    action = get_action(session, identifier)
    audit.record(session, actor, "DELETE", "action", identifier, before=dict(action.definition))
    session.delete(action)


# ---- checks ------------------------------------------------------------------------------


def check_action(session: Session, body: ActionIn) -> None:
    errors: list[FieldError] = []
    operation = body.trigger.operation
    if body.blueprint is None and operation != "CREATE":
        errors.append(FieldError("/blueprint", f"{operation} actions act on an entity of a blueprint"))
    if body.blueprint is not None and session.get(Blueprint, body.blueprint) is None:
        errors.append(FieldError("/blueprint", f"blueprint '{body.blueprint}' does not exist"))
    if body.trigger.condition is not None:
        if operation == "CREATE":
            errors.append(FieldError("/trigger/condition", "CREATE actions have no entity to test"))
        else:
            errors += _collect(lambda: validate_query(body.trigger.condition, pointer="/trigger/condition"))
    errors += _check_inputs(session, body.user_inputs)
    if body.preconditions is not None and body.preconditions.scorecards:
        errors += _check_preconditions(session, body.blueprint, body.preconditions.scorecards)
    if body.approval is not None:
        errors += check_policy(session, body.approval, "/approval")
    graph_errors = _check_graph(body)
    errors += graph_errors
    needs = step_needs([(s.id, s.needs) for s in body.steps])
    order = [s.id for s in body.steps]
    seen: list[str] = []
    for index, step in enumerate(body.steps):
        # With a cycle "upstream" means nothing: the cycle is reported, templates read as a list.
        visible = seen if graph_errors else sorted(upstream(needs, step.id), key=order.index)
        errors += _check_step(step, index, seen, visible, body)
        if step.uses == "approval":
            errors += check_policy(session, step.with_, f"/steps/{index}/with")
        if step.uses == SUB_ACTION:
            errors += _check_sub_action(session, step.with_, f"/steps/{index}/with", body)
        if step.compensate is not None and step.compensate.uses == SUB_ACTION:
            errors += _check_sub_action(
                session, step.compensate.with_, f"/steps/{index}/compensate/with", body
            )
        seen.append(step.id)
    if errors:
        raise Invalid("invalid action", errors)


SUB_ACTION = "action"


def _check_sub_action(
    session: Session, params: dict[str, Any], where: str, body: ActionIn
) -> list[FieldError]:
    """A ``uses: action`` step names an existing action other than this one (literally, so it can
    be checked here), through which this one is not run again, and gives it what its trigger
    and inputs ask for. The launch checks (permission, condition, inputs' values) are made when
    the step runs, as the run's requester."""
    name = params.get("action")
    if name is None:
        return []  # the step kind's check names the missing parameter
    if not isinstance(name, str) or not name or "{" in name:
        return [
            FieldError(f"{where}/action", "must name an action (literally: a template cannot be checked)")
        ]
    if name == body.identifier:
        return [FieldError(f"{where}/action", "an action cannot run itself as a sub-action")]
    child = session.get(Action, name)
    if child is None:
        return [FieldError(f"{where}/action", f"action '{name}' does not exist")]
    path = _sub_action_path(session, child, body.identifier, [name])
    if path is not None:
        return [FieldError(f"{where}/action", f"'{name}' runs this action again ({' → '.join(path)})")]
    errors: list[FieldError] = []
    trigger = child.definition["trigger"]["operation"]
    if trigger == "CREATE" and params.get("entity") is not None:
        errors.append(FieldError(f"{where}/entity", f"'{name}' is a CREATE action: it takes no entity"))
    if trigger != "CREATE" and params.get("entity") in (None, ""):
        errors.append(FieldError(f"{where}/entity", f"'{name}' is a {trigger} action: it needs an entity"))
    inputs = params.get("inputs", {})
    if isinstance(inputs, str) and "{" in inputs:
        return errors  # a template rendering the whole object: checked when the step runs
    if not isinstance(inputs, dict):
        return [*errors, FieldError(f"{where}/inputs", "must be an object of the action's inputs")]
    schema = child.definition.get("user_inputs") or {}
    properties = schema.get("properties") or {}
    errors += [
        FieldError(pointer(*where.strip("/").split("/"), "inputs", key), f"is not an input of '{name}'")
        for key in inputs
        if key not in properties
    ]
    errors += [
        FieldError(f"{where}/inputs", f"'{name}' requires input '{key}'")
        for key in schema.get("required") or []
        if key not in inputs and "default" not in properties.get(key, {})
    ]
    return errors


def _sub_action_path(session: Session, action: Action, target: str, path: list[str]) -> list[str] | None:
    """The chain of sub-actions through which ``action`` runs ``target``, if it does."""
    for step in action.definition["steps"]:
        for uses, params in ((step["uses"], step.get("with") or {}), _compensation(step)):
            name = params.get("action") if uses == SUB_ACTION else None
            if not isinstance(name, str) or name in path:
                continue
            if name == target:
                return [*path, name]
            child = session.get(Action, name)
            found = _sub_action_path(session, child, target, [*path, name]) if child is not None else None
            if found is not None:
                return found
    return None


def _compensation(step: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    compensate = step.get("compensate") or {}
    return compensate.get("uses", ""), compensate.get("with") or {}


def is_graph(body: ActionIn) -> bool:
    """Whether the action's steps run as a graph (some step names ``needs`` or fans out)."""
    return any(s.needs is not None or s.for_each is not None for s in body.steps)


def _check_graph(body: ActionIn) -> list[FieldError]:
    """``needs`` that name no step or the step itself, cycles, approval steps that could wait
    at once."""
    ids = [s.id for s in body.steps]
    errors: list[FieldError] = []
    for index, step in enumerate(body.steps):
        for position, needed in enumerate(step.needs or []):
            where = f"/steps/{index}/needs/{position}"
            if needed == step.id:
                errors.append(FieldError(where, f"step '{step.id}' cannot need itself"))
            elif needed not in ids:
                errors.append(FieldError(where, f"there is no step '{needed}'"))
    if errors:
        return errors
    cycle = needs_cycle(step_needs([(s.id, s.needs) for s in body.steps]))
    if cycle:
        where = f"/steps/{ids.index(cycle[0])}/needs"
        return [FieldError(where, f"steps need each other in a cycle: {' → '.join(cycle)}")]
    return _check_approvals_in_graph(body)


def _check_approvals_in_graph(body: ActionIn) -> list[FieldError]:
    """A run waits at one approval at a time: approval steps must follow one another."""
    needs = step_needs([(s.id, s.needs) for s in body.steps])
    gates = [(i, s) for i, s in enumerate(body.steps) if s.uses == "approval"]
    errors = [
        FieldError(f"/steps/{i}/for_each", "an approval step cannot fan out")
        for i, s in gates
        if s.for_each is not None
    ]
    for position, (index, step) in enumerate(gates):
        for _, other in gates[:position]:
            if other.id not in upstream(needs, step.id) and step.id not in upstream(needs, other.id):
                errors.append(
                    FieldError(
                        f"/steps/{index}/needs",
                        f"approval steps '{other.id}' and '{step.id}' could wait at the same time: "
                        "make one need the other",
                    )
                )
    return errors


def _check_preconditions(
    session: Session, blueprint: str | None, required: dict[str, str]
) -> list[FieldError]:
    from catalog.models import Scorecard

    errors = []
    for name, level in required.items():
        where = pointer("preconditions", "scorecards", name)
        sc = session.get(Scorecard, (blueprint, name)) if blueprint else None
        if sc is None:
            errors.append(FieldError(where, f"blueprint '{blueprint}' has no scorecard '{name}'"))
        elif level not in [lvl["title"] for lvl in sc.definition["levels"]]:
            errors.append(FieldError(where, f"'{level}' is not a level of '{name}'"))
    return errors


def _collect(check: Any) -> list[FieldError]:
    try:
        check()
    except Invalid as exc:
        return list(exc.details)
    return []


def _check_inputs(session: Session, inputs: UserInputs) -> list[FieldError]:
    errors: list[FieldError] = []
    for name, definition in inputs.properties.items():
        where = pointer("user_inputs", "properties", name)
        if not PROPERTY_NAME.match(name):
            errors.append(FieldError(where, "input names must match ^[A-Za-z_][A-Za-z0-9_]*$"))
            continue
        if definition.get("type") not in PROPERTY_TYPES:
            errors.append(
                FieldError(f"{where}/type", f"type must be one of {', '.join(sorted(PROPERTY_TYPES))}")
            )
            continue
        fmt = definition.get("format")
        if fmt is not None and fmt not in INPUT_FORMATS:
            errors.append(
                FieldError(f"{where}/format", f"format must be one of {', '.join(sorted(INPUT_FORMATS))}")
            )
        if fmt == "entity":
            target = definition.get("blueprint")
            if not isinstance(target, str) or session.get(Blueprint, target) is None:
                errors.append(FieldError(f"{where}/blueprint", "format: entity needs an existing blueprint"))
        if "secret" in definition and not isinstance(definition["secret"], bool):
            errors.append(FieldError(f"{where}/secret", "must be true or false"))
        if definition.get("secret") and definition.get("type") != "string":
            errors.append(FieldError(f"{where}/secret", "only string inputs can be secret"))
        schema = {k: v for k, v in definition.items() if k not in ("secret", "blueprint")}
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            errors.append(FieldError(where + "".join(f"/{p}" for p in exc.absolute_path), exc.message))
    for index, name in enumerate(inputs.required):
        if name not in inputs.properties:
            errors.append(FieldError(f"/user_inputs/required/{index}", f"'{name}' is not a defined input"))
    return errors


def _check_step(
    step: Step, index: int, earlier: list[str], upstream_steps: list[str], body: ActionIn
) -> list[FieldError]:
    """One step's checks; its templates may read the steps ``upstream_steps`` (those it waits
    for, directly or not: in a plain list, every step before it)."""
    where = f"/steps/{index}"
    errors: list[FieldError] = []
    if step.id in earlier:
        errors.append(FieldError(f"{where}/id", f"step id '{step.id}' is used twice"))
    if step.max_parallel is not None and step.for_each is None:
        errors.append(FieldError(f"{where}/max_parallel", "max_parallel bounds a step with for_each"))
    items = ITEM_NAMES if step.for_each is not None else ()
    if step.for_each is not None:
        errors += _check_templates(step.for_each, f"{where}/for_each", upstream_steps, body)
    errors += _check_kind(step.uses, step.with_, f"{where}")
    for field_name, value in (("timeout", step.timeout), ("heartbeat_timeout", step.heartbeat_timeout)):
        if value is not None:
            errors += _check_duration(value, f"{where}/{field_name}")
    if step.retry is not None:
        for name in ("initial_interval", "maximum_interval"):
            errors += _check_duration(getattr(step.retry, name), f"{where}/retry/{name}")
    visible = [*upstream_steps, step.id]
    errors += _check_templates(step.with_, f"{where}/with", upstream_steps, body, items=items)
    if step.if_ is not None:
        errors += _check_templates(step.if_, f"{where}/if", upstream_steps, body, expression=True)
    if step.compensate is not None:
        errors += _check_kind(step.compensate.uses, step.compensate.with_, f"{where}/compensate")
        errors += _check_templates(
            step.compensate.with_, f"{where}/compensate/with", visible, body, items=items
        )
        if step.compensate.timeout is not None:
            errors += _check_duration(step.compensate.timeout, f"{where}/compensate/timeout")
    if (
        step.uses == "sleep"
        and isinstance(step.with_.get("duration"), str)
        and "{{" not in step.with_["duration"]
    ):
        errors += _check_duration(step.with_["duration"], f"{where}/with/duration")
    return errors


def _check_kind(uses: str, params: dict[str, Any], where: str) -> list[FieldError]:
    if uses not in STEP_KINDS:
        return [
            FieldError(f"{where}/uses", f"unknown step kind '{uses}'; known: {', '.join(sorted(STEP_KINDS))}")
        ]
    return [
        FieldError(f"{where}/with/{name}", f"{uses} needs '{name}'")
        for name in STEP_KINDS[uses]
        if name not in params
    ] + [FieldError(f"{where}/with/{name}", message) for name, message in param_problems(uses, params)]


def _check_duration(value: str, where: str) -> list[FieldError]:
    try:
        parse_duration(value)
    except ValueError as exc:
        return [FieldError(where, str(exc))]
    return []


def _check_templates(
    value: Any,
    where: str,
    visible_steps: list[str],
    body: ActionIn,
    *,
    expression: bool = False,
    items: tuple[str, ...] = (),
) -> list[FieldError]:
    try:
        refs = list(references(value, expression=expression))
    except TemplateFailure as exc:
        return [FieldError(where, f"template does not parse: {exc}")]
    errors: list[FieldError] = []
    for ref in refs:
        if ref.path[0] in items:
            continue
        problem = _reference_problem(ref.path, visible_steps, body)
        if problem:
            errors.append(FieldError(where, problem))
    return list({(e.pointer, e.message): e for e in errors}.values())


def _reference_problem(path: tuple[str, ...], visible_steps: list[str], body: ActionIn) -> str | None:
    root = path[0]
    if root in ITEM_NAMES:
        return f"'{root}' is defined only in the with of a step with for_each"
    if root not in CONTEXT_NAMES:
        return f"'{root}' is not defined; templates see {', '.join(CONTEXT_NAMES)}"
    if root == "inputs" and len(path) > 1 and path[1] not in body.user_inputs.properties:
        return f"input '{path[1]}' is not declared in user_inputs"
    if root == "entity" and body.trigger.operation == "CREATE":
        return "CREATE actions have no entity"
    if root == "steps" and len(path) > 1:
        if path[1] not in {s.id for s in body.steps}:
            return f"there is no step '{path[1]}'"
        if path[1] not in visible_steps:
            if is_graph(body):
                return f"step '{path[1]}' may not have run yet: it is not among the steps this one needs"
            return f"step '{path[1]}' has not run yet at this point"
        if len(path) > 2 and path[2] not in ("outputs", "status"):
            return f"steps.{path[1]} has 'outputs' and 'status'"
    return None
