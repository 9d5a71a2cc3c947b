"""Blueprint routes: the schemas of the catalog."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body

from api.deps import ActorDep, AdminUser, CurrentUser, SessionDep
from api.openapi import errors
from api.schemas import BlueprintView, Cursor, Limit, Page
from catalog.blueprints import service
from catalog.pagination import page_after
from catalog.schemas import BlueprintIn, BlueprintPatch

router = APIRouter(prefix="/v1/blueprints", tags=["blueprints"])


@router.get("", response_model=Page[BlueprintView])
def list_blueprints(session: SessionDep, _: CurrentUser, limit: Limit = 100, cursor: Cursor = None) -> Any:
    """Every blueprint, by identifier."""
    page = page_after(service.list_blueprints(session), lambda b: [b.identifier], limit=limit, cursor=cursor)
    return {"items": [service.blueprint_to_dict(b) for b in page.items], "next_cursor": page.next_cursor}


@router.post("", status_code=201, response_model=BlueprintView, responses=errors(409))
def create_blueprint(session: SessionDep, _: AdminUser, actor: ActorDep, body: BlueprintIn = Body()) -> Any:
    """Create a blueprint. A bad property schema is a 422 naming the bad keyword."""
    bp = service.create_blueprint(session, body, actor)
    session.commit()
    return service.blueprint_to_dict(bp)


@router.get("/{blueprint}", response_model=BlueprintView)
def get_blueprint(blueprint: str, session: SessionDep, _: CurrentUser) -> Any:
    return service.blueprint_to_dict(service.get_blueprint(session, blueprint))


@router.put("/{blueprint}", response_model=BlueprintView, responses=errors(409))
def replace_blueprint(
    blueprint: str, session: SessionDep, _: AdminUser, actor: ActorDep, body: BlueprintIn = Body()
) -> Any:
    """Replace a blueprint. Changing a property's type while entities exist is a 409."""
    bp = service.replace_blueprint(session, blueprint, body, actor)
    session.commit()
    return service.blueprint_to_dict(bp)


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
