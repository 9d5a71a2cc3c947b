"""Action definitions are checked when saved: each problem is a 422 naming its place."""

from __future__ import annotations

import copy
from typing import Any

from fastapi.testclient import TestClient

ACTION: dict[str, Any] = {
    "identifier": "deploy_service",
    "title": "Deploy service",
    "blueprint": "service",
    "trigger": {
        "operation": "DAY-2",
        "condition": {"combinator": "and", "rules": [{"property": "tier", "operator": "<=", "value": 2}]},
    },
    "user_inputs": {
        "properties": {
            "version": {"type": "string", "pattern": "^v[0-9]+"},
            "db_password": {"type": "string", "secret": True},
        },
        "required": ["version"],
    },
    "steps": [
        {
            "id": "dispatch",
            "uses": "github.workflow_dispatch",
            "with": {
                "repo": "{{ entity.properties.repo }}",
                "workflow": "deploy.yml",
                "inputs": {"version": "{{ inputs.version }}"},
            },
            "wait_for_completion": True,
            "timeout": "PT1H",
            "retry": {"maximum_attempts": 3},
        },
        {
            "id": "record",
            "uses": "catalog.upsert_entity",
            "with": {
                "blueprint": "service",
                "identifier": "{{ entity.identifier }}",
                "properties": {"repo": "{{ steps.dispatch.outputs.run_url }}"},
            },
            "compensate": {
                "uses": "catalog.delete_entity",
                "with": {"blueprint": "service", "identifier": "{{ entity.identifier }}"},
            },
        },
    ],
}


def pointers(response: Any) -> dict[str, str]:
    return {d["pointer"]: d["message"] for d in response.json()["error"]["details"]}


def test_valid_action_round_trips(catalog: TestClient) -> None:
    created = catalog.post("/v1/actions", json=ACTION)
    assert created.status_code == 201, created.text
    assert catalog.get("/v1/actions/deploy_service").json()["steps"][0]["with"]["workflow"] == "deploy.yml"
    assert catalog.post("/v1/actions", json=ACTION).status_code == 409
    changed = {**ACTION, "title": "Deploy"}
    assert catalog.put("/v1/actions/deploy_service", json=changed).status_code == 200
    assert [a["title"] for a in catalog.get("/v1/actions").json()["items"]] == ["Deploy"]
    audit = catalog.get("/v1/audit-log?resource_type=action").json()["items"]
    assert [a["operation"] for a in audit] == ["UPDATE", "CREATE"]
    assert catalog.delete("/v1/actions/deploy_service").status_code == 204
    assert catalog.get("/v1/actions/deploy_service").status_code == 404


def test_every_problem_is_named(catalog: TestClient) -> None:
    bad = copy.deepcopy(ACTION)
    bad["steps"][0]["uses"] = "github.dispatch"
    bad["steps"][1]["id"] = "dispatch"
    bad["steps"][1]["with"]["properties"]["repo"] = (
        "{{ steps.later.outputs.url }} {{ inputs.nope }} {{ secrets.x }}"
    )
    bad["steps"][1]["timeout"] = "1 hour"
    bad["steps"].append({"id": "later", "uses": "slack.post_message", "with": {"channel": "C1"}})
    bad["trigger"]["condition"]["rules"][0]["operator"] = "~"
    bad["user_inputs"]["required"].append("ghost")
    response = catalog.post("/v1/actions", json=bad)
    assert response.status_code == 422, response.text
    found = pointers(response)
    assert "unknown step kind 'github.dispatch'" in found["/steps/0/uses"]
    assert found["/steps/1/id"] == "step id 'dispatch' is used twice"
    assert "/steps/1/timeout" in found
    assert "/steps/2/with/text" in found
    assert "/trigger/condition/rules/0/operator" in found
    assert "/user_inputs/required/1" in found
    messages = [d["message"] for d in response.json()["error"]["details"] if d["pointer"] == "/steps/1/with"]
    assert any("step 'later' has not run yet" in m for m in messages)
    assert any("input 'nope' is not declared" in m for m in messages)
    assert any("'secrets' is not defined" in m for m in messages)
    assert catalog.get("/v1/actions/deploy_service").status_code == 404


def test_create_actions_have_no_entity(catalog: TestClient) -> None:
    action: dict[str, Any] = {
        "identifier": "create_service",
        "title": "Create service",
        "blueprint": "service",
        "trigger": {"operation": "CREATE"},
        "user_inputs": {"properties": {"name": {"type": "string"}}},
        "steps": [
            {
                "id": "create",
                "uses": "catalog.upsert_entity",
                "with": {"blueprint": "service", "identifier": "{{ entity.identifier }}"},
            }
        ],
    }
    response = catalog.post("/v1/actions", json=action)
    assert pointers(response) == {"/steps/0/with": "CREATE actions have no entity"}
    action["steps"][0]["with"]["identifier"] = "{{ inputs.name }}"
    assert catalog.post("/v1/actions", json=action).status_code == 201


def test_syntax_errors_and_members(catalog: TestClient) -> None:
    broken = copy.deepcopy(ACTION)
    broken["steps"][0]["with"]["ref"] = "{{ inputs.version "
    broken["steps"][0]["if"] = "inputs.version =="
    response = catalog.post("/v1/actions", json=broken)
    found = pointers(response)
    assert "does not parse" in found["/steps/0/with"] and "does not parse" in found["/steps/0/if"]
    token = catalog.post("/v1/tokens", json={"user": "bob"}).json()["token"]
    forbidden = catalog.post("/v1/actions", json=ACTION, headers={"Authorization": f"Bearer {token}"})
    assert forbidden.status_code == 403


def test_temporal_down_is_503_and_leaves_no_run_in_progress(settings: Any) -> None:
    """The record is committed before the workflow starts; Temporal down ends it as not started."""
    from api.app import create_app
    from tests.api.conftest import ADMIN_TOKEN, SERVICE_BLUEPRINT, SYSTEM_BLUEPRINT
    from tests.temporal_env import free_port

    down = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    with TestClient(create_app(down), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        client.post("/v1/blueprints", json=SYSTEM_BLUEPRINT)
        client.post("/v1/blueprints", json=SERVICE_BLUEPRINT)
        client.post(
            "/v1/blueprints/service/entities",
            json={"identifier": "payments", "properties": {"language": "go", "tier": 1}},
        )
        assert client.post("/v1/actions", json=ACTION).status_code == 201
        response = client.post(
            "/v1/actions/deploy_service/runs", json={"entity": "payments", "inputs": {"version": "v1"}}
        )
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "5"
        assert response.json()["error"]["code"] == "unavailable"
        [run] = client.get("/v1/runs").json()["items"]
        assert run["status"] == "FAILURE" and run["ended_at"] is not None
        assert run["error"].startswith("its workflow never started: Temporal unavailable")
        audit = client.get("/v1/audit-log?resource_type=run").json()["items"]
        assert [a["operation"] for a in audit] == ["UPDATE", "CREATE"]
