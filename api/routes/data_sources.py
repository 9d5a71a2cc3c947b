"""Data sources: definitions, preview, syncs and their records, webhook deliveries.

People (admins, and moderators of every blueprint a source writes) define sources and start
syncs; the worker's service principal reads definitions and reports pages and completions.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Response
from fastapi.responses import JSONResponse

from api.deps import ActorDep, PrincipalDep, ServiceUser, SessionDep
from api.etag import STALE_WRITE, DryRun, IfMatch, check_if_match, settle, tagged
from api.openapi import errors
from api.schemas import Cursor, DataSourceView, DeliveryView, Limit, Page, PageApplied, PreviewView, SyncView
from api.services.data_sources import DataSourceServiceDep
from catalog.errors import FieldError, Forbidden, Invalid
from catalog.pagination import page_after
from catalog.sources import definitions, syncs, webhooks
from catalog.sources.definitions import DataSourceIn
from catalog.sources.syncs import OpenSyncIn, PreviewIn, SyncBatchIn, SyncCompletionIn

router = APIRouter(tags=["data-sources"])
BASE = "/v1/data-sources"


@router.get(BASE, response_model=Page[DataSourceView])
def list_data_sources(
    session: SessionDep, who: PrincipalDep, limit: Limit = 100, cursor: Cursor = None
) -> dict[str, Any]:
    """The sources the caller administers (admins and the worker: all)."""
    page = page_after(
        definitions.list_readable(session, who), lambda s: [s.identifier], limit=limit, cursor=cursor
    )
    return {"items": [definitions.view(s) for s in page.items], "next_cursor": page.next_cursor}


@router.post(BASE, status_code=201, response_model=DataSourceView, responses=errors(409, 503))
def create_data_source(
    service: DataSourceServiceDep,
    session: SessionDep,
    who: PrincipalDep,
    actor: ActorDep,
    dry_run: DryRun = False,
    body: DataSourceIn = Body(),
) -> dict[str, Any]:
    """Create a source. Every jq program is compiled now (a bad one is a 422 at its pointer);
    a pull source with a ``schedule`` gets its Temporal Schedule (Temporal down: 503)."""
    if dry_run:  # the definition's checks only: no schedule is touched
        checked, _ = definitions.save(session, body, actor, who, create_only=True)
        return settle(session, True, lambda: definitions.view(checked))
    source, _created = service.save(body, actor, who, create_only=True)
    return definitions.view(source)


@router.get(BASE + "/{data_source}", response_model=DataSourceView)
def get_data_source(
    data_source: str, session: SessionDep, who: PrincipalDep, response: Response
) -> dict[str, Any]:
    return tagged(response, definitions.view(definitions.get_readable(session, data_source, who)))


@router.put(
    BASE + "/{data_source}",
    response_model=DataSourceView,
    responses={201: {"model": DataSourceView, "description": "Created"}, **errors(503), **STALE_WRITE},
)
def put_data_source(
    data_source: str,
    service: DataSourceServiceDep,
    session: SessionDep,
    who: PrincipalDep,
    actor: ActorDep,
    if_match: IfMatch = None,
    dry_run: DryRun = False,
    body: DataSourceIn = Body(),
) -> JSONResponse:
    """Create or replace a source (and its schedule)."""
    if body.identifier != data_source:
        raise Invalid(
            "identifier mismatch", [FieldError("/identifier", "must equal the data source in the path")]
        )
    check_if_match(if_match, lambda: definitions.view(definitions.get_readable(session, data_source, who)))
    if dry_run:  # the definition's checks only: no schedule is touched
        checked, previous = definitions.save(session, body, actor, who)
        answer = settle(session, True, lambda: definitions.view(checked))
        return JSONResponse(answer, status_code=200 if previous else 201)
    source, created = service.save(body, actor, who)
    return JSONResponse(definitions.view(source), status_code=201 if created else 200)


@router.delete(BASE + "/{data_source}", status_code=204, responses=errors(503))
def delete_data_source(
    data_source: str, service: DataSourceServiceDep, who: PrincipalDep, actor: ActorDep
) -> None:
    """Delete a source and its schedule; its entities stay, no longer owned by a source."""
    service.delete(data_source, actor, who)


@router.post(BASE + "/{data_source}/preview", response_model=PreviewView)
def preview_data_source(
    data_source: str, session: SessionDep, who: PrincipalDep, body: PreviewIn = Body()
) -> dict[str, Any]:
    """What raw items would become (entities, and every mapping and validation error); nothing
    is written. For a webhook source an item is the envelope ``{body, headers, query}``."""
    source = definitions.get_readable(session, data_source, who)
    return syncs.preview(session, source, body.resource, body.items)


@router.get(BASE + "/{data_source}/syncs", response_model=Page[SyncView])
def list_syncs(
    data_source: str, session: SessionDep, who: PrincipalDep, limit: Limit = 100, cursor: Cursor = None
) -> dict[str, Any]:
    """The source's syncs, newest first."""
    definitions.get_readable(session, data_source, who)
    page = syncs.list_syncs(session, data_source, limit=limit, cursor=cursor)
    return {"items": [syncs.sync_view(s) for s in page.items], "next_cursor": page.next_cursor}


@router.post(BASE + "/{data_source}/syncs", status_code=202, response_model=SyncView, responses=errors(503))
def start_sync(
    data_source: str, service: DataSourceServiceDep, who: PrincipalDep, actor: ActorDep
) -> dict[str, Any]:
    """Start a sync now: its record (RUNNING) and its workflow ``sync:{id}:{sync_id}``."""
    if who.is_service:
        raise Forbidden("the worker's syncs start from their schedule")
    return syncs.sync_view(service.start_sync(data_source, actor, who))


@router.get(BASE + "/{data_source}/syncs/{sync_id}", response_model=SyncView)
def get_sync(data_source: str, sync_id: str, session: SessionDep, who: PrincipalDep) -> dict[str, Any]:
    definitions.get_readable(session, data_source, who)
    return syncs.sync_view(syncs.get_sync(session, data_source, sync_id))


@router.put(BASE + "/{data_source}/syncs/{sync_id}", response_model=SyncView)
def open_sync(
    data_source: str,
    sync_id: str,
    session: SessionDep,
    _: ServiceUser,
    actor: ActorDep,
    body: OpenSyncIn = Body(),
) -> dict[str, Any]:
    """The worker opens a scheduled sync's record (idempotent: an open record answers itself)."""
    source = definitions.get(session, data_source)
    sync = syncs.open_sync(session, source, sync_id, body.trigger, actor)
    session.commit()
    return syncs.sync_view(sync)


@router.post(BASE + "/{data_source}/syncs/{sync_id}/items", response_model=PageApplied, responses=errors(409))
def apply_sync_items(
    data_source: str, sync_id: str, session: SessionDep, _: ServiceUser, body: SyncBatchIn = Body()
) -> dict[str, Any]:
    """The worker's page of raw items: selected, mapped and written as the source. A page
    already applied answers its stored result and counts nothing twice."""
    source = definitions.get(session, data_source)
    answer = syncs.apply_page(session, source, sync_id, body.resource, body.page, body.items)
    session.commit()
    return answer


@router.post(BASE + "/{data_source}/syncs/{sync_id}/complete", response_model=SyncView)
def complete_sync(
    data_source: str, sync_id: str, session: SessionDep, _: ServiceUser, body: SyncCompletionIn = Body()
) -> dict[str, Any]:
    """End the sync; after a SUCCESS, with ``delete_stale``, delete the source's entities it did
    not see (none when they are more than ``deletion_threshold``). Idempotent."""
    source = definitions.get(session, data_source)
    problems = [e.model_dump() for e in body.errors]
    sync = syncs.complete(session, source, sync_id, body.status, problems)
    session.commit()
    return syncs.sync_view(sync)


@router.get(BASE + "/{data_source}/deliveries", response_model=Page[DeliveryView])
def list_deliveries(
    data_source: str, session: SessionDep, who: PrincipalDep, limit: Limit = 100, cursor: Cursor = None
) -> dict[str, Any]:
    """A webhook source's deliveries, newest first, with what each did."""
    definitions.get_readable(session, data_source, who)
    page = webhooks.list_deliveries(session, data_source, limit=limit, cursor=cursor)
    return {"items": [webhooks.delivery_view(d) for d in page.items], "next_cursor": page.next_cursor}
