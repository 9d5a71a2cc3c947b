"""GitHub push webhooks to a files source: a signed push to a repository's default branch syncs
just that repository (the real API over HTTP, the worker on a Temporal dev server, the fake
GitHub org); its stale deletion never reaches another repository's entities. Pushes that start
nothing, forged ones, and Temporal down (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from catalog.sources.descriptors import builtin_blueprints
from catalog.sources.syncs import repository_of
from config import Settings
from devtools.testing import eventually_async
from tests.api.conftest import ADMIN_TOKEN, SERVICE_TOKEN
from tests.fakes.github_org import FakeGitHubOrg
from tests.sources.live_stack import github_portal
from tests.sources.worker_fixtures import running
from tests.temporal_env import free_port, start_dev_server

SECRET = "push-test-secret"
SECRET_ENV = "GANTRY_WEBHOOK_PUSH_SECRET"
FILES: dict[str, Any] = {
    "identifier": "catalog_files",
    "kind": "files",
    "config": {"org": "acme"},
    "delete_stale": True,
    "create_missing_related_entities": True,
    "security": {"secret_env": SECRET_ENV},
    "resources": [{"kind": "file"}],
}


def catalog_component(name: str, description: str = "") -> str:
    return (
        "apiVersion: backstage.io/v1alpha1\nkind: Component\n"
        f"metadata: {{name: {name}, description: '{description or name}'}}\n"
        "spec: {type: service, lifecycle: production, owner: payments-team, system: retail}\n"
    )


def _api(name: str) -> str:
    return (
        "apiVersion: backstage.io/v1alpha1\nkind: API\n"
        f"metadata: {{name: {name}}}\n"
        "spec: {type: openapi, lifecycle: production, owner: payments-team, definition: 'openapi: 3.0.0'}\n"
    )


def push_event(repository: str = "acme/payments", ref: str = "refs/heads/main") -> dict[str, Any]:
    return {
        "ref": ref,
        "repository": {"full_name": repository, "name": repository.split("/")[1], "default_branch": "main"},
        "commits": [{"id": "abc123", "modified": ["catalog-info.yaml"]}],
    }


def signed(
    body: dict[str, Any], delivery: str, *, event: str = "push", secret: str = SECRET
) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    signature = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    headers = {
        "X-Hub-Signature-256": signature,
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "Content-Type": "application/json",
    }
    return raw, headers


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)


def test_repository_of_reads_a_catalog_files_location() -> None:
    assert (
        repository_of("https://github.example/acme/Payments/blob/main/catalog-info.yaml") == "acme/payments"
    )
    assert repository_of("acme/payments/catalog-info.yaml") == "acme/payments"
    assert repository_of("https://github.example/acme") is None
    assert repository_of(None) is None and repository_of("") is None


# ---- the API alone (Temporal down), both databases ---------------------------------------------


@pytest.fixture
def down(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path,
        admin_token=ADMIN_TOKEN,
        service_token=SERVICE_TOKEN,
        temporal_address=f"127.0.0.1:{free_port()}",
        task_queue="sources-push",
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        yield client


def _records(client: TestClient) -> list[dict[str, Any]]:
    return list(client.get("/v1/data-sources/catalog_files/syncs").json()["items"])


def test_only_webhook_and_files_sources_check_signatures(down: TestClient) -> None:
    mappings = {"identifier": ".name", "blueprint": '"x"'}
    github = {
        **FILES,
        "identifier": "github_acme",
        "kind": "github",
        "resources": [{"kind": "repository", "port": {"entity": {"mappings": mappings}}}],
    }
    refused = down.post("/v1/data-sources", json=github)
    assert refused.status_code == 422
    details = refused.json()["error"]["details"]
    assert {"pointer": "/security", "message": "only webhook and files sources check signatures"} in details
    leaky = down.post("/v1/data-sources", json={**FILES, "security": {"secret_env": "GANTRY_ADMIN_TOKEN"}})
    assert leaky.status_code == 422 and "/security/secret_env" in leaky.text
    assert down.post("/v1/data-sources", json=FILES).status_code == 201


def test_pushes_that_start_nothing_and_forged_ones(down: TestClient) -> None:
    assert down.post("/v1/data-sources", json=FILES).status_code == 201
    url = "/v1/webhooks/catalog_files"
    for body, event in (
        ({"zen": "Keep it logically awesome.", "hook_id": 1}, "ping"),
        (push_event(ref="refs/heads/feature"), "push"),  # not the default branch: its files did not change
        (push_event("other/payments"), "push"),  # another organisation's repository: never read
        (push_event("acme/.."), "push"),
    ):
        raw, headers = signed(body, uuid.uuid4().hex, event=event)
        answer = down.post(url, content=raw, headers=headers)
        assert answer.status_code == 202 and answer.json()["accepted"] is False, (event, body)
    raw, headers = signed(push_event(), "forged", secret="not-the-secret")
    assert down.post(url, content=raw, headers=headers).status_code == 401
    raw, headers = signed(push_event(), "to-nowhere")
    assert down.post("/v1/webhooks/nope", content=raw, headers=headers).status_code == 401
    assert _records(down) == []


def test_temporal_down_ends_a_push_sync_as_not_started(down: TestClient) -> None:
    assert down.post("/v1/data-sources", json=FILES).status_code == 201
    raw, headers = signed(push_event(), "d-1")
    answer = down.post("/v1/webhooks/catalog_files", content=raw, headers=headers)
    assert answer.status_code == 503 and answer.headers["Retry-After"], answer.text
    (record,) = _records(down)
    assert (record["id"], record["trigger"], record["status"]) == ("push-d-1", "WEBHOOK", "FAILURE")
    assert record["repositories"] == ["acme/payments"]
    assert "not started" in record["errors"][0]["message"]
    # GitHub's redelivery of the same delivery finds its record: nothing starts twice.
    again = down.post("/v1/webhooks/catalog_files", content=raw, headers=headers)
    assert again.status_code == 202 and again.json() == {"delivery_id": "d-1", "accepted": False}


# ---- the API, the worker and Temporal ---------------------------------------------------------


@pytest.fixture(scope="module")
async def temporal() -> AsyncIterator[WorkflowEnvironment]:
    async with start_dev_server() as env:
        yield env


@pytest.fixture(scope="module")
def github_server() -> Iterator[FakeGitHubOrg]:
    yield from running(FakeGitHubOrg())


@pytest.fixture
async def portal(
    tmp_path: Path, temporal: WorkflowEnvironment, github_server: FakeGitHubOrg
) -> AsyncIterator[httpx.AsyncClient]:
    async with github_portal(tmp_path, temporal, github_server, "push") as api:
        team = {"identifier": "payments-team", "title": "Payments"}
        assert (await api.post("/v1/teams", json=team)).status_code == 201
        for blueprint in builtin_blueprints():
            url = f"/v1/blueprints/{blueprint['identifier']}"
            exists = (await api.get(url)).status_code == 200
            saved = await (
                api.put(url, json=blueprint) if exists else api.post("/v1/blueprints", json=blueprint)
            )
            assert saved.status_code in (200, 201), saved.text
        assert (await api.post("/v1/data-sources", json=FILES)).status_code == 201
        yield api


async def _ended(api: httpx.AsyncClient, sync_id: str) -> dict[str, Any]:
    async def ended() -> dict[str, Any] | None:
        record = (await api.get(f"/v1/data-sources/catalog_files/syncs/{sync_id}")).json()
        return record if record["status"] != "RUNNING" else None

    return await eventually_async(ended, timeout=60, what=f"sync {sync_id}")


async def _exists(api: httpx.AsyncClient, blueprint: str, identifier: str) -> bool:
    return (await api.get(f"/v1/blueprints/{blueprint}/entities/{identifier}")).status_code == 200


@pytest.mark.temporal
async def test_a_push_resyncs_just_its_repository(
    portal: httpx.AsyncClient, github_server: FakeGitHubOrg
) -> None:
    api, github = portal, github_server
    for name in ("payments", "search"):
        github.add_repo(name)
    github.add_file(
        "payments", "catalog-info.yaml", catalog_component("payments") + "---\n" + _api("payments-api")
    )
    github.add_file("search", "catalog-info.yaml", catalog_component("search"))
    started = await api.post("/v1/data-sources/catalog_files/syncs")
    assert started.status_code == 202, started.text
    full = await _ended(api, started.json()["id"])
    assert full["status"] == "SUCCESS" and full["counts"]["created"] == 3, full

    # Upstream: payments drops its API and changes its description; search's file is gone too,
    # but only payments is pushed.
    github.add_file("payments", "catalog-info.yaml", catalog_component("payments", "the payments service"))
    del github.files["acme/search", "catalog-info.yaml"]
    github.requests.clear()
    raw, headers = signed(push_event(), "delivery-1")
    pushed = await api.post("/v1/webhooks/catalog_files", content=raw, headers=headers)
    assert pushed.status_code == 202 and pushed.json() == {"delivery_id": "delivery-1", "accepted": True}
    record = await _ended(api, "push-delivery-1")
    assert (record["status"], record["trigger"], record["repositories"]) == (
        "SUCCESS",
        "WEBHOOK",
        ["acme/payments"],
    ), record
    assert record["counts"] == {
        "seen": 1,
        "created": 0,
        "updated": 1,
        "unchanged": 0,
        "deleted": 1,
        "failed": 0,
    }
    payments = (await api.get("/v1/blueprints/component/entities/payments")).json()
    assert payments["properties"]["description"] == "the payments service"
    assert not await _exists(api, "api", "payments-api")  # stale in the pushed repository
    assert await _exists(api, "component", "search")  # another repository's: left to a full sync
    # The worker read only the pushed repository's files: no listing of the organisation.
    assert github.calls("GET", "/orgs/acme/repos") == []
    assert github.calls("GET", "/repos/acme/search/contents") == []
    assert github.calls("GET", "/repos/acme/payments/contents")

    # GitHub's redelivery starts nothing.
    again = await api.post("/v1/webhooks/catalog_files", content=raw, headers=headers)
    assert again.status_code == 202 and again.json()["accepted"] is False
    syncs = (await api.get("/v1/data-sources/catalog_files/syncs")).json()["items"]
    assert [s["trigger"] for s in syncs].count("WEBHOOK") == 1

    # The next full sync sees search's file gone and deletes it.
    started = await api.post("/v1/data-sources/catalog_files/syncs")
    full = await _ended(api, started.json()["id"])
    assert full["status"] == "SUCCESS" and full["counts"]["deleted"] == 1, full
    assert not await _exists(api, "component", "search")
