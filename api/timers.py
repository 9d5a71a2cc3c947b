"""Extending a TTL timer, from the API or a Slack button: the workflow's Update decides, then
the entity's timer property, the timer record and the audit log follow."""

from __future__ import annotations

from typing import Any

import anyio.from_thread
from sqlalchemy.orm import Session

from api.temporal import DecisionRefused, TemporalGateway
from catalog import audit
from catalog.audit import Actor
from catalog.blueprints.properties import parse_time
from catalog.blueprints.service import get_blueprint
from catalog.durations import parse_duration
from catalog.entities.permissions import field_denial, write_denial
from catalog.entities.service import Mode, get_entity, write_one
from catalog.errors import Conflict, FieldError, Invalid
from catalog.identity.permissions import Principal, principal_of
from catalog.models import Entity, User
from catalog.timers import service as timers
from contracts.timers import Extension


def check_may_extend(session: Session, who: Principal, blueprint: str, entity: Entity, prop: str) -> None:
    """Extending writes the timer property: the caller needs update permission on the entity
    and on that property, as for any write (403). The reminded owner (``owner_property``) is
    data members can write, so it grants nothing by itself."""
    bp = get_blueprint(session, blueprint)
    team = list(entity.team or [])
    denial = write_denial(bp, who, entity.identifier, team, team, "")
    denial = denial or field_denial(bp, who, entity.identifier, team, [prop], [], "")
    if denial is not None:
        raise denial


def extend_timer(
    temporal: TemporalGateway,
    session: Session,
    blueprint: str,
    entity_id: str,
    prop: str,
    by: str,
    user: User,
    via: str,
) -> dict[str, Any]:
    who = principal_of(session, user)
    entity = get_entity(session, blueprint, entity_id, who)
    timer = timers.get_timer(session, blueprint, entity_id, prop)
    check_may_extend(session, who, blueprint, entity, prop)
    try:
        parse_duration(by)
    except ValueError as exc:
        raise Invalid("invalid extension", [FieldError("/by", str(exc))]) from exc
    actor = Actor(user.identifier)
    try:
        state = anyio.from_thread.run(
            temporal.extend_timer, timer.id, Extension(by=by, user=user.identifier, via=via)
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
