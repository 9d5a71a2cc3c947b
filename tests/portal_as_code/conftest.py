"""A live API (uvicorn on a free port) per test, on SQLite and PostgreSQL, and the CLI against it."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

import cli
from config import Settings
from devtools.testing import eventually
from tests.temporal_env import free_port

ROOT = Path(__file__).resolve().parents[2]
PORTAL = ROOT / "portal"
ADMIN_TOKEN = "portal-as-code-admin-token"


class Portal:
    """The CLI and plain HTTP against one live API."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})

    def gantry(self, *args: str, token: str = ADMIN_TOKEN) -> int:
        return cli.main(["--api-url", self.url, "--token", token, *args])

    def get(self, path: str) -> Any:
        response = self.http.get(path)
        assert response.status_code == 200, response.text
        return response.json()

    def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, json=body, **kwargs)


def _serving(server: uvicorn.Server, thread: threading.Thread) -> bool:
    if not thread.is_alive():
        raise RuntimeError("the API's thread ended before it started serving")
    return bool(server.started)


@contextmanager
def serving(settings: Settings) -> Iterator[Portal]:
    """The API app under uvicorn in a thread, on a free port."""
    from api.app import create_app

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: _serving(server, thread), timeout=30, what="the API to start")
    live = Portal(f"http://127.0.0.1:{port}")
    yield live
    live.http.close()
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def portal(database_url: str, tmp_path: Path) -> Iterator[Portal]:
    """The API on an empty catalog; Temporal is not running (nothing here needs it)."""
    settings = Settings.model_validate(
        {"data_dir": tmp_path / "data", "database_url": database_url, "admin_token": ADMIN_TOKEN}
    )
    with serving(settings) as live:
        yield live


@pytest.fixture
def portal_dir(tmp_path: Path) -> Path:
    """A copy of the example portal without its data sources and initiatives: a scheduled source
    and an initiative need Temporal (``test_data_sources.py`` applies the whole portal with a
    Temporal server)."""
    copy = tmp_path / "portal"
    shutil.copytree(PORTAL, copy, ignore=shutil.ignore_patterns("data-sources", "initiatives", "*.md"))
    return copy


@pytest.fixture
def example(portal: Portal, portal_dir: Path) -> Portal:
    """The example portal (without data sources and initiatives), applied."""
    assert portal.gantry("apply", str(portal_dir), "--yes") == 0
    return portal
