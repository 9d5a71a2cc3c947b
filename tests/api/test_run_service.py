"""The run service's one path per operation, against a recording stand-in for Temporal: launch
and retry commit the record before starting the workflow and end the run as not started when
Temporal is down; retry is a domain operation (checked again, reopened from its failed step);
cancel asks the workflow first; converge finishes quiet runs whose workflow has ended."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.errors import ServiceUnavailable
from api.temporal import WorkflowEnd
from catalog.models import Run
from catalog.runs.service import retry_plan
from config import Settings
from contracts.runs import RunInput, initial_steps
from tests.api.conftest import ADMIN_TOKEN, SERVICE_BLUEPRINT, SERVICE_TOKEN, SYSTEM_BLUEPRINT

SERVICE = {"Authorization": f"Bearer {SERVICE_TOKEN}"}

STEPS: list[dict[str, Any]] = [
    {
        "id": "create",
        "title": "Create it",
        "uses": "catalog.upsert_entity",
        "with": {"blueprint": "service", "identifier": "made", "properties": {"language": "go"}},
    },
    {"id": "remove", "uses": "catalog.delete_entity", "with": {"blueprint": "service", "identifier": "made"}},
]
MAKE: dict[str, Any] = {
    "identifier": "make_service",
    "title": "Make service",
    "blueprint": "service",
    "trigger": {"operation": "CREATE"},
    "steps": STEPS,
}


@dataclass
class Recorder:
    """Temporal as the run service sees it: every call recorded; ``down`` refuses them with the
    gateway's 503; ``end`` is what ``ended`` answers (an exception is raised)."""

    started: list[tuple[RunInput, dict[str, Any]]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    down: bool = False
    end: WorkflowEnd | Exception | None = None

    def _check(self) -> None:
        if self.down:
            raise ServiceUnavailable("Temporal refused the call: down for the test")

    async def start_action_run(self, workflow_input: RunInput, **attributes: Any) -> None:
        self._check()
        self.started.append((workflow_input, attributes))

    async def cancel(self, workflow_id: str) -> None:
        self._check()
        self.cancelled.append(workflow_id)

    async def ended(self, workflow_id: str) -> WorkflowEnd | None:
        if isinstance(self.end, Exception):
            raise self.end
        return self.end

    async def arm_timer(self, *_: Any, **__: Any) -> None:
        return None

    async def run_ended(self, *_: Any, **__: Any) -> None:
        return None

    async def start_automation(self, *_: Any, **__: Any) -> bool:
        return True


@pytest.fixture
def temporal() -> Recorder:
    return Recorder()


@pytest.fixture
def api(settings: Settings, temporal: Recorder) -> Iterator[TestClient]:
    """An admin client whose catalog has the service blueprint and the make_service action; runs
    are checked against their workflow as soon as they are read."""
    quick = settings.model_copy(update={"run_converge_after": 0.0})
    with TestClient(create_app(quick, temporal=temporal), raise_server_exceptions=False) as client:  # type: ignore[arg-type]
        client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        for blueprint in (SYSTEM_BLUEPRINT, SERVICE_BLUEPRINT):
            assert client.post("/v1/blueprints", json=blueprint).status_code == 201
        assert client.post("/v1/actions", json=MAKE).status_code == 201
        yield client


def _launch(api: TestClient, **body: Any) -> dict[str, Any]:
    response = api.post("/v1/actions/make_service/runs", json=body)
    assert response.status_code == 202, response.text
    run: dict[str, Any] = response.json()
    return run


def _fail_at_remove(api: TestClient, run_id: str) -> None:
    """The workflow's report: the first step succeeded, the second failed (its last log line
    has seq 3)."""
    steps = initial_steps(STEPS)
    steps[0].update(status="SUCCESS", outputs={"identifier": "made"})
    steps[1].update(status="FAILURE", error="vendor said no")
    report = {
        "status": "FAILURE",
        "status_label": "Failed at step remove",
        "steps": steps,
        "error": "no",
        "logs": [{"seq": 3, "level": "ERROR", "message": "Step remove failed: vendor said no"}],
    }
    assert api.post(f"/v1/runs/{run_id}/report", json=report, headers=SERVICE).status_code == 200


def _operations(api: TestClient, run_id: str) -> list[str]:
    audit = api.get(f"/v1/audit-log?resource_type=run&resource_id={run_id}").json()["items"]
    return [entry["operation"] for entry in reversed(audit)]


def test_the_step_skeleton_is_one_function() -> None:
    assert initial_steps(STEPS) == [
        {
            "id": "create",
            "title": "Create it",
            "uses": "catalog.upsert_entity",
            "status": "PENDING",
            "started_at": None,
            "ended_at": None,
            "outputs": {},
            "error": None,
            "needs": [],
        },
        {
            "id": "remove",
            "title": "remove",
            "uses": "catalog.delete_entity",
            "status": "PENDING",
            "started_at": None,
            "ended_at": None,
            "outputs": {},
            "error": None,
            "needs": ["create"],
        },
    ]


def test_launch_commits_the_record_then_starts_a_typed_input(api: TestClient, temporal: Recorder) -> None:
    run = _launch(api, source="CLI")
    assert run["status"] == "IN_PROGRESS" and run["source"] == "CLI"
    assert run["steps"] == initial_steps(STEPS)
    [(workflow_input, attributes)] = temporal.started
    assert isinstance(workflow_input, RunInput)
    assert workflow_input.run_id == run["id"] and workflow_input.user.identifier == "admin"
    assert workflow_input.run.url.endswith(f"/v1/runs/{run['id']}")
    assert workflow_input.resume_at is None and workflow_input.approvals == {}
    assert attributes["workflow_id"] == run["workflow_id"] == f"action:make_service:{run['id']}"
    assert attributes["summary"] == "Make service · new · by admin"
    assert _operations(api, run["id"]) == ["CREATE"]


def test_the_same_idempotency_key_starts_one_workflow(api: TestClient, temporal: Recorder) -> None:
    first = _launch(api, idempotency_key="k-1")
    again = api.post("/v1/actions/make_service/runs", json={"idempotency_key": "k-1"})
    assert again.status_code == 200 and again.json()["id"] == first["id"]
    assert len(temporal.started) == 1


def test_an_unknown_source_is_refused_before_any_record(api: TestClient, temporal: Recorder) -> None:
    unknown = api.post("/v1/actions/make_service/runs", json={}, headers={"X-Gantry-Source": "email"})
    assert unknown.status_code == 422 and unknown.json()["error"]["details"][0]["pointer"] == "/source"
    assert api.get("/v1/runs").json()["items"] == [] and temporal.started == []


def test_launch_with_temporal_down_ends_the_run_as_not_started(api: TestClient, temporal: Recorder) -> None:
    temporal.down = True
    response = api.post("/v1/actions/make_service/runs", json={})
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    [run] = api.get("/v1/runs").json()["items"]
    assert (run["status"], run["status_label"]) == ("FAILURE", "Not started")
    assert run["error"].startswith("its workflow never started: Temporal unavailable at ")


def test_retry_reopens_the_run_at_its_failed_step(api: TestClient, temporal: Recorder) -> None:
    run = _launch(api)
    _fail_at_remove(api, run["id"])
    response = api.post(f"/v1/runs/{run['id']}/retry")
    assert response.status_code == 202, response.text
    retried = response.json()
    assert (retried["status"], retried["status_label"]) == ("IN_PROGRESS", "Retrying from step remove")
    assert retried["error"] is None and retried["ended_at"] is None
    assert [s["status"] for s in retried["steps"]] == ["SUCCESS", "PENDING"]
    [_, (workflow_input, attributes)] = temporal.started
    assert workflow_input.resume_at == "remove"
    assert workflow_input.previous_steps == {
        "create": {"status": "SUCCESS", "outputs": {"identifier": "made"}}
    }
    assert workflow_input.approved_gates == [] and workflow_input.log_base == 4
    assert attributes["summary"] == "Make service · retry from remove"
    assert _operations(api, run["id"]) == ["CREATE", "UPDATE", "RETRY"]
    logs = api.get(f"/v1/runs/{run['id']}/logs").json()["items"]
    assert logs[-1]["message"] == "Retry requested by admin: resuming at step remove"


def test_a_graph_retry_keeps_every_branch_that_succeeded() -> None:
    """In a list, a retry keeps the steps before the failed one; in a graph (``needs``), a
    branch listed after the failed step that finished is kept too, not run again."""
    steps = [
        {"id": "eu", "status": "SUCCESS", "outputs": {"url": "eu"}},
        {"id": "us", "status": "FAILURE", "outputs": {}},
        {"id": "ap", "status": "SUCCESS", "outputs": {"url": "ap"}},
        {"id": "announce", "status": "PENDING", "outputs": {}},
    ]
    run = Run(id="r_graph", status="FAILURE", steps=steps)
    graph = {
        "steps": [
            {"id": "eu", "needs": []},
            {"id": "us", "needs": []},
            {"id": "ap", "needs": []},
            {"id": "announce"},
        ]
    }
    assert retry_plan(run, graph) == (
        "us",
        {
            "eu": {"status": "SUCCESS", "outputs": {"url": "eu"}},
            "ap": {"status": "SUCCESS", "outputs": {"url": "ap"}},
        },
    )
    listed = {"steps": [{"id": "eu"}, {"id": "us"}, {"id": "ap"}, {"id": "announce"}]}
    assert retry_plan(run, listed) == ("us", {"eu": {"status": "SUCCESS", "outputs": {"url": "eu"}}})


def test_only_an_ended_run_is_retried(api: TestClient, temporal: Recorder) -> None:
    run = _launch(api)
    response = api.post(f"/v1/runs/{run['id']}/retry")
    assert response.status_code == 409 and "IN_PROGRESS" in response.json()["error"]["message"]
    assert len(temporal.started) == 1 and _operations(api, run["id"]) == ["CREATE"]


def test_retry_is_checked_again_as_at_launch(api: TestClient, temporal: Recorder) -> None:
    """A retry is a new decision: an action deleted since cannot be retried."""
    run = _launch(api)
    _fail_at_remove(api, run["id"])
    assert api.delete("/v1/actions/make_service").status_code == 204
    response = api.post(f"/v1/runs/{run['id']}/retry")
    assert response.status_code == 409 and "no longer exists" in response.json()["error"]["message"]
    assert len(temporal.started) == 1
    assert api.get(f"/v1/runs/{run['id']}").json()["status"] == "FAILURE"


def test_retry_with_temporal_down_ends_the_run_as_not_started(api: TestClient, temporal: Recorder) -> None:
    run = _launch(api)
    _fail_at_remove(api, run["id"])
    temporal.down = True
    assert api.post(f"/v1/runs/{run['id']}/retry").status_code == 503
    ended = api.get(f"/v1/runs/{run['id']}").json()
    assert (ended["status"], ended["status_label"]) == ("FAILURE", "Not started")
    assert _operations(api, run["id"]) == ["CREATE", "UPDATE", "RETRY", "UPDATE"]


def test_cancel_asks_the_workflow_then_records_the_request(api: TestClient, temporal: Recorder) -> None:
    run = _launch(api)
    response = api.post(f"/v1/runs/{run['id']}/cancel")
    assert response.status_code == 202 and response.json()["status"] == "IN_PROGRESS"
    assert temporal.cancelled == [run["workflow_id"]]
    assert _operations(api, run["id"]) == ["CREATE", "CANCEL"]
    logs = api.get(f"/v1/runs/{run['id']}/logs").json()["items"]
    assert (logs[-1]["level"], logs[-1]["message"]) == ("WARNING", "Cancellation requested by admin")


def test_cancel_with_temporal_down_records_nothing(api: TestClient, temporal: Recorder) -> None:
    run = _launch(api)
    temporal.down = True
    assert api.post(f"/v1/runs/{run['id']}/cancel").status_code == 503
    assert _operations(api, run["id"]) == ["CREATE"]


def test_an_ended_run_is_not_cancelled(api: TestClient, temporal: Recorder) -> None:
    run = _launch(api)
    _fail_at_remove(api, run["id"])
    assert api.post(f"/v1/runs/{run['id']}/cancel").status_code == 409
    assert temporal.cancelled == []


def test_reconcile_finishes_runs_whose_workflow_ended(api: TestClient, temporal: Recorder) -> None:
    run = _launch(api)
    assert api.post("/v1/runs/reconcile", headers=SERVICE).json() == {"converged": []}
    temporal.end = WorkflowEnd("CANCELLED", "Terminated from Temporal", "Terminated from Temporal")
    assert api.post("/v1/runs/reconcile", headers=SERVICE).json() == {"converged": [run["id"]]}
    ended = api.get(f"/v1/runs/{run['id']}").json()
    assert (ended["status"], ended["status_label"]) == ("CANCELLED", "Terminated from Temporal")


def test_a_workflow_temporal_does_not_know_is_given_a_grace_to_start(
    api: TestClient, temporal: Recorder
) -> None:
    run = _launch(api)
    temporal.end = WorkflowEnd("FAILURE", "never started", "workflow not found", missing=True)
    assert api.post("/v1/runs/reconcile", headers=SERVICE).json() == {"converged": []}
    assert api.get(f"/v1/runs/{run['id']}").json()["status"] == "IN_PROGRESS"


def test_reading_a_run_answers_when_its_check_fails_and_logs_why(
    api: TestClient, temporal: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    run = _launch(api)
    temporal.end = ServiceUnavailable("Temporal refused the call: down for the test")
    with caplog.at_level(logging.WARNING, logger="api.services.runs"):
        response = api.get(f"/v1/runs/{run['id']}")
    assert response.status_code == 200 and response.json()["status"] == "IN_PROGRESS"
    assert f"could not converge run {run['id']}" in caplog.text
