"""An API client per database dialect, authenticated as the bootstrap admin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from config import Settings

ADMIN_TOKEN = "admin-test-token"
SERVICE_TOKEN = "service-test-token"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path,
        admin_token=ADMIN_TOKEN,
        service_token=SERVICE_TOKEN,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        yield c


SERVICE_BLUEPRINT: dict[str, Any] = {
    "identifier": "service",
    "title": "Service",
    "schema": {
        "properties": {
            "language": {"type": "string", "enum": ["python", "go"]},
            "tier": {"type": "integer", "minimum": 1, "maximum": 3},
            "repo": {"type": "string", "format": "url"},
            "on_call": {"type": "string", "format": "user"},
            "owner_team": {"type": "string", "format": "team"},
            "expires_at": {"type": "string", "format": "timer"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["language"],
    },
    "relations": {
        "system": {"title": "System", "target": "system", "many": False, "required": False},
        "depends_on": {"target": "service", "many": True, "required": False},
    },
}

SYSTEM_BLUEPRINT: dict[str, Any] = {
    "identifier": "system",
    "title": "System",
    "schema": {"properties": {"criticality": {"type": "string"}}},
}


@pytest.fixture
def catalog(client: TestClient) -> TestClient:
    """A client whose catalog has the system and service blueprints, a team and a user."""
    assert (
        client.post("/v1/teams", json={"identifier": "payments-team", "title": "Payments"}).status_code == 201
    )
    user = {"identifier": "bob", "email": "bob@example.com", "name": "Bob", "teams": ["payments-team"]}
    assert client.post("/v1/users", json=user).status_code == 201
    assert client.post("/v1/blueprints", json=SYSTEM_BLUEPRINT).status_code == 201
    assert client.post("/v1/blueprints", json=SERVICE_BLUEPRINT).status_code == 201
    assert client.post("/v1/blueprints/system/entities", json={"identifier": "billing"}).status_code == 201
    return client
