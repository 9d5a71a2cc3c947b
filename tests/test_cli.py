"""``gantry`` against the real API app served by uvicorn on a free port."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

import cli
from config import Settings
from devtools.processes import ApiProcess, WorkerProcess, gantry_env
from devtools.testing import eventually
from tests.temporal_env import DevServerProcess

pytestmark = pytest.mark.temporal

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "cli-test-admin-token"


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
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from api.app import create_app

    data_dir = tmp_path_factory.mktemp("cli-api")
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
        yield f"http://127.0.0.1:{port}"
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def applied(api_url: str) -> str:
    assert (
        cli.main(["--api-url", api_url, "--token", ADMIN_TOKEN, "apply", str(ROOT / "portal"), "--yes"]) == 0
    )
    return api_url


def gantry(api_url: str, *args: str, token: str | None = ADMIN_TOKEN) -> int:
    return cli.main(["--api-url", api_url, *(["--token", token] if token else []), *args])


def _get(api_url: str, path: str) -> httpx.Response:
    return httpx.get(f"{api_url}{path}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})


def test_apply_creates_the_example_portal(applied: str) -> None:
    payments = _get(applied, "/v1/blueprints/service/entities/payments").json()
    assert payments["relations"] == {"system": "billing", "depends_on": ["ledger"]}
    assert payments["team"] == ["payments-team"]
    # Relations that point at other blueprints and at the same one resolved in one apply.
    checkout = _get(applied, "/v1/blueprints/service/entities/checkout").json()
    assert sorted(checkout["relations"]["depends_on"]) == ["cart", "catalog-api", "payments"]
    deployment = _get(applied, "/v1/blueprints/deployment/entities/checkout-v3.7.1").json()
    assert deployment["relations"]["service"] == "checkout"
    alice = _get(applied, "/v1/users/alice").json()
    assert alice["role"] == "admin" and alice["teams"] == ["platform"]
    blueprints = {bp["identifier"] for bp in _get(applied, "/v1/blueprints").json()["items"]}
    assert blueprints >= {"system", "service", "environment", "deployment", "cluster"}


def test_apply_twice_changes_nothing(applied: str, capsys: pytest.CaptureFixture[str]) -> None:
    def snapshot() -> dict[str, list[str]]:
        return {
            bp: sorted(
                e["identifier"] for e in _get(applied, f"/v1/blueprints/{bp}/entities").json()["items"]
            )
            for bp in ("system", "service", "environment", "deployment", "cluster")
        }

    before = snapshot()
    assert gantry(applied, "apply", str(ROOT / "portal"), "--yes") == 0
    assert snapshot() == before
    assert sum(len(ids) for ids in before.values()) >= 12
    assert "No changes." in capsys.readouterr().out


def test_apply_a_single_file_holding_a_list(applied: str, tmp_path: Path) -> None:
    doc = [
        {"kind": "Team", "spec": {"identifier": "sre", "title": "SRE"}},
        {
            "kind": "Entity",
            "spec": {
                "blueprint": "cluster",
                "identifier": "prod-us-east-1",
                "title": "Production (us-east-1)",
                "team": ["sre"],
                "properties": {"provider": "aws", "region": "us-east-1"},
            },
        },
    ]
    file = tmp_path / "more.yaml"
    file.write_text(json.dumps(doc))  # JSON is YAML
    assert gantry(applied, "apply", str(file), "--yes") == 0
    assert _get(applied, "/v1/blueprints/cluster/entities/prod-us-east-1").json()["team"] == ["sre"]


def test_invalid_entity_prints_the_failing_field(
    applied: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(
        "kind: Entity\n"
        "spec: {blueprint: service, identifier: broken, properties: {language: python, tier: 7}}\n"
    )
    assert gantry(applied, "apply", str(file), "--yes") == 1
    err = capsys.readouterr().err
    assert "broken" in err and "/properties/tier" in err
    assert _get(applied, "/v1/blueprints/service/entities/broken").status_code == 404


def test_a_document_without_kind_is_refused(
    applied: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "odd.yaml"
    file.write_text("spec: {identifier: x}\n")
    assert gantry(applied, "apply", str(file), "--yes") == 1
    assert "each document needs kind" in capsys.readouterr().err


def test_get_and_search(applied: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert gantry(applied, "get", "blueprints") == 0
    assert "service\tService" in capsys.readouterr().out

    assert gantry(applied, "get", "entities", "system") == 0
    assert capsys.readouterr().out.splitlines() == ["billing\tBilling", "storefront\tStorefront"]

    assert gantry(applied, "get", "entity", "service", "ledger") == 0
    assert json.loads(capsys.readouterr().out)["properties"]["language"] == "go"

    query = {
        "combinator": "and",
        "rules": [
            {"property": "$blueprint", "operator": "=", "value": "service"},
            {"property": "tier", "operator": "=", "value": 1},
        ],
    }
    assert gantry(applied, "search", json.dumps(query)) == 0
    found = {line.split("\t")[1] for line in capsys.readouterr().out.splitlines()}
    assert found == {"payments", "ledger", "checkout"}


def test_missing_entity_is_an_error_with_the_api_message(
    applied: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert gantry(applied, "get", "entity", "service", "nope") == 1
    assert capsys.readouterr().err.startswith("error: 404:")


def test_token_create_gives_a_working_token(applied: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert gantry(applied, "token", "create", "--user", "bob") == 0
    token = capsys.readouterr().out.strip()
    me = httpx.get(f"{applied}/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["identifier"] == "bob"


def test_without_a_token_the_api_says_why(
    applied: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GANTRY_TOKEN", raising=False)
    assert gantry(applied, "get", "blueprints", token=None) == 1
    err = capsys.readouterr().err
    assert "error: 401" in err and "Set GANTRY_TOKEN" in err and "gantry token create" in err
    assert gantry(applied, "get", "blueprints", token="gnt_revoked") == 1
    assert "unknown, revoked or expired" in capsys.readouterr().err


def test_unreachable_api(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    assert gantry(url, "get", "blueprints") == 1
    assert "cannot reach the Gantry API" in capsys.readouterr().err


# --- waiting for runs: the API and a worker on a real Temporal dev server ---------------------------

SERVICE_TOKEN = "cli-test-service-token"


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API and ``python worker.py`` as processes on a Temporal dev server, with an approver,
    an action that waits for their approval and one whose only step fails at once."""
    tmp = tmp_path_factory.mktemp("cli-live")
    api_port = _free_port()
    with DevServerProcess(tmp / "temporal.db") as temporal:
        env = gantry_env(
            data_dir=tmp,
            temporal_address=temporal.address,
            admin_token=ADMIN_TOKEN,
            service_token=SERVICE_TOKEN,
            secret_key="cli-test-secret-key",
            webhook_secret="cli-test-webhook-secret",
            api_url=f"http://127.0.0.1:{api_port}",
        )
        api = ApiProcess(env, tmp / "api.log", host="127.0.0.1", port=api_port)
        with api, WorkerProcess(env, tmp / "worker.log"):
            _setup_waiting_actions(api.url)
            yield api.url


def _setup_waiting_actions(api_url: str) -> None:
    admin = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with admin:
        user = {"identifier": "approver", "email": "approver@example.com", "role": "member"}
        assert admin.post("/v1/users", json=user).status_code == 201
        gated = {
            "identifier": "gated",
            "title": "Gated",
            "trigger": {"operation": "CREATE"},
            "approval": {"required_approvals": 1, "approvers": {"users": ["approver"]}, "timeout": "PT1H"},
            "steps": [{"id": "pause", "uses": "sleep", "with": {"duration": "PT1S"}}],
        }
        closed = f"http://127.0.0.1:{_free_port()}/hook"  # nothing listens there
        failing = {
            "identifier": "failing",
            "title": "Failing",
            "trigger": {"operation": "CREATE"},
            "steps": [
                {
                    "id": "call",
                    "uses": "http.request",
                    "with": {"url": closed},
                    "retry": {"maximum_attempts": 1},
                }
            ],
        }
        for action in (gated, failing):
            created = admin.post("/v1/actions", json=action)
            assert created.status_code == 201, created.text


def _approve(api_url: str, run_id: str) -> None:
    token = httpx.post(
        f"{api_url}/v1/tokens",
        json={"user": "approver"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ).json()["token"]
    decided = httpx.post(
        f"{api_url}/v1/runs/{run_id}/approval",
        json={"decision": "APPROVE"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert decided.status_code == 200, decided.text


@pytest.mark.slow
def test_run_wait_for_returns_the_id_once_the_run_waits(
    live_api: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert gantry(live_api, "run", "gated", "--wait-for", "waiting_for_approval") == 0
    run_id = capsys.readouterr().out.strip()
    assert run_id.startswith("r_")
    assert _get(live_api, f"/v1/runs/{run_id}").json()["status"] == "WAITING_FOR_APPROVAL"

    # Not there yet: a clear error after the timeout, naming the run and where it is.
    assert gantry(live_api, "get", "run", run_id, "--wait-for", "SUCCESS", "--timeout", "0.5") == 1
    err = capsys.readouterr().err
    assert f"run {run_id} is still WAITING_FOR_APPROVAL after 0.5s of waiting for SUCCESS" in err

    _approve(live_api, run_id)
    assert gantry(live_api, "get", "run", run_id, "--wait-for", "SUCCESS") == 0
    assert json.loads(capsys.readouterr().out)["status"] == "SUCCESS"


@pytest.mark.slow
def test_a_run_that_ends_otherwise_stops_the_wait_at_once(
    live_api: str, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    assert gantry(live_api, "run", "failing", "--wait-for", "WAITING_FOR_APPROVAL,SUCCESS") == 1
    assert time.monotonic() - started < 60, "a terminal status ends the wait, not the timeout"
    captured = capsys.readouterr()
    run_id = captured.out.strip()  # printed even so: the run exists
    assert f"run {run_id} ended FAILURE, not SUCCESS or WAITING_FOR_APPROVAL" in captured.err
    assert _get(live_api, f"/v1/runs/{run_id}").json()["status"] == "FAILURE"


@pytest.mark.slow
def test_get_runs_waits_for_the_newest_run_of_the_list(
    live_api: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        gantry(live_api, "get", "runs", "--action", "nothing", "--wait-for", "SUCCESS", "--timeout", "0.2")
        == 1
    )
    assert "the newest run (action=nothing) does not exist after 0.2s" in capsys.readouterr().err

    assert gantry(live_api, "run", "gated", "--wait-for", "WAITING_FOR_APPROVAL") == 0
    run_id = capsys.readouterr().out.strip()
    _approve(live_api, run_id)
    assert gantry(live_api, "get", "runs", "--action", "gated", "--wait-for", "SUCCESS") == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert rows[0][:4] == [run_id, "gated", "", "SUCCESS"], "newest first"
    assert {row[1] for row in rows} == {"gated"}


def test_wait_for_takes_only_run_statuses(api_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Refused before anything is launched."""
    with pytest.raises(SystemExit):
        gantry(api_url, "run", "deploy_service", "--wait-for", "DONE")
    assert "DONE is not a run status; use WAITING_FOR_APPROVAL" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="pick one"):
        gantry(api_url, "run", "deploy_service", "--wait", "--wait-for", "SUCCESS")
    with pytest.raises(SystemExit, match="--wait-for goes with"):
        gantry(api_url, "get", "blueprints", "--wait-for", "SUCCESS")
