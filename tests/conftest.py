"""Shared fixtures: catalog databases on SQLite and PostgreSQL; markers; Hypothesis profiles.

PostgreSQL tests use ``GANTRY_TEST_POSTGRES_URL`` (default: the local server on 127.0.0.1:5432,
database ``test``). Each test session creates its own database and drops it afterwards. Locally
the PostgreSQL tests skip with a reason when no server answers; in CI (``CI=true``) they fail.

Markers are applied from what a test uses, so nobody has to remember them:

- ``temporal``: the test (or one of its fixtures or module helpers) starts the Temporal dev
  server or a worker process, or is ``slow`` (those start the whole stack);
- ``time_skipping``: it starts the time-skipping test server (a second or so: part of the fast
  tier).

``pytest -m "not temporal and not slow"`` (``make test-fast``) is the fast tier. In CI Hypothesis
runs derandomized (the ``ci`` profile): a red build replays the same examples.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import types
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from catalog.db import make_engine

POSTGRES_ADMIN_URL = os.environ.get(
    "GANTRY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

hypothesis_settings.register_profile(
    "ci", derandomize=True, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.register_profile("dev", deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if IN_CI else "dev"))

# Names whose use means a Temporal server: the dev server (slow tier) or the time-skipping one.
DEV_SERVER = ("start_dev_server", "DevServerProcess", "WorkerProcess", "start_local")
TIME_SKIPPING = ("start_time_skipping",)
HELPER_DEPTH = 3  # module helpers calling helpers: deep enough for every stack builder here


@functools.cache
def _names_used(func: Callable[..., Any], depth: int = HELPER_DEPTH) -> frozenset[str]:
    """Global names ``func`` uses, plus those of the functions of its module it calls (to ``depth``)."""
    code = getattr(func, "__code__", None)
    if code is None:
        return frozenset()
    names: set[str] = set()
    stack = [code]
    while stack:
        current = stack.pop()
        names.update(current.co_names)
        stack.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    if depth:
        module = sys.modules.get(func.__module__)
        for name in list(names):
            helper = getattr(module, name, None)
            if inspect.isfunction(helper) and helper.__module__ == func.__module__ and helper is not func:
                names |= _names_used(helper, depth - 1)
    return frozenset(names)


def _server_names(item: pytest.Function) -> set[str]:
    """Every name the test and its fixtures use, following module helpers."""
    funcs = [item.function]
    for defs in item._fixtureinfo.name2fixturedefs.values():
        funcs.extend(d.func for d in defs)
    found: set[str] = set()
    for func in funcs:
        found |= _names_used(inspect.unwrap(func))
    return found


# `make test` runs on two pytest-xdist processes (``--dist loadgroup``). Each module is one group,
# so its module-scoped fixtures (servers, stacks) start once; the browser modules share one group
# (one browser and live stack at a time, as their tests expect). Groups are handed out in
# collection order, so the longest go first: whichever process finishes its long group takes the
# many short ones, and the run does not end waiting on one long module started last.
SHARED_GROUPS = {"tests/web/test_browser": "browser"}
LONGEST_FIRST = (
    "tests/test_devstack.py",
    "tests/test_tour.py",
    "browser",
    "tests/workflows/test_timer_load.py",
    "tests/test_scale_out.py",
    "tests/workflows/test_durability.py",
    "tests/workflows/test_timer_durability.py",
    "tests/sources/test_worker_sync.py",
)


def _group(item: pytest.Item) -> str:
    module = item.nodeid.split("::", 1)[0]
    return next((g for prefix, g in SHARED_GROUPS.items() if module.startswith(prefix)), module)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {group: i for i, group in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(_group(item), len(rank)))  # stable: the rest keep their order
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_group(item)))
        if not isinstance(item, pytest.Function):
            continue
        used = _server_names(item)
        # Slow tests start the whole stack (``make run``, the CLI against it): Temporal included.
        starts_stack = item.get_closest_marker("slow") is not None
        if starts_stack or used.intersection(DEV_SERVER) or "temporal" in item.fixturenames:
            item.add_marker(pytest.mark.temporal)
        elif used.intersection(TIME_SKIPPING):
            item.add_marker(pytest.mark.time_skipping)


def _postgres_available() -> str | None:
    """None when the server answers, else the reason it does not."""
    try:
        engine = create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:
        return f"PostgreSQL at {POSTGRES_ADMIN_URL} does not answer: {exc.__class__.__name__}: {exc}"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session."""
    reason = _postgres_available()
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    name = f"gantry_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated, empty catalog database; every test that uses it runs on both dialects."""
    from catalog.migrate import upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'catalog.db'}"
        upgrade(url)
        return url
    url = request.getfixturevalue("postgres_url")
    upgrade(url)
    _truncate_all(url)
    return url


def _truncate_all(url: str) -> None:
    from catalog.db import Base

    engine = make_engine(url)
    with engine.begin() as conn:
        names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()
