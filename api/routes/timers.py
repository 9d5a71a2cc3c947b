"""TTL timers and the event log."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, ConfigDict

from api.deps import ActorDep, AdminUser, CurrentUser, SessionDep
from api.timers import extend_timer
from catalog import events, timers
from catalog.db import utcnow
from catalog.entities import get_entity
from catalog.errors import NotFound
from catalog.identity import list_users, missing_users
from catalog.models import Timer, User
from catalog.properties import parse_time

router = APIRouter(tags=["timers"])


class ExtendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str


@router.get("/v1/timers")
def list_timers(
    session: SessionDep,
    _: CurrentUser,
    state: Literal["active", "expired", "cleared"] | None = None,
    expires_before: datetime | None = None,
    blueprint: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = None,
) -> dict[str, Any]:
    """Armed and expired timers, soonest deadline first: what will be torn down, and when."""
    page = timers.list_timers(
        session, state=state, expires_before=expires_before, blueprint=blueprint, limit=limit, cursor=cursor
    )
    return {"items": [timers.timer_view(t) for t in page.items], "next_cursor": page.next_cursor}


@router.post("/v1/blueprints/{blueprint}/entities/{identifier:path}/timers/{prop}/extend")
def extend(
    blueprint: str,
    identifier: str,
    prop: str,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    body: ExtendBody = Body(),
) -> dict[str, Any]:
    """Push a timer's deadline back (``{"by": "P2D"}``) within the blueprint's policy: 409 with the
    limit when it would go past ``max_extension`` or ``max_ttl``, or when the timer has expired."""
    return extend_timer(request.app, session, blueprint, identifier, prop, body.by, user, via="api")


@router.get("/v1/events")
def list_events(
    session: SessionDep,
    _: CurrentUser,
    type: str | None = None,
    blueprint: str | None = None,
    entity: str | None = None,
    delivered: bool | None = None,
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = None,
) -> dict[str, Any]:
    """The event log (the outbox), newest first."""
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


@router.post("/v1/timers/{timer_id:path}/report")
def report_timer(
    timer_id: str, session: SessionDep, _: AdminUser, actor: ActorDep, body: dict[str, Any] = Body()
) -> dict[str, Any]:
    """A timer workflow's news (service token only): reminders, re-arms, expiry (which emits
    ``TIMER_EXPIRED`` in the same transaction) and the cleanup's outcome. Answers the owners."""
    timer = session.get(Timer, timer_id)
    if timer is None:
        raise NotFound(f"timer '{timer_id}' not found")
    now = utcnow()
    if body.get("deadline"):
        timer.deadline = parse_time(body["deadline"]) or timer.deadline
    if "extensions" in body:
        timer.extensions = body["extensions"]
    if "next_reminder" in body:
        timer.next_reminder = parse_time(body["next_reminder"]) if body["next_reminder"] else None
    if body.get("reminder"):
        timer.reminders = [
            *timer.reminders,
            {
                **body["reminder"],
                "log": f"REMINDER: {timer.entity}'s "
                f"{timer.property} expires at {body['reminder'].get('deadline')}",
            },
        ]
    if body.get("state") == "cleared" and timer.state == "active":
        timer.state, timer.next_reminder = "cleared", None
    if body.get("expired") and timer.state != "expired":
        timer.state, timer.expired_at, timer.next_reminder = "expired", now, None
        events.emit(
            session,
            [
                events.event_row(
                    "TIMER_EXPIRED",
                    actor,
                    blueprint=timer.blueprint,
                    entity=timer.entity,
                    payload={
                        "timer": {
                            "id": timer.id,
                            "property": timer.property,
                            "deadline": timer.deadline.isoformat() if timer.deadline else None,
                        }
                    },
                )
            ],
        )
    for name in ("teardown", "on_expiry_run", "error"):
        if name in body:
            setattr(timer, name, body[name])
    timer.updated_at = now
    owners = [{"identifier": u.identifier, "email": u.email, "name": u.name} for u in _owners(session, timer)]
    session.commit()
    return {"timer": timers.timer_view(timer), "owners": owners}


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
    from catalog.blueprints import get_blueprint

    return get_blueprint(session, blueprint)
