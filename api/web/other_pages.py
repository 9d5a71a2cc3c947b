"""Scorecards (distribution, pass rates, trend, failing entities), initiatives (progress per
team, burn-down, failing entities), data sources and timers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from starlette.responses import Response

from api.web import charts
from api.web.core import Page, page, url_with
from catalog.blueprints.service import get_blueprint, list_blueprints
from catalog.db import utcnow
from catalog.entities.search import readable_condition
from catalog.initiatives import progress as initiative_progress
from catalog.initiatives import service as initiatives
from catalog.models import Blueprint, Entity, Initiative, Scorecard, ScorecardResult, Team, Timer
from catalog.scorecards import service as scorecards
from catalog.scorecards import trend as trends
from catalog.sources import definitions, syncs
from catalog.timers import service as timers

SOON = timedelta(days=7)
MAX_FAILING = 200  # entities a scorecard page lists as failing a rule


@page("/scorecards")
def scorecard_list(ctx: Page) -> Response:
    found = []
    for bp in list_blueprints(ctx.db):
        # Every scorecard definition is readable, as in the API; its numbers cover only the
        # entities the person may read.
        found += [(bp, sc) for sc in scorecards.list_scorecards(ctx.db, bp.identifier)]
    shown = {(bp.identifier, sc.identifier) for bp, sc in found}
    return ctx.render(
        "scorecards.html", title="Scorecards", items=found, initiatives=_initiatives(ctx, shown)
    )


def _readable(ctx: Page) -> initiative_progress.Readable:
    dialect = ctx.db.get_bind().dialect.name
    return lambda bp: readable_condition(ctx.db, ctx.who, dialect, [bp])


def _initiatives(ctx: Page, scorecards_shown: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """The initiatives with a target on one of the scorecards shown, soonest deadline first,
    each with its progress over the entities the person may read (counts only: no burn-down,
    one failing entity at most)."""
    found = []
    for initiative in initiatives.list_all(ctx.db):
        targets = initiative.definition.get("targets", [])
        if not any((t["blueprint"], t["scorecard"]) in scorecards_shown for t in targets):
            continue
        counts = initiative_progress.progress(
            ctx.db, initiative, _readable(ctx), now=utcnow(), limit=1, with_points=False
        )
        found.append(_summary(initiative, counts))
    return sorted(found, key=lambda i: (i["deadline"], i["identifier"]))


def _summary(initiative: Initiative, counts: dict[str, Any]) -> dict[str, Any]:
    total, passing = counts["total"], counts["passing"]
    return {
        "identifier": initiative.identifier,
        "title": initiative.definition.get("title") or initiative.identifier,
        "deadline": initiative.deadline,
        "targets": initiative.definition.get("targets", []),
        "total": total,
        "passing": passing,
        "percent": round(100 * passing / total) if total else 0,
    }


@page("/initiatives/{identifier}")
def initiative_page(ctx: Page) -> Response:
    """An initiative: its targets and deadline, progress overall and per owning team, the
    burn-down, and the failing entities with the rules they fail (a page of 50, cursor paged)."""
    initiative = initiatives.get(ctx.db, ctx.request.path_params["identifier"])
    now = utcnow()
    found = initiative_progress.progress(
        ctx.db, initiative, _readable(ctx), now=now, limit=50, cursor=ctx.param("cursor") or None
    )
    team_names = {t.identifier: t.title or t.identifier for t in ctx.db.scalars(sa.select(Team))}
    teams = [
        {
            **t,
            "name": team_names.get(t["team"], t["team"]) if t["team"] else "No owning team",
            "percent": round(100 * t["passing"] / t["total"]) if t["total"] else 0,
        }
        for t in found["teams"]
    ]
    title = initiative.definition.get("title") or initiative.identifier
    return ctx.render(
        "initiative.html",
        title=title,
        initiative=initiative,
        definition=initiative.definition,
        summary=_summary(initiative, found),
        teams=teams,
        mine={t["team"] for t in found["teams"] if t["team"] in ctx.who.teams},
        failing=found["failing"],
        report=_report(ctx, initiative),
        left=initiative.deadline - now,
        chart=charts.burn_down(found["points"], label=f"{title}: entities meeting every target over time"),
        next_url=url_with(f"/initiatives/{initiative.identifier}", cursor=found["next_cursor"])
        if found["next_cursor"]
        else None,
        blueprints={b.identifier: b.title or b.identifier for b in ctx.db.scalars(sa.select(Blueprint))},
    )


def _report(ctx: Page, initiative: Initiative) -> dict[str, Any] | None:
    """The final report's counts (stored at the deadline); its failing list is the progress's."""
    report = initiative.report
    if report is None:
        return None
    return {"total": report.get("total"), "passing": report.get("passing"), "at": initiative.reported_at}


@page("/scorecards/{bp}/{sc}")
def scorecard_page(ctx: Page) -> Response:
    bp = get_blueprint(ctx.db, ctx.request.path_params["bp"])
    sc = scorecards.get_scorecard(ctx.db, bp.identifier, ctx.request.path_params["sc"])
    readable = readable_condition(ctx.db, ctx.who, ctx.db.get_bind().dialect.name)
    # The distribution and pass rates cover every readable entity (no page of entities: not shown).
    result = scorecards.summary(ctx.db, sc, readable=readable)
    rule = ctx.param("rule")
    failing = _failing(ctx, sc, rule, readable) if rule else []
    shown = _initiatives(ctx, {(bp.identifier, sc.identifier)})
    now = utcnow()
    grid = trends.trend_grid(None, None, "day", now.date())
    # Given the time, a trend over every entity is read from the daily summary of the level
    # history (a row per day and level) instead of the whole history. The summary is brought up
    # to the minute (the chart is the same: what the summary lacks is read from the history), so
    # at most one view a minute writes it and commits; the others only read.
    trend = trends.trend(ctx.db, sc, grid, readable=readable, now=now.replace(second=0, microsecond=0))
    ctx.db.commit()
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
        max_failing=MAX_FAILING,
        initiatives=shown,
    )


def _failing(ctx: Page, sc: Scorecard, rule: str, readable: Any) -> list[str]:
    """The readable entities failing ``rule`` (not exempt from it), in identifier order: the
    first :data:`MAX_FAILING` of them and one more (so the page can say there are more), chosen
    and limited in SQL. The entities are the scorecard's blueprint's: said so, SQLite walks its
    (blueprint, identifier) index in order and stops at the limit instead of sorting them all."""
    dialect = ctx.db.get_bind().dialect.name
    stmt = (
        sa.select(Entity.identifier)
        .select_from(ScorecardResult)
        .join(Entity, Entity.id == ScorecardResult.entity_id)
        .where(ScorecardResult.blueprint == sc.blueprint, ScorecardResult.scorecard == sc.identifier)
        .where(Entity.blueprint == sc.blueprint)
        .where(sa.not_(scorecards.rule_passed(dialect, rule)), sa.not_(scorecards.rule_exempt(dialect, rule)))
        .where(readable if readable is not None else sa.true())
        .order_by(Entity.identifier)
        .limit(MAX_FAILING + 1)
    )
    return list(ctx.db.scalars(stmt))


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


ROUTES = [scorecard_list, scorecard_page, initiative_page, data_sources, timer_list]
