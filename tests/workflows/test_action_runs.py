"""Action runs end to end: API → Temporal workflow → activities → fake vendors → run record."""

from __future__ import annotations

from typing import Any

from catalog.timefmt import INSTANT
from devtools.testing import eventually_async
from tests.fakes.github import RunScript
from tests.workflows.conftest import SERVICE_TOKEN, Stack

WORKER = {"Authorization": f"Bearer {SERVICE_TOKEN}"}  # reconcile is a worker route

SERVICE = {
    "identifier": "service",
    "title": "Service",
    "schema": {
        "properties": {
            "language": {"type": "string"},
            "tier": {"type": "integer"},
            "repo": {"type": "string", "format": "url"},
        }
    },
}
DEPLOYMENT = {
    "identifier": "deployment",
    "title": "Deployment",
    "schema": {"properties": {"version": {"type": "string"}}},
    "relations": {"service": {"target": "service", "required": True}},
}


async def step_in_progress(stack: Stack, run_id: str, index: int) -> dict[str, Any]:
    """The run once its ``index``-th step is under way."""

    async def under_way() -> dict[str, Any] | None:
        run = dict((await stack.api.get(f"/v1/runs/{run_id}")).json())
        return run if run["steps"][index]["status"] == "IN_PROGRESS" else None

    return await eventually_async(under_way, what=f"step {index} of run {run_id} to start")


async def seed(stack: Stack) -> None:
    for blueprint in (SERVICE, DEPLOYMENT):
        assert (await stack.api.post("/v1/blueprints", json=blueprint)).status_code == 201
    payments = {
        "identifier": "payments",
        "properties": {"language": "python", "tier": 1, "repo": "https://github.com/acme/payments"},
    }
    assert (await stack.api.post("/v1/blueprints/service/entities", json=payments)).status_code == 201


def deploy_action(stack: Stack, *, extra_steps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
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
                "environment": {"type": "string", "enum": ["staging", "production"], "default": "staging"},
                "notify": {"type": "boolean", "default": False},
            },
            "required": ["version"],
        },
        "steps": [
            {
                "id": "record",
                "uses": "catalog.upsert_entity",
                "with": {
                    "blueprint": "deployment",
                    "identifier": "{{ entity.identifier }}-{{ inputs.version }}",
                    "properties": {"version": "{{ inputs.version }}"},
                    "relations": {"service": "{{ entity.identifier }}"},
                },
                "compensate": {
                    "uses": "catalog.delete_entity",
                    "with": {
                        "blueprint": "deployment",
                        "identifier": "{{ entity.identifier }}-{{ inputs.version }}",
                    },
                },
            },
            {
                "id": "notify",
                "uses": "http.request",
                "if": "{{ inputs.notify }}",
                "with": {"url": f"{stack.webhook.url}/notify", "body": {"text": "deploying"}},
            },
            {
                "id": "deploy",
                "uses": "http.request",
                "with": {
                    "url": f"{stack.webhook.url}/deploy",
                    "body": {
                        "service": "{{ entity.identifier }}",
                        "version": "{{ inputs.version }}",
                        "environment": "{{ inputs.environment }}",
                        "record": "{{ steps.record.outputs.entity.identifier }}",
                    },
                },
            },
            *(extra_steps or []),
        ],
    }


async def test_run_succeeds_end_to_end(stack: Stack) -> None:
    await seed(stack)
    assert (await stack.api.post("/v1/actions", json=deploy_action(stack))).status_code == 201
    run = await stack.launch("deploy_service", entity="payments", inputs={"version": "v42"})
    assert run["status"] == "IN_PROGRESS"
    assert run["workflow_id"] == f"action:deploy_service:{run['id']}"
    assert run["temporal_ui_url"].endswith("/workflows/" + run["workflow_id"].replace(":", "%3A"))

    done = await stack.wait_for(run["id"], {"SUCCESS", "FAILURE"})
    assert done["status"] == "SUCCESS", done
    assert [s["status"] for s in done["steps"]] == ["SUCCESS", "SKIPPED", "SUCCESS"]
    assert done["affected_entities"] == [
        {"blueprint": "deployment", "identifier": "payments-v42", "operation": "UPSERT"}
    ]
    assert done["ended_at"] is not None and done["inputs"] == {
        "version": "v42",
        "environment": "staging",
        "notify": False,
    }
    # times the workflow recorded (steps, log lines) and the API's own: one format
    logs = (await stack.api.get(f"/v1/runs/{run['id']}/logs")).json()["items"]
    times = [done["created_at"], done["updated_at"], done["ended_at"], *(line["at"] for line in logs)]
    times += [s[k] for s in done["steps"] for k in ("started_at", "ended_at") if s.get(k)]
    assert len(times) > 5 and all(INSTANT.match(t) for t in times), times

    (delivery,) = stack.webhook.calls("POST", "/deploy")
    assert delivery.json == {
        "service": "payments",
        "version": "v42",
        "environment": "staging",
        "record": "payments-v42",
    }
    assert delivery.headers["idempotency-key"] == f"{run['id']}:deploy"
    assert stack.webhook.verified == [True]
    assert not stack.webhook.calls("POST", "/notify")

    deployment = (await stack.api.get("/v1/blueprints/deployment/entities/payments-v42")).json()
    assert deployment["relations"]["service"] == "payments" and deployment["created_by"] == "gantry-worker"
    audit = (await stack.api.get(f"/v1/audit-log?run_id={run['id']}&resource_type=entity")).json()["items"]
    assert [a["identifier"] for a in audit] == ["payments-v42"]

    logs = await stack.logs(run["id"])
    assert logs[0].startswith("Run of 'Deploy service' started by admin")
    assert "Step notify skipped: its condition is false" in logs and logs[-1] == "Run ended: SUCCESS"

    description = await stack.client.get_workflow_handle(run["workflow_id"]).describe()
    attributes = {k.name: v for k, v in ((p.key, p.value) for p in description.typed_search_attributes)}
    assert attributes["GantryAction"] == "deploy_service" and attributes["GantryEntity"] == "payments"
    assert attributes["GantryRunStatus"] == "SUCCESS" and attributes["GantryRequestedBy"] == "admin"

    listed = (await stack.api.get("/v1/runs?action=deploy_service&status=SUCCESS")).json()["items"]
    assert [r["id"] for r in listed] == [run["id"]]


async def test_launch_is_checked_before_anything_runs(stack: Stack) -> None:
    await seed(stack)
    await stack.api.post("/v1/actions", json=deploy_action(stack))
    bad = await stack.api.post(
        "/v1/actions/deploy_service/runs",
        json={"entity": "payments", "inputs": {"version": "42", "environment": "qa", "x": 1}},
    )
    assert bad.status_code == 422
    assert {d["pointer"] for d in bad.json()["error"]["details"]} == {
        "/inputs/version",
        "/inputs/environment",
        "/inputs/x",
    }

    missing = await stack.api.post("/v1/actions/deploy_service/runs", json={"inputs": {"version": "v1"}})
    assert missing.status_code == 422 and missing.json()["error"]["details"][0]["pointer"] == "/entity"

    await stack.api.post(
        "/v1/blueprints/service/entities", json={"identifier": "legacy", "properties": {"tier": 3}}
    )
    refused = await stack.api.post(
        "/v1/actions/deploy_service/runs", json={"entity": "legacy", "inputs": {"version": "v1"}}
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["details"][0]["pointer"] == "/trigger/condition/rules/0"
    assert (await stack.api.get("/v1/runs")).json()["items"] == []


async def test_idempotency_key_returns_the_same_run(stack: Stack) -> None:
    await seed(stack)
    await stack.api.post("/v1/actions", json=deploy_action(stack))
    body = {"entity": "payments", "inputs": {"version": "v7"}, "idempotency_key": "deploy-v7"}
    first = await stack.api.post("/v1/actions/deploy_service/runs", json=body)
    second = await stack.api.post("/v1/actions/deploy_service/runs", json=body)
    assert first.status_code == 202 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    await stack.wait_for(first.json()["id"], {"SUCCESS"})
    assert len(stack.webhook.calls("POST", "/deploy")) == 1


async def test_failure_compensates_and_retry_resumes(stack: Stack) -> None:
    await seed(stack)
    await stack.api.post("/v1/actions", json=deploy_action(stack))
    stack.webhook.fail_next(400, {"message": "environment is frozen"}, path="/deploy")
    run = await stack.launch("deploy_service", entity="payments", inputs={"version": "v9"})
    failed = await stack.wait_for(run["id"], {"FAILURE", "SUCCESS"})
    assert failed["status"] == "FAILURE"
    assert "environment is frozen" in failed["error"]
    assert [s["status"] for s in failed["steps"]] == ["COMPENSATED", "SKIPPED", "FAILURE"]
    # the 400 is not retried, and compensation deleted the deployment entity
    assert len(stack.webhook.calls("POST", "/deploy")) == 1
    assert (await stack.api.get("/v1/blueprints/deployment/entities/payments-v9")).status_code == 404
    logs = await stack.logs(run["id"])
    assert "Compensating 1 completed step(s) in reverse order" in logs
    assert "Step record compensated (catalog.delete_entity)" in logs

    retried = await stack.api.post(f"/v1/runs/{run['id']}/retry")
    assert retried.status_code == 202, retried.text
    done = await stack.wait_for(run["id"], {"SUCCESS", "FAILURE"})
    assert done["status"] == "SUCCESS"
    assert len(stack.webhook.calls("POST", "/deploy")) == 2
    assert (await stack.api.get("/v1/blueprints/deployment/entities/payments-v9")).status_code == 200
    assert "Run ended: SUCCESS" in await stack.logs(run["id"])


async def test_cancel_stops_the_running_step_and_compensates(stack: Stack) -> None:
    await seed(stack)
    action = deploy_action(
        stack,
        extra_steps=[
            {
                "id": "ci",
                "uses": "github.workflow_dispatch",
                "wait_for_completion": True,
                "with": {"repo": "{{ entity.properties.repo }}", "workflow": "deploy.yml", "ref": "main"},
            }
        ],
    )
    assert (await stack.api.post("/v1/actions", json=action)).status_code == 201, action
    stack.github.scripts.append(RunScript(conclusion="success", polls=10_000))
    run = await stack.launch("deploy_service", entity="payments", inputs={"version": "v3"})
    await step_in_progress(stack, run["id"], 3)
    cancelled = await stack.api.post(f"/v1/runs/{run['id']}/cancel")
    assert cancelled.status_code == 202
    done = await stack.wait_for(run["id"], {"CANCELLED", "SUCCESS", "FAILURE"})
    assert done["status"] == "CANCELLED", (done["error"], done["steps"])
    assert done["steps"][3]["status"] == "CANCELLED"
    assert (await stack.api.get("/v1/blueprints/deployment/entities/payments-v3")).status_code == 404


async def test_terminated_workflow_converges(stack: Stack) -> None:
    await seed(stack)
    action = deploy_action(stack, extra_steps=[{"id": "wait", "uses": "sleep", "with": {"duration": "PT1H"}}])
    await stack.api.post("/v1/actions", json=action)
    run = await stack.launch("deploy_service", entity="payments", inputs={"version": "v5"})
    handle = stack.client.get_workflow_handle(run["workflow_id"])
    await step_in_progress(stack, run["id"], 3)
    await handle.terminate("operator pressed terminate in Temporal UI")
    converged = (await stack.api.post("/v1/runs/reconcile", headers=WORKER)).json()["converged"]
    assert converged == [run["id"]]
    final = (await stack.api.get(f"/v1/runs/{run['id']}")).json()
    assert final["status"] == "CANCELLED" and final["status_label"] == "Terminated from Temporal"
    assert final["ended_at"] is not None
    assert (await stack.api.post("/v1/runs/reconcile", headers=WORKER)).json()["converged"] == []


async def test_cli_launches_and_follows_a_run(stack: Stack, capsys: Any) -> None:
    import asyncio

    import cli

    await seed(stack)
    await stack.api.post("/v1/actions", json=deploy_action(stack))
    argv = [
        "--api-url",
        str(stack.api.base_url),
        "--token",
        "admin-e2e-token",
        "run",
        "deploy_service",
        "--entity",
        "payments",
        "-i",
        "version=v8",
        "-i",
        "notify=true",
        "--wait",
    ]
    assert await asyncio.to_thread(cli.main, argv) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "SUCCESS"
    assert "Step deploy succeeded" in captured.err
    (run,) = (await stack.api.get("/v1/runs?source=CLI")).json()["items"]
    assert run["inputs"]["notify"] is True and len(stack.webhook.calls("POST", "/notify")) == 1
