"""Re-record the workflow histories that ``test_replay.py`` replays.

``python -m tests.workflows.record_histories [--only NAME ...]``

Runs each scenario on a fresh local dev server with the real stack (the API on SQLite over
HTTP, an in-process worker with the real activities, fake vendors) and writes each workflow's
history, as ``WorkflowHistory.to_json()``, to ``tests/workflows/histories/<name>.json``.

When to run it:

- **to add a scenario** (a new step kind, a new workflow, a new code path): add it to
  ``SCENARIOS`` and record just that one with ``--only``;
- **never to make a failing replay pass.** A replay failure means the change would break runs
  that are in flight when it is deployed: guard the new behaviour with ``workflow.patched(...)``
  (and keep the old branch) instead. Only once no run recorded by the old code can still be
  running may the old histories be re-recorded, and then keep the old file next to the new one
  until the patch is deprecated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import WorkflowContinuedAsNewError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import build_activities
from catalog.sources.descriptors import builtin_blueprints
from devtools.testing import eventually_async
from tests.api.conftest import SERVICE_BLUEPRINT, SYSTEM_BLUEPRINT
from tests.fakes.github import FakeGitHub, RunScript
from tests.fakes.github_org import FakeGitHubOrg
from tests.fakes.jira import FakeJira
from tests.fakes.server import serve
from tests.fakes.webhook import FakeWebhookReceiver
from tests.sources import test_push_syncs as push
from tests.sources.test_worker_end_to_end import SOURCE as GITHUB_SOURCE
from tests.temporal_env import start_dev_server, start_time_skipping
from tests.workflows import test_sub_actions as sub_actions
from tests.workflows.conftest import ADMIN_TOKEN, WEBHOOK_SECRET, Stack, serve_api, stack_settings
from tests.workflows.test_action_runs import deploy_action, seed
from tests.workflows.test_approvals import action as approval_action
from tests.workflows.test_approvals import people, waiting
from tests.workflows.test_automations import WELCOME, alert_action
from tests.workflows.test_timer_durability import environment_blueprint, teardown_action
from workflows import ALL_WORKFLOWS
from workflows.reconcile import ReconcileRuns, RegradeScorecards

HISTORIES = Path(__file__).parent / "histories"
# Scenarios that sleep for long in workflow time, recorded on the time-skipping test server.
TIME_SKIPPING = {"reconcile_runs_continued", "initiative_reminded_moved_reported", "exemption_expired"}
# Scenarios whose server (the time-skipping one) has no Gantry search attributes to set.
NO_SEARCH_ATTRIBUTES = {"initiative_reminded_moved_reported", "exemption_expired"}
# The time-skipping server of the scenario being recorded, for scenarios that skip time.
SKIPPING: WorkflowEnvironment | None = None
# The organisation data-source scenarios read (the stack's FakeGitHub serves actions only).
GITHUB_ORG = FakeGitHubOrg()
# Scenarios whose worker talks to GITHUB_ORG as its GitHub.
GITHUB_ORG_SCENARIOS = {"data_source_sync", "data_source_sync_push"}
TERMINAL = {"SUCCESS", "FAILURE", "CANCELLED", "TIMED_OUT", "DECLINED"}

# A scenario drives the stack and returns the workflow id (and run id, for one execution of
# several) whose history it records.
Scenario = Callable[[Stack], Awaitable[tuple[str, str | None]]]

DISPATCH_STEP = {
    "id": "ci",
    "uses": "github.workflow_dispatch",
    "wait_for_completion": True,
    "with": {"repo": "{{ entity.properties.repo }}", "workflow": "deploy.yml", "ref": "main"},
}


async def _deploy(
    stack: Stack, version: str, extra_steps: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    await seed(stack)
    action = deploy_action(stack, extra_steps=extra_steps)
    response = await stack.api.post("/v1/actions", json=action)
    assert response.status_code == 201, response.text
    return await stack.launch("deploy_service", entity="payments", inputs={"version": version})


async def _until_step_runs(stack: Stack, run_id: str, index: int) -> None:
    async def under_way() -> bool:
        run = (await stack.api.get(f"/v1/runs/{run_id}")).json()
        return bool(run["steps"][index]["status"] == "IN_PROGRESS")

    await eventually_async(under_way, what=f"step {index} of run {run_id} to start")


async def success_several_kinds(stack: Stack) -> tuple[str, str | None]:
    """catalog.upsert_entity, an http.request skipped by its ``if``, an http.request, and a
    github.workflow_dispatch waited on: all succeed."""
    stack.github.scripts.append(RunScript(conclusion="success", polls=2))
    run = await _deploy(stack, "v1", [DISPATCH_STEP])
    done = await stack.wait_for(run["id"], TERMINAL)
    assert done["status"] == "SUCCESS", done
    assert [s["status"] for s in done["steps"]] == ["SUCCESS", "SKIPPED", "SUCCESS", "SUCCESS"]
    return run["workflow_id"], None


async def failure_compensated(stack: Stack) -> tuple[str, str | None]:
    """The deploy webhook answers 400: the step fails and the recorded entity is compensated."""
    stack.webhook.fail_next(400, {"message": "environment is frozen"}, path="/deploy")
    run = await _deploy(stack, "v2")
    done = await stack.wait_for(run["id"], TERMINAL)
    assert done["status"] == "FAILURE", done
    assert [s["status"] for s in done["steps"]] == ["COMPENSATED", "SKIPPED", "FAILURE"]
    return run["workflow_id"], None


async def failure_fails_workflow(stack: Stack) -> tuple[str, str | None]:
    """As ``failure_compensated``, recorded since a run that does not succeed fails its workflow
    (the ``failed-runs-fail-workflow`` patch): compensated, reported, then WORKFLOW_EXECUTION_FAILED."""
    return await failure_compensated(stack)


async def retry_resumed(stack: Stack) -> tuple[str, str | None]:
    """The failed run above retried: a second execution with ``resume_at``/``previous_steps``."""
    stack.webhook.fail_next(400, {"message": "environment is frozen"}, path="/deploy")
    run = await _deploy(stack, "v3")
    await stack.wait_for(run["id"], TERMINAL)
    retried = await stack.api.post(f"/v1/runs/{run['id']}/retry")
    assert retried.status_code == 202, retried.text
    done = await stack.wait_for(run["id"], TERMINAL)
    assert done["status"] == "SUCCESS", done
    return run["workflow_id"], None  # the latest execution: the retry


async def cancelled(stack: Stack) -> tuple[str, str | None]:
    """Cancelled while it waits on a GitHub run: the build is cancelled, the entity compensated."""
    stack.github.scripts.append(RunScript(conclusion="success", polls=10_000))
    run = await _deploy(stack, "v4", [DISPATCH_STEP])
    await _until_step_runs(stack, run["id"], 3)
    assert (await stack.api.post(f"/v1/runs/{run['id']}/cancel")).status_code == 202
    done = await stack.wait_for(run["id"], TERMINAL)
    assert done["status"] == "CANCELLED", done
    return run["workflow_id"], None


async def sleep_then_webhook(stack: Stack) -> tuple[str, str | None]:
    """A ``sleep`` step (a durable timer in the workflow), then the deploy webhook."""
    run = await _deploy(stack, "v5", [{"id": "settle", "uses": "sleep", "with": {"duration": "PT1S"}}])
    done = await stack.wait_for(run["id"], TERMINAL)
    assert done["status"] == "SUCCESS", done
    return run["workflow_id"], None


async def sub_action(stack: Stack) -> tuple[str, str | None]:
    """A ``uses: action`` step: the catalog prepares the child run, the parent starts it as a
    child workflow and reads its outputs, which the next step renders."""
    for action in (sub_actions.register(stack), sub_actions.provision(stack)):
        assert (await stack.api.post("/v1/actions", json=action)).status_code == 201
    run = await stack.launch("provision", inputs={"name": "recorded"})
    done = await stack.wait_for(run["id"], TERMINAL)
    assert done["status"] == "SUCCESS", done
    return run["workflow_id"], None


def parallel_action(stack: Stack) -> dict[str, Any]:
    """Two branches at once (record, notify), a fan-out over three regions two at a time after
    both, then a check; ``stop`` on failure."""
    hook = stack.webhook.url
    return {
        **deploy_action(stack),
        "identifier": "deploy_regions",
        "strategy": {"on_failure": "stop"},
        "user_inputs": {
            "properties": {
                "version": {"type": "string"},
                "regions": {"type": "array", "default": ["us-east-1", "eu-west-1", "ap-south-1"]},
            },
            "required": ["version"],
        },
        "steps": [
            {**deploy_action(stack)["steps"][0], "needs": []},
            {"id": "notify", "uses": "http.request", "needs": [], "with": {"url": f"{hook}/notify"}},
            {
                "id": "deploy",
                "uses": "http.request",
                "needs": ["record", "notify"],
                "for_each": "{{ inputs.regions }}",
                "max_parallel": 2,
                "with": {"url": f"{hook}/deploy/{{{{ item }}}}", "body": {"index": "{{ index }}"}},
                "compensate": {"uses": "http.request", "with": {"url": f"{hook}/undo/{{{{ item }}}}"}},
            },
            {"id": "verify", "uses": "http.request", "with": {"url": f"{hook}/verify"}},
        ],
    }


async def parallel_fan_out_compensated(stack: Stack) -> tuple[str, str | None]:
    """Parallel steps and a fan-out (the ``parallel-steps`` scheduler): the check after them
    answers 400, so each region's deploy and the record are compensated, last completed first."""
    await seed(stack)
    assert (await stack.api.post("/v1/actions", json=parallel_action(stack))).status_code == 201
    stack.webhook.fail_next(400, {"message": "regions disagree"}, path="/verify")
    run = await stack.launch("deploy_regions", entity="payments", inputs={"version": "v6"})
    done = await stack.wait_for(run["id"], TERMINAL)
    assert done["status"] == "FAILURE", done
    assert [s["status"] for s in done["steps"]] == ["COMPENSATED", "SUCCESS", "COMPENSATED", "FAILURE"]
    assert len(done["steps"][2]["outputs"]) == 3
    return run["workflow_id"], None


async def reconcile_runs(stack: Stack) -> tuple[str, str | None]:
    """One ReconcileRuns execution, as the schedule starts it."""
    workflow_id = "gantry-reconcile-runs-recorded"
    await stack.client.execute_workflow(
        ReconcileRuns.run, id=workflow_id, task_queue=stack.settings.task_queue
    )
    return workflow_id, None


async def regrade_scorecards(stack: Stack) -> tuple[str, str | None]:
    """One RegradeScorecards execution, as the schedule starts it."""
    workflow_id = "gantry-regrade-scorecards-recorded"
    await stack.client.execute_workflow(
        RegradeScorecards.run, id=workflow_id, task_queue=stack.settings.task_queue
    )
    return workflow_id, None


async def reconcile_runs_continued(stack: Stack) -> tuple[str, str | None]:
    """ReconcileRuns as the worker keeps it running: ``PASSES_PER_EXECUTION`` passes, each a
    ``gantry.reconcile_runs`` activity and a durable sleep, then continue-as-new. Recorded on the
    time-skipping server (an hour of sleeps); the history is the first execution's."""
    workflow_id = "gantry-reconcile-runs-continued"
    handle = await stack.client.start_workflow(
        ReconcileRuns.run, id=workflow_id, task_queue=stack.settings.task_queue
    )
    try:
        await handle.result(follow_runs=False)  # skips time while it waits
    except WorkflowContinuedAsNewError:
        pass
    else:
        raise AssertionError("ReconcileRuns ended instead of continuing as new")
    finally:
        await stack.client.get_workflow_handle(workflow_id).terminate("recorded: the loop ends here")
    return workflow_id, handle.first_execution_run_id


async def automation_run(stack: Stack) -> tuple[str, str | None]:
    """An ENTITY_CREATED automation launching an action: rendered, launched, linked."""
    await seed(stack)
    alert, welcome = alert_action(stack.webhook.url), WELCOME
    assert (await stack.api.post("/v1/actions", json=alert)).status_code == 201
    assert (await stack.api.post("/v1/automations", json=welcome)).status_code == 201
    assert (await stack.api.post("/v1/blueprints/service/entities", json={"identifier": "ledger"})).is_success
    created = (
        await stack.api.get("/v1/events", params={"type": "ENTITY_CREATED", "entity": "ledger"})
    ).json()
    workflow_id = f"automation:welcome:{created['items'][0]['id']}"

    async def launched() -> dict[str, Any] | None:
        try:
            return dict(await stack.client.get_workflow_handle(workflow_id).result())
        except RPCError:  # not started yet: the relay delivers it
            return None

    result = await eventually_async(launched, what=f"{workflow_id} to end")
    assert result["status"] == "LAUNCHED", result
    await stack.wait_for(result["run_id"], TERMINAL)
    return workflow_id, None


async def entity_timer(stack: Stack) -> tuple[str, str | None]:
    """A TTL timer armed, reminded, extended through the Update, expired, its on_expiry action
    started and polled to SUCCESS."""
    return await _entity_timer(stack, [])


async def entity_timer_run_ended(stack: Stack) -> tuple[str, str | None]:
    """As ``entity_timer``, but the teardown takes 7 s: the timer polls, waits, and the run's
    ``run_ended`` signal cuts its wait short."""
    return await _entity_timer(stack, [{"id": "drain", "uses": "sleep", "with": {"duration": "PT7S"}}])


async def _entity_timer(stack: Stack, first_steps: list[dict[str, Any]]) -> tuple[str, str | None]:
    blueprint = environment_blueprint(max_ttl="P1D", max_extension="PT1M", remind_before=["PT3S"])
    destroy = teardown_action(stack.webhook.url, first_steps)
    assert (await stack.api.post("/v1/blueprints", json=blueprint)).status_code == 201
    assert (await stack.api.post("/v1/actions", json=destroy)).status_code == 201
    deadline = (datetime.now(UTC) + timedelta(seconds=5)).isoformat()
    env = {"identifier": "env-1", "properties": {"expires_at": deadline}}
    assert (await stack.api.post("/v1/blueprints/environment/entities", json=env)).status_code == 201

    async def timer() -> dict[str, Any]:
        items = (await stack.api.get("/v1/timers", params={"blueprint": "environment"})).json()["items"]
        return dict(items[0])

    await eventually_async(lambda: _reminded(timer), what="env-1's reminder")
    extended = await stack.api.post(
        "/v1/blueprints/environment/entities/env-1/timers/expires_at/extend", json={"by": "PT2S"}
    )
    assert extended.status_code == 200, extended.text
    record = await eventually_async(lambda: _torn_down(timer), what="env-1's teardown")
    assert (record["state"], record["teardown"], len(record["extensions"])) == ("expired", "done", 1), record
    return record["workflow_id"], None


async def _reminded(timer: Callable[[], Awaitable[dict[str, Any]]]) -> bool:
    return bool((await timer())["reminders"])


async def _torn_down(timer: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any] | None:
    record = await timer()
    return record if record["teardown"] in ("done", "failed") else None


async def approval_approved(stack: Stack) -> tuple[str, str | None]:
    """A run waits at the action's approval gate, bob approves it through the API, its step runs
    and it completes: the gate's notifications, the ``decide`` Update, the step after it."""
    users = await people(stack)
    try:
        policy = {"required_approvals": 1, "approvers": {"users": ["bob"]}, "timeout": "PT1H"}
        assert (await stack.api.post("/v1/actions", json=approval_action(stack, policy))).status_code == 201
        run = await waiting(stack, users["alice"])
        approved = await users["bob"].post(
            f"/v1/runs/{run['id']}/approval", json={"decision": "APPROVE", "comment": "lgtm"}
        )
        assert approved.status_code == 200, approved.text
        done = await stack.wait_for(run["id"], TERMINAL)
        assert done["status"] == "SUCCESS", done
        return run["workflow_id"], None
    finally:
        for client in users.values():
            await client.aclose()


async def data_source_sync(stack: Stack) -> tuple[str, str | None]:
    """A GitHub source synced through the API: its repositories pulled over two pages, then a
    resource kind GitHub does not have, so the sync ends PARTIAL (both ways a pull ends)."""
    GITHUB_ORG.add_repos(120)
    repositories: dict[str, Any] = GITHUB_SOURCE["resources"][0]
    source = {**GITHUB_SOURCE, "resources": [repositories, {**repositories, "kind": "gist"}]}
    for path, body in (
        ("/v1/teams", {"identifier": "payments-team", "title": "Payments"}),
        ("/v1/blueprints", SYSTEM_BLUEPRINT),
        ("/v1/blueprints", SERVICE_BLUEPRINT),
        ("/v1/data-sources", source),
    ):
        created = await stack.api.post(path, json=body)
        assert created.status_code == 201, created.text
    started = await stack.api.post("/v1/data-sources/github_acme/syncs")
    assert started.status_code == 202, started.text
    sync_id = started.json()["id"]

    async def ended() -> dict[str, Any] | None:
        record = (await stack.api.get(f"/v1/data-sources/github_acme/syncs/{sync_id}")).json()
        return record if record["status"] != "RUNNING" else None

    record = await eventually_async(ended, timeout=60, what=f"sync {sync_id}")
    assert record["status"] == "PARTIAL" and record["counts"]["created"] == 120, record
    workflow_id = f"sync:github_acme:{sync_id}"
    await stack.client.get_workflow_handle(workflow_id).result()  # the record ends just before it
    return workflow_id, None


async def data_source_sync_push(stack: Stack) -> tuple[str, str | None]:
    """A files source's sync started by a signed GitHub push: it reads just the pushed
    repository (``repositories`` in its input) and ends SUCCESS."""
    os.environ[push.SECRET_ENV] = push.SECRET
    team = {"identifier": "payments-team", "title": "Payments"}
    assert (await stack.api.post("/v1/teams", json=team)).status_code == 201
    for blueprint in builtin_blueprints():
        url = f"/v1/blueprints/{blueprint['identifier']}"
        exists = (await stack.api.get(url)).status_code == 200
        saved = await (
            stack.api.put(url, json=blueprint) if exists else stack.api.post("/v1/blueprints", json=blueprint)
        )
        assert saved.status_code in (200, 201), saved.text
    assert (await stack.api.post("/v1/data-sources", json=push.FILES)).status_code == 201
    GITHUB_ORG.add_repo("payments")
    GITHUB_ORG.add_file("payments", "catalog-info.yaml", push.catalog_component("payments"))
    raw, headers = push.signed(push.push_event(), "recorded-push")
    pushed = await stack.api.post("/v1/webhooks/catalog_files", content=raw, headers=headers)
    assert pushed.status_code == 202 and pushed.json()["accepted"] is True, pushed.text

    async def ended() -> dict[str, Any] | None:
        record = (await stack.api.get("/v1/data-sources/catalog_files/syncs/push-recorded-push")).json()
        return record if record["status"] != "RUNNING" else None

    record = await eventually_async(ended, timeout=60, what="the push's sync")
    assert record["status"] == "SUCCESS" and record["counts"]["created"] == 1, record
    workflow_id = "sync:catalog_files:push-recorded-push"
    await stack.client.get_workflow_handle(workflow_id).result()  # the record ends just before it
    return workflow_id, None


async def _skip(span: timedelta) -> None:
    """Skip ``span`` of workflow time on the time-skipping server the scenario runs on, a day at
    a time (each timer fires and its activities run before the next day is skipped)."""
    assert SKIPPING is not None
    left = span
    while left > timedelta(0):
        step = min(left, timedelta(days=1))
        await SKIPPING.sleep(step)
        left -= step


async def _server_now() -> datetime:
    """The time-skipping server's clock (earlier scenarios on it moved it on)."""
    assert SKIPPING is not None
    return await SKIPPING.get_current_time()


async def initiative_reminded_moved_reported(stack: Stack) -> tuple[str, str | None]:
    """An initiative's workflow from creation to its end: the deadline moved a day later (the
    timers re-armed), a reminder a day before it (Slack not configured: recorded only), the
    final report at the deadline. Recorded on the time-skipping server."""
    await seed(stack)
    scorecard = {
        "identifier": "readiness",
        "title": "Readiness",
        "levels": [{"title": "Basic"}, {"title": "Bronze"}],
        "rules": [
            {
                "identifier": "has_team",
                "level": "Bronze",
                "query": {"combinator": "and", "rules": [{"property": "$team", "operator": "isNotEmpty"}]},
            }
        ],
    }
    assert (await stack.api.post("/v1/blueprints/service/scorecards", json=scorecard)).status_code == 201
    assert (await stack.api.post("/v1/blueprints/service/entities", json={"identifier": "ledger"})).is_success
    start = await _server_now()
    body = {
        "identifier": "recorded",
        "title": "Every service owned",
        "targets": [{"blueprint": "service", "scorecard": "readiness", "level": "Bronze"}],
        "deadline": (start + timedelta(days=2)).isoformat(),
        "remind_before": ["P1D"],
    }
    assert (await stack.api.post("/v1/initiatives", json=body)).status_code == 201
    moved = {**body, "deadline": (start + timedelta(days=3)).isoformat()}
    assert (await stack.api.put("/v1/initiatives/recorded", json=moved)).status_code == 200
    handle = stack.client.get_workflow_handle("initiative:recorded")

    async def rearmed() -> bool:
        view = await handle.query("view")
        return bool(view["deadline"] and view["deadline"][:10] == moved["deadline"][:10])

    await eventually_async(rearmed, what="the moved deadline in the workflow")
    await _skip(timedelta(days=3, minutes=5))  # to the reminder, then past the deadline
    result = await handle.result()
    assert result["state"] == "reported" and len(result["reminded"]) == 1, result
    return handle.id, None


async def exemption_expired(stack: Stack) -> tuple[str, str | None]:
    """An exemption requested by an owner, approved by an admin, expired by its timer two
    hours on: the ExemptionExpiry workflow. Recorded on the time-skipping server."""
    for body in (
        ("/v1/teams", {"identifier": "payments", "title": "Payments"}),
        ("/v1/users", {"identifier": "olive", "email": "olive@example.com", "teams": ["payments"]}),
        (
            "/v1/blueprints",
            {
                "identifier": "service",
                "title": "Service",
                "schema": {"properties": {"docs": {"type": "string"}}},
            },
        ),
        ("/v1/blueprints/service/entities", {"identifier": "pay", "team": ["payments"]}),
        (
            "/v1/blueprints/service/scorecards",
            {
                "identifier": "readiness",
                "title": "Readiness",
                "levels": [{"title": "Basic"}, {"title": "Bronze"}],
                "rules": [
                    {
                        "identifier": "has_docs",
                        "level": "Bronze",
                        "query": {
                            "combinator": "and",
                            "rules": [{"property": "docs", "operator": "isNotEmpty"}],
                        },
                    }
                ],
            },
        ),
    ):
        created = await stack.api.post(body[0], json=body[1])
        assert created.status_code == 201, created.text
    token = (await stack.api.post("/v1/tokens", json={"user": "olive"})).json()["token"]
    asked = await stack.api.post(
        "/v1/blueprints/service/scorecards/readiness/exemptions",
        json={
            "entity": "pay",
            "rule": "has_docs",
            "reason": "the docs site moves next week",
            "expires_at": (await _server_now() + timedelta(hours=2)).isoformat(),
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert asked.status_code == 201, asked.text
    exemption = asked.json()

    async def gate_open() -> bool:
        run = (await stack.api.get(f"/v1/runs/{exemption['run_id']}")).json()
        return (run.get("approval") or {}).get("status") == "PENDING"

    await eventually_async(gate_open, what="the exemption's approval gate")
    decided = await stack.api.post(f"/v1/runs/{exemption['run_id']}/approval", json={"decision": "APPROVE"})
    assert decided.status_code == 200, decided.text
    await stack.wait_for(exemption["run_id"], {"SUCCESS"})
    handle = stack.client.get_workflow_handle(f"exemption:{exemption['id']}")
    await _skip(timedelta(hours=2, minutes=5))
    assert await handle.result() == {"status": "EXPIRED"}
    return handle.id, None


SCENARIOS: dict[str, Scenario] = {
    "action_run_success_several_kinds": success_several_kinds,
    "action_run_failure_compensated": failure_compensated,
    "action_run_failure_fails_workflow": failure_fails_workflow,
    "action_run_retry_resumed": retry_resumed,
    "action_run_cancelled": cancelled,
    "action_run_sleep": sleep_then_webhook,
    "action_run_sub_action": sub_action,
    "reconcile_runs": reconcile_runs,
    "reconcile_runs_continued": reconcile_runs_continued,
    "regrade_scorecards": regrade_scorecards,
    "automation_run": automation_run,
    "entity_timer": entity_timer,
    "entity_timer_run_ended": entity_timer_run_ended,
    "action_run_approval_approved": approval_approved,
    "data_source_sync": data_source_sync,
    "data_source_sync_push": data_source_sync_push,
    "initiative_reminded_moved_reported": initiative_reminded_moved_reported,
    "exemption_expired": exemption_expired,
    "action_run_parallel_fan_out_compensated": parallel_fan_out_compensated,
}


async def record(
    name: str, scenario: Scenario, temporal: WorkflowEnvironment, fakes: dict[str, Any], root: Path
) -> Path:
    for fake in fakes.values():
        fake.reset()
    tmp = root / name
    tmp.mkdir()
    client = temporal.client
    vendors: dict[str, Any] = {
        "github_token": FakeGitHub.token,
        "github_api_url": fakes["github"].url,
        "jira_url": fakes["jira"].url,
        "jira_user": "bot@example.com",
        "jira_token": "jira-token",
    }
    if name in GITHUB_ORG_SCENARIOS:
        vendors.update(github_token=FakeGitHubOrg.token, github_api_url=fakes["github_org"].url)
    if name in NO_SEARCH_ATTRIBUTES:
        vendors["temporal_search_attributes"] = False
    settings = stack_settings(tmp, temporal, **vendors)
    global SKIPPING
    SKIPPING = temporal if name in TIME_SKIPPING else None
    with serve_api(settings) as api_url:
        settings = settings.model_copy(update={"api_url": api_url})
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with (
            httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as api,
            Worker(
                client,
                task_queue=settings.task_queue,
                workflows=ALL_WORKFLOWS,
                activities=build_activities(settings),
            ),
        ):
            stack = Stack(settings, api, client, fakes["webhook"], fakes["github"], fakes["jira"])
            workflow_id, run_id = await scenario(stack)
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    path = HISTORIES / f"{name}.json"
    path.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
    return path


async def main(only: list[str]) -> None:
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenario(s) {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    HISTORIES.mkdir(exist_ok=True)
    fakes: dict[str, Any] = {
        "webhook": FakeWebhookReceiver(WEBHOOK_SECRET),
        "github": FakeGitHub(),
        "jira": FakeJira(),
        "github_org": GITHUB_ORG,
    }
    with (
        tempfile.TemporaryDirectory() as root,
        serve(fakes["webhook"].app) as webhook_url,
        serve(fakes["github"].app) as github_url,
        serve(fakes["jira"].app) as jira_url,
        serve(GITHUB_ORG.app) as github_org_url,
    ):
        GITHUB_ORG.url = github_org_url
        fakes["webhook"].url, fakes["github"].url, fakes["jira"].url = webhook_url, github_url, jira_url
        chosen = {name: s for name, s in SCENARIOS.items() if not only or name in only}
        for skipping in (False, True):
            todo = {name: s for name, s in chosen.items() if (name in TIME_SKIPPING) == skipping}
            if not todo:
                continue
            async with start_time_skipping() if skipping else start_dev_server() as temporal:
                for name, scenario in todo.items():
                    path = await record(name, scenario, temporal, fakes, Path(root))
                    shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
                    print(f"recorded {shown}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", default=[], help="record only these scenarios")
    asyncio.run(main(parser.parse_args().only))
