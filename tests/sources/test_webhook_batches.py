"""The delivery processor applies pending deliveries in batches of one source: each delivery
keeps its own outcome, deliveries about one entity apply in order, a delivery that fails or
raises fails nothing else of its batch, and one that keeps raising ends FAILED (SQLite and
PostgreSQL)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from catalog.sources import delivery_batches, webhooks
from config import Settings
from devtools.testing import eventually
from tests.api.conftest import ADMIN_TOKEN
from tests.sources.catalog_fixtures import settings
from tests.sources.test_webhooks import HOOKS, SECRET, SECRET_ENV, _deliver, _deliveries, _event, _seed

__all__ = ["settings"]


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)


@pytest.fixture
def stopped(settings: Settings) -> Iterator[TestClient]:
    """An API whose processor is stopped: deliveries stay PENDING until the test applies them."""
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        _seed(client)
        processor = client.app.state.deliveries  # type: ignore[attr-defined]
        processor.stop()
        eventually(lambda: not processor.running, timeout=10)
        yield client


def _factory(client: TestClient) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = client.app.state.sessionmaker  # type: ignore[attr-defined]
    return factory


def _by_id(client: TestClient) -> dict[str, dict[str, Any]]:
    return {d["delivery_id"]: d for d in _deliveries(client)}


def _entity(client: TestClient, name: str) -> Any:
    return client.get(f"/v1/blueprints/service/entities/{name}")


def test_a_batch_applies_each_delivery_with_its_own_outcome_in_order(stopped: TestClient) -> None:
    sent = [
        (_event("api"), "d-1"),
        (_event("web", language="cobol"), "d-2"),  # not in the blueprint's enum: fails alone
        (_event("api", language="go"), "d-3"),  # the same entity again: after d-1
        (_event("web"), "d-4"),
        (_event("api", action="deleted"), "d-5"),  # a delete between writes
        (_event("db"), "d-6"),
        (_event("ignored"), "d-7"),
    ]
    for body, delivery in sent:
        event = "push" if delivery == "d-7" else "repository"
        assert _deliver(stopped, body, delivery, event=event).status_code == 202
    assert {d["status"] for d in _deliveries(stopped)} == {"PENDING"}
    assert delivery_batches.process_batch(_factory(stopped)) == len(sent)
    assert delivery_batches.process_batch(_factory(stopped)) == 0
    found = _by_id(stopped)
    assert {k: d["status"] for k, d in found.items()} == {
        "d-1": "APPLIED",
        "d-2": "FAILED",
        "d-3": "APPLIED",
        "d-4": "APPLIED",
        "d-5": "APPLIED",
        "d-6": "APPLIED",
        "d-7": "IGNORED",
    }
    assert {d["attempts"] for d in found.values()} == {1}
    assert found["d-1"]["outcome"]["created"] == 1 and found["d-3"]["outcome"]["updated"] == 1
    assert found["d-4"]["outcome"]["created"] == 1 and found["d-5"]["outcome"]["deleted"] == 1
    (error,) = found["d-2"]["outcome"]["errors"]
    assert (error["key"], error["pointer"], found["d-2"]["outcome"]["failed"]) == (
        "web",
        "/properties/language",
        1,
    )
    assert found["d-1"]["outcome"]["errors"] == [] and found["d-6"]["outcome"]["created"] == 1
    assert _entity(stopped, "api").status_code == 404  # created, updated, then deleted: in order
    assert _entity(stopped, "web").json()["properties"]["language"] == "python"
    assert _entity(stopped, "db").status_code == 200


def test_a_delivery_that_raises_fails_nothing_else_and_ends_failed(
    stopped: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = delivery_batches.apply_mapping

    def exploding(session: Session, definition: Any, index: int, mapping: Any, **kw: Any) -> Any:
        if any(m.entity["identifier"] == "boom" for m in mapping.entities):
            raise RuntimeError("the database went away for boom")
        return real(session, definition, index, mapping, **kw)

    monkeypatch.setattr(delivery_batches, "apply_mapping", exploding)
    monkeypatch.setattr(webhooks, "apply_mapping", exploding)
    for n, name in enumerate(("api", "boom", "web")):
        assert _deliver(stopped, _event(name), f"d-{n}").status_code == 202
    factory = _factory(stopped)
    assert delivery_batches.process_batch(factory) == 3
    found = _by_id(stopped)
    assert (found["d-0"]["status"], found["d-2"]["status"]) == ("APPLIED", "APPLIED")
    assert (found["d-1"]["status"], found["d-1"]["attempts"]) == ("PENDING", 1)
    assert _entity(stopped, "api").status_code == 200 and _entity(stopped, "web").status_code == 200
    # Tried again with the next batches, then given up on: never applied, never lost.
    assert delivery_batches.process_batch(factory) == 1
    assert delivery_batches.process_batch(factory) == 1
    assert delivery_batches.process_batch(factory) == 0
    boom = _by_id(stopped)["d-1"]
    assert (boom["status"], boom["attempts"]) == ("FAILED", webhooks.MAX_ATTEMPTS)
    assert "the database went away for boom" in json.dumps(boom["outcome"])
    assert _entity(stopped, "boom").status_code == 404


def test_a_batch_takes_one_source_at_a_time(stopped: TestClient) -> None:
    other = {**HOOKS, "identifier": "other_hooks"}
    assert stopped.post("/v1/data-sources", json=other).status_code == 201
    assert _deliver(stopped, _event("api"), "d-1").status_code == 202
    body = _event("web")
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-Hub-Signature-256": signature, "X-GitHub-Delivery": "o-1", "X-GitHub-Event": "repository"}
    assert stopped.post("/v1/webhooks/other_hooks", content=body, headers=headers).status_code == 202
    assert _deliver(stopped, _event("db"), "d-2").status_code == 202
    factory = _factory(stopped)
    assert delivery_batches.process_batch(factory) == 2  # github_hooks' two
    assert delivery_batches.process_batch(factory) == 1  # then other_hooks'
    assert _entity(stopped, "web").json()["source"]["data_source"] == "other_hooks"
