"""Automations end to end on a real dev server: an event is written with the change, relayed to
Temporal, matched by type and jq condition, and invokes an action as an AUTOMATION run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from devtools.testing import eventually_async
from tests.fakes.jira import FakeJira
from tests.fakes.server import serve
from tests.fakes.slack import FakeSlack
from tests.fakes.webhook import FakeWebhookReceiver
from tests.workflows.conftest import Stack, running_stack, stack_settings
from tests.workflows.test_timer_durability import environment_blueprint, teardown_action

SERVICE = {
    "identifier": "service",
    "title": "Service",
    "schema": {
        "properties": {
            "repo": {"type": "string"},
            "tier": {"type": "integer"},
            "touches": {"type": "integer"},
        }
    },
}
# An automation on every new service, invoking ``alert_action``.
WELCOME: dict[str, Any] = {
    "identifier": "welcome",
    "trigger": {"event": "ENTITY_CREATED", "blueprint": "service"},
    "invoke": {"action": "alert", "inputs": {"text": "new service {{ event.entity }}"}},
}


def alert_action(webhook_url: str) -> dict[str, Any]:
    """An action posting its ``text`` input to the fake webhook's ``/alert``."""
    return {
        "identifier": "alert",
        "title": "Alert",
        "trigger": {"operation": "CREATE"},
        "user_inputs": {"properties": {"text": {"type": "string"}}},
        "steps": [
            {
                "id": "post",
                "uses": "http.request",
                "with": {"url": f"{webhook_url}/alert", "body": {"text": "{{ inputs.text }}"}},
            }
        ],
    }


READINESS = {
    "identifier": "production_readiness",
    "title": "Production readiness",
    "levels": [{"title": "Basic"}, {"title": "Bronze"}, {"title": "Silver"}],
    "rules": [
        {
            "identifier": "has_owner",
            "level": "Bronze",
            "query": {"combinator": "and", "rules": [{"property": "$team", "operator": "isNotEmpty"}]},
        },
        {
            "identifier": "has_repo",
            "level": "Silver",
            "query": {"combinator": "and", "rules": [{"property": "repo", "operator": "isNotEmpty"}]},
        },
    ],
}


@pytest.fixture
async def slack_stack(
    tmp_path: Path, temporal: WorkflowEnvironment, webhook: FakeWebhookReceiver, jira: FakeJira
) -> AsyncIterator[tuple[Stack, FakeSlack]]:
    """The stack with Jira and Slack configured against their fakes."""
    webhook.reset()
    jira.reset()
    slack = FakeSlack()
    with serve(slack.app) as slack_url:
        settings = stack_settings(
            tmp_path,
            temporal,
            jira_url=jira.url,
            jira_user=FakeJira.user,
            jira_token=FakeJira.token,
            slack_bot_token=FakeSlack.token,
            slack_api_url=f"{slack_url}/api/",
        )
        async with running_stack(settings, temporal, webhook, None, jira) as stack:  # type: ignore[arg-type]
            yield stack, slack


async def seed(stack: Stack) -> None:
    await stack.api.post("/v1/teams", json={"identifier": "payments-team", "title": "Payments"})
    assert (await stack.api.post("/v1/blueprints", json=SERVICE)).status_code == 201
    assert (await stack.api.post("/v1/blueprints/service/scorecards", json=READINESS)).status_code == 201


async def runs_of(stack: Stack, action: str) -> list[dict[str, Any]]:
    return list((await stack.api.get(f"/v1/runs?action={action}")).json()["items"])


async def test_a_readiness_drop_opens_a_ticket(slack_stack: tuple[Stack, FakeSlack]) -> None:
    stack, slack = slack_stack
    await seed(stack)
    ticket = {
        "identifier": "open_readiness_ticket",
        "title": "Open readiness ticket",
        "blueprint": "service",
        "trigger": {"operation": "DAY-2"},
        "user_inputs": {"properties": {"reason": {"type": "string"}}},
        "steps": [
            {
                "id": "ticket",
                "uses": "jira.create_issue",
                "with": {
                    "project": "OPS",
                    "summary": "{{ entity.identifier }} readiness dropped: {{ inputs.reason }}",
                    "labels": ["readiness"],
                },
            },
            {
                "id": "tell",
                "uses": "slack.post_message",
                "with": {"channel": "C0GENERAL", "text": "readiness ticket: {{ steps.ticket.outputs.url }}"},
            },
        ],
    }
    assert (await stack.api.post("/v1/actions", json=ticket)).status_code == 201
    automation = {
        "identifier": "ticket_on_readiness_drop",
        "enabled": True,
        "trigger": {
            "event": "SCORECARD_LEVEL_CHANGED",
            "blueprint": "service",
            "condition": '.scorecard.direction == "DROPPED"',
        },
        "invoke": {
            "action": "open_readiness_ticket",
            "entity": "{{ event.entity }}",
            "inputs": {"reason": "{{ event.scorecard.from }} -> {{ event.scorecard.to }}"},
        },
    }
    assert (await stack.api.post("/v1/automations", json=automation)).status_code == 201
    body = {"identifier": "payments", "team": ["payments-team"], "properties": {"repo": "https://x"}}
    await stack.api.post("/v1/blueprints/service/entities", json=body)
    raised = await stack.api.patch(
        "/v1/blueprints/service/entities/payments", json={"properties": {"repo": None}}
    )
    assert raised.json()["scorecards"]["production_readiness"]["level"] == "Bronze"

    (run,) = await eventually_async(lambda: runs_of(stack, "open_readiness_ticket"))
    done = await stack.wait_for(run["id"], {"SUCCESS", "FAILURE"})
    assert done["status"] == "SUCCESS", done["error"]
    assert done["source"] == "AUTOMATION" and done["entity"] == "payments"
    assert done["inputs"] == {"reason": "Silver -> Bronze"}
    (event,) = (await stack.api.get("/v1/events?type=SCORECARD_LEVEL_CHANGED&entity=payments")).json()[
        "items"
    ]
    assert done["trigger"] == {"automation": "ticket_on_readiness_drop", "event_id": event["id"], "depth": 1}
    (issue,) = stack.jira.issues.values()
    assert issue["fields"]["summary"] == "payments readiness dropped: Silver -> Bronze"
    (post,) = slack.calls("POST", r"chat\.postMessage$")
    assert "readiness ticket: " in str(post.json or post.form) and "C0GENERAL" in str(post.json or post.form)
    workflow = await stack.client.get_workflow_handle(
        f"automation:ticket_on_readiness_drop:{event['id']}"
    ).result()
    assert workflow == {"status": "LAUNCHED", "run_id": run["id"]}


async def test_run_failures_and_creations_trigger_and_disabled_ones_do_not(stack: Stack) -> None:
    await seed(stack)
    deploy = {
        "identifier": "deploy",
        "title": "Deploy",
        "blueprint": "service",
        "trigger": {"operation": "DAY-2"},
        "steps": [{"id": "call", "uses": "http.request", "with": {"url": f"{stack.webhook.url}/deploy"}}],
    }
    alert = alert_action(stack.webhook.url)
    for action in (deploy, alert):
        assert (await stack.api.post("/v1/actions", json=action)).status_code == 201
    on_failure = {
        "identifier": "alert_on_failed_deploy",
        "trigger": {"event": "RUN_UPDATED", "action": "deploy", "condition": '.run.status == "FAILURE"'},
        "invoke": {
            "action": "alert",
            "inputs": {"text": "deploy {{ event.run.id }} failed: {{ event.run.error }}"},
        },
    }
    on_create = WELCOME
    disabled = {
        "identifier": "never",
        "enabled": False,
        "trigger": {"event": "ENTITY_CREATED"},
        "invoke": {"action": "alert", "inputs": {"text": "never"}},
    }
    for automation in (on_failure, on_create, disabled):
        assert (await stack.api.post("/v1/automations", json=automation)).status_code == 201

    await stack.api.post("/v1/blueprints/service/entities", json={"identifier": "ledger"})
    stack.webhook.fail_next(400, {"message": "frozen"}, path="/deploy")
    run = await stack.launch("deploy", entity="ledger")
    await stack.wait_for(run["id"], {"FAILURE"})

    async def alerts() -> list[str] | None:
        texts = sorted(str(c.json["text"]) for c in stack.webhook.calls("POST", "/alert"))
        return texts if len(texts) >= 2 else None

    texts = await eventually_async(alerts)
    assert texts[0].startswith(f"deploy {run['id']} failed: ") and "frozen" in texts[0]
    assert texts[1] == "new service ledger"
    # The relay starts every matching automation of an event before it marks the event
    # delivered: once ledger's creation is delivered, the disabled one would have started.
    (created,) = await eventually_async(
        lambda: _delivered(stack, "ledger", "ENTITY_CREATED"), what="ledger's creation to be delivered"
    )
    with pytest.raises(RPCError) as never:
        await stack.client.get_workflow_handle(f"automation:never:{created['id']}").describe()
    assert never.value.status == RPCStatusCode.NOT_FOUND
    assert len(stack.webhook.calls("POST", "/alert")) == 2  # the disabled automation never fired


async def _delivered(stack: Stack, entity: str, kind: str) -> list[dict[str, Any]] | None:
    """The entity's events of ``kind``, once every one of them is delivered."""
    found = (await stack.api.get(f"/v1/events?entity={entity}&type={kind}")).json()["items"]
    return found if found and all(e["delivered"] for e in found) else None


async def test_an_automation_that_retriggers_itself_is_cut_off(stack: Stack) -> None:
    await seed(stack)
    touch = {
        "identifier": "touch",
        "title": "Touch",
        "blueprint": "service",
        "trigger": {"operation": "DAY-2"},
        "steps": [
            {
                "id": "write",
                "uses": "catalog.upsert_entity",
                "with": {
                    "blueprint": "service",
                    "identifier": "{{ entity.identifier }}",
                    "merge": True,
                    "properties": {"touches": "{{ entity.properties.get('touches', 0) + 1 }}"},
                },
            }
        ],
    }
    assert (await stack.api.post("/v1/actions", json=touch)).status_code == 201
    loop = {
        "identifier": "loop",
        "trigger": {"event": "ENTITY_UPDATED", "blueprint": "service"},
        "invoke": {"action": "touch", "entity": "{{ event.entity }}"},
    }
    assert (await stack.api.post("/v1/automations", json=loop)).status_code == 201
    await stack.api.post("/v1/blueprints/service/entities", json={"identifier": "cart"})
    await stack.api.patch("/v1/blueprints/service/entities/cart", json={"title": "Cart"})

    async def cut_off() -> list[dict[str, Any]] | None:
        updated = (await stack.api.get("/v1/events?type=ENTITY_UPDATED&entity=cart")).json()["items"]
        notes = [e for e in updated if e["last_error"] and "cut off" in e["last_error"]]
        return notes or None

    (note,) = await eventually_async(cut_off)
    assert "GANTRY_AUTOMATION_MAX_DEPTH=3" in note["last_error"]
    runs = await runs_of(stack, "touch")
    assert sorted(r["trigger"]["depth"] for r in runs) == [1, 2, 3]
    entity = (await stack.api.get("/v1/blueprints/service/entities/cart")).json()
    assert entity["properties"]["touches"] == 3


async def test_bad_automations_are_422(stack: Stack) -> None:
    await seed(stack)
    bad = {
        "identifier": "bad",
        "trigger": {"event": "ENTITY_EXPLODED", "condition": ".a =="},
        "invoke": {"action": "nope", "inputs": {"x": "{{ entity.identifier }}"}},
    }
    response = await stack.api.post("/v1/automations", json=bad)
    assert response.status_code == 422
    details = {d["pointer"]: d["message"] for d in response.json()["error"]["details"]}
    assert details["/trigger/condition"].startswith("jq: jq: error: syntax error")
    assert set(details) == {"/trigger/event", "/trigger/condition", "/invoke/action", "/invoke/inputs"}


async def test_a_timer_expiry_fires_its_automation_on_a_dev_server(stack: Stack) -> None:
    environment = {
        "identifier": "environment",
        "title": "Environment",
        "schema": {"properties": {"expires_at": {"type": "string", "format": "timer"}}},
    }
    assert (await stack.api.post("/v1/blueprints", json=environment)).status_code == 201
    notify = {
        "identifier": "notify",
        "title": "Notify",
        "trigger": {"operation": "CREATE"},
        "user_inputs": {"properties": {"text": {"type": "string"}}},
        "steps": [
            {
                "id": "post",
                "uses": "http.request",
                "with": {"url": f"{stack.webhook.url}/expired", "body": {"text": "{{ inputs.text }}"}},
            }
        ],
    }
    assert (await stack.api.post("/v1/actions", json=notify)).status_code == 201
    automation = {
        "identifier": "tell_on_expiry",
        "trigger": {"event": "TIMER_EXPIRED", "blueprint": "environment"},
        "invoke": {"action": "notify", "inputs": {"text": "{{ event.entity }} expired"}},
    }
    assert (await stack.api.post("/v1/automations", json=automation)).status_code == 201
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    await stack.api.post(
        "/v1/blueprints/environment/entities", json={"identifier": "pr-7", "properties": {"expires_at": soon}}
    )

    async def told() -> bool:
        return bool(stack.webhook.calls("POST", "/expired"))

    await eventually_async(told)
    (call,) = stack.webhook.calls("POST", "/expired")
    assert call.json == {"text": "pr-7 expired"}


async def test_a_teardown_run_that_ends_tells_its_timer_at_once(stack: Stack) -> None:
    """The on-expiry run's RUN_UPDATED (terminal) is relayed to its timer as ``run_ended``: the
    timer stops waiting for its next poll (8 s away here) and records the teardown done."""
    environment = environment_blueprint()
    # Long enough that the timer's polls (at 0, 2 and 6 s) find it running and it then waits 8 s:
    # only the signal ends that wait before the timer fires.
    destroy = teardown_action(
        stack.webhook.url, [{"id": "drain", "uses": "sleep", "with": {"duration": "PT7S"}}]
    )
    assert (await stack.api.post("/v1/blueprints", json=environment)).status_code == 201
    assert (await stack.api.post("/v1/actions", json=destroy)).status_code == 201
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    body = {"identifier": "pr-8", "properties": {"expires_at": soon}}
    assert (await stack.api.post("/v1/blueprints/environment/entities", json=body)).status_code == 201

    async def torn_down() -> dict[str, Any] | None:
        items = (await stack.api.get("/v1/timers", params={"blueprint": "environment"})).json()["items"]
        return items[0] if items and items[0]["teardown"] in ("done", "failed") else None

    timer = await eventually_async(torn_down, timeout=60)
    assert timer["teardown"] == "done", timer
    run = (await stack.api.get(f"/v1/runs/{timer['on_expiry_run']}")).json()
    assert run["trigger"] == {"timer": "timer:environment:pr-8:expires_at"}

    history = await stack.client.get_workflow_handle(timer["workflow_id"]).fetch_history()
    kinds = [(EventType.Name(e.event_type), e) for e in history.events]
    signalled = next(
        i
        for i, (kind, e) in enumerate(kinds)
        if kind == "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED"
        and e.workflow_execution_signaled_event_attributes.signal_name == "run_ended"
    )
    after = [kind for kind, _ in kinds[signalled:]]
    assert "EVENT_TYPE_TIMER_CANCELED" in after  # the 8 s wait was cut short by the signal
    assert "EVENT_TYPE_TIMER_FIRED" not in after
