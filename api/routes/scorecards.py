"""Scorecards: definitions, results, level history, and the scheduled regrade."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from api.deps import ActorDep, CurrentUser, PrincipalDep, ServiceUser, SessionDep
from api.etag import STALE_WRITE, DryRun, IfMatch, check_if_match, settle, tagged
from api.openapi import errors
from api.schemas import Cursor, LevelChange, Limit, Page, Regraded, ScorecardResults, ScorecardView
from catalog.blueprints.service import get_blueprint, list_blueprints
from catalog.changes import pipeline as changes
from catalog.entities.search import readable_condition
from catalog.entities.service import get_entity
from catalog.errors import FieldError, Forbidden, Invalid
from catalog.identity.permissions import Principal, is_moderator
from catalog.models import Blueprint
from catalog.pagination import page_after
from catalog.scorecards import service as scorecards
from catalog.scorecards.service import ScorecardIn

router = APIRouter(tags=["scorecards"])


def _moderated(session: Session, blueprint: str, who: Principal) -> Blueprint:
    """The blueprint, when ``who`` may define its scorecards: admins and its moderators."""
    bp = get_blueprint(session, blueprint)
    if not (who.may_write and is_moderator(bp, who)):
        raise Forbidden(f"only admins and the moderators of '{blueprint}' may define its scorecards")
    return bp


@router.get(
    "/v1/blueprints/{blueprint}/scorecards",
    response_model=Page[ScorecardView],
    response_model_exclude_unset=True,
)
def list_scorecards(
    blueprint: str, session: SessionDep, _: CurrentUser, limit: Limit = 100, cursor: Cursor = None
) -> dict[str, Any]:
    get_blueprint(session, blueprint)
    found = scorecards.list_scorecards(session, blueprint)
    page = page_after(found, lambda s: [s.identifier], limit=limit, cursor=cursor)
    return {"items": [scorecards.scorecard_view(s) for s in page.items], "next_cursor": page.next_cursor}


@router.post(
    "/v1/blueprints/{blueprint}/scorecards",
    status_code=201,
    response_model=ScorecardView,
    response_model_exclude_unset=True,
    responses=errors(409),
)
def create_scorecard(
    blueprint: str,
    session: SessionDep,
    who: PrincipalDep,
    actor: ActorDep,
    dry_run: DryRun = False,
    body: ScorecardIn = Body(),
) -> dict[str, Any]:
    """Create a scorecard (admins, the blueprint's moderators); every entity is graded at once."""
    bp = _moderated(session, blueprint, who)
    sc, _created = scorecards.save(session, bp, body, actor, create_only=True)
    return settle(session, dry_run, lambda: scorecards.scorecard_view(sc))


@router.get(
    "/v1/blueprints/{blueprint}/scorecards/{scorecard}",
    response_model=ScorecardView,
    response_model_exclude_unset=True,
)
def get_scorecard(
    blueprint: str, scorecard: str, session: SessionDep, _: CurrentUser, response: Response
) -> dict[str, Any]:
    return tagged(
        response, scorecards.scorecard_view(scorecards.get_scorecard(session, blueprint, scorecard))
    )


@router.put(
    "/v1/blueprints/{blueprint}/scorecards/{scorecard}",
    response_model=ScorecardView,
    responses={201: {"model": ScorecardView, "description": "Created"}, **STALE_WRITE},
)
def put_scorecard(
    blueprint: str,
    scorecard: str,
    session: SessionDep,
    who: PrincipalDep,
    actor: ActorDep,
    if_match: IfMatch = None,
    dry_run: DryRun = False,
    body: ScorecardIn = Body(),
) -> JSONResponse:
    """Create or replace a scorecard (admins, the blueprint's moderators); a changed rule
    regrades everyone."""
    bp = _moderated(session, blueprint, who)
    if body.identifier != scorecard:
        raise Invalid(
            "identifier mismatch", [FieldError("/identifier", "must equal the scorecard in the path")]
        )
    check_if_match(
        if_match, lambda: scorecards.scorecard_view(scorecards.get_scorecard(session, blueprint, scorecard))
    )
    sc, created = scorecards.save(session, bp, body, actor)
    answer = settle(session, dry_run, lambda: scorecards.scorecard_view(sc))
    return JSONResponse(answer, status_code=201 if created else 200)


@router.delete("/v1/blueprints/{blueprint}/scorecards/{scorecard}", status_code=204)
def delete_scorecard(
    blueprint: str, scorecard: str, session: SessionDep, who: PrincipalDep, actor: ActorDep
) -> None:
    _moderated(session, blueprint, who)
    scorecards.delete_scorecard(session, blueprint, scorecard, actor)
    session.commit()


@router.get(
    "/v1/blueprints/{blueprint}/scorecards/{scorecard}/results",
    response_model=ScorecardResults,
    operation_id="get_scorecard_results",
)
def results(
    blueprint: str,
    scorecard: str,
    session: SessionDep,
    who: PrincipalDep,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Per-entity levels (a page in entity order: follow ``next_cursor``), the distribution of
    levels, per-rule pass rates: all over the entities the caller may read."""
    sc = scorecards.get_scorecard(session, blueprint, scorecard)
    dialect = session.get_bind().dialect.name
    readable = readable_condition(session, who, dialect, [get_blueprint(session, blueprint)])
    return scorecards.results(session, sc, limit=limit, cursor=cursor, readable=readable)


@router.get(
    "/v1/blueprints/{blueprint}/scorecard-history",
    response_model=Page[LevelChange],
    operation_id="list_scorecard_history",
)
def level_history(
    blueprint: str,
    entity: str,
    session: SessionDep,
    who: PrincipalDep,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Every level change of an entity (``?entity=``), on every scorecard, oldest first (404 when
    the caller may not read the entity)."""
    get_entity(session, blueprint, entity, who)
    # The history only grows, oldest first: a change's position is a stable key.
    changes = list(enumerate(scorecards.history(session, blueprint, entity)))
    page = page_after(changes, lambda c: [c[0]], limit=limit, cursor=cursor)
    return {"items": [change for _, change in page.items], "next_cursor": page.next_cursor}


@router.post("/v1/scorecards/regrade", response_model=Regraded, operation_id="regrade_scorecards")
def regrade(session: SessionDep, _: ServiceUser, actor: ActorDep) -> dict[str, Any]:
    """Regrade every scorecard (the worker's schedule calls this, for rules that depend on time)."""
    changes.refresh_windows(session, actor)  # time-windowed aggregations move with time
    changed = 0
    for bp in list_blueprints(session):
        changed += scorecards.grade(session, bp, None, actor)
    session.commit()
    return {"level_changes": changed}
