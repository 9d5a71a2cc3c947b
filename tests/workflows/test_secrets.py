"""A secret input reaches the vendor, and nowhere else: not the run record, its logs, the audit
log, the database, or the workflow's history in Temporal."""

from __future__ import annotations

import base64
import json
import re
import sqlite3
from typing import Any

from catalog.runs import secrets
from tests.workflows.conftest import Stack

CANARY = "canary-s3cr3t-7781"


async def test_secret_inputs_stay_out_of_records_and_history(stack: Stack) -> None:
    action = {
        "identifier": "rotate_password",
        "title": "Rotate password",
        "trigger": {"operation": "CREATE"},
        "user_inputs": {
            "properties": {"db_password": {"type": "string", "secret": True}, "database": {"type": "string"}},
            "required": ["db_password", "database"],
        },
        "steps": [
            {
                "id": "call",
                "uses": "http.request",
                "with": {
                    "url": f"{stack.webhook.url}/rotate",
                    "headers": {"X-Db-Password": "{{ inputs.db_password }}"},
                    "body": {"database": "{{ inputs.database }}", "password": "{{ inputs.db_password }}"},
                },
            }
        ],
    }
    assert (await stack.api.post("/v1/actions", json=action)).status_code == 201
    run = await stack.launch("rotate_password", inputs={"db_password": CANARY, "database": "orders-db"})
    done = await stack.wait_for(run["id"], {"SUCCESS", "FAILURE"})
    assert done["status"] == "SUCCESS", done["error"]

    (delivery,) = stack.webhook.calls("POST", "/rotate")
    assert delivery.headers["x-db-password"] == CANARY
    assert delivery.json == {"database": "orders-db", "password": CANARY}

    assert done["inputs"] == {"db_password": "********", "database": "orders-db"}
    assert CANARY not in str(done)
    assert CANARY not in str((await stack.api.get(f"/v1/runs/{run['id']}/logs")).json())
    assert CANARY not in str((await stack.api.get("/v1/audit-log?limit=1000")).json())

    database = stack.settings.resolved_database_url.removeprefix("sqlite:///")
    with sqlite3.connect(database) as conn:
        dump = "\n".join(conn.iterdump())
    assert "orders-db" in dump and CANARY not in dump

    history = await stack.client.get_workflow_handle(run["workflow_id"]).fetch_history()
    text = decoded_payloads(history.to_json())
    assert "orders-db" in text  # ordinary inputs stay readable in Temporal UI
    assert CANARY not in text
    # The steps saw the input as this run's marked placeholder, which only the activity resolves.
    assert re.search(r"\$\{secret:[0-9a-f]{32}:db_password\}", text)


async def test_placeholders_written_into_data_stay_literal(stack: Stack) -> None:
    """A member's entity title that looks like a placeholder never fetches another run's secret."""
    assert (
        await stack.api.post("/v1/blueprints", json={"identifier": "service", "title": "Service"})
    ).status_code == 201
    forged = "${secret:registry_token} ${secret:" + "0" * 32 + ":registry_token}"
    entity = {"identifier": "api", "title": forged}
    assert (await stack.api.post("/v1/blueprints/service/entities", json=entity)).status_code == 201
    action = {
        "identifier": "deploy",
        "title": "Deploy",
        "blueprint": "service",
        "trigger": {"operation": "DAY-2"},
        "user_inputs": {
            "properties": {"registry_token": {"type": "string", "secret": True}},
            "required": ["registry_token"],
        },
        "steps": [
            {
                "id": "call",
                "uses": "http.request",
                "with": {
                    "url": f"{stack.webhook.url}/deploy",
                    "headers": {"X-Registry-Token": "{{ inputs.registry_token }}"},
                    "body": {"service": "{{ entity.title }}"},
                },
            }
        ],
    }
    assert (await stack.api.post("/v1/actions", json=action)).status_code == 201
    run = await stack.launch("deploy", entity="api", inputs={"registry_token": CANARY})
    done = await stack.wait_for(run["id"], {"SUCCESS", "FAILURE"})
    assert done["status"] == "SUCCESS", done["error"]

    (delivery,) = stack.webhook.calls("POST", "/deploy")
    assert delivery.headers["x-registry-token"] == CANARY
    assert delivery.json == {"service": forged}


def test_only_the_runs_own_marker_is_substituted() -> None:
    marker, other = "ab" * 16, "cd" * 16
    values = {"token": CANARY}
    text = f"{secrets.placeholder('token', marker)} {secrets.placeholder('token', other)} ${{secret:token}}"
    assert secrets.resolve(text, values, marker) == f"{CANARY} ${{secret:{other}:token}} ${{secret:token}}"
    assert secrets.resolve(text, values, "") == text
    assert secrets.mentions_secret({"a": [text]}, marker) and not secrets.mentions_secret(
        "${secret:token}", marker
    )


def decoded_payloads(history_json: str) -> str:
    """Every payload of a history, decoded: what Temporal UI shows an operator."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "data" and isinstance(value, str):
                    found.append(base64.b64decode(value).decode(errors="replace"))
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(history_json))
    return "\n".join(found)
