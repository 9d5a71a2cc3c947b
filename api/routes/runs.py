"""Runs: their state, logs, cancel and retry, and the worker's reports."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

import anyio.from_thread
from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from api.approvals import apply_decision
from api.deps import ActorDep, CurrentUser, PrincipalDep, ServiceUser, SessionDep, SettingsDep
from api.openapi import errors
from api.routes.actions import start_workflow
from api.schemas import (
    AnyRunView,
    ApprovalState,
    Converged,
    Cursor,
    Limit,
    LogLineView,
    Page,
    RunSecrets,
    RunView,
)
from catalog import audit, runs
from catalog.actions import moderates
from catalog.audit import Actor
from catalog.base import Strict
from catalog.db import utcnow
from catalog.errors import Conflict, Forbidden, NotFound
from catalog.identity import get_user
from catalog.models import Action, Run
from catalog.permissions import Principal
from catalog.runs import LogLine, RunReport

# A run's record is committed before its workflow starts: until this much later, a workflow
# Temporal does not know is still being started, not missing.
WORKFLOW_START_GRACE = timedelta(seconds=60)

router = APIRouter(tags=["runs"])


def _quiet_since(request: Request) -> Any:
    """Runs unchanged since then are checked against their workflow."""
    return utcnow() - timedelta(seconds=request.app.state.settings.run_converge_after)


def _view(request: Request, run: Run, visibility: runs.Visibility = "full") -> dict[str, Any]:
    settings = request.app.state.settings
    full = runs.run_view(run, ui_base=settings.temporal_ui_url, namespace=settings.temporal_namespace)
    return full if visibility == "full" else runs.summary_view(full)


def _visible(session: Any, run_id: str, who: Principal) -> tuple[Run, runs.Visibility]:
    """The run and how much of it the caller sees; 404 when they may not see it at all."""
    run = runs.get_run(session, run_id)
    visibility = runs.visibility(session, run, who)
    if visibility is None:
        raise NotFound(f"run '{run_id}' not found")
    return run, visibility


def _converge(request: Request, session: Any, run: Run, actor: Any) -> bool:
    """Bring a non-terminal run to its workflow's real end, if the workflow has ended. Temporal
    is asked outside any transaction (what the session did so far is committed first), so a slow
    answer holds no database connection; the run is read again before it is finished."""
    if run.status in runs.TERMINAL:
        return False
    session.commit()
    ended = anyio.from_thread.run(request.app.state.temporal.ended, run.workflow_id)
    if ended is None:
        return False
    if ended.missing:
        if run.created_at > utcnow() - WORKFLOW_START_GRACE:
            return False  # its launch may still be starting it
        ended = ended.never_started()
    session.refresh(run)  # its workflow may have reported meanwhile; finish() then does nothing
    runs.finish(session, run, ended.status, ended.label, ended.error, actor)
    return True


@router.get("/v1/runs", response_model=Page[AnyRunView])
def list_runs(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    who: PrincipalDep,
    action: str | None = None,
    entity: str | None = None,
    status: Literal[
        "WAITING_FOR_APPROVAL", "IN_PROGRESS", "SUCCESS", "FAILURE", "DECLINED", "CANCELLED", "TIMED_OUT"
    ]
    | None = None,
    source: Literal["API", "CLI", "UI", "AUTOMATION"] | None = None,
    created_by: str | None = None,
    approver: str | None = Query(None, description="`me`, or a user: runs they may approve"),
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Runs, newest first, filtered by action, entity, status, source, requester or approver
    (``?status=WAITING_FOR_APPROVAL&approver=me``: what waits for the caller). Only the runs the
    caller may see; of those on which they are not the requester, an owner, an approver or a
    moderator, the summary (``visibility: summary``)."""
    page = runs.list_runs(
        session,
        action=action,
        entity=entity,
        status=status,
        source=source,
        created_by=created_by,
        approver=user.identifier if approver == "me" else approver,
        who=who,
        limit=limit,
        cursor=cursor,
    )
    items = [_view(request, r, runs.visibility(session, r, who) or "summary") for r in page.items]
    return {"items": items, "next_cursor": page.next_cursor}


@router.get("/v1/runs/{run_id}", response_model=AnyRunView)
def get_run(
    run_id: str, request: Request, session: SessionDep, who: PrincipalDep, actor: ActorDep
) -> dict[str, Any]:
    """One run: the full record, or its summary for those who may only see the action; 404 for
    those who may not see it. A run that has not moved for a while is checked against its
    workflow, so a workflow terminated from Temporal UI never leaves its run IN_PROGRESS."""
    run, visibility = _visible(session, run_id, who)
    if run.status not in runs.TERMINAL and run.updated_at <= _quiet_since(request):
        try:
            if _converge(request, session, run, actor):
                session.commit()
        except Exception:
            session.rollback()
    return _view(request, run, visibility)


@router.get(
    "/v1/runs/{run_id}/logs",
    response_model=Page[LogLineView],
    operation_id="list_run_logs",
    responses=errors(403),
)
def run_logs(
    run_id: str,
    session: SessionDep,
    who: PrincipalDep,
    after: int | None = None,
    limit: Limit = 1000,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """The run's log lines in order, paginated with ``cursor``; ``after`` (the last ``id`` seen)
    to follow a running run. 403 for those who see only the run's summary."""
    _run, visibility = _visible(session, run_id, who)
    if visibility != "full":
        raise Forbidden(
            "you see only this run's summary: its logs are for the requester, the entity's owners, its approvers and moderators"
        )
    page = runs.log_page(session, run_id, after=after, limit=limit, cursor=cursor)
    return {"items": [runs.log_view(line) for line in page.items], "next_cursor": page.next_cursor}


@router.post("/v1/runs/{run_id}/cancel", status_code=202, response_model=RunView, responses=errors(409))
def cancel_run(
    run_id: str, request: Request, session: SessionDep, user: CurrentUser, who: PrincipalDep, actor: ActorDep
) -> dict[str, Any]:
    """Cancel a run (its requester, the blueprint's moderators, admins): its running step is
    cancelled and completed steps are compensated."""
    run, _visibility = _visible(session, run_id, who)
    if not _may_manage(session, run, who):
        raise Forbidden("only the requester, the blueprint's moderators or an admin can cancel a run")
    if run.status in runs.TERMINAL:
        raise Conflict(f"run '{run_id}' has already ended ({run.status})")
    anyio.from_thread.run(request.app.state.temporal.cancel, run.workflow_id)
    audit.record(
        session, actor, "CANCEL", "run", run_id, blueprint=run.blueprint, before={"status": run.status}
    )
    runs.append_logs(
        session,
        run_id,
        [
            LogLine(
                level="WARNING",
                message=f"Cancellation requested by {user.identifier}",
            )
        ],
    )
    session.commit()
    return _view(request, run)


def _may_manage(session: Any, run: Run, who: Principal) -> bool:
    """Cancel and retry: the requester, the moderators of the run's blueprint, admins."""
    if who.is_admin or run.created_by == who.identifier:
        return True
    action = session.get(Action, run.action)
    return action is not None and moderates(session, action, who)


@router.post("/v1/runs/{run_id}/retry", status_code=202, response_model=RunView, responses=errors(409))
def retry_run(
    run_id: str,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    who: PrincipalDep,
    actor: ActorDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Resume a failed, cancelled, declined or timed-out run from its failed step, with the
    outputs of the steps before it (steps whose effect compensation undid run again). A retry is
    a new decision: the caller's execute permission, the entity, the trigger condition and the
    preconditions are checked again as at launch, and an approval that was not APPROVED is asked
    again (a declined run re-asks its approvers)."""
    run, _visibility = _visible(session, run_id, who)
    if not _may_manage(session, run, who):
        raise Forbidden("only the requester, the blueprint's moderators or an admin can retry a run")
    resume_at, earlier = runs.retry_plan(run)
    action = session.get(Action, run.action)
    if action is None:
        raise Conflict(f"action '{run.action}' no longer exists: the run cannot be retried")
    entity = runs.check_target(session, action, run.entity, who)
    workflow_input = runs.build_workflow_input(
        session,
        run,
        action.definition,
        entity=entity,
        caller=get_user(session, run.created_by),
        api_url=settings.api_url,
        ui_url=runs.temporal_ui_url(settings.temporal_ui_url, settings.temporal_namespace, run.workflow_id),
    )
    approved = runs.approved_gates(run, action.definition)
    workflow_input.update(
        resume_at=resume_at,
        previous_steps=earlier,
        log_base=runs.next_log_seq(session, run_id),
        approved_gates=approved,
    )
    before = run.status
    _reset_for_retry(run, resume_at, earlier, waits="action" in workflow_input["approvals"] and not approved)
    runs.add_approvers(session, run, workflow_input)
    runs.append_logs(
        session,
        run_id,
        [LogLine(message=f"Retry requested by {user.identifier}: resuming at step {resume_at}")],
    )
    audit.record(
        session,
        actor,
        "RETRY",
        "run",
        run_id,
        blueprint=run.blueprint,
        before={"status": before},
        after={"status": run.status, "resume_at": resume_at},
    )
    session.commit()
    view = _view(request, run)
    start_workflow(
        request,
        session,
        run,
        workflow_input,
        f"{run.action_title} · retry from {resume_at}",
        Actor(user.identifier, run.id),
    )
    return view


def _reset_for_retry(run: Run, resume_at: str, earlier: dict[str, Any], *, waits: bool) -> None:
    """The record as the retried workflow starts: waiting for approval when the action's gate is
    asked again, the steps from ``resume_at`` on PENDING again."""
    if waits:
        run.status, run.status_label, run.approval = "WAITING_FOR_APPROVAL", "Waiting for approval", None
    else:
        run.status, run.status_label = "IN_PROGRESS", f"Retrying from step {resume_at}"
    run.error, run.ended_at, run.updated_at = None, None, utcnow()
    run.steps = [
        s if s["id"] in earlier else {**s, "status": "PENDING", "error": None, "outputs": {}}
        for s in run.steps
    ]


class ApprovalDecision(Strict):
    decision: Literal["APPROVE", "DECLINE"]
    comment: str = Field("", max_length=2000)


@router.post("/v1/runs/{run_id}/approval", response_model=ApprovalState, responses=errors(403, 409))
def decide_approval(
    run_id: str, request: Request, session: SessionDep, user: CurrentUser, body: ApprovalDecision = Body()
) -> dict[str, Any]:
    """Approve or decline the run's open approval. 403 when the caller may not decide it (not an
    eligible approver, or approving their own run), 409 when it is closed or they already decided."""
    return apply_decision(request.app, session, run_id, user, body.decision, body.comment, via="api")


# ---- for the worker ----------------------------------------------------------------------


@router.post("/v1/runs/{run_id}/report", response_model=RunView)
def report_run(
    run_id: str,
    request: Request,
    session: SessionDep,
    _: ServiceUser,
    actor: ActorDep,
    body: RunReport = Body(),
) -> dict[str, Any]:
    """The workflow's report of its run's state (service token only). Idempotent."""
    run = runs.get_run(session, run_id)
    runs.apply_report(session, run, body, actor)
    session.commit()
    return _view(request, run)


@router.get("/v1/runs/{run_id}/secrets", include_in_schema=False, response_model=RunSecrets)
def run_secrets(run_id: str, session: SessionDep, _: ServiceUser, settings: SettingsDep) -> dict[str, Any]:
    """The run's secret inputs in clear, for the activity that needs them (service token only)."""
    run = runs.get_run(session, run_id)
    if run.ended_at is not None:
        raise Forbidden("a run's secrets are readable only while it is active")
    return {"secrets": runs.sealed_inputs(run, settings.secret("secret_key"))}


@router.post("/v1/runs/reconcile", response_model=Converged)
def reconcile_runs(request: Request, session: SessionDep, _: ServiceUser, actor: ActorDep) -> JSONResponse:
    """Converge every quiet, unfinished run on its workflow's real end (run by the worker's
    schedule; safe to call any time)."""
    converged = []
    for run in runs.active_runs(session, older_than=_quiet_since(request)):
        if _converge(request, session, run, actor):
            converged.append(run.id)
    session.commit()
    return JSONResponse({"converged": converged})
