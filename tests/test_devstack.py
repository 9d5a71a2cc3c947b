"""``make run`` (devstack.py): brings the stack up on free ports, runs every action and automation
of the example portal end to end against local AWS (moto), the demo deploy receiver and the Jira
and Slack stand-ins, reuses its data without re-applying the portal, stops cleanly."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError
from fastapi.testclient import TestClient
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client

import devstack
from activities.http import sign
from devtools.processes import DevServerProcess, free_port
from devtools.receiver import create_app as create_receiver
from devtools.standins.jira import create_app as create_jira
from devtools.standins.slack import create_app as create_slack
from devtools.testing import eventually
from worker import SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parent.parent


def test_dev_secrets_are_generated_once_and_reused(tmp_path: Path) -> None:
    first = devstack.load_dev_secrets(tmp_path)
    assert set(first) == set(devstack.GENERATED_SECRETS) and all(first.values())
    assert first["GANTRY_ADMIN_TOKEN"] != first["GANTRY_SERVICE_TOKEN"]
    assert devstack.load_dev_secrets(tmp_path) == first
    assert oct((tmp_path / "dev-secrets.env").stat().st_mode & 0o777) == "0o600"


def test_variables_set_by_the_user_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANTRY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GANTRY_ADMIN_TOKEN", "mine")
    monkeypatch.setenv("GANTRY_API_PORT", "9001")
    monkeypatch.delenv("GANTRY_API_URL", raising=False)
    env = devstack.stack_environment()
    assert env["GANTRY_ADMIN_TOKEN"] == "mine"
    assert env["GANTRY_SERVICE_TOKEN"] == devstack.load_dev_secrets(tmp_path)["GANTRY_SERVICE_TOKEN"]
    assert env["GANTRY_API_URL"] == "http://127.0.0.1:9001"


def test_local_aws_is_used_only_when_aws_is_not_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    assert not devstack.aws_configured()
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://localstack:4566")
    assert devstack.aws_configured()
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    (tmp_path / "no-credentials").write_text(
        "[default]\naws_access_key_id = AKIA\naws_secret_access_key = x\n"
    )
    assert devstack.aws_configured()


def _signed(secret: str, body: dict[str, Any], key: str) -> dict[str, Any]:
    content = json.dumps(body).encode()
    now = int(time.time())
    headers = {"X-Gantry-Timestamp": str(now), "X-Gantry-Signature": sign(secret, now, content)}
    return {"content": content, "headers": {**headers, "Idempotency-Key": key}}


def test_the_demo_receiver_checks_signatures_and_remembers_deliveries() -> None:
    client = TestClient(create_receiver(secret="whsec"))
    first = client.post("/deploy", **_signed("whsec", {"version": "v1.0.0"}, "run1:deploy"))
    assert first.status_code == 200 and first.json()["accepted"] is True
    again = client.post("/deploy", **_signed("whsec", {"version": "v1.0.0"}, "run1:deploy"))
    assert again.json()["deployment_id"] == first.json()["deployment_id"], "a retried step is one deployment"
    assert client.post("/deploy", **_signed("other", {}, "run2:deploy")).status_code == 401
    assert client.post("/deploy", json={"version": "v1.0.0"}).status_code == 401

    deliveries = client.get("/deliveries").json()["items"]
    assert [(d["path"], d["idempotency_key"], d["duplicate"]) for d in deliveries] == [
        ("/deploy", "run1:deploy", False),
        ("/deploy", "run1:deploy", True),
    ]
    assert deliveries[0]["body"] == {"version": "v1.0.0"}


def test_the_standins_answer_any_channel_or_email_and_show_what_they_received() -> None:
    jira = TestClient(create_jira())
    auth = (devstack.JIRA_STANDIN["GANTRY_JIRA_USER"], devstack.JIRA_STANDIN["GANTRY_JIRA_TOKEN"])
    fields = {"project": {"key": "OPS"}, "summary": "payments: readiness", "labels": ["payments-team"]}
    created = jira.post("/rest/api/2/issue", json={"fields": fields}, auth=auth)
    assert created.status_code == 201, created.text
    assert jira.post("/rest/api/2/issue", json={"fields": fields}).status_code == 401
    [issue] = jira.get("/issues").json()["issues"]
    assert (
        jira.get(f"/browse/{created.json()['key']}").json()["fields"]["summary"] == issue["fields"]["summary"]
    )

    slack = TestClient(create_slack())
    bearer = {"Authorization": f"Bearer {devstack.SLACK_STANDIN['GANTRY_SLACK_BOT_TOKEN']}"}
    posted = slack.post("/api/chat.postMessage", json={"channel": "#payments", "text": "hi"}, headers=bearer)
    assert posted.json()["ok"] is True
    found = slack.post("/api/users.lookupByEmail", data={"email": "anyone@example.com"}, headers=bearer)
    again = slack.post("/api/users.lookupByEmail", data={"email": "anyone@example.com"}, headers=bearer)
    assert found.json()["ok"] and found.json()["user"]["id"] == again.json()["user"]["id"]
    assert [(m["channel"], m["text"]) for m in slack.get("/messages").json()["messages"]] == [
        ("#payments", "hi")
    ]
    assert not slack.post("/api/chat.postMessage", json={"channel": "#x", "text": "hi"}).json()["ok"]


class Devstack:
    """``python devstack.py`` as `make run` starts it, with its output read line by line."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "devstack.py")],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.seen_children: set[int] = set()

    def _read(self) -> None:
        assert self.process.stdout
        for line in self.process.stdout:
            self.output.append(line)
            self._lines.put(line)

    def wait_for(self, text: str, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.5)
            except queue.Empty:
                assert self.process.poll() is None, f"devstack exited:\n{''.join(self.output)}"
                continue
            if text in line:
                return line
        raise AssertionError(f"no {text!r} after {timeout}s:\n{''.join(self.output)}")

    def children(self) -> dict[int, str]:
        """The live child processes, pid → command line."""
        found = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.process.pid and fields[0] != "Z":
                    cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                    found[int(stat.parent.name)] = cmdline
            except (OSError, IndexError, ValueError):
                continue
        self.seen_children |= set(found)
        return found

    def wait(self, timeout: float = 120.0) -> int:
        return self.process.wait(timeout)

    def cleanup(self) -> None:
        """Leave nothing running even when a test failed half-way."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(40)
            except subprocess.TimeoutExpired:
                self.process.kill()
        for pid in self.seen_children:
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _clean_env(tmp: Path) -> dict[str, str]:
    """This process's environment without Gantry or AWS settings: `make run` on a fresh machine,
    with every port free and its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GANTRY_", "AWS_"))}
    return {
        **env,
        "AWS_CONFIG_FILE": str(tmp / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-credentials"),
        "GANTRY_DATA_DIR": str(tmp / ".gantry"),
        "GANTRY_API_PORT": str(free_port()),
        "GANTRY_DEMO_MOTO_PORT": str(free_port()),
        "GANTRY_DEMO_RECEIVER_PORT": str(free_port()),
        "GANTRY_DEMO_JIRA_PORT": str(free_port()),
        "GANTRY_DEMO_SLACK_PORT": str(free_port()),
    }


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {
        **_clean_env(tmp_path_factory.mktemp("devstack")),
        "GANTRY_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "GANTRY_TEMPORAL_UI_URL": f"http://127.0.0.1:{free_port()}",
    }


@pytest.fixture
def start_devstack(stack_env: dict[str, str]) -> Iterator[type[Devstack]]:
    started: list[Devstack] = []

    class Tracked(Devstack):
        def __init__(self, env: dict[str, str]) -> None:
            super().__init__(env)
            started.append(self)

    yield Tracked
    for stack in started:
        stack.cleanup()


def _up(stack: Devstack) -> tuple[str, str]:
    """Wait for the banner; (API URL, admin token)."""
    token = stack.wait_for("export GANTRY_TOKEN=").strip().split("=", 1)[1]
    api_url = next(line for line in stack.output if "export GANTRY_API_URL=" in line).strip().split("=", 1)[1]
    return api_url, token


async def _search_attributes(address: str) -> set[str]:
    client = await Client.connect(address)
    answer = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace="default")
    )
    return set(answer.custom_attributes)


def _run_to_end(
    api: httpx.Client, action: str, body: dict[str, Any], timeout: float = 30.0
) -> dict[str, Any]:
    launched = api.post(f"/v1/actions/{action}/runs", json=body)
    assert launched.status_code == 202, launched.text
    return _wait_for_run(api, launched.json()["id"], ("IN_PROGRESS", "WAITING_FOR_APPROVAL"), timeout)


def _wait_for_run(api: httpx.Client, run_id: str, passing: tuple[str, ...], timeout: float = 30.0) -> Any:
    """The run once its status is none of ``passing``."""

    def ended() -> Any:
        run = api.get(f"/v1/runs/{run_id}").json()
        assert run["status"] not in passing, f"run {run_id} stayed {run['status']}: {run}"
        return run

    return eventually(ended, timeout=timeout, interval=0.3)


def _automation_run(api: httpx.Client, action: str, timeout: float = 40.0) -> Any:
    """The latest run of ``action`` an automation started, once it has ended."""

    def started() -> list[Any]:
        runs = api.get(f"/v1/runs?action={action}").json()["items"]
        return [r for r in runs if r["source"] == "AUTOMATION"]

    first = eventually(started, timeout=timeout, interval=0.5, what=f"an automation starts {action}")[0]
    return _wait_for_run(api, first["id"], ("IN_PROGRESS", "WAITING_FOR_APPROVAL"), timeout)


def _stack_status(cloudformation: Any, name: str) -> str:
    try:
        return str(cloudformation.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"])
    except ClientError as exc:
        assert "does not exist" in str(exc)
        return "GONE"


def _actions_run_end_to_end(api_url: str, token: str, env: dict[str, str]) -> None:
    """The portal's three actions, as the README tour launches them."""
    api = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    receiver = f"http://127.0.0.1:{env['GANTRY_DEMO_RECEIVER_PORT']}"
    aws = {"endpoint_url": f"http://127.0.0.1:{env['GANTRY_DEMO_MOTO_PORT']}", **_LOCAL_AWS}

    deploy = _run_to_end(api, "deploy_service", {"entity": "payments", "inputs": _DEPLOY_INPUTS})
    assert deploy["status"] == "SUCCESS", deploy["error"]
    delivery = httpx.get(f"{receiver}/deliveries").json()["items"][-1]
    assert delivery["idempotency_key"] == f"{deploy['id']}:deploy"
    assert delivery["body"]["service"] == "payments" and delivery["body"]["version"] == "v1.43.0"
    receiver_log = (Path(env["GANTRY_DATA_DIR"]) / "logs" / "receiver.log").read_text()
    assert f'"idempotency_key":"{deploy["id"]}:deploy"' in receiver_log
    recorded = api.get("/v1/blueprints/deployment/entities/payments-staging-v1.43.0").json()
    assert recorded["properties"]["external_id"] == delivery["deployment_id"]
    assert recorded["relations"]["service"] == "payments"

    name = f"pr-{uuid.uuid4().hex[:8]}"
    inputs = {"service": "checkout", "name": name, "ttl_days": 3, "size": "small"}
    create = _run_to_end(api, "create_environment", {"inputs": inputs})
    assert create["status"] == "SUCCESS", create["error"]
    environment = api.get(f"/v1/blueprints/environment/entities/{name}").json()
    expires_at = datetime.fromisoformat(environment["properties"]["expires_at"])
    assert abs(expires_at - (datetime.now(UTC) + timedelta(days=3))) < timedelta(minutes=2)
    assert environment["relations"]["service"] == "checkout"
    cloudformation = boto3.client("cloudformation", **aws)
    assert _stack_status(cloudformation, f"env-{name}") == "CREATE_COMPLETE"
    boto3.client("s3", **aws).head_bucket(Bucket=environment["properties"]["bucket"])

    destroy = _run_to_end(api, "destroy_environment", {"entity": name})
    assert destroy["status"] == "SUCCESS", destroy["error"]
    assert api.get(f"/v1/blueprints/environment/entities/{name}").status_code == 404
    assert _stack_status(cloudformation, f"env-{name}") in ("GONE", "DELETE_COMPLETE")


def _environment_expires_and_is_torn_down(api_url: str, token: str, env: dict[str, str]) -> None:
    """An environment made by create_environment, its TTL then cut to a few seconds: its timer
    runs destroy_environment (an AUTOMATION run), which deletes the stack and the entity."""
    api = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    aws = {"endpoint_url": f"http://127.0.0.1:{env['GANTRY_DEMO_MOTO_PORT']}", **_LOCAL_AWS}
    cloudformation = boto3.client("cloudformation", **aws)
    name = f"ttl-{uuid.uuid4().hex[:8]}"
    inputs = {"service": "checkout", "name": name, "ttl_days": 1}
    create = _run_to_end(api, "create_environment", {"inputs": inputs})
    assert create["status"] == "SUCCESS", create["error"]
    assert _stack_status(cloudformation, f"env-{name}") == "CREATE_COMPLETE"
    timer_id = f"timer:environment:{name}:expires_at"
    [armed] = [t for t in api.get("/v1/timers?blueprint=environment").json()["items"] if t["id"] == timer_id]
    assert armed["state"] == "active" and armed["workflow_id"] == timer_id

    # An owner may shorten the TTL; beyond max_ttl (14 days from creation) is refused.
    too_long = (datetime.now(UTC) + timedelta(days=15)).isoformat()
    refused = api.patch(
        f"/v1/blueprints/environment/entities/{name}", json={"properties": {"expires_at": too_long}}
    )
    assert refused.status_code == 422 and "max_ttl of P14D" in refused.text
    soon = (datetime.now(UTC) + timedelta(seconds=5)).isoformat()
    patched = api.patch(
        f"/v1/blueprints/environment/entities/{name}", json={"properties": {"expires_at": soon}}
    )
    assert patched.status_code == 200, patched.text

    def torn_down() -> Any:
        timers = api.get("/v1/timers?blueprint=environment").json()["items"]
        timer = next(t for t in timers if t["id"] == timer_id)
        assert timer["teardown"] in ("done", "failed"), timer
        return timer

    timer = eventually(torn_down, timeout=40, interval=0.5)
    assert timer["state"] == "expired" and timer["teardown"] == "done", timer
    run = api.get(f"/v1/runs/{timer['on_expiry_run']}").json()
    assert (run["action"], run["source"], run["status"]) == ("destroy_environment", "AUTOMATION", "SUCCESS")
    assert api.get(f"/v1/blueprints/environment/entities/{name}").status_code == 404
    assert _stack_status(cloudformation, f"env-{name}") in ("GONE", "DELETE_COMPLETE")
    expired = api.get(f"/v1/events?type=TIMER_EXPIRED&entity={name}").json()["items"]
    assert len(expired) == 1
    notified = _automation_run(api, "notify")  # notify_on_environment_expiry
    assert notified["status"] == "SUCCESS" and name in notified["inputs"]["subject"], notified


def _production_deploy_waits_for_alice(api_url: str, token: str, env: dict[str, str]) -> None:
    """As the README shows: the dev admin's production deploy waits for approval; the admin is not
    eligible (it requested the run), alice is, is asked in Slack (the stand-in), and approves."""
    api = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    slack = f"http://127.0.0.1:{env['GANTRY_DEMO_SLACK_PORT']}"
    inputs = {"version": "v1.44.0", "environment": "production"}
    launched = api.post("/v1/actions/deploy_service/runs", json={"entity": "payments", "inputs": inputs})
    assert launched.status_code == 202, launched.text
    run = _wait_for_run(api, launched.json()["id"], ("IN_PROGRESS",))
    assert run["status"] == "WAITING_FOR_APPROVAL", run

    def eligible_known() -> Any:
        found = api.get(f"/v1/runs/{run['id']}").json()
        assert (found["approval"] or {}).get("eligible"), found
        return found

    run = eventually(eligible_known, timeout=20, interval=0.3)
    assert "admin" not in run["approval"]["eligible"] and "alice" in run["approval"]["eligible"]
    refused = api.post(f"/v1/runs/{run['id']}/approval", json={"decision": "APPROVE"})
    assert refused.status_code == 403, refused.text
    alice_token = api.post("/v1/tokens", json={"user": "alice"}).json()["token"]
    approved = httpx.post(
        f"{api_url}/v1/runs/{run['id']}/approval",
        headers={"Authorization": f"Bearer {alice_token}"},
        json={"decision": "APPROVE", "comment": "ship it"},
    )
    assert approved.status_code == 200, approved.text
    done = _wait_for_run(api, run["id"], ("IN_PROGRESS", "WAITING_FOR_APPROVAL"))
    assert done["status"] == "SUCCESS", done["error"]
    direct = [m for m in httpx.get(f"{slack}/messages").json()["messages"] if m["channel"].startswith("D")]
    assert direct, "approvers were asked in Slack"


def _notify_and_the_readiness_ticket(api_url: str, token: str, env: dict[str, str]) -> None:
    """``notify`` by hand, then the README's readiness drop: payments loses its on-call, the
    automation opens a Jira issue and posts to Slack, both on the stand-ins."""
    api = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    receiver = f"http://127.0.0.1:{env['GANTRY_DEMO_RECEIVER_PORT']}"
    jira = f"http://127.0.0.1:{env['GANTRY_DEMO_JIRA_PORT']}"
    slack = f"http://127.0.0.1:{env['GANTRY_DEMO_SLACK_PORT']}"
    notify = _run_to_end(api, "notify", {"inputs": {"text": "hello from the tests"}})
    assert notify["status"] == "SUCCESS", notify["error"]
    assert httpx.get(f"{receiver}/deliveries").json()["items"][-1]["body"]["text"] == "hello from the tests"

    dropped = api.patch("/v1/blueprints/service/entities/payments", json={"properties": {"on_call": None}})
    assert dropped.json()["scorecards"]["production_readiness"]["level"] == "Bronze", dropped.text
    ticket = _automation_run(api, "open_readiness_ticket")
    assert ticket["status"] == "SUCCESS", ticket["error"]
    [issue] = httpx.get(f"{jira}/issues").json()["issues"]
    assert "payments-team" in issue["fields"]["labels"] and "Gold -> Bronze" in issue["fields"]["summary"]
    url = ticket["steps"][0]["outputs"]["url"]
    assert url == f"{jira}/browse/{issue['key']}" and httpx.get(url).json()["key"] == issue["key"]
    posted = [m["text"] for m in httpx.get(f"{slack}/messages").json()["messages"]]
    assert any(url in text and "Gold -> Bronze" in text for text in posted), posted
    jira_log = (Path(env["GANTRY_DATA_DIR"]) / "logs" / "jira.log").read_text()
    assert "POST /rest/api/2/issue" in jira_log


def _sync_to_end(api: httpx.Client, source: str, sync_id: str, timeout: float = 60.0) -> Any:
    def ended() -> Any:
        sync = api.get(f"/v1/data-sources/{source}/syncs/{sync_id}").json()
        assert sync["status"] != "RUNNING", sync
        return sync

    return eventually(ended, timeout=timeout, interval=0.5, what=f"sync {sync_id} of {source} ends")


def _data_sources_sync_and_receive(api_url: str, token: str, env: dict[str, str], worker_pid: int) -> None:
    """The portal's two data sources: the first sync devstack started made the demo stack an
    environment, a sync by hand changes nothing, and GitHub-style deliveries signed with the
    generated secret become a deployment (a wrong signature stores nothing)."""
    api = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    worker_env = Path(f"/proc/{worker_pid}/environ").read_bytes().split(b"\0")
    moto = f"http://127.0.0.1:{env['GANTRY_DEMO_MOTO_PORT']}"
    assert f"GANTRY_AWS_ENDPOINT_URL={moto}".encode() in worker_env

    syncs = api.get("/v1/data-sources/aws_stacks/syncs").json()["items"]  # newest first
    first = _sync_to_end(api, "aws_stacks", [s for s in syncs if s["trigger"] == "API"][-1]["id"])
    assert first["status"] == "SUCCESS", first
    assert (first["counts"]["seen"], first["counts"]["failed"]) == (1, 0), first
    environment = api.get(f"/v1/blueprints/environment/entities/{devstack.DEMO_STACK}").json()
    assert environment["source"] == {"data_source": "aws_stacks", "resource": 0}, environment
    assert environment["properties"]["type"] == "production" and environment["team"] == ["payments-team"]
    assert environment["relations"]["service"] == "payouts"
    started = api.post("/v1/data-sources/aws_stacks/syncs")
    assert started.status_code == 202, started.text
    again = _sync_to_end(api, "aws_stacks", started.json()["id"])
    assert again["status"] == "SUCCESS" and again["counts"]["unchanged"] == 1, again
    assert again["counts"]["created"] == again["counts"]["updated"] == again["counts"]["deleted"] == 0

    secret = devstack.load_dev_secrets(Path(env["GANTRY_DATA_DIR"]))[devstack.WEBHOOK_SECRET]
    hook = f"{api_url}/v1/webhooks/{devstack.WEBHOOK_SOURCE}"
    deployment = {"id": 9001, "ref": "v2.0.0", "sha": "abc1234", "environment": "staging"}
    deployment["created_at"] = "2026-06-10T12:00:00Z"
    events = [
        ("deployment", {"action": "created", "deployment": deployment}),
        (
            "deployment_status",
            {"action": "created", "deployment": deployment, "deployment_status": {"state": "failure"}},
        ),
    ]
    for n, (event, payload) in enumerate(events):
        body = json.dumps({**payload, "repository": {"name": "checkout"}}).encode()
        signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": f"d-{n}", "Content-Type": "application/json"}
        forged = httpx.post(hook, content=body, headers={**headers, "X-Hub-Signature-256": "sha256=00"})
        assert forged.status_code == 401, forged.text
        answer = httpx.post(hook, content=body, headers={**headers, "X-Hub-Signature-256": signature})
        assert answer.status_code == 202 and answer.json() == {"delivery_id": f"d-{n}", "accepted": True}

        def applied(delivery_id: str = f"d-{n}") -> Any:
            items = api.get(f"/v1/data-sources/{devstack.WEBHOOK_SOURCE}/deliveries").json()["items"]
            [found] = [d for d in items if d["delivery_id"] == delivery_id]
            assert found["status"] != "PENDING", found
            return found

        delivery = eventually(applied, timeout=20, interval=0.3, what=f"delivery d-{n} is applied")
        assert delivery["status"] == "APPLIED" and delivery["outcome"]["failed"] == 0, delivery
    deliveries = api.get(f"/v1/data-sources/{devstack.WEBHOOK_SOURCE}/deliveries").json()["items"]
    assert len(deliveries) == 2, "the forged deliveries were not stored"
    recorded = api.get("/v1/blueprints/deployment/entities/github-9001").json()
    assert recorded["properties"]["status"] == "FAILED" and recorded["properties"]["stage"] == "staging"
    assert recorded["relations"]["service"] == "checkout" and recorded["title"] == "checkout v2.0.0 (staging)"
    assert recorded["source"] == {"data_source": devstack.WEBHOOK_SOURCE, "resource": 0}


_DEPLOY_INPUTS = {"version": "v1.43.0", "environment": "staging"}
_LOCAL_AWS = {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.mark.slow
def test_make_run_serves_the_portal_runs_its_actions_and_ctrl_c_stops_everything(
    start_devstack: type[Devstack], stack_env: dict[str, str]
) -> None:
    stack = start_devstack(stack_env)
    api_url, token = _up(stack)
    output = "".join(stack.output)
    assert "/logs/" in output and f"{api_url}/docs" in output
    assert 'curl -s -X POST "$GANTRY_API_URL/v1/actions/deploy_service/runs"' in output
    assert "workflows?query=GantryAction%3D%22deploy_service%22" in output

    assert "applied the example portal" in output
    assert f"127.0.0.1:{stack_env['GANTRY_DEMO_JIRA_PORT']}/issues (a local stand-in" in output
    assert "syncing aws_stacks now (then every PT5M)" in output
    assert f"export {devstack.WEBHOOK_SECRET}=" in output

    children = stack.children()
    commands = " | ".join(children.values())
    assert len(children) == 7, commands
    assert "server start-dev" in commands and "worker.py" in commands and "moto_server" in commands
    assert "api.app:create_app" in commands and "devtools.receiver:create_app" in commands
    assert (
        "devtools.standins.jira:create_app" in commands and "devtools.standins.slack:create_app" in commands
    )

    assert httpx.get(f"{api_url}/readyz").status_code == 200
    auth = {"Authorization": f"Bearer {token}"}
    payments = httpx.get(f"{api_url}/v1/blueprints/service/entities/payments", headers=auth)
    assert payments.status_code == 200, payments.text
    assert set(SEARCH_ATTRIBUTES) <= asyncio.run(_search_attributes(stack_env["GANTRY_TEMPORAL_ADDRESS"]))
    worker = next(pid for pid, cmd in children.items() if "worker.py" in cmd)
    _data_sources_sync_and_receive(api_url, token, stack_env, worker)
    _actions_run_end_to_end(api_url, token, stack_env)
    _production_deploy_waits_for_alice(api_url, token, stack_env)
    _notify_and_the_readiness_ticket(api_url, token, stack_env)
    _environment_expires_and_is_torn_down(api_url, token, stack_env)

    stack.process.send_signal(signal.SIGINT)
    assert stack.wait() == 0, "".join(stack.output)
    assert not [pid for pid in children if _alive(pid)], "a child outlived devstack"
    data_dir = Path(stack_env["GANTRY_DATA_DIR"])
    logs = {p.name for p in (data_dir / "logs").iterdir()}
    assert logs == {
        "temporal.log",
        "moto.log",
        "receiver.log",
        "jira.log",
        "slack.log",
        "api.log",
        "worker.log",
    }
    assert (data_dir / "temporal.db").exists()


@pytest.mark.slow
def test_later_runs_reuse_data_keep_user_changes_and_a_dying_child_stops_the_rest(
    start_devstack: type[Devstack], stack_env: dict[str, str]
) -> None:
    secrets_file = Path(stack_env["GANTRY_DATA_DIR"]) / "dev-secrets.env"
    first_token = (
        secrets_file.read_text().split("GANTRY_ADMIN_TOKEN=")[1].split()[0] if secrets_file.exists() else None
    )
    stack = start_devstack(stack_env)
    api_url, token = _up(stack)
    if first_token:
        assert token == first_token, "the dev admin token is reused across runs"
    auth = {"Authorization": f"Bearer {token}"}
    ledger = f"{api_url}/v1/blueprints/service/entities/ledger"
    changed = httpx.patch(ledger, headers=auth, json={"title": "Ledger (renamed by a user)"})
    assert changed.status_code == 200, changed.text
    stack.process.send_signal(signal.SIGINT)
    assert stack.wait() == 0, "".join(stack.output)

    stack = start_devstack(stack_env)
    api_url, token = _up(stack)
    output = "".join(stack.output)
    assert (
        "The example portal was applied on " in output
        and "to apply portal/ again: gantry apply portal/" in output
    )
    assert "applied the example portal" not in output and "syncing aws_stacks" not in output
    assert httpx.get(ledger, headers=auth).json()["title"] == "Ledger (renamed by a user)"
    entities = httpx.get(f"{api_url}/v1/blueprints/service/entities", headers=auth)
    assert len(entities.json()["items"]) == 7

    children = stack.children()
    worker = next(pid for pid, cmd in children.items() if "worker.py" in cmd)
    os.kill(worker, signal.SIGKILL)
    assert stack.wait() == 1
    output = "".join(stack.output)
    assert "worker exited unexpectedly" in output
    assert not [pid for pid in children if _alive(pid)], "a child outlived devstack"


@pytest.mark.slow
def test_an_answering_temporal_server_and_configured_aws_are_used(
    start_devstack: type[Devstack], tmp_path: Path
) -> None:
    with DevServerProcess(tmp_path / "temporal.db") as temporal:
        env = _clean_env(tmp_path) | {
            "GANTRY_TEMPORAL_ADDRESS": temporal.address,
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # the user's own AWS (or localstack)
            "GANTRY_SLACK_BOT_TOKEN": "xoxb-mine",  # the user's own Slack
        }
        stack = start_devstack(env)
        _up(stack)
        output = "".join(stack.output)
        assert f"reusing the Temporal server at {temporal.address}" in output
        assert "https://slack.com/api/ (your settings)" in output
        children = stack.children()
        commands = " | ".join(children.values())
        assert len(children) == 4, commands
        assert "start-dev" not in commands and "moto_server" not in commands
        assert "standins.slack" not in commands and "standins.jira" in commands
        stack.process.send_signal(signal.SIGTERM)
        assert stack.wait() == 0
        assert temporal.process and temporal.process.poll() is None, "a server it did not start is left alone"
