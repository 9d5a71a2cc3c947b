"""TTL timers and the event log."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Body
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import ActorDep, AdminUser, CurrentUser, PrincipalDep, ServiceUser, SessionDep, TemporalDep
from api.openapi import errors
from api.schemas import Cursor, EventView, Limit, Page, TimerReportAnswer, TimerReportResults, TimerView
from api.timers import extend_timer
from catalog import events
from catalog.audit import Actor
from catalog.base import Strict
from catalog.entities.service import get_entity
from catalog.errors import FieldError, Invalid, NotFound
from catalog.identity.service import list_users, missing_users
from catalog.models import Timer, User
from catalog.timers import service as timers
from contracts.timers import TimerNews
from contracts.wire import WireError

router = APIRouter(tags=["timers"])
MAX_REPORTS = 500  # timer reports one request may carry


class ExtendBody(Strict):
    by: str


@router.get("/v1/timers", response_model=Page[TimerView])
def list_timers(
    session: SessionDep,
    who: PrincipalDep,
    state: Literal["active", "expired", "cleared"] | None = None,
    expires_before: AwareDatetime | None = None,  # with an offset: a naive time names no instant
    blueprint: str | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Armed and expired timers of the entities the caller may read, soonest deadline first:
    what will be torn down, and when."""
    page = timers.list_timers(
        session,
        state=state,
        expires_before=expires_before,
        blueprint=blueprint,
        limit=limit,
        cursor=cursor,
        who=who,
    )
    return {"items": [timers.timer_view(t) for t in page.items], "next_cursor": page.next_cursor}


@router.post(
    "/v1/blueprints/{blueprint}/entities/{identifier:path}/timers/{prop}/extend",
    response_model=TimerView,
    operation_id="extend_timer",
    responses=errors(403, 409),
)
def extend(
    blueprint: str,
    identifier: str,
    prop: str,
    session: SessionDep,
    temporal: TemporalDep,
    user: CurrentUser,
    body: ExtendBody = Body(),
) -> dict[str, Any]:
    """Push a timer's deadline back (``{"by": "P2D"}``) within the blueprint's policy: 409 with the
    limit when it would go past ``max_extension`` or ``max_ttl``, or when the timer has expired.
    Needs update permission on the entity (403; 404 when the caller may not read it)."""
    return extend_timer(temporal, session, blueprint, identifier, prop, body.by, user, via="api")


@router.get("/v1/events", response_model=Page[EventView])
def list_events(
    session: SessionDep,
    _: AdminUser,
    type: str | None = None,
    blueprint: str | None = None,
    entity: str | None = None,
    delivered: bool | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """The event log (the outbox), newest first. Admins only: events carry entities' full
    before/after, whoever may read them."""
    page = events.list_events(
        session,
        type_=type,
        blueprint=blueprint,
        entity=entity,
        delivered=delivered,
        limit=limit,
        cursor=cursor,
    )
    return {"items": [events.event_view(e) for e in page.items], "next_cursor": page.next_cursor}


class TimerReportItem(BaseModel):
    # A newer worker's extra fields are ignored, not refused: see catalog.runs.service.WorkerMessage.
    model_config = ConfigDict(extra="ignore")

    timer_id: str = Field(min_length=1)
    # Read as contracts.timers.TimerNews (see _read_news): its keys' presence is part of it.
    report: dict[str, Any] = Field(default_factory=dict)


class TimerReports(BaseModel):
    # A newer worker's extra fields are ignored, not refused: see catalog.runs.service.WorkerMessage.
    model_config = ConfigDict(extra="ignore")

    reports: list[TimerReportItem] = Field(min_length=1, max_length=MAX_REPORTS)


@router.post("/v1/timers/reports", response_model=TimerReportResults)
def report_timers(session: SessionDep, _: ServiceUser, actor: ActorDep, body: TimerReports) -> dict[str, Any]:
    """Many timer workflows' news in one transaction (service token only; the worker sends the
    reports that arrive while one is in flight together). Applied in order; ``results`` answers
    each in turn: ``{"status": 200, "timer": ..., "owners": [...]}`` or ``{"status": 404, "error": ...}``.
    Owners are named only for reports that go on to tell them (a reminder, a failed cleanup)."""
    reports = [
        (item.timer_id, _read_news(item.report, f"/reports/{index}/report"))
        for index, item in enumerate(body.reports)
    ]
    return {"results": _apply_reports(session, reports, actor)}


@router.post("/v1/timers/{timer_id:path}/report", response_model=TimerReportAnswer)
def report_timer(
    timer_id: str, session: SessionDep, _: ServiceUser, actor: ActorDep, body: dict[str, Any] = Body()
) -> dict[str, Any]:
    """One timer workflow's news (service token only): reminders, re-arms, expiry (which emits
    ``TIMER_EXPIRED`` in the same transaction) and the cleanup's outcome. Answers the owners
    when the report goes on to tell them."""
    (result,) = _apply_reports(session, [(timer_id, _read_news(body, ""))], actor)
    if result["status"] == 404:
        raise NotFound(result["error"])
    return {"timer": result["timer"], "owners": result["owners"]}


def _read_news(raw: dict[str, Any], where: str) -> TimerNews:
    """A report body as TimerNews: a newer worker's extra keys are ignored, a known key of the
    wrong shape is a 422 naming it (before any report of the request is applied)."""
    try:
        return TimerNews.from_json(raw)
    except WireError as exc:
        raise Invalid("invalid timer report", [FieldError(f"{where}/{exc.field}", exc.message)]) from exc


def _apply_reports(
    session: Session, reports: list[tuple[str, TimerNews]], actor: Actor
) -> list[dict[str, Any]]:
    """Apply reports in order and commit; an answer per report (an unknown timer: a 404 alone)."""
    wanted = list({timer_id for timer_id, _ in reports})
    found = {t.id: t for t in session.scalars(select(Timer).where(Timer.id.in_(wanted)))}
    results: list[dict[str, Any]] = []
    for timer_id, report in reports:
        timer = found.get(timer_id)
        if timer is None:
            results.append({"status": 404, "error": f"timer '{timer_id}' not found"})
            continue
        timers.record_report(session, timer, report, actor)
        owners = _owner_views(session, timer, report)
        results.append({"status": 200, "timer": timers.timer_view(timer), "owners": owners})
    session.commit()
    return results


def _owner_views(session: Session, timer: Timer, report: TimerNews) -> list[dict[str, Any]]:
    if not report.wants_owners:
        return []
    return [{"identifier": u.identifier, "email": u.email, "name": u.name} for u in _owners(session, timer)]


def _owners(session: Any, timer: Timer) -> list[User]:
    """The people a timer's reminders go to: its owner property's user, else its teams' members."""
    try:
        entity = get_entity(session, timer.blueprint, timer.entity)
    except NotFound:
        return []
    policy = timers.policy_of(entity_blueprint(session, timer.blueprint), timer.property)
    owner = entity.properties.get(policy["owner_property"]) if policy.get("owner_property") else None
    if isinstance(owner, str) and not missing_users(session, {owner}):
        return [u for u in list_users(session) if owner in (u.identifier, u.email)]
    members: dict[str, User] = {}
    for team in entity.team:
        members.update({u.identifier: u for u in list_users(session, team=team)})
    return list(members.values())


def entity_blueprint(session: Any, blueprint: str) -> Any:
    from catalog.blueprints.service import get_blueprint

    return get_blueprint(session, blueprint)
