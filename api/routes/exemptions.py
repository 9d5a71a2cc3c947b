"""Scorecard exemptions: request (an approval run), read, list, revoke; the timer's expiry."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Body

from api.deps import ActorDep, CurrentUser, PrincipalDep, ServiceUser, SessionDep
from api.openapi import errors
from api.schemas import Cursor, ExemptionView, Limit, Page
from api.services.exemptions import ExemptionServiceDep
from catalog.errors import Forbidden, NotFound
from catalog.exemptions import decisions
from catalog.exemptions import service as exemptions
from catalog.exemptions.service import ExemptionIn
from catalog.models import ScorecardExemption
from catalog.scorecards import service as scorecards

router = APIRouter(tags=["exemptions"])
BASE = "/v1/blueprints/{blueprint}/scorecards/{scorecard}/exemptions"
Status = Literal["PENDING", "APPROVED", "DECLINED", "REVOKED", "EXPIRED"]


@router.post(
    BASE,
    status_code=201,
    response_model=ExemptionView,
    operation_id="request_exemption",
    responses=errors(403, 409, 503),
)
def request_exemption(
    blueprint: str,
    scorecard: str,
    session: SessionDep,
    service: ExemptionServiceDep,
    user: CurrentUser,
    who: PrincipalDep,
    body: ExemptionIn = Body(),
) -> dict[str, Any]:
    """Ask to excuse an entity from one rule until ``expires_at`` (at least an hour, at most a
    year ahead), for a reason. The entity's owners, the blueprint's moderators and admins may
    ask; it waits PENDING for its approval run (``run_id``), which the blueprint's moderators
    and admins approve (never the requester), by ``POST /v1/runs/{run_id}/approval`` or Slack."""
    sc = scorecards.get_scorecard(session, blueprint, scorecard)
    return decisions.view(service.request(sc, body, user, who))


@router.get(BASE, response_model=Page[ExemptionView], operation_id="list_exemptions")
def list_exemptions(
    blueprint: str,
    scorecard: str,
    session: SessionDep,
    who: PrincipalDep,
    entity: str | None = None,
    status: Status | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """The scorecard's exemptions on entities the caller may read, oldest first."""
    sc = scorecards.get_scorecard(session, blueprint, scorecard)
    page = exemptions.list_exemptions(
        session, sc, who, entity=entity, status=status, limit=limit, cursor=cursor
    )
    return {"items": [decisions.view(e) for e in page.items], "next_cursor": page.next_cursor}


@router.get(f"{BASE}/{{exemption_id}}", response_model=ExemptionView, operation_id="get_exemption")
def get_exemption(
    blueprint: str, scorecard: str, exemption_id: str, session: SessionDep, who: PrincipalDep
) -> dict[str, Any]:
    sc = scorecards.get_scorecard(session, blueprint, scorecard)
    return decisions.view(exemptions.get(session, sc, exemption_id, who))


@router.delete(
    f"{BASE}/{{exemption_id}}",
    response_model=ExemptionView,
    operation_id="revoke_exemption",
    responses=errors(403, 409),
)
def revoke_exemption(
    blueprint: str,
    scorecard: str,
    exemption_id: str,
    session: SessionDep,
    service: ExemptionServiceDep,
    user: CurrentUser,
    who: PrincipalDep,
    actor: ActorDep,
) -> dict[str, Any]:
    """Revoke a pending or approved exemption (its requester, the blueprint's moderators,
    admins): the entity is regraded at once; a pending one's approval run is cancelled."""
    sc = scorecards.get_scorecard(session, blueprint, scorecard)
    exemption = exemptions.get(session, sc, exemption_id, who)
    if not exemptions.may_revoke(session, exemption, who):
        raise Forbidden("only the requester, the blueprint's moderators and admins may revoke an exemption")
    return decisions.view(service.revoke(exemption, user, actor))


@router.post(
    f"{BASE}/{{exemption_id}}/expire",
    response_model=ExemptionView,
    operation_id="expire_exemption",
    include_in_schema=False,
)
def expire_exemption(
    blueprint: str,
    scorecard: str,
    exemption_id: str,
    session: SessionDep,
    service: ExemptionServiceDep,
    _: ServiceUser,
    actor: ActorDep,
) -> dict[str, Any]:
    """The exemption's timer, at its date (service token only): expire it and regrade the entity.
    Idempotent: an exemption that has ended answers as it is."""
    exemption = session.get(ScorecardExemption, exemption_id)
    if exemption is None or (exemption.blueprint, exemption.scorecard) != (blueprint, scorecard):
        raise NotFound(f"exemption '{exemption_id}' not found")
    return decisions.view(service.expire(exemption, actor))
