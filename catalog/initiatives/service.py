"""Initiatives: scorecard targets that the entities in scope should reach by a deadline.

An initiative names targets (a blueprint's scorecard and the level to reach), an optional filter
query narrowing the entities in scope, owner teams, a start, a deadline and reminder offsets.
Its durable workflow ``initiative:{identifier}`` (started, re-armed and ended by the API's
service, ``api/services/initiatives.py``) reminds the teams whose entities still fail and, at
the deadline, asks this module to store the final report and emit the events automations act on.

Who may define one: admins and the moderators of every blueprint its targets name (before and
after a change), never viewers; everyone signed in may read it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog import audit, events
from catalog.audit import Actor
from catalog.base import Strict
from catalog.db import utcnow
from catalog.durations import parse_duration
from catalog.errors import Conflict, FieldError, Forbidden, Invalid, NotFound
from catalog.identity.permissions import SERVICE, Principal, is_moderator
from catalog.models import Blueprint, Initiative, Scorecard, Team, TeamMembership, User
from catalog.query.compiler import compile_query
from catalog.schemas import BLUEPRINT_ID
from catalog.scorecards.service import resolve
from catalog.timefmt import format_instant, format_optional, parse_instant

MAX_TARGETS = 20
MAX_REMINDERS = 10


def workflow_id(identifier: str) -> str:
    return f"initiative:{identifier}"


class Owner(Strict):
    teams: list[str] = Field(default_factory=list, max_length=50)


class Target(Strict):
    blueprint: str
    scorecard: str
    level: str


class InitiativeIn(Strict):
    identifier: str = Field(pattern=BLUEPRINT_ID)
    title: str = Field(min_length=1, max_length=256)
    description: str = Field("", max_length=10_000)
    owner: Owner = Field(default_factory=Owner)
    targets: list[Target] = Field(min_length=1, max_length=MAX_TARGETS)
    filter: dict[str, Any] | None = None
    # RFC 3339 date-times with an offset; starts_at defaults to when the initiative is created.
    starts_at: str | None = None
    deadline: str
    remind_before: list[str] = Field(default_factory=list, max_length=MAX_REMINDERS)


# ---- checks ----------------------------------------------------------------------------------


def check(session: Session, body: InitiativeIn, now: datetime) -> tuple[datetime, datetime]:
    """Every problem of ``body`` at once, by pointer; the (start, deadline) when there is none."""
    errors = _target_problems(session, body.targets)
    for index, team in enumerate(body.owner.teams):
        if session.get(Team, team) is None:
            errors.append(FieldError(f"/owner/teams/{index}", f"there is no team '{team}'"))
    if body.filter is not None:
        errors += _filter_problems(session, body.filter, now)
    start = _instant(body.starts_at, "/starts_at", errors) if body.starts_at is not None else now
    deadline = _instant(body.deadline, "/deadline", errors)
    if start is not None and deadline is not None and deadline <= start:
        errors.append(FieldError("/deadline", "must be after starts_at"))
    seen: set[str] = set()
    for index, offset in enumerate(body.remind_before):
        where = f"/remind_before/{index}"
        try:
            if parse_duration(offset).total_seconds() <= 0:
                errors.append(FieldError(where, "must be a positive duration"))
        except ValueError as exc:
            errors.append(FieldError(where, str(exc)))
        if offset in seen:
            errors.append(FieldError(where, "is used twice"))
        seen.add(offset)
    if errors or start is None or deadline is None:
        raise Invalid("invalid initiative", errors)
    return start, deadline


def _target_problems(session: Session, targets: list[Target]) -> list[FieldError]:
    errors: list[FieldError] = []
    seen: set[tuple[str, str]] = set()
    for index, target in enumerate(targets):
        where = f"/targets/{index}"
        if session.get(Blueprint, target.blueprint) is None:
            errors.append(FieldError(f"{where}/blueprint", f"there is no blueprint '{target.blueprint}'"))
            continue
        sc = session.get(Scorecard, (target.blueprint, target.scorecard))
        if sc is None:
            errors.append(
                FieldError(
                    f"{where}/scorecard",
                    f"blueprint '{target.blueprint}' has no scorecard '{target.scorecard}'",
                )
            )
            continue
        titles = level_titles(sc)
        if target.level not in titles:
            errors.append(FieldError(f"{where}/level", f"must be one of {', '.join(titles)}"))
        if (target.blueprint, target.scorecard) in seen:
            errors.append(FieldError(where, "targets this scorecard twice"))
        seen.add((target.blueprint, target.scorecard))
    return errors


def _filter_problems(session: Session, query: dict[str, Any], now: datetime) -> list[FieldError]:
    try:
        compile_query(
            resolve(session, query), dialect=session.get_bind().dialect.name, now=now, pointer="/filter"
        )
    except Invalid as exc:
        # resolve() names the query as /query: here it is the filter.
        return [
            FieldError("/filter" + d.pointer.removeprefix("/query"), d.message)
            if d.pointer.startswith("/query")
            else d
            for d in exc.details
        ]
    return []


def _instant(value: str, pointer: str, errors: list[FieldError]) -> datetime | None:
    moment = parse_instant(value)
    if moment is None:
        errors.append(FieldError(pointer, "must be an RFC 3339 date-time with an offset"))
        return None
    # Milliseconds, as every instant Gantry writes: the workflow's deadline is the stored one.
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def level_titles(sc: Scorecard) -> list[str]:
    return [level["title"] for level in sc.definition["levels"]]


# ---- who may define one ------------------------------------------------------------------------


def check_may_define(session: Session, who: Principal, definition: dict[str, Any]) -> None:
    """Admins, and the moderators of every blueprint the targets name; never viewers."""
    if not who.may_write:
        raise Forbidden("viewers can read initiatives but not define them")
    if who.is_admin:
        return
    for target in definition.get("targets", []):
        bp = session.get(Blueprint, target["blueprint"])
        if bp is None or not is_moderator(bp, who):
            raise Forbidden(
                "only admins and the moderators of every blueprint an initiative targets may define it"
            )


# ---- definitions -------------------------------------------------------------------------------


def get(session: Session, identifier: str) -> Initiative:
    initiative = session.get(Initiative, identifier)
    if initiative is None:
        raise NotFound(f"initiative '{identifier}' not found")
    return initiative


def list_all(session: Session) -> list[Initiative]:
    return list(session.scalars(select(Initiative).order_by(Initiative.identifier)))


def view(initiative: Initiative, report: dict[str, Any] | None = None) -> dict[str, Any]:
    """The definition as saved, with the reminders sent and the final report (``report``: the
    stored one as the caller may see it)."""
    return {
        **initiative.definition,
        "workflow_id": workflow_id(initiative.identifier),
        "reminders": list(initiative.reminders or []),
        "final_report": report,
        "reported_at": format_optional(initiative.reported_at),
        "created_at": format_instant(initiative.created_at),
        "updated_at": format_instant(initiative.updated_at),
        "created_by": initiative.created_by,
        "updated_by": initiative.updated_by,
    }


def save(
    session: Session, body: InitiativeIn, actor: Actor, who: Principal, *, create_only: bool = False
) -> tuple[Initiative, dict[str, Any] | None]:
    """Check and store the definition (not committed); returns it and the definition it
    replaced (None: created)."""
    now = utcnow()
    # Who may, first: a caller who may not define it learns nothing from the checks.
    check_may_define(session, who, body.model_dump(mode="json"))
    start, deadline = check(session, body, now)
    definition = body.model_dump(mode="json")
    definition["starts_at"], definition["deadline"] = format_instant(start), format_instant(deadline)
    initiative = session.get(Initiative, body.identifier)
    if initiative is not None and create_only:
        raise Conflict(f"initiative '{body.identifier}' already exists")
    if initiative is None:
        initiative = Initiative(
            identifier=body.identifier,
            title=body.title,
            definition=definition,
            deadline=deadline,
            reminders=[],
            version=1,
            created_at=now,
            updated_at=now,
            created_by=actor.user,
            updated_by=actor.user,
        )
        session.add(initiative)
        audit.record(session, actor, "CREATE", "initiative", body.identifier, after=definition)
        session.flush()
        return initiative, None
    before = dict(initiative.definition)
    check_may_define(session, who, before)
    if before.get("starts_at") and body.starts_at is None:
        definition["starts_at"] = before["starts_at"]  # a replace without a start keeps the first
    initiative.title, initiative.definition, initiative.deadline = body.title, definition, deadline
    initiative.version += 1
    initiative.updated_at, initiative.updated_by = now, actor.user
    audit.record(session, actor, "UPDATE", "initiative", body.identifier, before=before, after=definition)
    session.flush()
    return initiative, before


def schedule_changed(before: dict[str, Any] | None, after: dict[str, Any]) -> bool:
    """Whether the workflow must be re-armed: a new deadline or new reminder offsets."""
    if before is None:
        return True
    return before.get("deadline") != after.get("deadline") or before.get("remind_before") != after.get(
        "remind_before"
    )


def delete(session: Session, identifier: str, actor: Actor, who: Principal) -> Initiative:
    initiative = get(session, identifier)
    check_may_define(session, who, initiative.definition)
    audit.record(session, actor, "DELETE", "initiative", identifier, before=dict(initiative.definition))
    session.delete(initiative)
    session.flush()
    return initiative


# ---- what the workflow reports -----------------------------------------------------------------


def summary(initiative: Initiative) -> dict[str, Any]:
    """The initiative as events carry it."""
    return {
        "identifier": initiative.identifier,
        "title": initiative.title,
        "deadline": initiative.definition["deadline"],
        "owner": initiative.definition.get("owner", {}),
    }


def record_reminder(
    session: Session, initiative: Initiative, key: str, offset: str, progress: dict[str, Any], actor: Actor
) -> bool:
    """Record the reminder ``key`` (its time for this deadline) once, with its
    ``INITIATIVE_REMINDER`` event; False when it was recorded before (a retried activity)."""
    if any(r.get("key") == key for r in initiative.reminders or []):
        return False
    failing_teams = [t["team"] for t in progress["teams"] if t["passing"] < t["total"] and t["team"]]
    entry = {
        "key": key,
        "remind_before": offset,
        "at": format_instant(utcnow()),
        "total": progress["total"],
        "passing": progress["passing"],
        "failing_teams": failing_teams,
    }
    initiative.reminders = [*(initiative.reminders or []), entry]
    events.add(
        session,
        events.event_row(
            "INITIATIVE_REMINDER",
            actor,
            payload={"initiative": summary(initiative), "reminder": entry},
        ),
    )
    return True


def store_report(
    session: Session, initiative: Initiative, report: dict[str, Any], actor: Actor
) -> dict[str, Any]:
    """Store the final report of the current deadline once and emit ``INITIATIVE_DEADLINE_PASSED``:
    one event for the initiative (``team: null``) and one per owning team that still has failing
    entities (so an automation can open one ticket per team). A report already stored for this
    deadline is answered as it is."""
    stored = initiative.report
    if stored is not None and stored.get("deadline") == initiative.definition["deadline"]:
        return stored
    initiative.report, initiative.reported_at = report, utcnow()
    about = summary(initiative)
    rows = [
        events.event_row(
            "INITIATIVE_DEADLINE_PASSED",
            actor,
            payload={
                "initiative": about,
                "team": None,
                "progress": {"total": report["total"], "passing": report["passing"]},
            },
        )
    ]
    for team in report["teams"]:
        if team["team"] and team["passing"] < team["total"]:
            failing = [f["entity"] for f in report["failing"] if team["team"] in f["team"]]
            rows.append(
                events.event_row(
                    "INITIATIVE_DEADLINE_PASSED",
                    actor,
                    payload={
                        "initiative": about,
                        "team": team["team"],
                        "progress": {"total": team["total"], "passing": team["passing"]},
                        "failing": failing,
                    },
                )
            )
    events.emit(session, rows)
    audit.record(session, actor, "REPORT", "initiative", initiative.identifier, after=report)
    return report


def audience(session: Session, teams: list[str]) -> list[dict[str, Any]]:
    """The people of each team (never the worker's service principal), for Slack messages."""
    stmt = (
        select(TeamMembership.team, User.identifier, User.email, User.name)
        .join(User, User.identifier == TeamMembership.user)
        .where(TeamMembership.team.in_(teams), User.role != SERVICE)
        .order_by(TeamMembership.team, User.identifier)
    )
    members: dict[str, list[dict[str, Any]]] = {team: [] for team in teams}
    for team, identifier, email, name in session.execute(stmt):
        members[team].append({"identifier": identifier, "email": email, "name": name})
    return [{"team": team, "members": members[team]} for team in teams]
