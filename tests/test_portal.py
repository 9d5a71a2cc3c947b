"""The example portal (``portal/``) applies to the real API app, and its scorecard, actions and
automations do what their YAML says: readiness is graded on apply and on every write, and each
automation's condition picks the events it is meant for and renders its invocation."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

import cli
from catalog.automations.service import matches
from catalog.sandbox.templates import render_value
from config import Settings
from devtools.testing import eventually
from tests.temporal_env import DevServerProcess

pytestmark = pytest.mark.temporal

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "portal-test-admin-token"
AUTOMATIONS = {
    "ticket_on_readiness_drop": ("SCORECARD_LEVEL_CHANGED", "open_readiness_ticket"),
    "notify_on_environment_expiry": ("TIMER_EXPIRED", "notify"),
    "alert_on_failed_production_deploy": ("RUN_UPDATED", "notify"),
}


def _started(server: uvicorn.Server, thread: threading.Thread) -> bool:
    """Whether uvicorn serves yet; a thread that ended has failed, which no waiting mends."""
    if not thread.is_alive():
        raise RuntimeError("the API's thread ended before it started serving")
    return bool(server.started)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """The real API app on uvicorn, with ``portal/`` applied through ``gantry apply``."""
    from api.app import create_app

    data_dir = tmp_path_factory.mktemp("portal-api")
    # The example portal schedules a data source and arms an initiative: saving them needs Temporal.
    with DevServerProcess(data_dir / "temporal.db") as temporal:
        settings = Settings.model_validate(
            {"data_dir": data_dir, "admin_token": ADMIN_TOKEN, "temporal_address": temporal.address}
        )
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        eventually(lambda: _started(server, thread), timeout=30, what="the API to start")
        url = f"http://127.0.0.1:{port}"
        try:
            assert (
                cli.main(["--api-url", url, "--token", ADMIN_TOKEN, "apply", str(ROOT / "portal"), "--yes"])
                == 0
            )
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
                yield client
        finally:
            server.should_exit = True
            thread.join(10)


def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def _level(api: httpx.Client, service: str) -> str:
    entity = _ok(api.get(f"/v1/blueprints/service/entities/{service}"))
    return str(entity["scorecards"]["production_readiness"]["level"])


def test_the_readiness_scorecard_grades_every_service(api: httpx.Client) -> None:
    scorecard = _ok(api.get("/v1/blueprints/service/scorecards/production_readiness"))
    assert [level["title"] for level in scorecard["levels"]] == ["Basic", "Bronze", "Silver", "Gold"]
    assert len(scorecard["rules"]) >= 5

    levels = {s: _level(api, s) for s in ("payments", "ledger", "payouts", "recommendations")}
    assert levels == {"payments": "Gold", "ledger": "Silver", "payouts": "Bronze", "recommendations": "Basic"}
    results = _ok(api.get("/v1/blueprints/service/scorecards/production_readiness/results"))
    assert results["total"] == 7
    assert results["distribution"] == {"Basic": 1, "Bronze": 3, "Silver": 2, "Gold": 1}
    ledger = _ok(api.get("/v1/blueprints/service/entities/ledger"))["scorecards"]["production_readiness"]
    failing = [r["identifier"] for r in ledger["rules"] if r["status"] == "FAILURE"]
    assert failing == ["has_runbook"]


def test_the_actions_and_automations_exist(api: httpx.Client) -> None:
    ticket = _ok(api.get("/v1/actions/open_readiness_ticket"))
    assert ticket["blueprint"] == "service" and ticket["trigger"]["operation"] == "DAY-2"
    assert [s["uses"] for s in ticket["steps"]] == ["jira.create_issue", "slack.post_message"]
    notify = _ok(api.get("/v1/actions/notify"))
    assert notify["steps"][0]["with"]["url"] == "http://127.0.0.1:8099/notify"
    for identifier, (event, action) in AUTOMATIONS.items():
        automation = _ok(api.get(f"/v1/automations/{identifier}"))
        assert automation["enabled"] is True
        assert (automation["trigger"]["event"], automation["invoke"]["action"]) == (event, action)


def test_the_multi_region_deploy_fans_out_over_the_regions(api: httpx.Client) -> None:
    action = _ok(api.get("/v1/actions/deploy_service_multi_region"))
    deploy = action["steps"][1]
    assert (deploy["for_each"], deploy["max_parallel"]) == ("{{ inputs.regions }}", 2)
    body = {"entity": "payments", "inputs": {"version": "v1.44.0", "environment": "staging"}}
    plan = _ok(
        api.post("/v1/actions/deploy_service_multi_region/runs", params={"dry_run": "true"}, json=body)
    )
    regions = ["us-east-1", "eu-west-1", "ap-south-1"]
    assert [(s["id"], s["needs"], s["for_each"]) for s in plan["steps"]] == [
        ("production_approval", [], None),
        ("deploy", ["production_approval"], regions),
        ("record", ["deploy"], regions),
    ]
    assert plan["steps"][0]["would_run"] is False  # staging: no approval


def test_a_drop_below_silver_matches_the_ticket_automation(api: httpx.Client) -> None:
    """Ledger loses its on-call: Silver -> Bronze, an event the automation picks and renders."""
    automation = _ok(api.get("/v1/automations/ticket_on_readiness_drop"))
    condition = automation["trigger"]["condition"]
    patch = api.patch("/v1/blueprints/service/entities/ledger", json={"properties": {"on_call": None}})
    try:
        assert _ok(patch)["scorecards"]["production_readiness"]["level"] == "Bronze"
        events = _ok(api.get("/v1/events?type=SCORECARD_LEVEL_CHANGED&entity=ledger"))["items"]
        drop = events[0]
        assert drop["scorecard"] == {
            "identifier": "production_readiness",
            "from": "Silver",
            "to": "Bronze",
            "direction": "DROPPED",
        }
        assert matches(condition, drop)
        invoke = automation["invoke"]
        assert render_value(invoke["entity"], {"event": drop}, "/entity") == "ledger"
        assert render_value(invoke["inputs"], {"event": drop}, "/inputs") == {"reason": "Silver -> Bronze"}
    finally:
        restore = {"properties": {"on_call": "bob"}}
        assert _level(api, "ledger") == "Bronze"
        _ok(api.patch("/v1/blueprints/service/entities/ledger", json=restore))
    assert _level(api, "ledger") == "Silver"


@pytest.mark.parametrize(
    ("direction", "to", "fires"),
    [("DROPPED", "Bronze", True), ("DROPPED", "Basic", True), ("DROPPED", "Silver", False),
     ("RAISED", "Bronze", False)],
)  # fmt: skip
def test_only_drops_below_silver_open_tickets(
    api: httpx.Client, direction: str, to: str, fires: bool
) -> None:
    condition = _ok(api.get("/v1/automations/ticket_on_readiness_drop"))["trigger"]["condition"]
    event = {
        "scorecard": {"identifier": "production_readiness", "from": "Gold", "to": to, "direction": direction}
    }
    assert matches(condition, event) is fires
    other = {"scorecard": {**event["scorecard"], "identifier": "dora"}}
    assert not matches(condition, other)


@pytest.mark.parametrize(
    ("status", "environment", "fires"),
    [("FAILURE", "production", True), ("FAILURE", "staging", False), ("SUCCESS", "production", False)],
)
def test_only_failed_production_deploys_alert(
    api: httpx.Client, status: str, environment: str, fires: bool
) -> None:
    automation = _ok(api.get("/v1/automations/alert_on_failed_production_deploy"))
    assert automation["trigger"]["action"] == "deploy_service"
    run = {
        "id": "run_1",
        "action": "deploy_service",
        "status": status,
        "entity": "payments",
        "created_by": "bob",
        "error": "deploy system said 500",
        "inputs": {"version": "v1.2.3", "environment": environment},
    }
    assert matches(automation["trigger"]["condition"], {"type": "RUN_UPDATED", "run": run}) is fires
    inputs = render_value(automation["invoke"]["inputs"], {"event": {"run": run}}, "/inputs")
    assert inputs["subject"] == "Production deploy of payments failed"
    assert "v1.2.3" in inputs["text"] and "deploy system said 500" in inputs["text"]


def test_environment_expiry_notifies_without_a_second_teardown(api: httpx.Client) -> None:
    automation = _ok(api.get("/v1/automations/notify_on_environment_expiry"))
    assert automation["trigger"]["blueprint"] == "environment"
    event = {
        "type": "TIMER_EXPIRED",
        "blueprint": "environment",
        "entity": "pr-1234",
        "timer": {"id": "timer:environment:pr-1234:expires_at", "property": "expires_at",
                  "deadline": "2026-01-01T00:00:00+00:00"},
    }  # fmt: skip
    assert matches(automation["trigger"].get("condition"), event)
    inputs = render_value(automation["invoke"]["inputs"], {"event": event}, "/inputs")
    assert inputs["subject"] == "Environment pr-1234 expired"
    # The teardown is the blueprint's on_expiry, not this automation.
    environment = _ok(api.get("/v1/blueprints/environment"))
    assert environment["timers"]["expires_at"]["on_expiry"]["action"] == "destroy_environment"
    assert automation["invoke"]["action"] != "destroy_environment"


# ---- who can do what in the example portal ---------------------------------------------------


def _as(api: httpx.Client, user: str) -> httpx.Client:
    """A client with a fresh token of ``user`` (made by the admin, as an admin would)."""
    token = api.post("/v1/tokens", json={"user": user, "description": "portal test"})
    assert token.status_code == 201, token.text
    return httpx.Client(base_url=api.base_url, headers={"Authorization": f"Bearer {token.json()['token']}"})


def test_the_portal_names_owners_moderators_and_a_viewer(api: httpx.Client) -> None:
    roles = {u["identifier"]: u["role"] for u in _ok(api.get("/v1/users"))["items"]}
    assert {roles["alice"], roles["bob"], roles["dana"], roles["erin"]} == {"admin", "member", "viewer"}
    assert _ok(api.get("/v1/blueprints/cluster"))["moderators"] == {"users": [], "teams": ["platform"]}
    destroy = _ok(api.get("/v1/actions/destroy_environment"))
    assert destroy["permissions"]["execute"]["owned_by_team"] is True
    for blueprint in ("service", "environment", "cluster"):
        entities = _ok(api.get(f"/v1/blueprints/{blueprint}/entities"))["items"]
        assert entities and all(e["team"] for e in entities), blueprint


def test_owners_moderators_and_viewers_get_what_the_defaults_give(api: httpx.Client) -> None:
    cluster = "/v1/blueprints/cluster/entities/staging-eu-west-1"
    environment = "/v1/blueprints/environment/entities/payments-staging"
    with _as(api, "bob") as bob, _as(api, "erin") as erin, _as(api, "dana") as dana:
        # Dana (viewer) reads everything the defaults let everyone read, and changes nothing.
        assert dana.get(cluster).status_code == 200
        assert dana.patch(environment, json={"properties": {"replicas": 2}}).status_code == 403
        # Bob owns payments-staging (payments-team) but not the clusters (platform's).
        assert bob.patch(cluster, json={"properties": {"node_count": 7}}).status_code == 403
        assert (
            _ok(bob.patch(environment, json={"properties": {"replicas": 2}}))["properties"]["replicas"] == 2
        )
        _ok(bob.patch(environment, json={"properties": {"replicas": 1}}))
        # Erin moderates clusters through the platform team.
        assert (
            _ok(erin.patch(cluster, json={"properties": {"node_count": 7}}))["properties"]["node_count"] == 7
        )
        _ok(erin.patch(cluster, json={"properties": {"node_count": 6}}))
        # Bob may not destroy checkout's environment: for him that action does not exist there.
        launch = bob.post("/v1/actions/destroy_environment/runs", json={"entity": "checkout-pr-482"})
        assert launch.status_code == 404, launch.text
        assert dana.get("/v1/audit-log").status_code == 403
