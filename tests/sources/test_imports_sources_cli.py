"""``gantry sources list|preview|sync|syncs`` against the real API served by uvicorn: with Temporal
unreachable (a sync start is a 503 and its record ends FAILURE), and on a Temporal dev server where
the test plays the worker through the service routes while ``sync --wait`` follows the record."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

import cli
from config import Settings
from devtools.testing import eventually
from tests.temporal_env import DevServerProcess

ADMIN_TOKEN = "sources-cli-admin-token"
SERVICE_TOKEN = "sources-cli-service-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SERVICE = {"Authorization": f"Bearer {SERVICE_TOKEN}"}

SOURCE: dict[str, Any] = {
    "identifier": "github_acme",
    "kind": "github",
    "config": {"org": "acme"},
    "resources": [
        {
            "kind": "repository",
            "selector": {"query": ".archived == false"},
            "port": {
                "entity": {
                    "mappings": {
                        "identifier": ".name",
                        "title": ".name",
                        "blueprint": '"repo"',
                        "properties": {"stars": ".stargazers_count"},
                    }
                }
            },
        }
    ],
}
REPO_BLUEPRINT = {
    "identifier": "repo",
    "title": "Repository",
    "schema": {"properties": {"stars": {"type": "integer"}}},
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(settings: Settings) -> Iterator[str]:
    from api.app import create_app

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: server.started or None, timeout=30, what="the API to start")
    url = f"http://127.0.0.1:{port}"
    assert httpx.post(f"{url}/v1/blueprints", json=REPO_BLUEPRINT, headers=ADMIN).status_code == 201
    assert httpx.post(f"{url}/v1/data-sources", json=SOURCE, headers=ADMIN).status_code == 201
    yield url
    server.should_exit = True
    thread.join(10)


def _settings(database_url: str, tmp_path: Path, temporal_address: str) -> Settings:
    return Settings.model_validate(
        {
            "database_url": database_url,
            "data_dir": tmp_path,
            "admin_token": ADMIN_TOKEN,
            "service_token": SERVICE_TOKEN,
            "temporal_address": temporal_address,
        }
    )


@pytest.fixture
def no_temporal(database_url: str, tmp_path: Path) -> Iterator[str]:
    yield from _serve(_settings(database_url, tmp_path, f"127.0.0.1:{_free_port()}"))


def gantry(api_url: str, *args: str) -> int:
    return cli.main(["--api-url", api_url, "--token", ADMIN_TOKEN, "sources", *args])


def test_list_preview_and_syncs(no_temporal: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert gantry(no_temporal, "list") == 0
    assert capsys.readouterr().out.split() == ["github_acme", "github"]

    items = tmp_path / "items.json"
    items.write_text(json.dumps([{"name": "web", "archived": False, "stargazers_count": 3}]))
    assert gantry(no_temporal, "preview", "github_acme", str(items)) == 0
    preview = json.loads(capsys.readouterr().out)
    assert preview["errors"] == []
    assert [(e["identifier"], e["properties"]) for e in preview["entities"]] == [("web", {"stars": 3})]
    assert httpx.get(f"{no_temporal}/v1/blueprints/repo/entities/web", headers=ADMIN).status_code == 404

    # One item (not a list), by resource kind, that the blueprint refuses: exit 1, errors shown.
    items.write_text(json.dumps({"name": "bad", "archived": False, "stargazers_count": "many"}))
    assert gantry(no_temporal, "preview", "github_acme", str(items), "--resource", "repository") == 1
    assert "/properties/stars" in capsys.readouterr().out

    assert gantry(no_temporal, "syncs", "github_acme") == 0
    assert capsys.readouterr().out == ""
    assert gantry(no_temporal, "preview", "nope", str(items)) == 1
    assert "404" in capsys.readouterr().err


def test_a_sync_that_cannot_start_is_an_error_and_recorded(
    no_temporal: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert gantry(no_temporal, "sync", "github_acme", "--wait") == 1
    assert "503" in capsys.readouterr().err
    assert gantry(no_temporal, "syncs", "github_acme") == 0
    row = capsys.readouterr().out.split("\t")
    assert row[1:3] == ["FAILURE", "API"]


@pytest.fixture
def with_temporal(database_url: str, tmp_path: Path) -> Iterator[str]:
    with DevServerProcess(tmp_path / "temporal.db") as temporal:
        yield from _serve(_settings(database_url, tmp_path, temporal.address))


@pytest.mark.temporal
def test_sync_wait_follows_the_record_until_the_worker_completes_it(
    with_temporal: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The test reports as the worker would (its own tests run the real one): ``--wait`` prints
    the record once it ended."""
    outcome: dict[str, int] = {}
    waiting = threading.Thread(
        target=lambda: outcome.setdefault("code", gantry(with_temporal, "sync", "github_acme", "--wait")),
        daemon=True,
    )
    waiting.start()
    base = f"{with_temporal}/v1/data-sources/github_acme/syncs"

    def running() -> str | None:
        items = httpx.get(base, headers=ADMIN).json()["items"]
        return items[0]["id"] if items and items[0]["status"] == "RUNNING" else None

    sync_id = eventually(running, timeout=30, what="the sync record")
    page = {"resource": 0, "page": "", "items": [{"name": "web", "archived": False, "stargazers_count": 5}]}
    assert httpx.post(f"{base}/{sync_id}/items", json=page, headers=SERVICE).status_code == 200
    assert (
        httpx.post(f"{base}/{sync_id}/complete", json={"status": "SUCCESS"}, headers=SERVICE).status_code
        == 200
    )
    waiting.join(30)
    assert outcome == {"code": 0}
    record = json.loads(capsys.readouterr().out)
    assert record["id"] == sync_id and record["status"] == "SUCCESS"
    assert record["counts"]["created"] == 1
