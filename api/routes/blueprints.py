"""Blueprint routes: the schemas of the catalog."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body

from api.deps import ActorDep, AdminUser, CurrentUser, SessionDep
from catalog import blueprints as service
from catalog.schemas import BlueprintIn, BlueprintPatch

router = APIRouter(prefix="/v1/blueprints", tags=["blueprints"])


@router.get("")
def list_blueprints(session: SessionDep, _: CurrentUser) -> dict[str, Any]:
    """Every blueprint, by identifier."""
    return {
        "items": [service.blueprint_to_dict(b) for b in service.list_blueprints(session)],
        "next_cursor": None,
    }


@router.post("", status_code=201)
def create_blueprint(
    session: SessionDep, _: AdminUser, actor: ActorDep, body: BlueprintIn = Body()
) -> dict[str, Any]:
    """Create a blueprint. A bad property schema is a 422 naming the bad keyword."""
    bp = service.create_blueprint(session, body, actor)
    session.commit()
    return service.blueprint_to_dict(bp)


@router.get("/{blueprint}")
def get_blueprint(blueprint: str, session: SessionDep, _: CurrentUser) -> dict[str, Any]:
    return service.blueprint_to_dict(service.get_blueprint(session, blueprint))


@router.put("/{blueprint}")
def replace_blueprint(
    blueprint: str, session: SessionDep, _: AdminUser, actor: ActorDep, body: BlueprintIn = Body()
) -> dict[str, Any]:
    """Replace a blueprint. Changing a property's type while entities exist is a 409."""
    bp = service.replace_blueprint(session, blueprint, body, actor)
    session.commit()
    return service.blueprint_to_dict(bp)


@router.patch("/{blueprint}")
def patch_blueprint(
    blueprint: str, session: SessionDep, _: AdminUser, actor: ActorDep, body: BlueprintPatch = Body()
) -> dict[str, Any]:
    """Change some fields of a blueprint; given fields replace the stored ones whole."""
    bp = service.patch_blueprint(session, blueprint, body, actor)
    session.commit()
    return service.blueprint_to_dict(bp)


@router.delete("/{blueprint}", status_code=204)
def delete_blueprint(
    blueprint: str, session: SessionDep, _: AdminUser, actor: ActorDep, delete_entities: bool = False
) -> None:
    """Delete a blueprint; refused (409) while it has entities or is a relation target, unless
    ``delete_entities=true``."""
    service.delete_blueprint(session, blueprint, actor, delete_entities=delete_entities)
    session.commit()
