"""A rolling upgrade: a newer peer's extra fields are ignored, a missing required one is refused.

Workers and the API are deployed one after the other, so for a while each reads messages from a
newer version of the other. Before ``contracts/`` the API refused a report with one new field
(422, which the workflow treats as a non-retryable vendor error: every run failed mid-step).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from temporalio.converter import DataConverter

from catalog.runs.service import RunReport as ApiRunReport
from contracts.runs import LogLine, Requester, RunInfo, RunInput, RunReport, RunStatus
from tests.api.conftest import SERVICE_TOKEN, client, settings  # noqa: F401  (fixtures)

SERVICE = {"Authorization": f"Bearer {SERVICE_TOKEN}"}


def _run_input() -> dict[str, Any]:
    return dataclasses.asdict(
        RunInput(
            run_id="run-1",
            action={"identifier": "deploy", "steps": []},
            entity=None,
            inputs={},
            user=Requester("alice", "alice@example.com"),
            run=RunInfo("run-1", "deploy"),
        )
    )


def _decode(data: dict[str, Any]) -> RunInput:
    """Decode as the worker does: the JSON payload a newer API sent, read as this RunInput."""
    converter = DataConverter.default.payload_converter
    (payload,) = converter.to_payloads([data])
    (decoded,) = converter.from_payloads([payload], [RunInput])
    assert isinstance(decoded, RunInput)
    return decoded


def test_a_newer_workers_run_report_is_accepted_by_the_current_api() -> None:
    report = RunReport(RunStatus.IN_PROGRESS, "Running step deploy", logs=[LogLine(0, "Step deploy started")])
    body = json.loads(json.dumps(dataclasses.asdict(report)))
    body["step_progress"] = {"deploy": 0.5}  # a field this API does not know yet
    body["logs"][0]["span_id"] = "abc"

    parsed = ApiRunReport.model_validate(body)

    assert parsed.status == "IN_PROGRESS" and parsed.logs[0].message == "Step deploy started"
    assert "step_progress" not in parsed.model_dump()


def test_a_report_missing_a_required_field_is_refused() -> None:
    with pytest.raises(ValidationError, match="message"):
        ApiRunReport.model_validate({"logs": [{"seq": 0, "mesage": "misspelled"}]})


def test_a_newer_workers_timer_report_envelope_is_accepted(client: TestClient) -> None:  # noqa: F811
    response = client.post(
        "/v1/timers/reports",
        json={"reports": [{"timer_id": "timer:service:gone:expires_at", "report": {}, "trace": "x"}], "v": 2},
        headers=SERVICE,
    )
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["status"] == 404


def test_a_workflow_input_with_an_extra_field_decodes() -> None:
    data = _run_input()
    data["priority"] = "high"  # from a newer API
    data["user"]["locale"] = "de"

    decoded = _decode(data)

    assert decoded.run_id == "run-1" and decoded.user == Requester("alice", "alice@example.com")
    assert RunInput.from_json(data) == decoded


def test_a_misspelled_required_input_key_is_refused_not_defaulted() -> None:
    data = _run_input()
    data["runid"] = data.pop("run_id")

    with pytest.raises(TypeError):
        _decode(data)
    with pytest.raises(TypeError):
        RunInput.from_json(data)
