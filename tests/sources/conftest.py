"""Fixtures of the data-source tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.sync_catalog import FakeSyncCatalog
from tests.sources.worker_fixtures import running


@pytest.fixture(scope="module")
def catalog_server() -> Iterator[FakeSyncCatalog]:
    """The worker's side of the catalog API (the sync routes), served on 127.0.0.1."""
    yield from running(FakeSyncCatalog())


@pytest.fixture
def catalog(catalog_server: FakeSyncCatalog) -> FakeSyncCatalog:
    catalog_server.reset()
    return catalog_server
