"""A workflow's reports arrive in any order: its ``gantry.report_run`` local activity retries, and
a worker that lost its workflow task sends reports again after another worker has gone on. Each
report carries ``report_seq`` (the workflow's log sequence); the catalog applies none older than
the newest it applied, keeping only its log lines not stored yet. An approved run is never moved
back to WAITING_FOR_APPROVAL by the late report of its gate opening.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from catalog.audit import Actor
from catalog.db import make_engine
from catalog.models import Run
from catalog.runs.service import RunReport, apply_report
from config import Settings
from contracts.runs import initial_steps
from tests.api.test_run_service import SERVICE, STEPS, Recorder, _launch, api, temporal

__all__ = ["api", "temporal"]  # the fixtures, shared with the run service's tests


def _report(status: str, label: str, seq: int | None, *lines: int) -> dict[str, Any]:
    report: dict[str, Any] = {
        "status": status,
        "status_label": label,
        "steps": initial_steps(STEPS),
        "logs": [{"seq": n, "message": f"line {n}"} for n in lines],
    }
    if seq is not None:
        report["report_seq"] = seq
    return report


def _send(api: TestClient, run_id: str, report: dict[str, Any]) -> dict[str, Any]:
    response = api.post(f"/v1/runs/{run_id}/report", json=report, headers=SERVICE)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _state(api: TestClient, run_id: str) -> tuple[str, str, list[int | None]]:
    run = api.get(f"/v1/runs/{run_id}").json()
    logs = [line["seq"] for line in api.get(f"/v1/runs/{run_id}/logs").json()["items"]]
    return run["status"], run["status_label"], logs


def _status_events(api: TestClient, run_id: str) -> list[tuple[str, str]]:
    items = api.get("/v1/events", params={"type": "RUN_UPDATED", "limit": 100}).json()["items"]
    return [(e["previous_status"], e["run"]["status"]) for e in reversed(items) if e["run_id"] == run_id]


def test_a_late_report_moves_nothing_back_but_keeps_its_new_log_lines(
    api: TestClient, temporal: Recorder
) -> None:
    run_id = _launch(api)["id"]
    # The gate opens (lines 0-1), then the approval (2-4): the second report arrives first.
    _send(api, run_id, _report("IN_PROGRESS", "Approved", 5, 2, 3, 4))
    late = _send(api, run_id, _report("WAITING_FOR_APPROVAL", "Waiting for approval", 2, 0, 1))
    assert (late["status"], late["status_label"]) == ("IN_PROGRESS", "Approved")
    assert _state(api, run_id) == ("IN_PROGRESS", "Approved", [2, 3, 4, 0, 1])

    # The same report again (a retry of one applied): applied again, changes nothing.
    _send(api, run_id, _report("IN_PROGRESS", "Approved", 5, 2, 3, 4))
    _send(api, run_id, _report("SUCCESS", "Completed", 7, 5, 6))
    _send(api, run_id, _report("IN_PROGRESS", "Running step remove", 6, 5))
    assert _state(api, run_id) == ("SUCCESS", "Completed", [2, 3, 4, 0, 1, 5, 6])
    assert _status_events(api, run_id) == [("IN_PROGRESS", "SUCCESS")]


def test_a_worker_that_does_not_number_its_reports_is_applied_as_it_comes(
    api: TestClient, temporal: Recorder
) -> None:
    run_id = _launch(api)["id"]
    _send(api, run_id, _report("WAITING_FOR_APPROVAL", "Waiting for approval", None, 0))
    _send(api, run_id, _report("IN_PROGRESS", "Approved", None, 1))
    assert _state(api, run_id) == ("IN_PROGRESS", "Approved", [0, 1])
    # A numbered report after unnumbered ones is applied; an unnumbered one after it too.
    _send(api, run_id, _report("WAITING_FOR_APPROVAL", "Waiting for approval", 3, 2))
    _send(api, run_id, _report("IN_PROGRESS", "Approved again", None, 3))
    assert _state(api, run_id)[:2] == ("IN_PROGRESS", "Approved again")


def test_a_retry_numbers_its_log_after_every_numbered_line(api: TestClient, temporal: Recorder) -> None:
    """Lines the API writes itself have no seq (a cancel request's); the retry's workflow goes on
    after the highest numbered one (PostgreSQL sorts NULLs first in a descending order), so its
    reports are newer than the ended execution's."""
    run_id = _launch(api)["id"]
    assert api.post(f"/v1/runs/{run_id}/cancel").status_code == 202
    failed = _report("FAILURE", "Failed at step remove", 4, 2, 3)
    failed["steps"][1].update(status="FAILURE", error="vendor said no")
    _send(api, run_id, failed)
    assert api.post(f"/v1/runs/{run_id}/retry").status_code == 202
    [_, (retried, _attributes)] = temporal.started
    assert retried.log_base == 4
    _send(api, run_id, _report("IN_PROGRESS", "Running step remove", 5, 4))
    assert _state(api, run_id)[:2] == ("IN_PROGRESS", "Running step remove")


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_two_processes_applying_reports_at_once_keep_their_order(
    api: TestClient, temporal: Recorder, settings: Settings
) -> None:
    """The newer report is being applied (its transaction open) when the older one arrives at
    another API process: the older one waits for the run's row, then finds it newer and moves
    nothing."""
    run_id = _launch(api)["id"]
    assert settings.database_url is not None
    engine = make_engine(settings.database_url)
    actor = Actor("gantry-service", run_id)
    newer = RunReport.model_validate(_report("IN_PROGRESS", "Approved", 5, 2))
    older = RunReport.model_validate(_report("WAITING_FOR_APPROVAL", "Waiting for approval", 2, 0))
    failures: list[BaseException] = []

    def apply_older() -> None:
        with Session(engine) as session:
            try:
                apply_report(session, session.get_one(Run, run_id), older, actor)
                session.commit()
            except BaseException as exc:
                failures.append(exc)

    try:
        with Session(engine) as first:
            apply_report(first, first.get_one(Run, run_id), newer, actor)
            first.flush()
            thread = threading.Thread(target=apply_older)
            thread.start()
            deadline = time.monotonic() + 10
            with engine.connect() as probe:
                while not probe.scalar(
                    text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                ):
                    assert time.monotonic() < deadline, "the older report never waited for the row"
                    time.sleep(0.02)
            first.commit()
        thread.join(timeout=30)
    finally:
        engine.dispose()
    assert not failures, failures
    assert _state(api, run_id) == ("IN_PROGRESS", "Approved", [2, 0])
    assert _status_events(api, run_id) == []  # IN_PROGRESS throughout: the older one changed nothing
