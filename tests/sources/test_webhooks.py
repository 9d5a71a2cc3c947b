"""Webhook sources: GitHub-signed deliveries are stored before the 202 and applied by the API's
processor; bad signatures store nothing, a replayed delivery id is not applied again, a delivery
stored while no processor runs is applied after a restart, and none is applied twice."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from config import Settings
from devtools.testing import eventually
from tests.api.conftest import ADMIN_TOKEN, SERVICE_BLUEPRINT, SYSTEM_BLUEPRINT
from tests.sources.catalog_fixtures import api, settings
from tests.temporal_env import free_port

__all__ = ["api", "settings"]

SECRET = "webhook-test-secret"
SECRET_ENV = "GANTRY_WEBHOOK_TEST_SECRET"
REPO = {"identifier": ".body.repository.name", "blueprint": '"service"'}
HOOKS: dict[str, Any] = {
    "identifier": "github_hooks",
    "kind": "webhook",
    "security": {"secret_env": SECRET_ENV},
    "resources": [
        {
            "kind": "repository",
            "filter": '.headers["x-github-event"] == "repository" and .body.action != "deleted"',
            "port": {
                "entity": {
                    "mappings": {
                        **REPO,
                        "team": '"payments-team"',
                        "properties": {
                            "language": ".body.repository.language",
                            "repo": ".body.repository.html_url",
                        },
                    }
                }
            },
        },
        {
            "kind": "repository",
            "filter": '.headers["x-github-event"] == "repository" and .body.action == "deleted"',
            "operation": "delete",
            "port": {"entity": {"mappings": REPO}},
        },
    ],
}


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)


def _event(name: str, action: str = "created", language: str = "python") -> bytes:
    repository = {"name": name, "language": language, "html_url": f"https://github.com/acme/{name}"}
    return json.dumps({"action": action, "repository": repository}).encode()


def _deliver(
    client: TestClient, body: bytes, delivery: str, *, secret: str = SECRET, event: str = "repository"
) -> Any:
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-Hub-Signature-256": signature,
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Event": event,
        "Content-Type": "application/json",
        "Authorization": "",
    }
    return client.post("/v1/webhooks/github_hooks", content=body, headers=headers)


def _deliveries(client: TestClient) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get("/v1/data-sources/github_hooks/deliveries").json()["items"]
    return items


def _settled(client: TestClient, count: int) -> list[dict[str, Any]]:
    def check() -> list[dict[str, Any]]:
        items = _deliveries(client)
        assert len(items) == count and all(d["status"] != "PENDING" for d in items), items
        return items

    return eventually(check, timeout=30)


@pytest.fixture
def hooks(api: TestClient) -> TestClient:
    assert api.post("/v1/data-sources", json=HOOKS).status_code == 201
    return api


def test_a_signed_delivery_is_accepted_and_applied(hooks: TestClient) -> None:
    response = _deliver(hooks, _event("api"), "d-1")
    assert response.status_code == 202
    assert response.json() == {"delivery_id": "d-1", "accepted": True}
    (delivery,) = _settled(hooks, 1)
    assert delivery["status"] == "APPLIED" and delivery["attempts"] == 1
    assert delivery["outcome"]["created"] == 1
    entity = hooks.get("/v1/blueprints/service/entities/api").json()
    assert entity["properties"] == {"language": "python", "repo": "https://github.com/acme/api"}
    assert entity["source"] == {"data_source": "github_hooks", "resource": 0}
    assert _deliver(hooks, _event("api", action="deleted"), "d-2").status_code == 202
    _settled(hooks, 2)
    assert hooks.get("/v1/blueprints/service/entities/api").status_code == 404


def test_an_event_no_filter_takes_is_ignored(hooks: TestClient) -> None:
    assert _deliver(hooks, _event("api"), "d-1", event="push").status_code == 202
    (delivery,) = _settled(hooks, 1)
    assert delivery["status"] == "IGNORED"
    assert hooks.get("/v1/blueprints/service/entities/api").status_code == 404


def test_a_bad_or_missing_signature_is_a_401_and_stores_nothing(hooks: TestClient) -> None:
    assert _deliver(hooks, _event("api"), "d-1", secret="guessed").status_code == 401
    unsigned = hooks.post(
        "/v1/webhooks/github_hooks", content=_event("api"), headers={"X-GitHub-Delivery": "d-2"}
    )
    assert unsigned.status_code == 401
    # the bearer token of an admin is no signature
    assert hooks.post("/v1/webhooks/github_hooks", content=_event("api")).status_code == 401
    assert _deliveries(hooks) == []
    assert _deliver(hooks, _event("api"), "d-3").status_code == 202  # the same body, signed
    assert len(_deliveries(hooks)) == 1


def test_an_unknown_source_answers_as_a_bad_signature_does(hooks: TestClient) -> None:
    # An unsigned caller cannot tell a webhook source that exists from one that does not,
    # nor a pull source from nothing.
    unknown = hooks.post("/v1/webhooks/nothing_here", content=_event("api"))
    bad = hooks.post("/v1/webhooks/github_hooks", content=_event("api"))
    assert unknown.status_code == bad.status_code == 401
    assert unknown.json()["error"]["code"] == bad.json()["error"]["code"]


def test_an_unset_secret_accepts_nothing(hooks: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV)
    assert _deliver(hooks, _event("api"), "d-1", secret="").status_code == 401


def test_a_replayed_delivery_is_answered_202_and_not_applied_again(hooks: TestClient) -> None:
    assert _deliver(hooks, _event("api"), "d-1").json()["accepted"] is True
    _settled(hooks, 1)
    replay = _deliver(hooks, _event("api", language="go"), "d-1")
    assert replay.status_code == 202 and replay.json() == {"delivery_id": "d-1", "accepted": False}
    assert len(_deliveries(hooks)) == 1
    assert hooks.get("/v1/blueprints/service/entities/api").json()["properties"]["language"] == "python"


def test_a_delivery_stored_while_the_processor_is_stopped_is_applied_after_a_restart(
    settings: Settings,
) -> None:
    with TestClient(create_app(settings), raise_server_exceptions=False) as first:
        first.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        _seed(first)
        processor = first.app.state.deliveries  # type: ignore[attr-defined]
        processor.stop()
        eventually(lambda: not processor.running, timeout=10)
        assert _deliver(first, _event("api"), "d-1").status_code == 202
        (stored,) = _deliveries(first)
        assert stored["status"] == "PENDING"
    with TestClient(create_app(settings), raise_server_exceptions=False) as second:
        second.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        (delivery,) = _settled(second, 1)
        assert delivery["status"] == "APPLIED" and delivery["attempts"] == 1
        assert second.get("/v1/blueprints/service/entities/api").status_code == 200


def _seed(client: TestClient) -> None:
    assert (
        client.post("/v1/teams", json={"identifier": "payments-team", "title": "Payments"}).status_code == 201
    )
    assert client.post("/v1/blueprints", json=SYSTEM_BLUEPRINT).status_code == 201
    assert client.post("/v1/blueprints", json=SERVICE_BLUEPRINT).status_code == 201
    assert client.post("/v1/data-sources", json=HOOKS).status_code == 201


@pytest.fixture
def two_apis(settings: Settings) -> Iterator[tuple[TestClient, TestClient]]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as one:
        one.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        _seed(one)
        with TestClient(create_app(settings), raise_server_exceptions=False) as two:
            two.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
            yield one, two


def test_two_api_processes_apply_each_delivery_once(two_apis: tuple[TestClient, TestClient]) -> None:
    one, two = two_apis
    count = 20

    def send(client: TestClient, start: int) -> None:
        for n in range(start, count, 2):
            assert _deliver(client, _event(f"svc-{n}"), f"d-{n}").status_code == 202

    senders = [threading.Thread(target=send, args=(c, s)) for c, s in ((one, 0), (two, 1))]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    settled = _settled(one, count)
    assert {d["status"] for d in settled} == {"APPLIED"}
    assert {d["attempts"] for d in settled} == {1}
    created = one.get(
        "/v1/audit-log", params={"resource_type": "entity", "operation": "CREATE", "limit": 1000}
    )
    identifiers = [a["identifier"] for a in created.json()["items"] if a["operation"] == "CREATE"]
    assert sorted(identifiers) == sorted(f"svc-{n}" for n in range(count))


def test_deliveries_are_applied_with_temporal_down(settings: Settings) -> None:
    """Webhook ingestion needs only the database: a Temporal outage loses no delivery."""
    down = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    with TestClient(create_app(down), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        _seed(client)
        assert _deliver(client, _event("api"), "d-1").status_code == 202
        (delivery,) = _settled(client, 1)
        assert delivery["status"] == "APPLIED"
        assert client.get("/v1/blueprints/service/entities/api").status_code == 200
