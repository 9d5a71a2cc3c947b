"""Scorecards (distribution, pass rates, trend, failing entities), data sources and timers."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from starlette.responses import Response

from api.web import charts
from api.web.core import Page, page
from catalog.blueprints.service import get_blueprint, list_blueprints
from catalog.db import utcnow
from catalog.entities.search import readable_condition
from catalog.models import Entity, Timer
from catalog.scorecards import service as scorecards
from catalog.scorecards import trend as trends
from catalog.sources import definitions, syncs
from catalog.timers import service as timers

SOON = timedelta(days=7)


@page("/scorecards")
def scorecard_list(ctx: Page) -> Response:
    found = []
    for bp in list_blueprints(ctx.db):
        # Every scorecard definition is readable, as in the API; its numbers cover only the
        # entities the person may read.
        found += [(bp, sc) for sc in scorecards.list_scorecards(ctx.db, bp.identifier)]
    return ctx.render("scorecards.html", title="Scorecards", items=found)


@page("/scorecards/{bp}/{sc}")
def scorecard_page(ctx: Page) -> Response:
    bp = get_blueprint(ctx.db, ctx.request.path_params["bp"])
    sc = scorecards.get_scorecard(ctx.db, bp.identifier, ctx.request.path_params["sc"])
    readable = readable_condition(ctx.db, ctx.who, ctx.db.get_bind().dialect.name)
    result = scorecards.results(ctx.db, sc, limit=1000, readable=readable)
    rule = ctx.param("rule")
    failing = [
        i["entity"] for i in result["items"] if rule and not i["rules"].get(rule) and rule not in i["exempt"]
    ]
    grid = trends.trend_grid(None, None, "day", utcnow().date())
    trend = trends.trend(ctx.db, sc, grid, readable=readable)
    title = sc.definition.get("title") or sc.identifier
    return ctx.render(
        "scorecard.html",
        title=title,
        bp=bp,
        sc=sc,
        result=result,
        chart=charts.bars(result["distribution"], label=f"{title}: entities per level"),
        trend_chart=charts.stacked_trend(
            trend["points"], trend["levels"], label=f"{title}: levels over 30 days"
        ),
        levels=trend["levels"],
        rule=rule,
        failing=failing,
    )


@page("/data-sources")
def data_sources(ctx: Page) -> Response:
    rows = []
    for source in definitions.list_readable(ctx.db, ctx.who):
        recent = syncs.list_syncs(ctx.db, source.identifier, limit=5, cursor=None).items
        rows.append((source, [syncs.sync_view(s) for s in recent]))
    return ctx.render("data_sources.html", title="Data sources", rows=rows)


@page("/timers")
def timer_list(ctx: Page) -> Response:
    soon = timers.list_timers(
        ctx.db, state="active", expires_before=utcnow() + SOON, limit=200, cursor=None, who=ctx.who
    ).items
    owned = _owned(ctx, soon)
    ordered = sorted(soon, key=lambda t: (t.id not in owned, t.deadline or utcnow()))
    return ctx.render("timers.html", title="Timers", items=ordered, owned=owned, now=utcnow())


def _owned(ctx: Page, found: list[Timer]) -> set[str]:
    """The timers on entities of the person's teams (shown first)."""
    if not found or not ctx.who.teams:
        return set()
    keys = {(t.blueprint, t.entity): t.id for t in found}
    rows = ctx.db.execute(
        sa.select(Entity.blueprint, Entity.identifier, Entity.team).where(
            sa.tuple_(Entity.blueprint, Entity.identifier).in_(list(keys))
        )
    ).all()
    return {keys[(b, i)] for b, i, team in rows if ctx.who.teams & set(team or [])}


ROUTES = [scorecard_list, scorecard_page, data_sources, timer_list]
