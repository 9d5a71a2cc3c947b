"""The catalog: blueprints, a blueprint's entity table, an entity's page, a timer's extension."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from starlette.responses import Response

from api.timers import check_may_extend, extend_timer
from api.web.core import Page, page, see_other, url_with
from catalog import audit
from catalog.blueprints.service import get_blueprint, list_blueprints
from catalog.db import utcnow
from catalog.entities.search import readable_condition, search_entities
from catalog.entities.service import get_entity
from catalog.errors import CatalogError, FieldError, Forbidden, Invalid
from catalog.identity.permissions import Principal, may
from catalog.models import Blueprint, Entity, EntityRelation, Team, Timer, User
from catalog.runs import actions as action_defs
from catalog.runs import service as runs
from catalog.scorecards import service as scorecards

PAGE_SIZE = 50
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
        names=_names(ctx, items),
    )


def _may_execute(ctx: Page, action: Any, entity: str | None) -> bool:
    if not ctx.who.may_write:
        return False
    try:
        runs.check_target(ctx.db, action, entity, ctx.who)
    except CatalogError:
        return False
    return True


def _names(ctx: Page, entities: list[Entity]) -> dict[str, str]:
    """Display names of the users and teams the page mentions (``format: user``/``team``)."""
    users = {u.identifier: u.name or u.identifier for u in ctx.db.scalars(sa.select(User))}
    users |= {u.email: u.name or u.identifier for u in ctx.db.scalars(sa.select(User))}
    teams = {t.identifier: t.title or t.identifier for t in ctx.db.scalars(sa.select(Team))}
    return {f"user:{k}": v for k, v in users.items()} | {f"team:{k}": v for k, v in teams.items()}


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


@page("/catalog/{bp}/{identifier:path}")
def entity_page(ctx: Page) -> Response:
    bp = get_blueprint(ctx.db, ctx.request.path_params["bp"])
    entity = get_entity(ctx.db, bp.identifier, ctx.request.path_params["identifier"], ctx.who)
    schema = bp.schema.get("properties", {})
    names = _names(ctx, [entity])
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
    return ctx.render(
        "entity.html",
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


ROUTES = [catalog_home, entity_table, extend, entity_page]
