"""Helpers of the worker-side sync tests (``test_worker_*``): fakes served on 127.0.0.1, an
activity environment that records heartbeats, and the pull itself. The fake sync catalog
fixture (``catalog``) is in ``conftest.py``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

from temporalio.testing import ActivityEnvironment

from activities.catalog import GantryApi
from activities.sources import build_source_clients
from activities.sources.sync import SourceActivities
from config import Settings
from contracts.sources import PullResource, PullResult
from tests.fakes.server import FakeVendor, serve
from tests.fakes.sync_catalog import FakeSyncCatalog

F = TypeVar("F", bound=FakeVendor)


def running(fake: F) -> Iterator[F]:
    with serve(fake.app) as url:
        fake.url = url
        yield fake


class Env(ActivityEnvironment):
    """An ActivityEnvironment that keeps every heartbeat's details and can act as a retry."""

    def __init__(self) -> None:
        super().__init__()
        self.heartbeats: list[Any] = []
        self.on_heartbeat = lambda *details: self.heartbeats.append(details[0] if details else None)

    def retrying(self, progress: dict[str, Any]) -> Env:
        self.info = dataclasses.replace(
            self.info, attempt=2, heartbeat_details=[progress], scheduled_time=datetime.now(UTC)
        )
        return self


def settings_for(catalog: FakeSyncCatalog, **values: Any) -> Settings:
    return Settings(
        _env_file=None,
        api_url=catalog.url,
        service_token=FakeSyncCatalog.token,
        sources_max_rate_limit_wait=5.0,
        **values,
    )


def activities_for(settings: Settings) -> SourceActivities:
    return SourceActivities(GantryApi.from_settings(settings), build_source_clients(settings))


async def pull(
    env: Env,
    settings: Settings,
    source: str,
    kind: str,
    resource_kind: str,
    config: dict[str, Any],
    **more: Any,
) -> PullResult:
    sources = activities_for(settings)
    request = PullResource(
        data_source=source,
        sync_id="s1",
        kind=kind,
        resource=more.pop("resource", 0),
        resource_kind=resource_kind,
        config=config,
        selector=more.pop("selector", {}),
    )
    result: PullResult = await env.run(sources.pull, request)
    return result


def open_record(catalog: FakeSyncCatalog, source: str, sync: str = "s1") -> None:
    catalog.syncs[source, sync] = {"id": sync, "status": "RUNNING", "trigger": "API", "counts": {}}
