"""Action definitions and launching runs."""

from __future__ import annotations

from typing import Any

import anyio.from_thread
from fastapi import APIRouter, Body, Header, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

from api.deps import ActorDep, AdminUser, CurrentUser, SessionDep, SettingsDep
from catalog import actions as service
from catalog import runs
from catalog.actions import ActionIn
from catalog.errors import FieldError, Forbidden, Invalid
from catalog.runs import RunRequest

router = APIRouter(tags=["actions"])


@router.get("/v1/actions")
def list_actions(session: SessionDep, _: CurrentUser, blueprint: str | None = None) -> dict[str, Any]:
    items = [service.action_to_dict(a) for a in service.list_actions(session, blueprint=blueprint)]
    return {"items": items, "next_cursor": None}


@router.post("/v1/actions", status_code=201)
def create_action(
    session: SessionDep, _: AdminUser, actor: ActorDep, body: ActionIn = Body()
) -> dict[str, Any]:
    """Create an action; everything that can be checked is checked now (422 naming the place)."""
    action, _created = service.save_action(session, body, actor, create_only=True)
    session.commit()
    return service.action_to_dict(action)


@router.get("/v1/actions/{action}")
def get_action(action: str, session: SessionDep, _: CurrentUser) -> dict[str, Any]:
    return service.action_to_dict(service.get_action(session, action))


@router.put("/v1/actions/{action}")
def put_action(
    action: str, session: SessionDep, _: AdminUser, actor: ActorDep, body: ActionIn = Body()
) -> JSONResponse:
    """Create or replace an action. Running runs keep the definition they started with."""
    if body.identifier != action:
        raise Invalid("identifier mismatch", [FieldError("/identifier", "must equal the action in the path")])
    saved, created = service.save_action(session, body, actor)
    session.commit()
    return JSONResponse(service.action_to_dict(saved), status_code=201 if created else 200)


@router.delete("/v1/actions/{action}", status_code=204)
def delete_action(action: str, session: SessionDep, _: AdminUser, actor: ActorDep) -> None:
    service.delete_action(session, action, actor)
    session.commit()


@router.post("/v1/actions/{action}/runs", status_code=202)
def launch_run(
    action: str,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    body: RunRequest = Body(),
    x_gantry_source: str | None = Header(None, description="API | CLI | UI (AUTOMATION: service only)"),
) -> JSONResponse:
    """Launch a run: inputs are checked against the action's schema (422 per field), the entity
    against its trigger and condition (409), then the workflow ``action:{action}:{run_id}``
    starts. The same ``idempotency_key`` returns the same run. Temporal down: 503, no run."""
    definition = service.get_action(session, action)
    source = body.source or (x_gantry_source or "API").upper()
    if source not in ("API", "CLI", "UI", "AUTOMATION"):
        raise Invalid("invalid source", [FieldError("/source", "must be API, CLI, UI or AUTOMATION")])
    if (source == "AUTOMATION" or body.trigger is not None) and user.role != "admin":
        raise Forbidden("only the service user launches AUTOMATION runs")
    launch = runs.prepare_run(
        session,
        definition,
        body,
        user,
        source=source,
        secret_key=settings.secret("secret_key"),
        api_url=settings.api_url,
        ui_url=lambda workflow_id: runs.temporal_ui_url(
            settings.temporal_ui_url, settings.temporal_namespace, workflow_id
        ),
    )
    view = _view(request, launch.run)
    if not launch.created:
        return JSONResponse(view, status_code=200)
    run = launch.run
    summary = f"{run.action_title} · {run.entity or 'new'} · by {user.identifier}"
    anyio.from_thread.run(
        lambda: request.app.state.temporal.start_action_run(
            launch.workflow_input,
            workflow_id=run.workflow_id,
            action=run.action,
            blueprint=run.blueprint,
            entity=run.entity,
            requested_by=user.identifier,
            summary=summary,
        )
    )
    try:
        session.commit()
    except IntegrityError:
        # The same idempotency key launched concurrently: the other request's run (and its one
        # workflow, whose id is derived from the key) is the answer.
        session.rollback()
        return JSONResponse(_view(request, runs.get_run(session, run.id)), status_code=200)
    return JSONResponse(view, status_code=202)


def _view(request: Request, run: runs.Run) -> dict[str, Any]:
    settings = request.app.state.settings
    return runs.run_view(run, ui_base=settings.temporal_ui_url, namespace=settings.temporal_namespace)
