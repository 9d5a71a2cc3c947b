"""Blueprint routes: the schemas of the catalog."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Body, Query, Response
from pydantic import Field, RootModel

from api.deps import ActorDep, AdminUser, CurrentUser, SessionDep
from api.etag import STALE_WRITE, DryRun, IfMatch, check_if_match, settle, tagged
from api.openapi import errors
from api.schemas import BlueprintView, Cursor, Limit, Page, View
from catalog.blueprints import service
from catalog.pagination import page_after
from catalog.schemas import BlueprintIn, BlueprintPatch
from catalog.sources.port import blueprint_as_port

router = APIRouter(prefix="/v1/blueprints", tags=["blueprints"])


@router.get("", response_model=Page[BlueprintView])
def list_blueprints(session: SessionDep, _: CurrentUser, limit: Limit = 100, cursor: Cursor = None) -> Any:
    """Every blueprint, by identifier."""
    page = page_after(service.list_blueprints(session), lambda b: [b.identifier], limit=limit, cursor=cursor)
    return {"items": [service.blueprint_to_dict(b) for b in page.items], "next_cursor": page.next_cursor}


@router.post("", status_code=201, response_model=BlueprintView, responses=errors(409))
def create_blueprint(
    session: SessionDep, _: AdminUser, actor: ActorDep, dry_run: DryRun = False, body: BlueprintIn = Body()
) -> Any:
    """Create a blueprint. A bad property schema is a 422 naming the bad keyword."""
    bp = service.create_blueprint(session, body, actor)
    return settle(session, dry_run, lambda: service.blueprint_to_dict(bp))


class PortBlueprintView(View):
    """A blueprint in Port's JSON form (``?format=port``): what ``POST /v1/blueprints`` accepts."""

    identifier: str
    title: str
    icon: str | None = None
    description: str = ""
    schema_: dict[str, Any] = Field(alias="schema", serialization_alias="schema")
    relations: dict[str, Any]
    mirrorProperties: dict[str, Any]
    calculationProperties: dict[str, Any]
    aggregationProperties: dict[str, Any]


class BlueprintAnswer(RootModel[BlueprintView | PortBlueprintView]):
    """A blueprint in Gantry's form, or in Port's with ``?format=port``."""


@router.get("/{blueprint}", response_model=BlueprintAnswer)
def get_blueprint(
    blueprint: str,
    session: SessionDep,
    _: CurrentUser,
    response: Response,
    format: Literal["gantry", "port"] = Query("gantry", description="port: Port's blueprint JSON"),
) -> Any:
    """A blueprint; ``?format=port`` answers it in Port's JSON (``mirrorProperties``,
    ``aggregationProperties``), so a blueprint given in Port's form comes back in it."""
    view = tagged(response, service.blueprint_to_dict(service.get_blueprint(session, blueprint)))
    return blueprint_as_port(view) if format == "port" else view


@router.put("/{blueprint}", response_model=BlueprintView, responses={**errors(409), **STALE_WRITE})
def replace_blueprint(
    blueprint: str,
    session: SessionDep,
    _: AdminUser,
    actor: ActorDep,
    if_match: IfMatch = None,
    dry_run: DryRun = False,
    body: BlueprintIn = Body(),
) -> Any:
    """Replace a blueprint. Changing a property's type while entities exist is a 409."""
    check_if_match(if_match, lambda: service.blueprint_to_dict(service.get_blueprint(session, blueprint)))
    bp = service.replace_blueprint(session, blueprint, body, actor)
    return settle(session, dry_run, lambda: service.blueprint_to_dict(bp))


@router.patch("/{blueprint}", response_model=BlueprintView, responses=errors(409))
def patch_blueprint(
    blueprint: str, session: SessionDep, _: AdminUser, actor: ActorDep, body: BlueprintPatch = Body()
) -> Any:
    """Change some fields of a blueprint; given fields replace the stored ones whole."""
    bp = service.patch_blueprint(session, blueprint, body, actor)
    session.commit()
    return service.blueprint_to_dict(bp)


@router.delete("/{blueprint}", status_code=204, responses=errors(409))
def delete_blueprint(
    blueprint: str, session: SessionDep, _: AdminUser, actor: ActorDep, delete_entities: bool = False
) -> None:
    """Delete a blueprint; refused (409) while it has entities or is a relation target, unless
    ``delete_entities=true``."""
    service.delete_blueprint(session, blueprint, actor, delete_entities=delete_entities)
    session.commit()
