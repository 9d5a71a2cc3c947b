"""Entity routes: one entity, lists, bulk writes and search."""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi import APIRouter, Body, Query, Response
from fastapi.responses import JSONResponse

import catalog.entities.search as search
from api.deps import ActorDep, PrincipalDep, SessionDep
from api.openapi import errors
from api.schemas import BulkResults, Cursor, EntityView, Limit, Page
from catalog.blueprints.service import get_blueprint
from catalog.db import utcnow
from catalog.entities import service
from catalog.entities.service import Mode
from catalog.schemas import BulkEntities, EntityIn, EntityPatch, SearchRequest
from catalog.scorecards import service as scorecards

router = APIRouter(tags=["entities"])


def _views(session: Any, entities: list[Any]) -> list[dict[str, Any]]:
    """Entities in their API form, with their scorecards (one query for the page)."""
    graded = scorecards.for_entities(session, [e.id for e in entities])
    return [service.entity_view(e, graded.get(e.id)) for e in entities]


CreateMissing = Query(False, description="create missing relation targets as bare entities")


def _mode(upsert: bool, merge: bool) -> Mode:
    if merge:
        return Mode.MERGE
    return Mode.UPSERT if upsert else Mode.CREATE


@router.post(
    "/v1/blueprints/{blueprint}/entities",
    status_code=201,
    response_model=EntityView,
    responses={
        200: {"model": EntityView, "description": "Replaced or merged (`upsert`, `merge`)"},
        **errors(409),
    },
)
def create_entity(
    blueprint: str,
    session: SessionDep,
    actor: ActorDep,
    who: PrincipalDep,
    body: EntityIn = Body(),
    upsert: bool = False,
    merge: bool = False,
    create_missing_related_entities: bool = CreateMissing,
) -> JSONResponse:
    """Create an entity. ``upsert=true`` replaces an existing one; ``merge=true`` merges its
    properties and relations into it. The blueprint's permissions apply (403/404)."""
    raw = body.model_dump(exclude_unset=True)
    result = service.write_one(
        session,
        blueprint,
        raw,
        mode=_mode(upsert, merge),
        actor=actor,
        create_missing_related=create_missing_related_entities,
        who=who,
    )
    session.commit()
    view = _views(session, [service.get_entity(session, blueprint, result.identifier)])[0]
    return JSONResponse(view, status_code=201 if result.status == "created" else 200)


@router.get("/v1/blueprints/{blueprint}/entities", response_model=Page[EntityView])
def list_entities(
    blueprint: str,
    session: SessionDep,
    who: PrincipalDep,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """The blueprint's entities the caller may read, oldest first, paginated with ``cursor``."""
    get_blueprint(session, blueprint)
    page = search.list_entities(session, blueprint=blueprint, limit=limit, cursor=cursor, who=who)
    return {"items": _views(session, page.items), "next_cursor": page.next_cursor}


@router.post("/v1/blueprints/{blueprint}/entities/bulk", status_code=207, response_model=BulkResults)
def bulk_entities(
    blueprint: str,
    session: SessionDep,
    actor: ActorDep,
    who: PrincipalDep,
    body: BulkEntities = Body(),
    upsert: bool = True,
    merge: bool = False,
    create_missing_related_entities: bool = CreateMissing,
) -> dict[str, Any]:
    """Up to 1000 entities: valid ones are written in one transaction, invalid ones reported with
    their failing fields. Bulk writes upsert by default. Each item answers its own
    ``http_status``: 201/200 written, 403 forbidden, 404 not readable, 422 invalid."""
    results = service.write_entities(
        session,
        blueprint,
        list(body.entities),
        mode=_mode(upsert, merge),
        actor=actor,
        create_missing_related=create_missing_related_entities,
        bulk=True,
        who=who,
    )
    session.commit()
    return {
        "results": [
            {
                "identifier": r.identifier,
                "status": r.status,
                "http_status": _item_status(r),
                "error": None
                if r.error is None
                else {
                    "code": r.error.code,
                    "message": r.error.message,
                    "details": [d.as_dict() for d in r.error.details],
                },
            }
            for r in results
        ]
    }


def _item_status(result: service.WriteResult) -> int:
    if result.error is not None:
        return {"forbidden": 403, "not_found": 404}.get(result.error.code, 422)
    return 201 if result.status == "created" else 200


@router.get("/v1/blueprints/{blueprint}/entities/{identifier:path}", response_model=EntityView)
def get_entity(blueprint: str, identifier: str, session: SessionDep, who: PrincipalDep) -> dict[str, Any]:
    """One entity; 404 also when the caller may not read it."""
    return _views(session, [service.get_entity(session, blueprint, identifier, who)])[0]


@router.put(
    "/v1/blueprints/{blueprint}/entities/{identifier:path}", response_model=EntityView, responses=errors(409)
)
def replace_entity(
    blueprint: str,
    identifier: str,
    session: SessionDep,
    actor: ActorDep,
    who: PrincipalDep,
    body: EntityIn = Body(),
    create_missing_related_entities: bool = CreateMissing,
) -> dict[str, Any]:
    """Replace an existing entity whole."""
    raw = body.model_dump(exclude_unset=True)
    if raw.get("identifier") != identifier:
        from catalog.errors import FieldError, Invalid

        raise Invalid("identifier mismatch", [FieldError("/identifier", "must equal the entity in the path")])
    result = service.write_one(
        session,
        blueprint,
        raw,
        mode=Mode.REPLACE,
        actor=actor,
        create_missing_related=create_missing_related_entities,
        who=who,
    )
    session.commit()
    return _views(session, [service.get_entity(session, blueprint, result.identifier)])[0]


@router.patch(
    "/v1/blueprints/{blueprint}/entities/{identifier:path}", response_model=EntityView, responses=errors(409)
)
def patch_entity(
    blueprint: str,
    identifier: str,
    session: SessionDep,
    actor: ActorDep,
    who: PrincipalDep,
    body: EntityPatch = Body(),
    create_missing_related_entities: bool = CreateMissing,
) -> dict[str, Any]:
    """Change some fields; ``properties`` and ``relations`` merge key by key, ``null`` removes one."""
    raw = body.model_dump(exclude_unset=True)
    result = service.patch_entity(
        session,
        blueprint,
        identifier,
        body,
        raw,
        actor,
        create_missing_related=create_missing_related_entities,
        who=who,
    )
    session.commit()
    return _views(session, [service.get_entity(session, blueprint, result.identifier)])[0]


@router.delete(
    "/v1/blueprints/{blueprint}/entities/{identifier:path}", status_code=204, responses=errors(409)
)
def delete_entity(
    blueprint: str, identifier: str, session: SessionDep, actor: ActorDep, who: PrincipalDep
) -> None:
    """Delete an entity; refused (409) while others hold a required relation to it."""
    service.delete_entity(session, blueprint, identifier, actor, who)
    session.commit()


@router.post("/v1/entities/search", response_model=Page[EntityView])
def search_entities(session: SessionDep, who: PrincipalDep, body: SearchRequest = Body()) -> Response:
    """Search the entities the caller may read, across blueprints, with the query language."""
    page = search.search_rows(
        session,
        query=body.query,
        sort=[s.model_dump() for s in body.sort],
        limit=body.limit,
        cursor=body.cursor,
        now=utcnow(),
        who=who,
    )
    # Straight from the rows to JSON: the page is already in its API form, so no response
    # model is built and validated per entity (the declared model documents the shape).
    graded = scorecards.for_entities(session, [row["id"] for row in page.items])
    views = [service.entity_view(dict(row), graded.get(row["id"])) for row in page.items]
    return Response(_json({"items": views, "next_cursor": page.next_cursor}), media_type="application/json")


def _json(body: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(body)
    except TypeError:  # beyond what orjson encodes (an integer over 64 bits): the standard encoder
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
