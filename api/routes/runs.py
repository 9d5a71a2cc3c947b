"""Runs: their state, logs, cancel and retry, and the worker's reports. Operations that reach
the workflow go through :mod:`api.services.runs`."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse
from pydantic import Field

from api.approvals import apply_decision
from api.deps import ActorDep, CurrentUser, PrincipalDep, ServiceUser, SessionDep, SettingsDep, TemporalDep
from api.openapi import errors
from api.schemas import (
    AnyRunView,
    ApprovalState,
    ChildRunPrepared,
    Converged,
    Cursor,
    Limit,
    LogLineView,
    Page,
    RunSecrets,
    RunView,
)
from api.services.exemptions import ExemptionServiceDep
from api.services.runs import RunServiceDep
from catalog.base import Strict
from catalog.errors import Forbidden
from catalog.models import Run
from catalog.runs import service as runs
from catalog.runs.service import RunReport
from config import Settings
from contracts.sub_actions import ChildRunRequest

router = APIRouter(tags=["runs"])


def present(settings: Settings, run: Run, visibility: runs.Visibility = "full") -> dict[str, Any]:
    """A run as the API shows it: the full record, or its summary."""
    full = runs.run_view(run, ui_base=settings.temporal_ui_url, namespace=settings.temporal_namespace)
    return full if visibility == "full" else runs.summary_view(full)


@router.get("/v1/runs", response_model=Page[AnyRunView])
def list_runs(
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    who: PrincipalDep,
    action: str | None = None,
    entity: str | None = None,
    status: Literal[
        "WAITING_FOR_APPROVAL", "IN_PROGRESS", "SUCCESS", "FAILURE", "DECLINED", "CANCELLED", "TIMED_OUT"
    ]
    | None = None,
    source: Literal["API", "CLI", "UI", "AUTOMATION", "ACTION"] | None = None,
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
    items = [present(settings, r, runs.visibility(session, r, who) or "summary") for r in page.items]
    return {"items": items, "next_cursor": page.next_cursor}


@router.get("/v1/runs/{run_id}", response_model=AnyRunView)
def get_run(
    run_id: str, service: RunServiceDep, settings: SettingsDep, who: PrincipalDep, actor: ActorDep
) -> dict[str, Any]:
    """One run: the full record, or its summary for those who may only see the action; 404 for
    those who may not see it. A run that has not moved for a while is checked against its
    workflow, so a workflow terminated from Temporal UI never leaves its run IN_PROGRESS."""
    run, visibility = service.find(run_id, who)
    service.converge_if_quiet(run, actor)
    return present(settings, run, visibility)


@router.get(
    "/v1/runs/{run_id}/logs",
    response_model=Page[LogLineView],
    operation_id="list_run_logs",
    responses=errors(403),
)
def run_logs(
    run_id: str,
    session: SessionDep,
    service: RunServiceDep,
    who: PrincipalDep,
    after: int | None = None,
    limit: Limit = 1000,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """The run's log lines in order, paginated with ``cursor``; ``after`` (the last ``id`` seen)
    to follow a running run. 403 for those who see only the run's summary."""
    _run, visibility = service.find(run_id, who)
    if visibility != "full":
        raise Forbidden(
            "you see only this run's summary: its logs are for the requester, the entity's owners, its approvers and moderators"
        )
    page = runs.log_page(session, run_id, after=after, limit=limit, cursor=cursor)
    return {"items": [runs.log_view(line) for line in page.items], "next_cursor": page.next_cursor}


@router.post("/v1/runs/{run_id}/cancel", status_code=202, response_model=RunView, responses=errors(409))
def cancel_run(
    run_id: str,
    service: RunServiceDep,
    settings: SettingsDep,
    user: CurrentUser,
    who: PrincipalDep,
    actor: ActorDep,
) -> dict[str, Any]:
    """Cancel a run (its requester, the blueprint's moderators, admins): its running step is
    cancelled and completed steps are compensated."""
    return present(settings, service.cancel(run_id, user, who, actor))


@router.post("/v1/runs/{run_id}/retry", status_code=202, response_model=RunView, responses=errors(409))
def retry_run(
    run_id: str,
    service: RunServiceDep,
    settings: SettingsDep,
    user: CurrentUser,
    who: PrincipalDep,
    actor: ActorDep,
) -> dict[str, Any]:
    """Resume a failed, cancelled, declined or timed-out run from its failed step, with the
    outputs of the steps before it (steps whose effect compensation undid run again). A retry is
    a new decision: the caller's execute permission, the entity, the trigger condition and the
    preconditions are checked again as at launch, and an approval that was not APPROVED is asked
    again (a declined run re-asks its approvers)."""
    return present(settings, service.retry(run_id, user, who, actor))


class ApprovalDecision(Strict):
    decision: Literal["APPROVE", "DECLINE"]
    comment: str = Field("", max_length=2000)


@router.post("/v1/runs/{run_id}/approval", response_model=ApprovalState, responses=errors(403, 409))
def decide_approval(
    run_id: str,
    session: SessionDep,
    temporal: TemporalDep,
    user: CurrentUser,
    body: ApprovalDecision = Body(),
) -> dict[str, Any]:
    """Approve or decline the run's open approval. 403 when the caller may not decide it (not an
    eligible approver, or approving their own run), 409 when it is closed or they already decided."""
    return apply_decision(temporal, session, run_id, user, body.decision, body.comment, via="api")


# ---- for the worker ----------------------------------------------------------------------


@router.post("/v1/runs/{run_id}/report", response_model=RunView)
def report_run(
    run_id: str,
    session: SessionDep,
    settings: SettingsDep,
    _: ServiceUser,
    actor: ActorDep,
    exemptions: ExemptionServiceDep,
    body: RunReport = Body(),
) -> dict[str, Any]:
    """The workflow's report of its run's state (service token only). Idempotent."""
    run = runs.get_run(session, run_id)
    ended = run.status not in runs.TERMINAL and body.status in runs.TERMINAL
    runs.apply_report(session, run, body, actor)
    session.commit()
    if ended:
        exemptions.run_ended(run)
    return present(settings, run)


class ChildRunBody(Strict):
    """A sub-action step's child run (see ``contracts.sub_actions.ChildRunRequest``)."""

    step_id: str = Field(min_length=1, max_length=100)
    action: str = Field(min_length=1, max_length=100)
    entity: str | None = Field(None, max_length=256)
    inputs: dict[str, Any] = Field(default_factory=dict)
    execution: str = Field("", max_length=100)
    secret_marker: str = Field("", max_length=100)


@router.post(
    "/v1/runs/{run_id}/children",
    status_code=201,
    response_model=ChildRunPrepared,
    responses={
        200: {
            "model": ChildRunPrepared,
            "description": "The child this step of this execution recorded before.",
        },
        **errors(403, 404, 409),
    },
)
def prepare_child_run(
    run_id: str, service: RunServiceDep, _: ServiceUser, body: ChildRunBody = Body()
) -> JSONResponse:
    """Record the run a sub-action step (``uses: action``) of run ``run_id`` launches, without
    starting it (service token only): the launch is checked as the parent's requester's
    (execute permission, entity, trigger condition, preconditions, inputs; 403, 404, 409, 422),
    the child's record names its parent, and the answer carries the workflow input the parent's
    workflow starts as its child workflow. The same step of the same execution answers the same
    child (200)."""
    request = ChildRunRequest(parent_run_id=run_id, **body.model_dump())
    child, created = service.prepare_child(run_id, request)
    return JSONResponse(dataclasses.asdict(child), status_code=201 if created else 200)


@router.get("/v1/runs/{run_id}/secrets", include_in_schema=False, response_model=RunSecrets)
def run_secrets(run_id: str, session: SessionDep, _: ServiceUser, settings: SettingsDep) -> dict[str, Any]:
    """The run's secret inputs in clear, for the activity that needs them (service token only)."""
    run = runs.get_run(session, run_id)
    if run.ended_at is not None:
        raise Forbidden("a run's secrets are readable only while it is active")
    return {"secrets": runs.sealed_inputs(run, settings.secret("secret_key"))}


@router.post("/v1/runs/reconcile", response_model=Converged)
def reconcile_runs(service: RunServiceDep, _: ServiceUser, actor: ActorDep) -> JSONResponse:
    """Converge every quiet, unfinished run on its workflow's real end (run by the worker's
    schedule; safe to call any time)."""
    return JSONResponse({"converged": service.reconcile(actor)})
