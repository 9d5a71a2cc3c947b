"""Webhook intake: once the API has read a source, a delivery is stored by one INSERT that checks
the source is still at the version read, so a source changed or deleted since is never taken on
stale settings; the processor lets a burst in before applying it, and applies deliveries anyway
once they have waited its longest deferral. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.routes.webhooks import DeliveryProcessor
from devtools.testing import eventually
from tests.sources.catalog_fixtures import settings
from tests.sources.test_webhook_batches import stopped
from tests.sources.test_webhooks import HOOKS, SECRET, SECRET_ENV, _deliver, _deliveries, _event

__all__ = ["settings", "stopped"]

OTHER_ENV, OTHER_SECRET = "GANTRY_WEBHOOK_TEST_OTHER_SECRET", "another-secret"


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    monkeypatch.setenv(OTHER_ENV, OTHER_SECRET)


def test_a_source_changed_or_deleted_after_a_delivery_is_not_taken_on_its_old_settings(
    stopped: TestClient,
) -> None:
    assert _deliver(stopped, _event("api"), "d-1").json()["accepted"] is True  # settings now known
    assert _deliver(stopped, _event("api"), "d-2").json()["accepted"] is True  # through them
    assert _deliver(stopped, _event("api"), "d-2").json() == {"delivery_id": "d-2", "accepted": False}
    changed = copy.deepcopy(HOOKS)
    changed["security"] = {"secret_env": OTHER_ENV}
    assert stopped.put("/v1/data-sources/github_hooks", json=changed).status_code == 200
    assert _deliver(stopped, _event("api"), "d-3").status_code == 401  # the old secret
    assert _deliver(stopped, _event("api"), "d-4", secret=OTHER_SECRET).json()["accepted"] is True
    assert _deliver(stopped, _event("api"), "d-5", secret=OTHER_SECRET).json()["accepted"] is True
    assert stopped.delete("/v1/data-sources/github_hooks").status_code == 204
    assert _deliver(stopped, _event("api"), "d-6", secret=OTHER_SECRET).status_code == 401
    # created again with the first settings: its first delivery reads it again
    assert stopped.post("/v1/data-sources", json=HOOKS).status_code == 201
    assert _deliver(stopped, _event("api"), "d-7", secret=OTHER_SECRET).status_code == 401
    assert _deliver(stopped, _event("api"), "d-7").json()["accepted"] is True
    assert [d["delivery_id"] for d in _deliveries(stopped)] == ["d-7"]


@pytest.fixture
def processor(stopped: TestClient) -> Iterator[DeliveryProcessor]:
    """The app's processor replaced by one that waits for a 0.4 s pause, at most 1 s."""
    state = stopped.app.state  # type: ignore[attr-defined]
    processor = DeliveryProcessor(state.sessionmaker, quiet=0.4, max_defer=1.0)
    state.deliveries, original = processor, state.deliveries
    thread = threading.Thread(target=asyncio.run, args=(processor.run(),), daemon=True)
    thread.start()
    eventually(lambda: processor.running, timeout=10)
    yield processor
    processor.stop()
    thread.join(timeout=10)
    state.deliveries = original


def _statuses(client: TestClient) -> dict[str, str]:
    return {d["delivery_id"]: d["status"] for d in _deliveries(client)}


def test_deliveries_wait_for_a_pause_in_a_burst_but_not_longer_than_the_deferral(
    stopped: TestClient, processor: DeliveryProcessor
) -> None:
    started = time.monotonic()
    sent = 0
    applied_during_burst = False
    # A burst that never pauses 0.4 s, for longer than the 1 s deferral.
    while time.monotonic() - started < 3.0:
        assert _deliver(stopped, _event(f"svc-{sent}"), f"d-{sent}").status_code == 202
        sent += 1
        statuses = _statuses(stopped)
        if time.monotonic() - started < 0.3:
            assert set(statuses.values()) == {"PENDING"}  # let in, not applied yet
        applied_during_burst = applied_during_burst or "APPLIED" in statuses.values()
        time.sleep(0.05)
    assert applied_during_burst  # the deferral ran out while the burst went on
    eventually(lambda: set(_statuses(stopped).values()) == {"APPLIED"}, timeout=30)
    assert len(_statuses(stopped)) == sent
