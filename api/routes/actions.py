"""Action definitions and launching runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio.from_thread
from fastapi import APIRouter, Body, Header, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

from api.deps import ActorDep, CurrentUser, PrincipalDep, SessionDep, SettingsDep
from api.errors import ServiceUnavailable
from api.openapi import errors
from api.schemas import ActionView, Cursor, Limit, Page, RunView, SavedAction
from catalog import actions as service
from catalog import runs
from catalog.actions import ActionIn
from catalog.audit import Actor
from catalog.errors import FieldError, Forbidden, Invalid, NotFound
from catalog.models import Action
from catalog.pagination import page_after
from catalog.permissions import Principal
from catalog.runs import RunRequest
from catalog.step_kinds import Vendor
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
    body: ActionIn = Body(),
) -> dict[str, Any]:
    """Create an action (admins, and the moderators of its blueprint); everything that can be
    checked is checked now (422 naming the place). ``warnings`` name steps whose vendor is not
    configured: the action is saved, but those steps fail until it is."""
    service.check_may_write(session, who, body.blueprint)
    action, _created = service.save_action(session, body, actor, create_only=True)
    session.commit()
    return _saved(action, body, settings)


@router.get("/v1/actions/{action}", response_model=ActionView, response_model_exclude_unset=True)
def get_action(action: str, session: SessionDep, who: PrincipalDep) -> dict[str, Any]:
    return service.action_to_dict(_visible(session, action, who))


@router.put(
    "/v1/actions/{action}",
    response_model=SavedAction,
    responses={201: {"model": SavedAction, "description": "Created"}, **errors(403)},
)
def put_action(
    action: str,
    session: SessionDep,
    who: PrincipalDep,
    actor: ActorDep,
    settings: SettingsDep,
    body: ActionIn = Body(),
) -> JSONResponse:
    """Create or replace an action. Running runs keep the definition they started with.
    ``warnings`` as for ``POST``."""
    if body.identifier != action:
        raise Invalid("identifier mismatch", [FieldError("/identifier", "must equal the action in the path")])
    existing = session.get(Action, action)
    if existing is not None:
        _visible(session, action, who)
    service.check_may_write(session, who, body.blueprint, *([existing.blueprint] if existing else []))
    saved, created = service.save_action(session, body, actor)
    session.commit()
    return JSONResponse(_saved(saved, body, settings), status_code=201 if created else 200)


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
        200: {"model": RunView, "description": "The run this `idempotency_key` already launched."},
        **errors(403, 409),
    },
)
def launch_run(
    action: str,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    who: PrincipalDep,
    settings: SettingsDep,
    body: RunRequest = Body(),
    x_gantry_source: str | None = Header(None, description="API | CLI | UI (AUTOMATION: service only)"),
) -> JSONResponse:
    """Launch a run. The action must be visible to the caller (404) and its ``execute``
    permission include them for the entity (403); the entity must exist and be readable (404),
    meet the trigger condition and preconditions (409); inputs are checked against the action's
    schema (422 per field). The run record is committed, then the workflow
    ``action:{action}:{run_id}`` starts. The same ``idempotency_key`` returns the same run.
    Temporal down: 503 and the run is recorded as not started (FAILURE)."""
    definition = _visible(session, action, who)
    source = body.source or (x_gantry_source or "API").upper()
    if source not in ("API", "CLI", "UI", "AUTOMATION"):
        raise Invalid("invalid source", [FieldError("/source", "must be API, CLI, UI or AUTOMATION")])
    if (source == "AUTOMATION" or body.trigger is not None) and not who.is_admin:
        raise Forbidden("only the service user launches AUTOMATION runs")
    launch = runs.prepare_run(
        session,
        definition,
        body,
        user,
        who=who,
        source=source,
        secret_key=settings.secret("secret_key"),
        api_url=settings.api_url,
        ui_url=lambda workflow_id: runs.temporal_ui_url(
            settings.temporal_ui_url, settings.temporal_namespace, workflow_id
        ),
    )
    if not launch.created:
        return JSONResponse(_view(request, launch.run), status_code=200)
    run = launch.run
    try:
        session.commit()
    except IntegrityError:
        # The same idempotency key launched concurrently: the other request's run (and its one
        # workflow, whose id is derived from the key) is the answer.
        session.rollback()
        return JSONResponse(_view(request, runs.get_run(session, run.id)), status_code=200)
    view = _view(request, run)
    summary = f"{run.action_title} · {run.entity or 'new'} · by {user.identifier}"
    start_workflow(request, session, run, launch.workflow_input, summary, Actor(user.identifier, run.id))
    return JSONResponse(view, status_code=202)


def start_workflow(
    request: Request,
    session: SessionDep,
    run: runs.Run,
    workflow_input: dict[str, Any],
    summary: str,
    actor: Actor,
) -> None:
    """Start the run's workflow once its record is committed. Temporal down: the run is ended
    as not started (nothing is left IN_PROGRESS) and the caller gets the 503."""
    settings: Settings = request.app.state.settings
    try:
        anyio.from_thread.run(
            lambda: request.app.state.temporal.start_action_run(
                workflow_input,
                workflow_id=run.workflow_id,
                action=run.action,
                blueprint=run.blueprint,
                entity=run.entity,
                requested_by=run.created_by,
                summary=summary,
            )
        )
    except ServiceUnavailable as exc:
        session.rollback()
        session.refresh(run)
        runs.mark_not_started(session, run, f"Temporal unavailable at {settings.temporal_address}", actor)
        session.commit()
        raise exc


def _view(request: Request, run: runs.Run) -> dict[str, Any]:
    settings = request.app.state.settings
    return runs.run_view(run, ui_base=settings.temporal_ui_url, namespace=settings.temporal_namespace)
