"""Runs: the list, a run's page with its live log, cancel, retry, and the approvals inbox (runs
and exemption requests waiting for the signed-in person's decision)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from starlette.responses import JSONResponse, Response

from api.approvals import apply_decision
from api.services.runs import RunService
from api.web.core import Page, page, see_other, url_with
from catalog.audit import Actor
from catalog.errors import Conflict, Forbidden
from catalog.exemptions.decisions import EXEMPTION_ACTION
from catalog.models import RunApprover, Scorecard, ScorecardExemption
from catalog.runs import service as runs

STATUSES = sorted(runs.STATUSES)


def _service(ctx: Page) -> RunService:
    return RunService(ctx.db, ctx.request.app.state.temporal, ctx.settings)


@page("/runs")
def run_list(ctx: Page) -> Response:
    status = ctx.param("status") or None
    if status not in (None, *STATUSES):
        status = None
    mine = ctx.param("mine") == "1"
    found = runs.list_runs(
        ctx.db,
        action=ctx.param("action") or None,
        entity=ctx.param("entity") or None,
        status=status,
        created_by=ctx.who.identifier if mine else None,
        who=ctx.who,
        limit=50,
        cursor=ctx.param("cursor") or None,
    )
    state = {
        "action": ctx.param("action"),
        "entity": ctx.param("entity"),
        "status": status,
        "mine": "1" if mine else "",
    }
    return ctx.render(
        "runs.html",
        title="Runs",
        items=found.items,
        state=state,
        statuses=STATUSES,
        next_url=url_with("/runs", cursor=found.next_cursor, **state) if found.next_cursor else None,
    )


@page("/runs/{run_id}")
def run_page(ctx: Page) -> Response:
    service = _service(ctx)
    run, visibility = service.find(ctx.request.path_params["run_id"], ctx.who)
    service.converge_if_quiet(run, Actor(ctx.who.identifier))
    view = runs.run_view(run, ui_base=ctx.settings.temporal_ui_url, namespace=ctx.settings.temporal_namespace)
    full = visibility == "full"
    lines = runs.log_page(ctx.db, run.id, after=None, limit=1000, cursor=None).items if full else []
    approval = view["approval"] if full else None
    return ctx.render(
        "run.html",
        title=f"Run {run.id}",
        run=run,
        view=view,
        full=full,
        lines=[runs.log_view(line) for line in lines],
        approval=approval,
        may_decide=full and _may_decide(ctx, run, approval),
        may_manage=ctx.who.may_write and runs.may_manage(ctx.db, run, ctx.who),
        ended=run.status in runs.TERMINAL,
    )


def _may_decide(ctx: Page, run: Any, approval: dict[str, Any] | None) -> bool:
    """Whether to offer Approve/Decline: an open approval the person is an eligible approver
    of and has not decided yet (the Update checks again whatever the page shows)."""
    if run.status != "WAITING_FOR_APPROVAL" or not approval or approval.get("status") != "PENDING":
        return False
    me = ctx.who.identifier
    if ctx.db.get(RunApprover, (run.id, me)) is None or me not in approval.get("eligible", [me]):
        return False
    decided = {d.get("user") for d in approval.get("approvals", []) + approval.get("declines", [])}
    return me not in decided


@page("/runs/{run_id}/log")
def run_log(ctx: Page) -> Response:
    """The log lines after ``after`` (the last ``seq`` seen) and the run's status, as JSON, for
    the run page's polling."""
    run, visibility = _service(ctx).find(ctx.request.path_params["run_id"], ctx.who)
    if visibility != "full":
        raise Forbidden("you see only this run's summary")
    try:
        after = int(ctx.param("after", "0"))
    except ValueError:
        after = 0
    lines = runs.log_page(ctx.db, run.id, after=after, limit=1000, cursor=None).items
    body = {
        "status": run.status,
        "status_label": run.status_label,
        "ended": run.status in runs.TERMINAL,
        "lines": [runs.log_view(line) for line in lines],
        "steps": [{"id": s.get("id"), "status": s.get("status")} for s in run.steps or []],
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


@page("/runs/{run_id}/cancel", ("POST",))
def cancel(ctx: Page) -> Response:
    ctx.charge("writes")
    run = _service(ctx).cancel(
        ctx.request.path_params["run_id"], ctx.user, ctx.who, Actor(ctx.who.identifier)
    )
    return see_other(f"/runs/{run.id}")


@page("/runs/{run_id}/retry", ("POST",))
def retry(ctx: Page) -> Response:
    if not ctx.who.may_write:
        raise Forbidden("viewers can read but not retry runs")
    ctx.charge("launches")
    run = _service(ctx).retry(ctx.request.path_params["run_id"], ctx.user, ctx.who, Actor(ctx.who.identifier))
    return see_other(f"/runs/{run.id}")


@page("/runs/{run_id}/approval", ("POST",))
def decide(ctx: Page) -> Response:
    run_id = ctx.request.path_params["run_id"]
    ctx.charge("writes")
    _service(ctx).find(run_id, ctx.who)  # 404 for a run the person may not see
    temporal = ctx.request.app.state.temporal
    try:
        apply_decision(
            temporal,
            ctx.db,
            run_id,
            ctx.user,
            ctx.field("decision"),
            ctx.field("comment")[:2000],
            via="ui",
        )
    except (Forbidden, Conflict) as refused:
        ctx.db.rollback()
        status = 403 if isinstance(refused, Forbidden) else 409
        return ctx.render("error.html", status=status, title="Decision refused", message=refused.message)
    back = ctx.field("back")
    return see_other("/approvals" if back == "inbox" else f"/runs/{run_id}")


@page("/approvals")
def inbox(ctx: Page) -> Response:
    found = runs.list_runs(
        ctx.db,
        status="WAITING_FOR_APPROVAL",
        approver=ctx.who.identifier,
        who=ctx.who,
        limit=100,
        cursor=ctx.param("cursor") or None,
    )
    waiting = [r for r in found.items if _may_decide(ctx, r, r.approval)]
    # Exemption requests are approval runs of the built-in exemption action: the same decision
    # (the run's approval Update), shown with what approving would excuse.
    requests = {
        e.run_id: e
        for e in ctx.db.scalars(
            sa.select(ScorecardExemption).where(
                ScorecardExemption.run_id.in_([r.id for r in waiting if r.action == EXEMPTION_ACTION])
            )
        )
    }
    return ctx.render(
        "approvals.html",
        title="Approvals",
        items=[r for r in waiting if r.action != EXEMPTION_ACTION],
        exemptions=[
            (r, requests[r.id], _rule_title(ctx, requests[r.id])) for r in waiting if r.id in requests
        ],
        next_url=url_with("/approvals", cursor=found.next_cursor) if found.next_cursor else None,
    )


def _rule_title(ctx: Page, exemption: ScorecardExemption) -> tuple[str, str]:
    """(the scorecard's title, the rule's title) of an exemption request."""
    sc = ctx.db.get(Scorecard, (exemption.blueprint, exemption.scorecard))
    if sc is None:
        return exemption.scorecard, exemption.rule
    rules = {r["identifier"]: r.get("title") or r["identifier"] for r in sc.definition.get("rules", [])}
    return sc.title or sc.identifier, rules.get(exemption.rule, exemption.rule)


ROUTES = [run_list, run_log, cancel, retry, decide, run_page, inbox]
