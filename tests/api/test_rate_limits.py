"""Per-token rate limits on writes and launches: 429 with Retry-After naming the limit, ten
times the limit for admins, none for the worker, one count shared by every API process
(SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.ratelimit import hit, kind_of
from catalog.db import make_engine, make_sessionmaker
from catalog.models import RateLimitBucket
from config import Settings
from tests.api.conftest import ADMIN_TOKEN, SERVICE_TOKEN
from tests.api.test_errors import error


@pytest.fixture
def limited(settings: Settings) -> Settings:
    return settings.model_copy(update={"rate_limit_writes": "3/1h", "rate_limit_launches": "2/1h"})


@pytest.fixture
def api(limited: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(limited), raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        yield c


def member_token(api: TestClient, identifier: str) -> dict[str, str]:
    user = {"identifier": identifier, "email": f"{identifier}@example.com", "role": "member"}
    assert api.post("/v1/users", json=user).status_code == 201
    response = api.post("/v1/tokens", json={"user": identifier})
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def test_a_members_writes_are_limited_per_token(api: TestClient) -> None:
    bob, carol = member_token(api, "bob"), member_token(api, "carol")
    for _ in range(3):  # refused or not, each write counts
        assert api.delete("/v1/blueprints/none", headers=bob).status_code in (403, 404)
    response = api.delete("/v1/blueprints/none", headers=bob)
    found = error(response, 429, "rate_limited")
    assert "GANTRY_RATE_LIMIT_WRITES" in found["message"] and "3 writes per 3600 s" in found["message"]
    assert 1 <= int(response.headers["Retry-After"]) <= 3600
    # Reads are not writes; another token has its own budget.
    assert api.get("/v1/blueprints", headers=bob).status_code == 200
    assert api.post("/v1/entities/search", json={}, headers=bob).status_code == 200
    assert api.delete("/v1/blueprints/none", headers=carol).status_code in (403, 404)


def test_launches_have_their_own_limit(api: TestClient) -> None:
    bob = member_token(api, "bob")
    for _ in range(2):
        assert api.post("/v1/actions/nope/runs", json={}, headers=bob).status_code == 404
    found = error(api.post("/v1/actions/nope/runs", json={}, headers=bob), 429, "rate_limited")
    assert "GANTRY_RATE_LIMIT_LAUNCHES" in found["message"]
    error(api.post("/v1/runs/nope/retry", json={}, headers=bob), 429, "rate_limited")
    assert api.delete("/v1/blueprints/none", headers=bob).status_code in (403, 404)  # writes: untouched


def test_admins_get_ten_times_and_the_service_principal_is_not_limited(api: TestClient) -> None:
    for i in range(30):
        assert api.post("/v1/teams", json={"identifier": f"t{i}", "title": "T"}).status_code == 201
    found = error(api.post("/v1/teams", json={"identifier": "t30", "title": "T"}), 429, "rate_limited")
    assert "30 writes" in found["message"] and "x10 for admins" in found["message"]
    service = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
    for _ in range(40):
        assert api.post("/v1/runs/nope/retry", json={}, headers=service).status_code != 429
        assert api.delete("/v1/blueprints/none", headers=service).status_code != 429


def test_the_count_is_shared_by_api_processes(api: TestClient, limited: Settings) -> None:
    bob = member_token(api, "bob")
    with TestClient(create_app(limited, migrate=False), raise_server_exceptions=False) as other:
        for client in (api, other, api):
            assert client.delete("/v1/blueprints/none", headers=bob).status_code in (403, 404)
        error(other.delete("/v1/blueprints/none", headers=bob), 429, "rate_limited")


def test_a_new_window_starts_again_at_one(database_url: str) -> None:
    engine = make_engine(database_url)
    factory = make_sessionmaker(engine)
    try:
        with factory() as session:
            assert hit(session, "writes:k", 10, 1000.0) == (1, 1000)
            assert hit(session, "writes:k", 10, 1009.9) == (2, 1000)
            assert hit(session, "writes:k", 10, 1010.0) == (1, 1010)
            assert hit(session, "launches:k", 10, 1010.0) == (1, 1010)
        with factory() as session:
            counts = {b.key: b.count for b in session.scalars(select(RateLimitBucket))}
        assert counts == {"writes:k": 1, "launches:k": 1}
    finally:
        engine.dispose()


def test_what_counts() -> None:
    assert kind_of("POST", "/v1/actions/{action}/runs") == "launches"
    assert kind_of("POST", "/v1/runs/{run_id}/retry") == "launches"
    assert kind_of("PATCH", "/v1/blueprints/{blueprint}/entities/{identifier:path}") == "writes"
    assert kind_of("POST", "/v1/blueprints/{blueprint}/entities/bulk") == "writes"
    assert kind_of("GET", "/v1/blueprints") is None
    assert kind_of("POST", "/v1/timers/reports") is None  # a worker route
    assert kind_of("POST", "/v1/entities/search") is None  # a read
    assert kind_of("POST", "/healthz") is None


def test_a_malformed_rate_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="100/10s"):
        Settings(rate_limit_writes="lots")
    assert Settings(rate_limit_launches="5/m").rate_limit_launches == "5/m"
