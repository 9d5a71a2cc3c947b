"""Action definitions and launching runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Body, Header, Query, Response
from fastapi.responses import JSONResponse

from api.deps import ActorDep, CurrentUser, PrincipalDep, SessionDep, SettingsDep
from api.etag import STALE_WRITE, DryRun, IfMatch, check_if_match, settle, tagged
from api.openapi import errors
from api.routes.runs import present
from api.schemas import ActionView, Cursor, Limit, Page, RunOrPlan, RunPlan, RunView, SavedAction, View
from api.services.runs import RunServiceDep
from catalog.base import Strict
from catalog.errors import Conflict, FieldError, Forbidden, Invalid, NotFound
from catalog.identity.permissions import Principal
from catalog.models import Action
from catalog.pagination import page_after
from catalog.runs import actions as service
from catalog.runs.actions import ActionIn
from catalog.runs.service import RunRequest, check_target
from catalog.runs.step_kinds import Vendor
from config import Settings

router = APIRouter(tags=["actions"])


def _visible(session: SessionDep, identifier: str, who: Principal) -> Action:
    """The action, or a 404 when it does not exist or the caller may not see it."""
    action = service.get_action(session, identifier)
    if not service.may_see(session, action, who):
        raise NotFound(f"action '{identifier}' not found")
    return action


@router.get("/v1/actions", response_model=Page[ActionView], response_model_exclude_unset=True)
def list_actions(
    session: SessionDep,
    who: PrincipalDep,
    blueprint: str | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """The actions the caller may see."""
    visible = service.list_actions(session, blueprint=blueprint, who=who)
    page = page_after(visible, lambda a: [a.identifier], limit=limit, cursor=cursor)
    return {"items": [service.action_to_dict(a) for a in page.items], "next_cursor": page.next_cursor}


def _saved(action: Action, body: ActionIn, settings: Settings) -> dict[str, Any]:
    """The saved action, with ``warnings`` for steps whose vendor this deployment lacks (the API
    and the worker share one configuration)."""
    return {
        **service.action_to_dict(action),
        "warnings": service.configuration_warnings(body, _configured(settings)),
    }


def _configured(settings: Settings) -> Callable[[Vendor], bool]:
    def configured(vendor: Vendor) -> bool:
        if vendor.prefix != "aws.":
            return vendor.configured(settings)
        from activities.cloud import aws_region  # boto3's region lookup, only for AWS steps

        return vendor.configured(settings, aws_region())

    return configured


@router.post(
    "/v1/actions",
    status_code=201,
    response_model=SavedAction,
    response_model_exclude_unset=True,
    responses=errors(403, 409),
)
def create_action(
    session: SessionDep,
    who: PrincipalDep,
    actor: ActorDep,
    settings: SettingsDep,
    dry_run: DryRun = False,
    body: ActionIn = Body(),
) -> dict[str, Any]:
    """Create an action (admins, and the moderators of its blueprint); everything that can be
    checked is checked now (422 naming the place). ``warnings`` name steps whose vendor is not
    configured: the action is saved, but those steps fail until it is."""
    service.check_may_write(session, who, body.blueprint)
    action, _created = service.save_action(session, body, actor, create_only=True)
    return settle(session, dry_run, lambda: _saved(action, body, settings))


@router.get("/v1/actions/{action}", response_model=ActionView, response_model_exclude_unset=True)
def get_action(action: str, session: SessionDep, who: PrincipalDep, response: Response) -> dict[str, Any]:
    return tagged(response, service.action_to_dict(_visible(session, action, who)))


@router.put(
    "/v1/actions/{action}",
    response_model=SavedAction,
    responses={201: {"model": SavedAction, "description": "Created"}, **errors(403), **STALE_WRITE},
)
def put_action(
    action: str,
    session: SessionDep,
    who: PrincipalDep,
    actor: ActorDep,
    settings: SettingsDep,
    if_match: IfMatch = None,
    dry_run: DryRun = False,
    body: ActionIn = Body(),
) -> JSONResponse:
    """Create or replace an action. Running runs keep the definition they started with.
    ``warnings`` as for ``POST``."""
    if body.identifier != action:
        raise Invalid("identifier mismatch", [FieldError("/identifier", "must equal the action in the path")])
    existing = session.get(Action, action)
    if existing is not None:
        _visible(session, action, who)
    check_if_match(if_match, lambda: service.action_to_dict(service.get_action(session, action)))
    service.check_may_write(session, who, body.blueprint, *([existing.blueprint] if existing else []))
    saved, created = service.save_action(session, body, actor)
    answer = settle(session, dry_run, lambda: _saved(saved, body, settings))
    return JSONResponse(answer, status_code=201 if created else 200)


@router.delete("/v1/actions/{action}", status_code=204, responses=errors(403))
def delete_action(action: str, session: SessionDep, who: PrincipalDep, actor: ActorDep) -> None:
    found = _visible(session, action, who)
    service.check_may_write(session, who, found.blueprint)
    service.delete_action(session, action, actor)
    session.commit()


@router.post(
    "/v1/actions/{action}/runs",
    status_code=202,
    response_model=RunView,
    responses={
        200: {
            "model": RunOrPlan,
            "description": "The run this `idempotency_key` already launched; with `dry_run`, the plan.",
        },
        **errors(403, 409),
    },
)
def launch_run(
    action: str,
    service: RunServiceDep,
    settings: SettingsDep,
    user: CurrentUser,
    who: PrincipalDep,
    body: RunRequest = Body(),
    dry_run: bool = Query(
        False, description="check and plan the launch (rendered steps, destructive flags), start nothing"
    ),
    x_gantry_source: str | None = Header(None, description="API | CLI | UI (AUTOMATION: service only)"),
) -> JSONResponse:
    """Launch a run. The action must be visible to the caller (404) and its ``execute``
    permission include them for the entity (403); the entity must exist and be readable (404),
    meet the trigger condition and preconditions (409); inputs are checked against the action's
    schema (422 per field). The run record is committed, then the workflow
    ``action:{action}:{run_id}`` starts. The same ``idempotency_key`` returns the same run.
    Temporal down: 503 and the run is recorded as not started (FAILURE).

    ``dry_run=true``: the same checks and errors, then 200 with the plan (each step's rendered
    parameters, whether its ``if`` lets it run, whether it is destructive, and a ``plan_hash``);
    no run, audit entry or event is written and no workflow is started."""
    if dry_run:
        plan = service.dry_run(action, body, user, who, source_header=x_gantry_source)
        return JSONResponse(RunPlan.model_validate(plan).model_dump(by_alias=True))
    launched = service.launch(action, body, user, who, source_header=x_gantry_source)
    return JSONResponse(present(settings, launched.run), status_code=202 if launched.created else 200)


# ---- may I run it now? -----------------------------------------------------------------------


class RunCheckRequest(Strict):
    entity: str | None = None


class CheckProblem(View):
    """Why the caller may not run the action now; ``pointer`` names the place in the action's
    definition (``/permissions/execute``, ``/trigger/condition/rules/0``,
    ``/preconditions/scorecards/readiness``)."""

    check: Literal["permission", "condition", "preconditions"]
    pointer: str
    message: str


class RunCheck(View):
    action: str
    entity: str | None = None
    allowed: bool
    needs_approval: bool
    problems: list[CheckProblem]


@router.post(
    "/v1/actions/{action}/check",
    response_model=RunCheck,
    operation_id="check_run",
    responses=errors(404),
)
def check_run(
    action: str, session: SessionDep, who: PrincipalDep, body: RunCheckRequest = Body()
) -> dict[str, Any]:
    """Whether the caller may launch the action on the entity now, without launching it (a CI
    gate): the launch's own checks in the launch's order (execute permission, then the trigger
    condition, then the scorecard preconditions), answering the first that fails as
    ``problems`` instead of a 403 or 409. Nothing is written. An action or entity the caller may
    not see is a 404 and a malformed target (an entity for a CREATE action, none for a DAY-2 one)
    a 422, as at launch. Inputs are not checked: the launch checks them. ``needs_approval``: the
    action has an approval gate (its own, or a step's that the step's ``if`` may skip)."""
    found = _visible(session, action, who)
    problems: list[dict[str, str]] = []
    try:
        check_target(session, found, body.entity, who)
    except Forbidden as denied:
        problems.append({"check": "permission", "pointer": "/permissions/execute", "message": denied.message})
    except Conflict as unmet:
        problems += [
            {"check": _check_of(d.pointer), "pointer": d.pointer, "message": d.message}
            for d in unmet.details or [FieldError("/trigger/condition", unmet.message)]
        ]
    definition = found.definition
    gated = bool(definition.get("approval")) or any(s["uses"] == "approval" for s in definition["steps"])
    return {
        "action": found.identifier,
        "entity": body.entity,
        "allowed": not problems,
        "needs_approval": gated,
        "problems": problems,
    }


def _check_of(pointer: str) -> str:
    return "preconditions" if pointer.startswith("/preconditions") else "condition"
