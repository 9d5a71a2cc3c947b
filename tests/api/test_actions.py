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


def _graph(steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A CREATE action with ``steps`` (http.request unless they say) and ``extra`` keys."""
    return {
        "identifier": "fan_out",
        "title": "Fan out",
        "trigger": {"operation": "CREATE"},
        "user_inputs": {"properties": {"regions": {"type": "array", "items": {"type": "string"}}}},
        "steps": [{"uses": "http.request", "with": {"url": "https://example.test"}, **s} for s in steps],
        **extra,
    }


def test_parallel_steps_and_fan_out_are_saved(catalog: TestClient) -> None:
    action = _graph(
        [
            {"id": "build", "needs": []},
            {
                "id": "deploy",
                "needs": ["build"],
                "for_each": "{{ inputs.regions }}",
                "max_parallel": 2,
                "with": {
                    "url": "https://{{ item }}.example.test/{{ index }}",
                    "build": "{{ steps.build.outputs }}",
                },
                "compensate": {
                    "uses": "http.request",
                    "with": {"url": "https://{{ item }}.example.test/undo"},
                },
            },
            {"id": "lint", "needs": []},
            {"id": "announce", "needs": ["deploy", "lint"], "with": {"url": "{{ steps.deploy.outputs }}"}},
        ],
        strategy={"on_failure": "continue"},
    )
    created = catalog.post("/v1/actions", json=action)
    assert created.status_code == 201, created.text
    saved = catalog.get("/v1/actions/fan_out").json()
    assert saved["strategy"] == {"on_failure": "continue"}
    assert [s.get("needs") for s in saved["steps"]] == [[], ["build"], [], ["deploy", "lint"]]
    assert saved["steps"][1]["for_each"] == "{{ inputs.regions }}" and saved["steps"][1]["max_parallel"] == 2


def test_the_mistakes_of_parallel_steps_are_named_by_pointer(catalog: TestClient) -> None:
    unknown = _graph([{"id": "a", "needs": ["ghost"]}, {"id": "b", "needs": ["b"]}])
    assert pointers(catalog.post("/v1/actions", json=unknown)) == {
        "/steps/0/needs/0": "there is no step 'ghost'",
        "/steps/1/needs/0": "step 'b' cannot need itself",
    }
    cycle = _graph([{"id": "a", "needs": ["c"]}, {"id": "b", "needs": ["a"]}, {"id": "c", "needs": ["b"]}])
    assert pointers(catalog.post("/v1/actions", json=cycle)) == {
        "/steps/0/needs": "steps need each other in a cycle: a → c → b → a"
    }
    # b and c run side by side: c may not read b's outputs; d, after both, may.
    not_upstream = _graph(
        [
            {"id": "a"},
            {"id": "b", "needs": ["a"]},
            {
                "id": "c",
                "needs": ["a"],
                "with": {"url": "{{ steps.b.outputs.url }}", "from_a": "{{ steps.a.outputs }}"},
            },
            {
                "id": "d",
                "needs": ["b", "c"],
                "with": {"url": "{{ steps.b.outputs.url }}{{ steps.c.outputs.url }}"},
            },
        ]
    )
    assert pointers(catalog.post("/v1/actions", json=not_upstream)) == {
        "/steps/2/with": "step 'b' may not have run yet: it is not among the steps this one needs"
    }
    # Fan-out and strategy.
    action = _graph(
        [
            {"id": "a", "max_parallel": 2, "with": {"url": "{{ item }}"}},
            {"id": "b", "for_each": "{{ inputs.nope }}", "max_parallel": 0},
        ],
        strategy={"on_failure": "retry"},
    )
    response = catalog.post("/v1/actions", json=action)
    assert response.status_code == 422, response.text
    found = pointers(response)
    assert "/strategy/on_failure" in found and "/steps/1/max_parallel" in found  # the schema's own checks
    found = pointers(
        catalog.post(
            "/v1/actions",
            json={
                **action,
                "strategy": {"on_failure": "stop"},
                "steps": [{**action["steps"][0]}, {**action["steps"][1], "max_parallel": 3}],
            },
        )
    )
    assert found == {
        "/steps/0/max_parallel": "max_parallel bounds a step with for_each",
        "/steps/0/with": "'item' is defined only in the with of a step with for_each",
        "/steps/1/for_each": "input 'nope' is not declared in user_inputs",
    }
    gates = _graph(
        [
            {"id": "one", "uses": "approval", "needs": [], "with": {"approvers": {"roles": ["admin"]}}},
            {"id": "two", "uses": "approval", "needs": [], "with": {"approvers": {"roles": ["admin"]}}},
        ]
    )
    assert pointers(catalog.post("/v1/actions", json=gates)) == {
        "/steps/1/needs": "approval steps 'one' and 'two' could wait at the same time: make one need the other"
    }


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
