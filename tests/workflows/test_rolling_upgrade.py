"""A rolling upgrade: a newer peer's extra fields are ignored, a missing required one is refused.

Workers and the API are deployed one after the other, so for a while each reads messages from a
newer version of the other. Before ``contracts/`` the API refused a report with one new field
(422, which the workflow treats as a non-retryable vendor error: every run failed mid-step).
The end-to-end test runs a real ``ActionRun`` whose input came from a "newer API" and whose
worker is a "newer worker" reporting fields this API does not know.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.converter import DataConverter
from temporalio.worker import Worker

from activities import build_activities
from catalog.runs.service import RunReport as ApiRunReport
from contracts.actions import ActionSpec, StepSpec
from contracts.runs import (
    ACTION_RUN_WORKFLOW,
    REPORT_ACTIVITY,
    LogLine,
    ReportInput,
    Requester,
    RunInfo,
    RunInput,
    RunReport,
    RunStatus,
    StepState,
)
from tests.api.conftest import SERVICE_TOKEN, catalog, client, settings  # noqa: F401  (fixtures)
from tests.api.test_timer_reports import make_services, timer_id
from tests.workflows.conftest import SERVICE_TOKEN as STACK_SERVICE_TOKEN
from tests.workflows.conftest import Stack
from workflows import ALL_WORKFLOWS

SERVICE = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
TERMINAL = {"SUCCESS", "FAILURE", "DECLINED", "CANCELLED", "TIMED_OUT"}


def _run_input() -> dict[str, Any]:
    return RunInput(
        run_id="run-1",
        action=ActionSpec("deploy", [StepSpec("ping", "http.request", params={"url": "https://x.test"})]),
        entity=None,
        inputs={},
        user=Requester("alice", "alice@example.com"),
        run=RunInfo("run-1", "deploy"),
    ).to_json()


def _decode(data: dict[str, Any]) -> RunInput:
    """Decode as the worker does: the JSON payload a newer API sent, read as this RunInput."""
    converter = DataConverter.default.payload_converter
    (payload,) = converter.to_payloads([data])
    (decoded,) = converter.from_payloads([payload], [RunInput])
    assert isinstance(decoded, RunInput)
    return decoded


def test_a_newer_workers_run_report_is_accepted_by_the_current_api() -> None:
    step = StepState("deploy", "http.request", status="IN_PROGRESS")
    report = RunReport(
        RunStatus.IN_PROGRESS, "Running step deploy", steps=[step], logs=[LogLine(0, "Step deploy started")]
    )
    body = json.loads(json.dumps(dataclasses.asdict(report)))
    body["step_progress"] = {"deploy": 0.5}  # a field this API does not know yet
    body["logs"][0]["span_id"] = "abc"
    body["steps"][0]["attempts"] = 2

    parsed = ApiRunReport.model_validate(body)

    assert parsed.status == "IN_PROGRESS" and parsed.logs[0].message == "Step deploy started"
    assert parsed.steps == [step]
    assert "step_progress" not in parsed.model_dump()


def test_a_report_missing_a_required_field_is_refused() -> None:
    with pytest.raises(ValidationError, match="message"):
        ApiRunReport.model_validate({"logs": [{"seq": 0, "mesage": "misspelled"}]})
    with pytest.raises(ValidationError, match="uses"):
        ApiRunReport.model_validate({"steps": [{"id": "deploy", "kind": "http.request"}]})


def test_a_newer_workers_timer_report_envelope_is_accepted(client: TestClient) -> None:  # noqa: F811
    response = client.post(
        "/v1/timers/reports",
        json={"reports": [{"timer_id": "timer:service:gone:expires_at", "report": {}, "trace": "x"}], "v": 2},
        headers=SERVICE,
    )
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["status"] == 404


def test_a_newer_workers_timer_report_body_is_applied_without_its_extra_keys(catalog: TestClient) -> None:  # noqa: F811
    make_services(catalog, 1)
    body = {"teardown": "running", "on_expiry_run": "run_1", "teardown_eta": "PT5M", "next_reminder": None}
    response = catalog.post(f"/v1/timers/{timer_id('svc-0')}/report", json=body, headers=SERVICE)
    assert response.status_code == 200, response.text
    timer = response.json()["timer"]
    assert (timer["teardown"], timer["on_expiry_run"], timer["next_reminder"]) == ("running", "run_1", None)


def test_a_malformed_known_timer_report_key_is_a_422_naming_it_and_nothing_changes(
    catalog: TestClient,  # noqa: F811
) -> None:
    make_services(catalog, 1)
    before = catalog.get("/v1/timers").json()["items"]
    good = {"timer_id": timer_id("svc-0"), "report": {"teardown": "running"}}
    bad = {"timer_id": timer_id("svc-0"), "report": {"expired": "yes"}}
    response = catalog.post("/v1/timers/reports", json={"reports": [good, bad]}, headers=SERVICE)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert [d["pointer"] for d in error["details"]] == ["/reports/1/report/expired"]
    assert catalog.get("/v1/timers").json()["items"] == before

    single = catalog.post(
        f"/v1/timers/{timer_id('svc-0')}/report", json={"reminder": {"deadline": "x"}}, headers=SERVICE
    )
    assert single.status_code == 422 and single.json()["error"]["details"][0]["pointer"] == "/reminder"


def test_a_workflow_input_with_an_extra_field_decodes() -> None:
    data = _run_input()
    data["priority"] = "high"  # from a newer API
    data["user"]["locale"] = "de"
    data["action"]["steps"][0]["retry_budget"] = 3

    decoded = _decode(data)

    assert decoded.run_id == "run-1" and decoded.user == Requester("alice", "alice@example.com")
    assert decoded.action.steps == [StepSpec("ping", "http.request", params={"url": "https://x.test"})]
    assert RunInput.from_json(data) == decoded


def test_a_misspelled_required_input_key_is_refused_not_defaulted() -> None:
    data = _run_input()
    data["runid"] = data.pop("run_id")

    with pytest.raises(TypeError):
        _decode(data)
    with pytest.raises(TypeError):
        RunInput.from_json(data)


def test_a_step_without_its_kind_is_refused() -> None:
    data = _run_input()
    del data["action"]["steps"][0]["uses"]

    with pytest.raises(TypeError):
        _decode(data)


# ---- end to end: a newer API's input and a newer worker's reports, on a real run ----------


def _newer_report_activity(api_url: str, sent: list[dict[str, Any]]) -> Any:
    """``gantry.report_run`` as a newer worker has it: every report carries fields this API does
    not know, at the top, in each step and in each log line."""

    @activity.defn(name=REPORT_ACTIVITY)
    async def report_run(report: ReportInput) -> None:
        body = json.loads(json.dumps(dataclasses.asdict(report.report)))
        body["step_progress"] = {s["id"]: 1.0 for s in body["steps"]}
        for step in body["steps"]:
            step["attempts"] = 1
        for line in body["logs"]:
            line["span_id"] = "span-1"
        async with httpx.AsyncClient(
            base_url=api_url, headers={"Authorization": f"Bearer {STACK_SERVICE_TOKEN}"}
        ) as api:
            response = await api.post(f"/v1/runs/{report.run_id}/report", json=body)
        response.raise_for_status()
        sent.append(body)

    return report_run


async def test_a_run_from_a_newer_api_on_a_newer_worker_completes(stack: Stack) -> None:
    """The API starts a run (held at its approval gate); its workflow is then started again, under
    the same id, with the input a newer API would send (extra fields at the top, in a step, in
    the approval policy) on a newer worker's task queue. The run completes and its record shows it."""
    created = await stack.api.post("/v1/users", json={"identifier": "bob", "email": "bob@example.com"})
    assert created.status_code == 201, created.text
    action = {
        "identifier": "toggle_flag",
        "title": "Toggle flag",
        "trigger": {"operation": "CREATE"},
        "approval": {"approvers": {"users": ["bob"]}, "timeout": "PT1H"},
        "steps": [
            {"id": "toggle", "uses": "http.request", "with": {"url": f"{stack.webhook.url}/flags"}},
            {"id": "skipped", "uses": "http.request", "if": "{{ false }}", "with": {"url": "http://x.test"}},
        ],
    }
    assert (await stack.api.post("/v1/actions", json=action)).status_code == 201
    run = await stack.launch("toggle_flag")
    first = stack.client.get_workflow_handle(run["workflow_id"])
    history = await first.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    sent = json.loads(started.input.payloads[0].data)
    assert sent["action"]["steps"][1]["if"] == "{{ false }}"  # the wire format kept its keys
    await first.terminate("replaced by the newer API's input")

    sent["priority"] = "high"
    sent["action"]["steps"][0]["retry_budget"] = 3
    sent["action"]["approval"]["quorum"] = "any"
    sent["approvals"] = {}  # the gate is not what this test is about
    newer_queue = f"newer-{uuid.uuid4().hex[:8]}"
    sent_reports: list[dict[str, Any]] = []
    activities = [
        a
        for a in build_activities(stack.settings)
        if activity._Definition.must_from_callable(a).name != REPORT_ACTIVITY
    ]
    async with Worker(
        stack.client,
        task_queue=newer_queue,
        workflows=ALL_WORKFLOWS,
        activities=[*activities, _newer_report_activity(stack.settings.api_url, sent_reports)],
    ):
        handle = await stack.client.start_workflow(
            ACTION_RUN_WORKFLOW, sent, id=run["workflow_id"], task_queue=newer_queue
        )
        await handle.result()
        done = await stack.wait_for(run["id"], TERMINAL)

    assert done["status"] == "SUCCESS", done
    assert [(s["id"], s["status"]) for s in done["steps"]] == [("toggle", "SUCCESS"), ("skipped", "SKIPPED")]
    # Every report carried fields this API does not know; it took them all, and dropped those.
    assert sent_reports and all("step_progress" in body for body in sent_reports)
    assert sent_reports[-1]["status"] == "SUCCESS"
    assert all("attempts" not in s for s in done["steps"])
    assert stack.webhook.calls("POST", "/flags")
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    assert "Step toggle succeeded" in await stack.logs(run["id"])
