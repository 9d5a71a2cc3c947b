"""Sub-actions' activities: the catalog records a child run, and reads a finished one's outputs.

``gantry.prepare_child_run`` asks ``POST /v1/runs/{parent}/children`` (service token) for the
child's run record and workflow input; the catalog checks the launch as the parent's requester,
and a refusal (403, 404, 409, 422) is the step's failure, never retried, with the catalog's own
message. ``gantry.child_run_outputs`` reads the child's record once it has ended.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.catalog import GantryApi
from activities.errors import BENIGN, vendor_error
from activities.urls import path
from config import Settings
from contracts.sub_actions import (
    CHILD_RUN_OUTPUTS_ACTIVITY,
    CHILD_RUN_REFUSED,
    PREPARE_CHILD_RUN_ACTIVITY,
    ChildRun,
    ChildRunOutputs,
    ChildRunRequest,
)

REFUSALS = frozenset({403, 404, 409, 422})


class SubActionActivities:
    def __init__(self, api: GantryApi) -> None:
        self._api = api

    @activity.defn(name=PREPARE_CHILD_RUN_ACTIVITY)
    async def prepare_child_run(self, request: ChildRunRequest) -> ChildRun:
        body = {
            "step_id": request.step_id,
            "action": request.action,
            "entity": request.entity,
            "inputs": request.inputs,
            "execution": request.execution,
            "secret_marker": request.secret_marker,
        }
        response = await self._api.request(
            "POST", path("v1", "runs", request.parent_run_id, "children"), json=body
        )
        if response.status_code in REFUSALS:
            raise ApplicationError(
                _refusal(response.json()),
                {"status": response.status_code},
                type=CHILD_RUN_REFUSED,
                non_retryable=True,
                category=BENIGN,
            )
        if not response.is_success:
            raise vendor_error("Gantry API", response)
        answer: dict[str, Any] = response.json()
        return ChildRun(
            run_id=answer["run_id"],
            action=answer["action"],
            workflow_id=answer["workflow_id"],
            workflow_input=answer["workflow_input"],
            status=answer.get("status", "IN_PROGRESS"),
            summary=answer.get("summary", ""),
            url=answer.get("url", ""),
        )

    @activity.defn(name=CHILD_RUN_OUTPUTS_ACTIVITY)
    async def child_run_outputs(self, run_id: str) -> ChildRunOutputs:
        """The child's steps' outputs by step id (secret values are masked in a run's record)."""
        run = await self._api.call("GET", path("v1", "runs", run_id))
        outputs = {step["id"]: step.get("outputs") or {} for step in run["steps"]}
        return ChildRunOutputs(run_id=run_id, outputs=outputs)


def _refusal(body: Any) -> str:
    """The API's error message with the places its details name (``/inputs/x: is required``)."""
    error = body.get("error", {}) if isinstance(body, dict) else {}
    message = str(error.get("message") or "refused")
    details = [
        f"{d.get('pointer', '')}: {d.get('message', '')}".strip(": ")
        for d in error.get("details") or []
        if isinstance(d, dict)
    ]
    return message + (f" ({'; '.join(details)})" if details else "")


def build_sub_action_activities(settings: Settings) -> list[Callable[..., Any]]:
    activities = SubActionActivities(GantryApi.from_settings(settings))
    return [activities.prepare_child_run, activities.child_run_outputs]
