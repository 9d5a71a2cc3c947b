"""Initiatives (definitions, progress, what their workflow reports) and scorecard trends."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response
from fastapi.responses import JSONResponse
from pydantic import Field
from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from api.deps import ActorDep, PrincipalDep, ServiceUser, SessionDep
from api.etag import STALE_WRITE, DryRun, IfMatch, check_if_match, settle, tagged
from api.openapi import errors
from api.schemas import (
    Cursor,
    InitiativeProgress,
    InitiativeReport,
    InitiativeView,
    Limit,
    Page,
    ReminderRecorded,
    ScorecardTrend,
)
from api.services.initiatives import InitiativeServiceDep
from catalog.base import Strict
from catalog.blueprints.service import get_blueprint
from catalog.db import utcnow
from catalog.durations import parse_duration
from catalog.entities.search import readable_condition
from catalog.errors import Conflict, FieldError, Invalid
from catalog.identity.permissions import Principal, read_scope
from catalog.initiatives import progress as initiative_progress
from catalog.initiatives import service
from catalog.initiatives.service import InitiativeIn
from catalog.models import Blueprint, Entity, Initiative
from catalog.pagination import page_after
from catalog.scorecards import trend as trends
from catalog.scorecards.service import get_scorecard
from catalog.timefmt import parse_instant

router = APIRouter(tags=["initiatives"])


def _readable(session: Session, who: Principal) -> initiative_progress.Readable:
    dialect = session.get_bind().dialect.name
    return lambda bp: readable_condition(session, who, dialect, [bp])


def _visible_report(session: Session, initiative: Initiative, who: Principal) -> dict[str, Any] | None:
    """The stored report, its failing entities cut to those the caller may read now."""
    report = initiative.report
    if report is None or read_scope(session, who, session.get_bind().dialect.name) is None:
        return report
    dialect = session.get_bind().dialect.name
    keys = [(f["blueprint"], f["entity"]) for f in report["failing"]]
    readable: set[tuple[str, str]] = set()
    for blueprint in {b for b, _ in keys}:
        bp = session.get(Blueprint, blueprint)
        condition = readable_condition(session, who, dialect, [bp]) if bp is not None else None
        wanted = [k for k in keys if k[0] == blueprint]
        stmt = select(Entity.blueprint, Entity.identifier).where(
            tuple_(Entity.blueprint, Entity.identifier).in_(wanted)
        )
        if condition is not None:
            stmt = stmt.where(condition)
        readable |= {(row[0], row[1]) for row in session.execute(stmt)}
    return {**report, "failing": [f for f in report["failing"] if (f["blueprint"], f["entity"]) in readable]}


def _view(session: Session, initiative: Initiative, who: Principal) -> dict[str, Any]:
    return service.view(initiative, _visible_report(session, initiative, who))


@router.get("/v1/initiatives", response_model=Page[InitiativeView], response_model_exclude_unset=True)
def list_initiatives(
    session: SessionDep, who: PrincipalDep, limit: Limit = 100, cursor: Cursor = None
) -> dict[str, Any]:
    page = page_after(service.list_all(session), lambda i: [i.identifier], limit=limit, cursor=cursor)
    return {"items": [_view(session, i, who) for i in page.items], "next_cursor": page.next_cursor}


@router.post(
    "/v1/initiatives",
    status_code=201,
    response_model=InitiativeView,
    response_model_exclude_unset=True,
    responses=errors(409, 503),
)
def create_initiative(
    session: SessionDep,
    who: PrincipalDep,
    actor: ActorDep,
    initiatives: InitiativeServiceDep,
    dry_run: DryRun = False,
    body: InitiativeIn = Body(),
) -> dict[str, Any]:
    """Create an initiative (admins, the moderators of every blueprint it targets) and start its
    workflow; Temporal down is a 503 and nothing is saved."""
    initiative, _ = initiatives.save(body, actor, who, create_only=True, dry_run=dry_run)
    return settle(session, dry_run, lambda: _view(session, initiative, who))


@router.get("/v1/initiatives/{identifier}", response_model=InitiativeView, response_model_exclude_unset=True)
def get_initiative(
    identifier: str, session: SessionDep, who: PrincipalDep, response: Response
) -> dict[str, Any]:
    return tagged(response, _view(session, service.get(session, identifier), who))


@router.put(
    "/v1/initiatives/{identifier}",
    response_model=InitiativeView,
    responses={201: {"model": InitiativeView, "description": "Created"}, **STALE_WRITE, **errors(503)},
)
def put_initiative(
    identifier: str,
    session: SessionDep,
    who: PrincipalDep,
    actor: ActorDep,
    initiatives: InitiativeServiceDep,
    if_match: IfMatch = None,
    dry_run: DryRun = False,
    body: InitiativeIn = Body(),
) -> JSONResponse:
    """Create or replace an initiative; a new deadline or new reminders re-arm its workflow."""
    if body.identifier != identifier:
        raise Invalid(
            "identifier mismatch", [FieldError("/identifier", "must equal the initiative in the path")]
        )
    check_if_match(if_match, lambda: _view(session, service.get(session, identifier), who))
    initiative, created = initiatives.save(body, actor, who, dry_run=dry_run)
    answer = settle(session, dry_run, lambda: _view(session, initiative, who))
    return JSONResponse(answer, status_code=201 if created else 200)


@router.delete("/v1/initiatives/{identifier}", status_code=204, responses=errors(503))
def delete_initiative(
    identifier: str, who: PrincipalDep, actor: ActorDep, initiatives: InitiativeServiceDep
) -> None:
    """Delete an initiative and end its workflow (no more reminders, no report)."""
    initiatives.delete(identifier, actor, who)


@router.get("/v1/initiatives/{identifier}/progress", response_model=InitiativeProgress)
def get_initiative_progress(
    identifier: str,
    session: SessionDep,
    who: PrincipalDep,
    limit: Limit = 100,
    cursor: Cursor = None,
    points: Annotated[bool, Query(description="include the burn-down (false: an empty list)")] = True,
) -> dict[str, Any]:
    """How many entities in scope meet every target, overall and per owning team; the failing
    ones with their failing rules (a page: follow ``next_cursor``); the burn-down. All over the
    entities the caller may read."""
    initiative = service.get(session, identifier)
    found = initiative_progress.progress(
        session,
        initiative,
        _readable(session, who),
        now=utcnow(),
        limit=limit,
        cursor=cursor,
        with_points=points,
    )
    session.commit()  # the daily summary of the level history, if the burn-down brought it up to date
    return found


class ReminderIn(Strict):
    key: str = Field(min_length=1, max_length=200)
    remind_before: str


@router.post(
    "/v1/initiatives/{identifier}/reminders",
    response_model=ReminderRecorded,
    operation_id="record_initiative_reminder",
)
def record_reminder(
    identifier: str, session: SessionDep, _: ServiceUser, actor: ActorDep, body: ReminderIn = Body()
) -> dict[str, Any]:
    """The worker, at a reminder: record it once (``INITIATIVE_REMINDER``) and answer who to tell."""
    try:
        parse_duration(body.remind_before)
    except ValueError as exc:
        raise Invalid("invalid reminder", [FieldError("/remind_before", str(exc))]) from exc
    initiative = service.get(session, identifier)
    found = initiative_progress.progress(
        session, initiative, lambda _: None, now=utcnow(), limit=1, with_points=False
    )
    recorded = service.record_reminder(session, initiative, body.key, body.remind_before, found, actor)
    failing_teams = [t["team"] for t in found["teams"] if t["team"] and t["passing"] < t["total"]]
    answer = {
        "recorded": recorded,
        "initiative": service.summary(initiative),
        "total": found["total"],
        "passing": found["passing"],
        "failing_teams": service.audience(session, failing_teams),
        "owners": service.audience(session, initiative.definition.get("owner", {}).get("teams", [])),
    }
    session.commit()
    return answer


class DeadlineIn(Strict):
    deadline: str


@router.post(
    "/v1/initiatives/{identifier}/deadline",
    response_model=InitiativeReport,
    operation_id="report_initiative_deadline",
    responses=errors(409),
)
def report_deadline(
    identifier: str, session: SessionDep, _: ServiceUser, actor: ActorDep, body: DeadlineIn = Body()
) -> dict[str, Any]:
    """The worker, at the deadline: store the final report once and emit
    ``INITIATIVE_DEADLINE_PASSED``; 409 when the deadline has moved since."""
    initiative = service.get(session, identifier)
    asked = parse_instant(body.deadline)
    if asked is None:
        raise Invalid(
            "invalid deadline", [FieldError("/deadline", "must be an RFC 3339 date-time with an offset")]
        )
    if asked != initiative.deadline:
        raise Conflict(f"the deadline of '{identifier}' is now {initiative.definition['deadline']}")
    report = initiative_progress.report(session, initiative, utcnow())
    stored = service.store_report(session, initiative, report, actor)
    session.commit()
    return stored


@router.get(
    "/v1/blueprints/{blueprint}/scorecards/{scorecard}/trend",
    response_model=ScorecardTrend,
    operation_id="get_scorecard_trend",
    tags=["scorecards"],
)
def scorecard_trend(
    blueprint: str,
    scorecard: str,
    session: SessionDep,
    who: PrincipalDep,
    from_: Annotated[
        date | None, Query(alias="from", description="first day (ISO date); default: 30 days before to")
    ] = None,
    to: Annotated[date | None, Query(description="last day (ISO date), included; default: today")] = None,
    interval: Annotated[str, Query(description="day or week")] = "day",
    team: Annotated[str | None, Query(description="only the entities this team owns")] = None,
) -> dict[str, Any]:
    """The level distribution at the end of each interval, from the level history, over the
    entities the caller may read (and ``team`` owns)."""
    sc = get_scorecard(session, blueprint, scorecard)
    grid = trends.trend_grid(from_, to, interval, utcnow().date())
    dialect = session.get_bind().dialect.name
    readable = readable_condition(session, who, dialect, [get_blueprint(session, blueprint)])
    found = trends.trend(session, sc, grid, readable=readable, team=team, now=utcnow())
    session.commit()  # the daily summary of the level history, if the trend brought it up to date
    return found
