"""Runs: their state, logs, cancel and retry, and the worker's reports."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

import anyio.from_thread
from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.approvals import apply_decision
from api.deps import ActorDep, CurrentUser, ServiceUser, SessionDep, SettingsDep
from catalog import audit, runs
from catalog.actions import get_action
from catalog.db import utcnow
from catalog.entities import get_entity
from catalog.errors import Conflict, Forbidden
from catalog.identity import get_user
from catalog.models import Run
from catalog.runs import LogLine, RunReport

router = APIRouter(tags=["runs"])


def _quiet_since(request: Request) -> Any:
    """Runs unchanged since then are checked against their workflow."""
    return utcnow() - timedelta(seconds=request.app.state.settings.run_converge_after)


def _view(request: Request, run: Run) -> dict[str, Any]:
    settings = request.app.state.settings
    return runs.run_view(run, ui_base=settings.temporal_ui_url, namespace=settings.temporal_namespace)


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
    session.refresh(run)  # its workflow may have reported meanwhile; finish() then does nothing
    runs.finish(session, run, ended.status, ended.label, ended.error, actor)
    return True


@router.get("/v1/runs")
def list_runs(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    action: str | None = None,
    entity: str | None = None,
    status: Literal[
        "WAITING_FOR_APPROVAL", "IN_PROGRESS", "SUCCESS", "FAILURE", "DECLINED", "CANCELLED", "TIMED_OUT"
    ]
    | None = None,
    source: Literal["API", "CLI", "UI", "AUTOMATION"] | None = None,
    created_by: str | None = None,
    approver: str | None = Query(None, description="`me`, or a user: runs they may approve"),
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = None,
) -> dict[str, Any]:
    """Runs, newest first, filtered by action, entity, status, source, requester or approver
    (``?status=WAITING_FOR_APPROVAL&approver=me``: what waits for the caller)."""
    page = runs.list_runs(
        session,
        action=action,
        entity=entity,
        status=status,
        source=source,
        created_by=created_by,
        approver=user.identifier if approver == "me" else approver,
        limit=limit,
        cursor=cursor,
    )
    return {"items": [_view(request, r) for r in page.items], "next_cursor": page.next_cursor}


@router.get("/v1/runs/{run_id}")
def get_run(
    run_id: str, request: Request, session: SessionDep, _: CurrentUser, actor: ActorDep
) -> dict[str, Any]:
    """One run. A run that has not moved for a while is checked against its workflow, so a
    workflow terminated from Temporal UI never leaves its run IN_PROGRESS."""
    run = runs.get_run(session, run_id)
    if run.status not in runs.TERMINAL and run.updated_at <= _quiet_since(request):
        try:
            if _converge(request, session, run, actor):
                session.commit()
        except Exception:
            session.rollback()
    return _view(request, run)


@router.get("/v1/runs/{run_id}/logs")
def run_logs(
    run_id: str,
    session: SessionDep,
    _: CurrentUser,
    after: int | None = None,
    limit: int = Query(1000, ge=1, le=1000),
) -> dict[str, Any]:
    """The run's log lines in order; ``after`` (the last ``id`` seen) to follow a running run."""
    runs.get_run(session, run_id)
    lines = runs.list_logs(session, run_id, after=after, limit=limit)
    return {"items": [runs.log_view(line) for line in lines], "next_cursor": None}


@router.post("/v1/runs/{run_id}/cancel", status_code=202)
def cancel_run(
    run_id: str, request: Request, session: SessionDep, user: CurrentUser, actor: ActorDep
) -> dict[str, Any]:
    """Cancel a run: its running step is cancelled and completed steps are compensated."""
    run = runs.get_run(session, run_id)
    if user.role != "admin" and run.created_by != user.identifier:
        raise Forbidden("only the requester or an admin can cancel a run")
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


@router.post("/v1/runs/{run_id}/retry", status_code=202)
def retry_run(
    run_id: str,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    actor: ActorDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Resume a failed, cancelled or timed-out run from its failed step, with the outputs of the
    steps before it (steps whose effect compensation undid run again)."""
    run = runs.get_run(session, run_id)
    if user.role != "admin" and run.created_by != user.identifier:
        raise Forbidden("only the requester or an admin can retry a run")
    resume_at, earlier = runs.retry_plan(run)
    action = get_action(session, run.action)
    requester = get_user(session, run.created_by)
    entity = get_entity(session, run.blueprint, run.entity) if run.entity and run.blueprint else None
    workflow_input = runs.build_workflow_input(
        session,
        run,
        action.definition,
        entity=entity,
        caller=requester,
        api_url=settings.api_url,
        ui_url=runs.temporal_ui_url(settings.temporal_ui_url, settings.temporal_namespace, run.workflow_id),
    )
    workflow_input.update(
        resume_at=resume_at, previous_steps=earlier, log_base=runs.next_log_seq(session, run_id)
    )
    before = run.status
    run.status, run.status_label, run.error, run.ended_at, run.updated_at = (
        "IN_PROGRESS",
        f"Retrying from step {resume_at}",
        None,
        None,
        utcnow(),
    )
    run.steps = [
        s if s["id"] in earlier else {**s, "status": "PENDING", "error": None, "outputs": {}}
        for s in run.steps
    ]
    runs.append_logs(
        session,
        run_id,
        [
            LogLine(
                message=f"Retry requested by {user.identifier}: resuming at step {resume_at}",
            )
        ],
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
    anyio.from_thread.run(
        lambda: request.app.state.temporal.start_action_run(
            workflow_input,
            workflow_id=run.workflow_id,
            action=run.action,
            blueprint=run.blueprint,
            entity=run.entity,
            requested_by=run.created_by,
            summary=f"{run.action_title} · retry from {resume_at}",
        )
    )
    session.commit()
    return _view(request, run)


class ApprovalDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["APPROVE", "DECLINE"]
    comment: str = Field("", max_length=2000)


@router.post("/v1/runs/{run_id}/approval")
def decide_approval(
    run_id: str, request: Request, session: SessionDep, user: CurrentUser, body: ApprovalDecision = Body()
) -> dict[str, Any]:
    """Approve or decline the run's open approval. 403 when the caller may not decide it (not an
    eligible approver, or approving their own run), 409 when it is closed or they already decided."""
    return apply_decision(request.app, session, run_id, user, body.decision, body.comment, via="api")


# ---- for the worker ----------------------------------------------------------------------


@router.post("/v1/runs/{run_id}/report", include_in_schema=True)
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


@router.get("/v1/runs/{run_id}/secrets", include_in_schema=False)
def run_secrets(run_id: str, session: SessionDep, _: ServiceUser, settings: SettingsDep) -> dict[str, Any]:
    """The run's secret inputs in clear, for the activity that needs them (service token only)."""
    run = runs.get_run(session, run_id)
    if run.ended_at is not None:
        raise Forbidden("a run's secrets are readable only while it is active")
    return {"secrets": runs.sealed_inputs(run, settings.secret("secret_key"))}


@router.post("/v1/runs/reconcile")
def reconcile_runs(request: Request, session: SessionDep, _: ServiceUser, actor: ActorDep) -> JSONResponse:
    """Converge every quiet, unfinished run on its workflow's real end (run by the worker's
    schedule; safe to call any time)."""
    converged = []
    for run in runs.active_runs(session, older_than=_quiet_since(request)):
        if _converge(request, session, run, actor):
            converged.append(run.id)
    session.commit()
    return JSONResponse({"converged": converged})
