"""The catalog: blueprints, a blueprint's entity table, an entity's page, a timer's extension,
and asking for (or revoking) a scorecard rule's exemption from the entity's page."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from starlette.responses import Response

from api.services.exemptions import ExemptionService
from api.timers import check_may_extend, extend_timer
from api.web.core import Page, page, see_other, url_with
from catalog import audit
from catalog.audit import Actor
from catalog.blueprints.service import get_blueprint, list_blueprints
from catalog.db import utcnow
from catalog.entities.search import readable_condition, search_entities
from catalog.entities.service import get_entity
from catalog.errors import CatalogError, FieldError, Forbidden, Invalid, NotFound
from catalog.exemptions import service as exemptions
from catalog.exemptions.decisions import PENDING
from catalog.exemptions.service import ExemptionIn
from catalog.identity.permissions import Principal, is_moderator, may
from catalog.models import Blueprint, Entity, EntityRelation, ScorecardExemption, Team, Timer, User
from catalog.runs import actions as action_defs
from catalog.runs import service as runs
from catalog.scorecards import service as scorecards

PAGE_SIZE = 50
EXEMPTION_DAYS = 30  # the date an exemption form proposes, from today
DEFAULT_COLUMNS = 5
# Filter operators the table offers (a subset of the query language), by how they read.
OPERATORS = {
    "=": "equals",
    "!=": "does not equal",
    "contains": "contains",
    "in": "is one of (comma-separated)",
    "isEmpty": "is empty",
    "isNotEmpty": "is not empty",
    ">=": "at least",
    "<=": "at most",
}
NO_VALUE = ("isEmpty", "isNotEmpty")


@page("/catalog")
def catalog_home(ctx: Page) -> Response:
    blueprints = list_blueprints(ctx.db)
    stmt = sa.select(Entity.blueprint, sa.func.count()).group_by(Entity.blueprint)
    readable = readable_condition(ctx.db, ctx.who, ctx.db.get_bind().dialect.name)
    if readable is not None:
        stmt = stmt.where(readable)
    counts = {bp: count for bp, count in ctx.db.execute(stmt).all()}
    return ctx.render("catalog.html", blueprints=blueprints, counts=counts, title="Catalog")


def parse_filter(raw: str, bp: Blueprint, index: int) -> dict[str, Any]:
    """One ``f`` parameter, ``subject|operator|value``, as a query-language rule. The subject is
    a property, ``$identifier``/``$title``/``$team``, ``@relation`` or ``#scorecard`` (then
    the operator compares levels: ``=``, ``>=``, ``<=``)."""
    subject, _, rest = raw.partition("|")
    op, _, value = rest.partition("|")
    where = f"/f/{index}"
    if op not in OPERATORS:
        raise Invalid("invalid filter", [FieldError(where, f"unknown operator '{op}'")])
    if subject.startswith("#"):
        if op not in ("=", ">=", "<=", "!="):
            raise Invalid("invalid filter", [FieldError(where, "a scorecard level compares with = != >= <=")])
        return {"scorecard": subject[1:], "operator": op, "value": value}
    if op in NO_VALUE:
        parsed: Any = None
    elif op == "in":
        parsed = [_typed(bp, subject, v.strip()) for v in value.split(",") if v.strip()]
    else:
        parsed = _typed(bp, subject, value)
    rule: dict[str, Any] = {"operator": op}
    if subject.startswith("@"):
        rule["relation"] = subject[1:]
    else:
        rule["property"] = subject
    if op not in NO_VALUE:
        rule["value"] = parsed
    return rule


def _typed(bp: Blueprint, prop: str, value: str) -> Any:
    """A filter value as its property's JSON type (the query language never equates 1 and "1")."""
    kind = bp.schema.get("properties", {}).get(prop, {}).get("type")
    if kind in ("number", "integer"):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() and kind == "integer" else number
    if kind == "boolean":
        return value.lower() in ("true", "yes", "1")
    return value


@page("/catalog/{bp}")
def entity_table(ctx: Page) -> Response:
    bp = get_blueprint(ctx.db, ctx.request.path_params["bp"])
    properties = list(bp.schema.get("properties", {}))
    filters = [f for f in ctx.request.query_params.getlist("f") if f]
    new_subject, new_op = ctx.param("fs"), ctx.param("fo")
    if new_subject and new_op:
        filters.append(f"{new_subject}|{new_op}|{ctx.param('fv')}")
    asked = ctx.request.query_params.getlist("col") or ctx.param("cols").split(",")
    chosen = [c for c in asked if c in properties] or properties[:DEFAULT_COLUMNS]
    sort = ctx.param("sort", "$identifier")
    q = ctx.param("q").strip()
    rules: list[dict[str, Any]] = [{"property": "$blueprint", "operator": "=", "value": bp.identifier}]
    if q:
        rules.append(
            {
                "combinator": "or",
                "rules": [
                    {"property": "$identifier", "operator": "contains", "value": q},
                    {"property": "$title", "operator": "contains", "value": q},
                ],
            }
        )
    error = None
    try:
        rules += [parse_filter(f, bp, i) for i, f in enumerate(filters)]
        name = sort.lstrip("-")
        page_ = search_entities(
            ctx.db,
            query={"combinator": "and", "rules": rules},
            sort=[{"property": name, "order": "desc" if sort.startswith("-") else "asc"}],
            limit=PAGE_SIZE,
            cursor=ctx.param("cursor") or None,
            now=utcnow(),
            who=ctx.who,
        )
        items, next_cursor = page_.items, page_.next_cursor
    except Invalid as exc:
        items, next_cursor, error = [], None, str(exc)
    state = {"q": q, "f": filters, "sort": sort, "cols": ",".join(chosen)}
    return ctx.render(
        "entity_table.html",
        title=bp.title or bp.identifier,
        bp=bp,
        items=items,
        columns=chosen,
        properties=properties,
        relations=list((bp.relations or {}).keys()),
        scorecards=[s.identifier for s in scorecards.list_scorecards(ctx.db, bp.identifier)],
        operators=OPERATORS,
        filters=filters,
        error=error,
        state=state,
        next_url=url_with(f"/catalog/{bp.identifier}", cursor=next_cursor, **state) if next_cursor else None,
        sort_url=lambda col: url_with(
            f"/catalog/{bp.identifier}", **(state | {"sort": ("-" + col) if sort == col else col})
        ),
        without=lambda f: url_with(
            f"/catalog/{bp.identifier}", **(state | {"f": [x for x in filters if x != f]})
        ),
        create_actions=[
            a
            for a in action_defs.list_actions(ctx.db, blueprint=bp.identifier, who=ctx.who)
            if a.definition["trigger"]["operation"] == "CREATE" and _may_execute(ctx, a, None)
        ],
        display=display,
        schema=bp.schema.get("properties", {}),
        names=_names(ctx, items, bp.schema.get("properties", {}), chosen),
    )


def _may_execute(ctx: Page, action: Any, entity: str | None) -> bool:
    if not ctx.who.may_write:
        return False
    try:
        runs.check_target(ctx.db, action, entity, ctx.who)
    except CatalogError:
        return False
    return True


def _names(ctx: Page, entities: list[Entity], schema: dict[str, Any], columns: list[str]) -> dict[str, str]:
    """Display names of the users and teams the page mentions: the values of its ``columns``
    with ``format: user``/``team`` and the entities' owning teams. Only those are looked up (a
    user by identifier or email), not every user and team of the portal."""
    wanted: dict[str, set[str]] = {"user": set(), "team": set()}
    for entity in entities:
        wanted["team"].update(t for t in entity.team or [] if isinstance(t, str))
        for column in columns:
            fmt, value = schema.get(column, {}).get("format"), (entity.properties or {}).get(column)
            if fmt in wanted and isinstance(value, str):
                wanted[fmt].add(value)
    names: dict[str, str] = {}
    if wanted["user"]:
        people = list(
            ctx.db.scalars(
                sa.select(User).where(
                    sa.or_(User.identifier.in_(wanted["user"]), User.email.in_(wanted["user"]))
                )
            )
        )
        names |= {f"user:{u.identifier}": u.name or u.identifier for u in people}
        names |= {f"user:{u.email}": u.name or u.identifier for u in people}
    if wanted["team"]:
        teams = ctx.db.scalars(sa.select(Team).where(Team.identifier.in_(wanted["team"])))
        names |= {f"team:{t.identifier}": t.title or t.identifier for t in teams}
    return names


def display(value: Any, schema: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """How a property value shows: its kind for the template, and the text."""
    fmt = schema.get("format")
    if value is None:
        return {"kind": "empty", "text": ""}
    if fmt == "url" and isinstance(value, str) and value.startswith(("http://", "https://")):
        return {"kind": "link", "text": value}
    if fmt in ("user", "team") and isinstance(value, str):
        return {"kind": "text", "text": names.get(f"{fmt}:{value}", value)}
    if fmt == "markdown" and isinstance(value, str):
        return {"kind": "markdown", "text": value}
    if fmt == "timer":
        return {"kind": "timer", "text": str(value)}
    if isinstance(value, bool):
        return {"kind": "text", "text": "yes" if value else "no"}
    if isinstance(value, (dict, list)):
        return {"kind": "code", "text": json.dumps(value, ensure_ascii=False)}
    return {"kind": "text", "text": str(value)}


@page("/catalog/{bp}/{identifier:path}/timers/{prop}/extend", ("POST",))
def extend(ctx: Page) -> Response:
    bp, identifier, prop = (ctx.request.path_params[k] for k in ("bp", "identifier", "prop"))
    by = ctx.field("by", "P1D")
    ctx.charge("writes")
    extend_timer(ctx.request.app.state.temporal, ctx.db, bp, identifier, prop, by, ctx.user, via="ui")
    return see_other(f"/catalog/{bp}/{identifier}#timers")


@page("/catalog/{bp}/{identifier:path}/scorecards/{sc}/exemptions", ("POST",))
def ask_exemption(ctx: Page) -> Response:
    """Ask to exempt the entity from one rule until a day (the form's date, to the end of that
    day in UTC): the API's request, so the same checks and the same approval run; its page next."""
    bp, identifier, name = (ctx.request.path_params[k] for k in ("bp", "identifier", "sc"))
    ctx.charge("writes")
    sc = scorecards.get_scorecard(ctx.db, bp, name)
    try:
        until = datetime.combine(date.fromisoformat(ctx.field("until")), datetime.min.time(), UTC)
    except ValueError as exc:
        raise Invalid(
            "invalid exemption", [FieldError("/expires_at", "must be a date (YYYY-MM-DD)")]
        ) from exc
    body = ExemptionIn(
        entity=identifier,
        rule=ctx.field("rule"),
        reason=ctx.field("reason").strip()[:2000] or "-",
        expires_at=until + timedelta(days=1),
    )
    service = ExemptionService(ctx.db, ctx.request.app.state.temporal, ctx.settings)
    exemption = service.request(sc, body, ctx.user, ctx.who)
    return see_other(f"/runs/{exemption.run_id}")


@page("/catalog/{bp}/{identifier:path}/exemptions/{exemption_id}/revoke", ("POST",))
def revoke_exemption(ctx: Page) -> Response:
    bp, identifier, exemption_id = (ctx.request.path_params[k] for k in ("bp", "identifier", "exemption_id"))
    ctx.charge("writes")
    found = ctx.db.get(ScorecardExemption, exemption_id)
    if found is None or (found.blueprint, found.entity) != (bp, identifier):
        raise NotFound(f"exemption '{exemption_id}' not found")
    exemption = exemptions.get(
        ctx.db, scorecards.get_scorecard(ctx.db, bp, found.scorecard), exemption_id, ctx.who
    )
    if not exemptions.may_revoke(ctx.db, exemption, ctx.who):
        raise Forbidden("only the requester, the blueprint's moderators and admins may revoke an exemption")
    ExemptionService(ctx.db, ctx.request.app.state.temporal, ctx.settings).revoke(
        exemption, ctx.user, Actor(ctx.who.identifier)
    )
    return see_other(f"/catalog/{bp}/{identifier}#h-sc")


def _may_ask_exemption(bp: Blueprint, entity: Entity, who: Principal) -> bool:
    """The request's own rule: a person who may write and owns the entity or moderates its
    blueprint (the request checks again)."""
    return (
        not who.is_service
        and who.may_write
        and (is_moderator(bp, who) or bool(who.teams & set(entity.team or [])))
    )


@page("/catalog/{bp}/{identifier:path}")
def entity_page(ctx: Page) -> Response:
    bp = get_blueprint(ctx.db, ctx.request.path_params["bp"])
    entity = get_entity(ctx.db, bp.identifier, ctx.request.path_params["identifier"], ctx.who)
    schema = bp.schema.get("properties", {})
    names = _names(ctx, [entity], schema, list(schema))
    cards = scorecards.for_entities(ctx.db, [entity.id]).get(entity.id, {})
    for card in cards.values():
        card["rules"].sort(key=lambda r: (r["status"] != "FAILURE", r["identifier"]))
    timers = list(
        ctx.db.scalars(
            sa.select(Timer).where(Timer.blueprint == bp.identifier, Timer.entity == entity.identifier)
        )
    )
    recent = runs.list_runs(ctx.db, entity=entity.identifier, who=ctx.who, limit=10).items
    recent = [r for r in recent if r.blueprint == bp.identifier]
    actions = [
        a
        for a in action_defs.list_actions(ctx.db, blueprint=bp.identifier, who=ctx.who)
        if a.definition["trigger"]["operation"] != "CREATE" and _may_execute(ctx, a, entity.identifier)
    ]
    audit_rows = (
        audit.list_records(ctx.db, blueprint=bp.identifier, identifier=entity.identifier, limit=20).items
        if ctx.who.is_admin
        else []
    )
    pending = {
        (e.scorecard, e.rule): e
        for e in ctx.db.scalars(
            sa.select(ScorecardExemption).where(
                ScorecardExemption.entity_id == entity.id, ScorecardExemption.status == PENDING
            )
        )
    }
    revocable = {
        e.id
        for e in ctx.db.scalars(
            sa.select(ScorecardExemption).where(ScorecardExemption.entity_id == entity.id)
        )
        if e.status in ("PENDING", "APPROVED") and exemptions.may_revoke(ctx.db, e, ctx.who)
    }
    return ctx.render(
        "entity.html",
        pending=pending,
        revocable=revocable,
        may_ask_exemption=_may_ask_exemption(bp, entity, ctx.who),
        exemption_default=(utcnow() + timedelta(days=EXEMPTION_DAYS)).date().isoformat(),
        title=entity.title or entity.identifier,
        bp=bp,
        entity=entity,
        schema=schema,
        names=names,
        display=display,
        outgoing=_outgoing(bp, entity),
        incoming=_incoming(ctx, entity),
        cards=cards,
        timers=timers,
        may_extend={t.property for t in timers if _may_extend(ctx, bp, entity, t.property)},
        now=utcnow(),
        runs=recent,
        actions=actions,
        audit_rows=audit_rows,
    )


def _may_extend(ctx: Page, bp: Blueprint, entity: Entity, prop: str) -> bool:
    try:
        check_may_extend(ctx.db, ctx.who, bp.identifier, entity, prop)
    except Forbidden:
        return False
    return True


def _outgoing(bp: Blueprint, entity: Entity) -> list[tuple[str, str, str]]:
    """(relation, target blueprint, target identifier) for each edge the entity holds."""
    found = []
    for name, value in (entity.relations or {}).items():
        target = (bp.relations or {}).get(name, {}).get("target", "")
        for identifier in value if isinstance(value, list) else [value]:
            if identifier:
                found.append((name, target, str(identifier)))
    return found


def _incoming(ctx: Page, entity: Entity) -> list[tuple[str, str, str]]:
    """(relation, source blueprint, source identifier) of readable entities pointing here."""
    stmt = (
        sa.select(EntityRelation.relation, Entity.blueprint, Entity.identifier)
        .join(Entity, Entity.id == EntityRelation.source_id)
        .where(
            EntityRelation.target_blueprint == entity.blueprint,
            EntityRelation.target_identifier == entity.identifier,
        )
        .order_by(Entity.blueprint, Entity.identifier)
        .limit(200)
    )
    readable = readable_condition(ctx.db, ctx.who, ctx.db.get_bind().dialect.name)
    if readable is not None:
        stmt = stmt.where(readable)
    return [tuple(row) for row in ctx.db.execute(stmt).all()]  # type: ignore[misc]


def may_read_blueprint(bp: Blueprint, who: Principal) -> bool:
    return may(bp, who, "read", [])


ROUTES = [catalog_home, entity_table, extend, ask_exemption, revoke_exemption, entity_page]
