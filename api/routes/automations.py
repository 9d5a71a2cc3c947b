"""Automations: when an event matches, invoke an action."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Response
from fastapi.responses import JSONResponse

from api.deps import ActorDep, AdminUser, CurrentUser, SessionDep
from api.etag import STALE_WRITE, DryRun, IfMatch, check_if_match, settle, tagged
from api.openapi import errors
from api.schemas import AutomationView, Cursor, Limit, Page
from catalog.automations import service
from catalog.automations.service import AutomationIn
from catalog.errors import FieldError, Invalid
from catalog.pagination import page_after

router = APIRouter(tags=["automations"])


@router.get("/v1/automations", response_model=Page[AutomationView], response_model_exclude_unset=True)
def list_automations(
    session: SessionDep, _: CurrentUser, limit: Limit = 100, cursor: Cursor = None
) -> dict[str, Any]:
    page = page_after(service.list_all(session), lambda a: [a.identifier], limit=limit, cursor=cursor)
    return {"items": [service.view(a) for a in page.items], "next_cursor": page.next_cursor}


@router.post(
    "/v1/automations",
    status_code=201,
    response_model=AutomationView,
    response_model_exclude_unset=True,
    responses=errors(409),
)
def create_automation(
    session: SessionDep, _: AdminUser, actor: ActorDep, dry_run: DryRun = False, body: AutomationIn = Body()
) -> dict[str, Any]:
    """Create an automation. Its jq condition is compiled now: a bad one is a 422 with jq's message."""
    automation, _created = service.save(session, body, actor, create_only=True)
    return settle(session, dry_run, lambda: service.view(automation))


@router.get("/v1/automations/{identifier}", response_model=AutomationView, response_model_exclude_unset=True)
def get_automation(
    identifier: str, session: SessionDep, _: CurrentUser, response: Response
) -> dict[str, Any]:
    return tagged(response, service.view(service.get(session, identifier)))


@router.put(
    "/v1/automations/{identifier}",
    response_model=AutomationView,
    responses={201: {"model": AutomationView, "description": "Created"}, **STALE_WRITE},
)
def put_automation(
    identifier: str,
    session: SessionDep,
    _: AdminUser,
    actor: ActorDep,
    if_match: IfMatch = None,
    dry_run: DryRun = False,
    body: AutomationIn = Body(),
) -> JSONResponse:
    if body.identifier != identifier:
        raise Invalid(
            "identifier mismatch", [FieldError("/identifier", "must equal the automation in the path")]
        )
    check_if_match(if_match, lambda: service.view(service.get(session, identifier)))
    automation, created = service.save(session, body, actor)
    answer = settle(session, dry_run, lambda: service.view(automation))
    return JSONResponse(answer, status_code=201 if created else 200)


@router.delete("/v1/automations/{identifier}", status_code=204)
def delete_automation(identifier: str, session: SessionDep, _: AdminUser, actor: ActorDep) -> None:
    service.delete(session, identifier, actor)
    session.commit()
