"""Dry runs (``POST /v1/actions/{a}/runs?dry_run=true``) and action versions, on SQLite and
PostgreSQL: a dry run refuses what a launch refuses with the same answer, renders the plan the
workflow would run (secrets masked), flags destructive steps, hashes stably, and writes and
starts nothing: no run, audit entry or event, no Temporal call."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select

import cli
from api.app import create_app
from catalog.models import AuditRecord, Event, Run
from config import Settings
from tests.api.conftest import ADMIN_TOKEN, SERVICE_BLUEPRINT, SYSTEM_BLUEPRINT
from tests.fakes.server import serve

SECRET_VALUE = "tok_hunter"

DEPLOY: dict[str, Any] = {
    "identifier": "deploy",
    "title": "Deploy",
    "blueprint": "service",
    "trigger": {
        "operation": "DAY-2",
        "condition": {"combinator": "and", "rules": [{"property": "tier", "operator": "<=", "value": 2}]},
    },
    "user_inputs": {
        "properties": {
            "version": {"type": "string", "pattern": "^v[0-9]+$"},
            "region": {"type": "string", "default": "eu-west-1"},
            "token": {"type": "string", "secret": True, "pattern": "^tok_[a-z]+$"},
        },
        "required": ["version"],
    },
    "permissions": {"see": {"roles": ["member"]}},
    "steps": [
        {
            "id": "call",
            "uses": "http.request",
            "with": {
                "url": "http://127.0.0.1:9/deploy/{{ entity.identifier }}",
                "body": {
                    "version": "{{ inputs.version }}",
                    "region": "{{ inputs.region }}",
                    "auth": "Bearer {{ inputs.token }}",
                    "run": "{{ run.id }}",
                    "by": "{{ user.identifier }}",
                },
            },
        },
        {
            "id": "canary",
            "uses": "http.request",
            "if": "{{ inputs.version == 'v2' }}",
            "with": {"url": "http://127.0.0.1:9/canary"},
        },
        {
            "id": "after_canary",
            "uses": "http.request",
            "if": "steps.canary.status == 'SUCCESS'",
            "with": {"url": "http://127.0.0.1:9/after"},
        },
        {
            "id": "follow",
            "uses": "http.request",
            "destructive": True,
            "if": "steps.call.outputs.status == 200",
            "with": {"url": "{{ steps.call.outputs.body }}", "method": "DELETE"},
        },
    ],
}

PEOPLE = {"alice": ["payments-team"], "mallory": ["ledger-team"]}


@dataclass
class Recorder:
    """Temporal as the API sees it: each call recorded."""

    started: list[Any] = field(default_factory=list)

    async def start_action_run(self, workflow_input: Any, **attributes: Any) -> None:
        self.started.append(workflow_input)

    async def arm_timer(self, *_: Any, **__: Any) -> None:
        return None

    async def run_ended(self, *_: Any, **__: Any) -> None:
        return None

    async def start_automation(self, *_: Any, **__: Any) -> bool:
        return True


@dataclass
class Portal:
    client: TestClient
    tokens: dict[str, str]
    temporal: Recorder

    def plan(self, who: str = "admin", action: str = "deploy", **body: Any) -> Any:
        return self._runs(who, action, dry_run=True, **body)

    def launch(self, who: str = "admin", action: str = "deploy", **body: Any) -> Any:
        return self._runs(who, action, dry_run=False, **body)

    def _runs(self, who: str, action: str, *, dry_run: bool, **body: Any) -> Any:
        body.setdefault("entity", "payments")
        body.setdefault("inputs", {"version": "v1", "token": SECRET_VALUE})
        return self.client.post(
            f"/v1/actions/{action}/runs",
            params={"dry_run": "true"} if dry_run else {},
            json=body,
            headers={"Authorization": f"Bearer {self.tokens[who]}"},
        )

    def counts(self) -> tuple[int, int, int]:
        with self.client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
            runs, audits, events = (
                session.scalar(select(func.count()).select_from(model)) or 0
                for model in (Run, AuditRecord, Event)
            )
            return runs, audits, events


@pytest.fixture
def portal(settings: Settings) -> Iterator[Portal]:
    keyed = settings.model_copy(update={"secret_key": SecretStr("secret-key-for-tests")})
    temporal = Recorder()
    app = create_app(keyed, temporal=temporal)  # type: ignore[arg-type]
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        tokens = {"admin": ADMIN_TOKEN}
        for name, teams in PEOPLE.items():
            assert (
                client.post("/v1/teams", json={"identifier": teams[0], "title": teams[0]}).status_code == 201
            )
            user = {"identifier": name, "email": f"{name}@example.com", "role": "member", "teams": teams}
            assert client.post("/v1/users", json=user).status_code == 201
            tokens[name] = client.post("/v1/tokens", json={"user": name}).json()["token"]
        assert client.post("/v1/blueprints", json=SYSTEM_BLUEPRINT).status_code == 201
        assert client.post("/v1/blueprints", json=SERVICE_BLUEPRINT).status_code == 201
        entities: list[tuple[str, str, int]] = [
            ("payments", "payments-team", 1),
            ("legacy", "payments-team", 3),
        ]
        for identifier, team, tier in entities:
            entity = {
                "identifier": identifier,
                "team": [team],
                "properties": {"language": "go", "tier": tier},
            }
            assert client.post("/v1/blueprints/service/entities", json=entity).status_code == 201
        assert client.post("/v1/actions", json=DEPLOY).status_code == 201
        yield Portal(client, tokens, temporal)


def test_the_plan_renders_every_step_as_the_run_would(portal: Portal) -> None:
    answer = portal.plan("alice")
    assert answer.status_code == 200, answer.text
    plan = answer.json()
    assert SECRET_VALUE not in answer.text
    assert (plan["action"], plan["action_version"], plan["entity"]) == ("deploy", 1, "payments")
    call, canary, after, follow = plan["steps"]
    assert call == {
        "id": "call",
        "uses": "http.request",
        "with": {
            "url": "http://127.0.0.1:9/deploy/payments",
            "body": {
                "version": "v1",
                "region": "eu-west-1",
                "auth": "Bearer ${secret:token}",
                "run": "<run.id>",
                "by": "alice",
            },
        },
        "would_run": True,
        "destructive": False,
        "needs": [],
        "for_each": None,
        "error": None,
    }
    assert (canary["would_run"], canary["needs"]) == (False, ["call"])
    # a skipped step's status reads SKIPPED for the steps after it
    assert after["would_run"] is False
    # what only the run will know is shown as written, and its condition is undecided
    assert follow["with"] == {"url": "{{ steps.call.outputs.body }}", "method": "DELETE"}
    assert (follow["would_run"], follow["destructive"], plan["destructive"]) == (None, True, True)
    assert plan["plan_hash"].startswith("sha256:")


def test_the_plan_of_parallel_steps_shows_needs_and_fan_out_items(portal: Portal) -> None:
    action = copy.deepcopy(DEPLOY)
    action["identifier"] = "deploy_regions"
    action["user_inputs"]["properties"]["regions"] = {"type": "array", "default": ["eu-west-1", "us-east-1"]}
    action["steps"] = [
        {"id": "build", "uses": "http.request", "needs": [], "with": {"url": "http://127.0.0.1:9/build"}},
        {"id": "lint", "uses": "http.request", "needs": [], "with": {"url": "http://127.0.0.1:9/lint"}},
        {
            "id": "deploy",
            "uses": "http.request",
            "needs": ["build", "lint"],
            "for_each": "{{ inputs.regions }}",
            "max_parallel": 1,
            "with": {"url": "http://127.0.0.1:9/{{ item }}", "version": "{{ inputs.version }}"},
        },
        {"id": "notify", "uses": "http.request", "with": {"url": "http://127.0.0.1:9/notify"}},
    ]
    assert portal.client.post("/v1/actions", json=action).status_code == 201
    plan = portal.plan("alice", "deploy_regions").json()
    assert [(s["id"], s["needs"], s["for_each"]) for s in plan["steps"]] == [
        ("build", [], None),
        ("lint", [], None),
        ("deploy", ["build", "lint"], ["eu-west-1", "us-east-1"]),
        ("notify", ["deploy"], None),
    ]
    assert plan["steps"][2]["with"] == {"url": "http://127.0.0.1:9/{{ item }}", "version": "v1"}


def test_a_dry_run_writes_and_starts_nothing(portal: Portal) -> None:
    before = portal.counts()
    assert portal.plan("alice").status_code == 200
    assert portal.plan("alice", idempotency_key="k1").status_code == 200
    assert portal.counts() == before
    assert portal.temporal.started == []
    assert portal.client.get("/v1/runs").json()["items"] == []
    # the idempotency key was not used up: the launch with it starts a run
    assert portal.launch("alice", idempotency_key="k1").status_code == 202
    assert len(portal.temporal.started) == 1


def test_the_hash_is_stable_and_follows_inputs_entity_and_version(portal: Portal) -> None:
    first = portal.plan("alice").json()["plan_hash"]
    assert portal.plan("alice").json()["plan_hash"] == first
    # a default given explicitly is the same launch
    same = {"version": "v1", "region": "eu-west-1", "token": SECRET_VALUE}
    assert portal.plan("alice", inputs=same).json()["plan_hash"] == first
    assert portal.plan("alice", inputs={"version": "v2"}).json()["plan_hash"] != first
    assert portal.plan("admin").json()["plan_hash"] != first  # rendered user.identifier differs
    edited = copy.deepcopy(DEPLOY)
    edited["title"] = "Deploy it"
    assert portal.client.put("/v1/actions/deploy", json=edited).status_code == 200
    replanned = portal.plan("alice").json()
    assert replanned["action_version"] == 2
    assert replanned["plan_hash"] != first


@pytest.mark.parametrize(
    ("who", "body"),
    [
        ("alice", {"inputs": {"version": "latest", "token": "nope"}}),  # bad inputs: 422
        ("alice", {"inputs": {"version": "v1", "extra": 1}}),  # unknown input: 422
        ("alice", {"entity": None}),  # a DAY-2 action needs an entity: 422
        ("mallory", {}),  # sees the action, may not run it on payments: 403
        ("alice", {"entity": "legacy"}),  # tier 3 fails the trigger condition: 409
        ("alice", {"entity": "nope"}),  # 404
        ("alice", {"source": "ROBOT"}),  # 422
    ],
)
def test_a_dry_run_refuses_what_a_launch_refuses(portal: Portal, who: str, body: dict[str, Any]) -> None:
    before = portal.counts()
    planned, launched = portal.plan(who, **body), portal.launch(who, **body)
    assert planned.status_code in (403, 404, 409, 422)
    assert (planned.status_code, planned.json()) == (launched.status_code, launched.json())
    assert SECRET_VALUE not in planned.text
    assert portal.counts() == before
    assert portal.temporal.started == []


def test_preconditions_refuse_a_dry_run_as_a_launch(portal: Portal) -> None:
    readiness = {
        "identifier": "readiness",
        "title": "Readiness",
        "levels": [{"title": "Basic"}, {"title": "Gold"}],
        "rules": [
            {
                "identifier": "has_repo",
                "level": "Gold",
                "query": {"combinator": "and", "rules": [{"property": "repo", "operator": "isNotEmpty"}]},
            }
        ],
    }
    assert portal.client.post("/v1/blueprints/service/scorecards", json=readiness).status_code == 201
    gated = {
        **copy.deepcopy(DEPLOY),
        "identifier": "gated",
        "preconditions": {"scorecards": {"readiness": "Gold"}},
    }
    assert portal.client.post("/v1/actions", json=gated).status_code == 201
    planned, launched = portal.plan("alice", "gated"), portal.launch("alice", "gated")
    assert planned.status_code == 409
    assert planned.json() == launched.json()
    assert planned.json()["error"]["details"][0]["pointer"] == "/preconditions/scorecards/readiness"


def test_deleting_kinds_are_destructive_and_the_flag_is_checked_when_saved(portal: Portal) -> None:
    cleanup: dict[str, Any] = {
        "identifier": "cleanup",
        "title": "Clean up",
        "blueprint": "service",
        "trigger": {"operation": "DELETE"},
        "steps": [
            {"id": "note", "uses": "http.request", "with": {"url": "http://127.0.0.1:9/n"}},
            {
                "id": "remove",
                "uses": "catalog.delete_entity",
                "with": {"blueprint": "service", "identifier": "{{ entity.identifier }}"},
            },
        ],
    }
    assert portal.client.post("/v1/actions", json=cleanup).status_code == 201
    plan = portal.plan("alice", "cleanup", inputs={}).json()
    assert [s["destructive"] for s in plan["steps"]] == [False, True]
    assert plan["destructive"] is True
    assert plan["steps"][1]["with"] == {"blueprint": "service", "identifier": "payments"}
    safe = {**cleanup, "identifier": "safe", "steps": cleanup["steps"][:1]}
    assert portal.client.post("/v1/actions", json=safe).status_code == 201
    assert portal.plan("alice", "safe", inputs={}).json()["destructive"] is False
    bad = copy.deepcopy(safe)
    bad["identifier"] = "bad"
    bad["steps"][0]["destructive"] = "yes"
    refused = portal.client.post("/v1/actions", json=bad)
    assert refused.status_code == 422
    assert [d["pointer"] for d in refused.json()["error"]["details"]] == ["/steps/0/destructive"]
    assert portal.client.get("/v1/actions/bad").status_code == 404


def test_a_template_the_run_would_fail_on_is_shown_on_its_step(portal: Portal) -> None:
    broken = copy.deepcopy(DEPLOY)
    # payments has no repo: the run would fail rendering this step
    broken["steps"][0]["with"]["url"] = "http://127.0.0.1:9/{{ entity.properties.repo }}"
    assert portal.client.put("/v1/actions/deploy", json=broken).status_code == 200
    step = portal.plan("alice").json()["steps"][0]
    assert "repo" in step["error"]
    assert step["with"]["url"] == "http://127.0.0.1:9/{{ entity.properties.repo }}"


def test_versions_count_changes_and_runs_record_theirs(portal: Portal) -> None:
    assert portal.client.get("/v1/actions/deploy").json()["version"] == 1
    launched = portal.launch("alice")
    assert launched.status_code == 202, launched.text
    assert launched.json()["action_version"] == 1
    edited = copy.deepcopy(DEPLOY)
    edited["steps"][0]["with"]["url"] = "http://127.0.0.1:9/v2"
    assert portal.client.put("/v1/actions/deploy", json=edited).json()["version"] == 2
    listed = {a["identifier"]: a["version"] for a in portal.client.get("/v1/actions").json()["items"]}
    assert listed == {"deploy": 2}
    run = portal.client.get(f"/v1/runs/{launched.json()['id']}").json()
    assert run["action_version"] == 1
    # the run keeps the definition it started with
    assert portal.launch("alice").json()["action_version"] == 2


def test_gantry_run_dry_run_prints_the_plan_and_starts_nothing(
    portal: Portal, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI against the same app served over HTTP on 127.0.0.1."""
    app = portal.client.app
    with serve(app) as url:
        argv = ["--api-url", url, "--token", portal.tokens["alice"], "run", "deploy", "--entity", "payments"]
        argv += ["-i", "version=v1", "-i", f"token={SECRET_VALUE}", "--dry-run"]
        assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    plan = json.loads(out)
    assert plan["plan_hash"] == portal.plan("alice").json()["plan_hash"]
    assert "plan of deploy v1 on payments  DESTRUCTIVE" in err
    assert "canary" in err and "skipped" in err
    assert SECRET_VALUE not in out + err
    assert portal.counts()[0] == 0 and portal.temporal.started == []


def test_the_web_form_previews_the_plan_without_launching(portal: Portal) -> None:
    browser = TestClient(portal.client.app, raise_server_exceptions=False)
    signed_in = browser.post("/login", data={"token": portal.tokens["alice"]}, follow_redirects=False)
    assert signed_in.status_code == 303, signed_in.text
    form = browser.get("/actions/deploy/launch", params={"entity": "payments"})
    assert form.status_code == 200 and 'data-testid="preview"' in form.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf is not None
    fields = {"csrf_token": csrf.group(1), "entity": "payments", "version": "v2", "token": SECRET_VALUE}
    shown = browser.post("/actions/deploy/preview", data=fields)
    assert shown.status_code == 200, shown.text
    assert 'data-testid="plan"' in shown.text and "destructive" in shown.text
    assert (
        portal.plan("alice", inputs={"version": "v2", "token": SECRET_VALUE}).json()["plan_hash"]
        in shown.text
    )
    assert (
        'data-step="canary"' in shown.text
        and "skipped" not in shown.text.split('data-step="canary"')[1][:200]
    )
    assert SECRET_VALUE not in shown.text
    assert 'value="v2"' in shown.text  # the form keeps what was typed
    refused = browser.post("/actions/deploy/preview", data={**fields, "version": "latest"})
    assert refused.status_code == 422 and 'id="error-version"' in refused.text
    assert portal.counts()[0] == 0 and portal.temporal.started == []
