"""Extending a TTL timer, from the API or a Slack button: the workflow's Update decides, then
the entity's timer property, the timer record and the audit log follow."""

from __future__ import annotations

from typing import Any

import anyio.from_thread
from fastapi import FastAPI
from sqlalchemy.orm import Session

from api.temporal import DecisionRefused
from catalog import audit, timers
from catalog.audit import Actor
from catalog.durations import parse_duration
from catalog.entities import Mode, get_entity, write_one
from catalog.errors import Conflict, FieldError, Forbidden, Invalid
from catalog.identity import user_teams
from catalog.models import User
from catalog.properties import parse_time
from workflows.timer import Extension


def may_manage(session: Session, user: User, entity_team: list[str], owner: str | None) -> bool:
    """Admins, the entity's owner, and members of its teams may extend its timers."""
    if user.role == "admin" or user.identifier == owner or user.email == owner:
        return True
    return bool(set(user_teams(session, user.identifier)) & set(entity_team))


def extend_timer(
    app: FastAPI, session: Session, blueprint: str, entity_id: str, prop: str, by: str, user: User, via: str
) -> dict[str, Any]:
    entity = get_entity(session, blueprint, entity_id)
    timer = timers.get_timer(session, blueprint, entity_id, prop)
    owner_property = (entity_blueprint_policy(session, blueprint, prop) or {}).get("owner_property")
    owner = entity.properties.get(owner_property) if owner_property else None
    if not may_manage(session, user, entity.team, owner):
        raise Forbidden(
            f"only the owners of {entity_id} (its teams, its owner) or an admin can extend its timers"
        )
    try:
        parse_duration(by)
    except ValueError as exc:
        raise Invalid("invalid extension", [FieldError("/by", str(exc))]) from exc
    actor = Actor(user.identifier)
    try:
        state = anyio.from_thread.run(
            app.state.temporal.extend_timer, timer.id, Extension(by=by, user=user.identifier, via=via)
        )
    except DecisionRefused as refused:
        audit.record(
            session,
            actor,
            "EXTEND_REFUSED",
            "timer",
            timer.id,
            blueprint=blueprint,
            after={"by": by, "reason": refused.message, "via": via},
        )
        session.commit()
        raise Conflict(refused.message, [FieldError("/by", refused.message)]) from refused
    deadline = parse_time(state["deadline"])
    assert deadline is not None
    before = timers.timer_view(timer)
    write_one(
        session,
        blueprint,
        {"identifier": entity_id, "properties": {prop: state["deadline"]}},
        mode=Mode.MERGE,
        actor=actor,
    )
    timer.extensions = state["extensions"]
    audit.record(
        session,
        actor,
        "EXTEND",
        "timer",
        timer.id,
        blueprint=blueprint,
        before=before,
        after=timers.timer_view(timer) | {"by": by, "via": via},
    )
    session.commit()
    return timers.timer_view(timer)


def entity_blueprint_policy(session: Session, blueprint: str, prop: str) -> dict[str, Any] | None:
    from catalog.blueprints import get_blueprint

    policy: dict[str, Any] | None = get_blueprint(session, blueprint).timers.get(prop)
    return policy
