"""The catalog side of data sources under test: an API client per dialect with the `system` and
`service` blueprints, a team, and helpers that call the worker's routes with the service token."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from config import Settings
from tests.api.conftest import ADMIN_TOKEN, SERVICE_BLUEPRINT, SERVICE_TOKEN, SYSTEM_BLUEPRINT

SERVICE_HEADERS = {"Authorization": f"Bearer {SERVICE_TOKEN}"}

MAPPINGS: dict[str, Any] = {
    "identifier": ".name",
    "title": ".name",
    "blueprint": '"service"',
    "team": ".owner",
    "properties": {"repo": ".html_url", "language": ".language"},
    "relations": {"system": ".topics[0]"},
}


def github_source(identifier: str = "github_acme", **overrides: Any) -> dict[str, Any]:
    return {
        "identifier": identifier,
        "kind": "github",
        "config": {"org": "acme"},
        "delete_stale": True,
        "deletion_threshold": 0.5,
        "create_missing_related_entities": True,
        "resources": [
            {
                "kind": "repository",
                "selector": {"query": ".archived == false"},
                "port": {"entity": {"mappings": copy.deepcopy(MAPPINGS)}},  # a test may edit its copy
            }
        ],
        **overrides,
    }


def repo(name: str, language: str = "python", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "archived": False,
        "owner": "payments-team",
        "html_url": f"https://github.com/acme/{name}",
        "language": language,
        "topics": ["billing"],
        **extra,
    }


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url, data_dir=tmp_path, admin_token=ADMIN_TOKEN, service_token=SERVICE_TOKEN
    )


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    """An admin's client on a catalog with the `system` and `service` blueprints and a team."""
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        assert (
            client.post("/v1/teams", json={"identifier": "payments-team", "title": "Payments"}).status_code
            == 201
        )
        assert client.post("/v1/blueprints", json=SYSTEM_BLUEPRINT).status_code == 201
        assert client.post("/v1/blueprints", json=SERVICE_BLUEPRINT).status_code == 201
        yield client


class Worker:
    """The worker's calls of the sync contract, through HTTP with the service token."""

    def __init__(self, client: TestClient, source: str) -> None:
        self.client = client
        self.source = source

    def open(self, sync_id: str) -> dict[str, Any]:
        url = f"/v1/data-sources/{self.source}/syncs/{sync_id}"
        response = self.client.put(url, json={"trigger": "SCHEDULE"}, headers=SERVICE_HEADERS)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def page(self, sync_id: str, items: list[Any], page: str = "", resource: int = 0) -> dict[str, Any]:
        url = f"/v1/data-sources/{self.source}/syncs/{sync_id}/items"
        body = {"resource": resource, "page": page, "items": items}
        response = self.client.post(url, json=body, headers=SERVICE_HEADERS)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def complete(self, sync_id: str, status: str = "SUCCESS") -> dict[str, Any]:
        url = f"/v1/data-sources/{self.source}/syncs/{sync_id}/complete"
        response = self.client.post(url, json={"status": status, "errors": []}, headers=SERVICE_HEADERS)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def sync(self, sync_id: str, items: list[Any], status: str = "SUCCESS") -> dict[str, Any]:
        """A whole sync of one page."""
        self.open(sync_id)
        self.page(sync_id, items)
        return self.complete(sync_id, status)
