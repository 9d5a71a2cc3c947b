"""A database outage answers 503 with Retry-After in the one error shape, never a 500."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from catalog.db import make_engine, make_sessionmaker
from config import Settings
from tests.api.conftest import ADMIN_TOKEN
from tests.api.test_errors import error


def _closed_port() -> int:
    """A local port nothing listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def outage(settings: Settings) -> Iterator[TestClient]:
    """An API that started against a working database which then went away: its engine now
    points at a PostgreSQL port where nothing answers."""
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        assert client.get("/v1/blueprints").status_code == 200
        working = app.state.engine
        gone = make_engine(f"postgresql+psycopg://gantry@127.0.0.1:{_closed_port()}/gone")
        app.state.engine, app.state.sessionmaker = gone, make_sessionmaker(gone)
        try:
            yield client
        finally:
            gone.dispose()
            app.state.engine, app.state.sessionmaker = working, make_sessionmaker(working)


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("GET", "/v1/blueprints", None),
        ("GET", "/v1/blueprints/service", None),
        ("POST", "/v1/blueprints", {"identifier": "svc", "title": "Service"}),
        ("POST", "/v1/entities/search", {"query": {"combinator": "and", "rules": []}}),
        ("GET", "/v1/me", None),
        ("GET", "/v1/runs", None),
        ("GET", "/v1/audit-log", None),
    ],
)
def test_routes_answer_503_when_the_database_is_down(
    outage: TestClient, method: str, url: str, body: dict[str, object] | None
) -> None:
    response = outage.request(method, url, json=body)
    found = error(response, 503, "unavailable")
    assert "database" in found["message"]
    assert int(response.headers["Retry-After"]) > 0


def test_readyz_fails_while_the_database_is_down(outage: TestClient) -> None:
    response = outage.get("/readyz")
    error(response, 503, "unavailable")
    assert int(response.headers["Retry-After"]) > 0
    # Liveness does not depend on the database: the process is up.
    assert outage.get("/healthz").status_code == 200


def test_readyz_answers_ready_with_the_database_up(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200 and response.json() == {"status": "ready"}
