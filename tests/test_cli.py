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

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "cli-test-admin-token"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from api.app import create_app

    data_dir = tmp_path_factory.mktemp("cli-api")
    settings = Settings.model_validate({"data_dir": data_dir, "admin_token": ADMIN_TOKEN})
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def applied(api_url: str) -> str:
    assert cli.main(["--api-url", api_url, "--token", ADMIN_TOKEN, "apply", str(ROOT / "portal")]) == 0
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
    assert gantry(applied, "apply", str(ROOT / "portal")) == 0
    assert snapshot() == before
    assert sum(len(ids) for ids in before.values()) >= 12
    out = capsys.readouterr().out
    assert "team platform: updated" in out
    assert "blueprint service: 7 entities upserted" in out


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
    assert gantry(applied, "apply", str(file)) == 0
    assert _get(applied, "/v1/blueprints/cluster/entities/prod-us-east-1").json()["team"] == ["sre"]


def test_invalid_entity_prints_the_failing_field(
    applied: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(
        "kind: Entity\n"
        "spec: {blueprint: service, identifier: broken, properties: {language: python, tier: 7}}\n"
    )
    assert gantry(applied, "apply", str(file)) == 1
    err = capsys.readouterr().err
    assert "broken" in err and "/properties/tier" in err
    assert _get(applied, "/v1/blueprints/service/entities/broken").status_code == 404


def test_a_document_without_kind_is_refused(
    applied: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "odd.yaml"
    file.write_text("spec: {identifier: x}\n")
    assert gantry(applied, "apply", str(file)) == 1
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
