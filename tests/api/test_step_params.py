"""Step parameters only an action's author may set are literals, checked when the action is saved."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient


def _teardown(allow_untagged: Any) -> dict[str, Any]:
    return {
        "identifier": "teardown",
        "title": "Tear down",
        "trigger": {"operation": "CREATE"},
        "user_inputs": {"properties": {"force": {"type": "boolean"}}},
        "steps": [
            {
                "id": "stack",
                "uses": "aws.cloudformation.delete_stack",
                "with": {"stack_name": "env-x", "allow_untagged": allow_untagged},
            }
        ],
    }


@pytest.mark.parametrize("value", ["{{ inputs.force }}", "true", 1])
def test_allow_untagged_must_be_a_literal_boolean(client: TestClient, value: Any) -> None:
    response = client.post("/v1/actions", json=_teardown(value))
    assert response.status_code == 422, response.text
    details = response.json()["error"]["details"]
    assert [d["pointer"] for d in details] == ["/steps/0/with/allow_untagged"]
    assert client.get("/v1/actions/teardown").status_code == 404


def test_allow_untagged_true_is_the_authors_choice(client: TestClient) -> None:
    assert client.post("/v1/actions", json=_teardown(True)).status_code == 201
