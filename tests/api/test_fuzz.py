"""Fuzzing the whole API: whatever a client sends, the answer is never a 5xx, every answer matches
the schema the OpenAPI document gives for its status, and every 4xx has the error shape
``{"error": {"code", "message", "details"}}``. SQLite only, bounded and derandomized."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import response_schema_conformance

from api.app import create_app
from catalog.migrate import upgrade
from config import Settings
from tests.api.conftest import ADMIN_TOKEN, SERVICE_BLUEPRINT, SERVICE_TOKEN, SYSTEM_BLUEPRINT

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FUZZ = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _seed(client: TestClient) -> None:
    """Some real blueprints, entities, a team and a user, so generated requests reach deep code."""
    client.post("/v1/teams", json={"identifier": "payments-team", "title": "Payments"})
    client.post(
        "/v1/users", json={"identifier": "bob", "email": "bob@example.com", "teams": ["payments-team"]}
    )
    client.post("/v1/blueprints", json=SYSTEM_BLUEPRINT)
    client.post("/v1/blueprints", json=SERVICE_BLUEPRINT)
    client.post("/v1/blueprints/system/entities", json={"identifier": "billing"})
    client.post(
        "/v1/blueprints/service/entities",
        json={"identifier": "payments", "properties": {"language": "go"}, "relations": {"system": "billing"}},
    )


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    data_dir = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{data_dir / 'catalog.db'}"
    upgrade(url)
    app = create_app(
        Settings(database_url=url, data_dir=data_dir, admin_token=ADMIN_TOKEN, service_token=SERVICE_TOKEN),
        migrate=False,
    )
    with TestClient(app, headers=AUTH) as client:
        _seed(client)
    yield app


@pytest.fixture(scope="module")
def api_schema(fuzz_app: FastAPI) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)


def assert_error_shape(status: int, body: Any, *, temporal_down_ok: bool = False) -> None:
    """No 5xx, and the error shape on every 4xx. The fuzzed app has no Temporal server: a route
    that documents 503 for it (a sync, a launch) may answer that, with the same shape."""
    if status == 503 and temporal_down_ok:
        error = body["error"]
        assert error["code"] == "unavailable" and error["message"].startswith("Temporal at "), body
        return
    assert status < 500, body
    if 400 <= status < 500:
        assert isinstance(body, dict) and set(body) == {"error"}, body
        error = body["error"]
        assert isinstance(error["code"], str) and error["code"], body
        assert isinstance(error["message"], str), body
        assert isinstance(error["details"], list), body


def _operations() -> list[tuple[str, str]]:
    """(method, path) of every operation; the OpenAPI document needs no database."""
    document = create_app(Settings(), migrate=False).openapi()
    return [
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    ]


# schemathesis' own ``from_fixture(...).parametrize()`` breaks on pytest 9 (it reads the removed
# ``Function._nodeid``), so the operations are parametrized here and each runs a Hypothesis test.
@pytest.mark.parametrize(("method", "path"), _operations(), ids=lambda v: str(v))
def test_no_server_error_and_error_shape(api_schema: Any, method: str, path: str) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy())
    @FUZZ
    def check(case: Any) -> None:
        response = case.call(headers=AUTH)
        case.validate_response(response, checks=[response_schema_conformance])
        body = response.json() if response.content else None
        assert_error_shape(
            response.status_code, body, temporal_down_ok="503" in operation.definition.raw["responses"]
        )

    check()


# ---- random JSON bodies on the entity write and search endpoints ---------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
entity_like = st.fixed_dictionaries(
    {},
    optional={
        "identifier": st.text(max_size=12) | json_values,
        "title": json_values,
        "team": json_values,
        "blueprint": json_values,
        "properties": st.dictionaries(
            st.sampled_from(["language", "tier", "repo", "on_call", "owner_team", "expires_at", "tags", "x"]),
            json_values,
        )
        | json_values,
        "relations": st.dictionaries(st.sampled_from(["system", "depends_on", "other"]), json_values)
        | json_values,
        "created_at": json_values,
    },
)
query_like = st.recursive(
    st.fixed_dictionaries(
        {},
        optional={
            "property": st.sampled_from(["$blueprint", "$team", "$title", "tier", "language", "", "$x"])
            | json_values,
            "relation": st.sampled_from(["system", "depends_on"]) | json_values,
            "operator": st.sampled_from(
                ["=", "!=", "<", "between", "containsAny", "in", "isEmpty", "relatedTo", "isExpired", "nope"]
            )
            | json_values,
            "value": json_values,
            "blueprint": json_values,
            "direction": st.sampled_from(["upstream", "downstream"]) | json_values,
        },
    ),
    lambda children: st.fixed_dictionaries(
        {
            "combinator": st.sampled_from(["and", "or", "xor"]) | json_values,
            "rules": st.lists(children, max_size=3),
        }
    ),
    max_leaves=6,
)
search_like = st.fixed_dictionaries(
    {},
    optional={
        "query": query_like | json_values,
        "limit": json_values,
        "cursor": json_values,
        "sort": st.lists(st.fixed_dictionaries({"property": json_values, "order": json_values}))
        | json_values,
    },
)
bodies = st.one_of(
    st.tuples(st.just("/v1/blueprints/service/entities"), entity_like | json_values),
    st.tuples(st.just("/v1/blueprints/service/entities?upsert=true"), entity_like),
    st.tuples(st.just("/v1/blueprints/service/entities?merge=true"), entity_like),
    st.tuples(
        st.just("/v1/blueprints/service/entities/bulk"),
        st.fixed_dictionaries({"entities": st.lists(entity_like | json_values, max_size=4)}) | json_values,
    ),
    st.tuples(st.just("/v1/entities/search"), search_like | json_values),
)


@pytest.fixture(scope="module")
def fuzz_client(fuzz_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(fuzz_app, headers=AUTH, raise_server_exceptions=False) as client:
        yield client


@given(request=bodies)
@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_random_json_bodies_never_5xx(fuzz_client: TestClient, request: tuple[str, Any]) -> None:
    url, body = request
    response = fuzz_client.post(url, json=body)
    payload = response.json()
    assert_error_shape(response.status_code, payload)
    if 400 <= response.status_code < 500:
        details = payload["error"]["details"]
        assert details or response.status_code != 422, payload
        assert all(isinstance(d.get("pointer"), str) and d["pointer"].startswith("/") for d in details), (
            payload
        )
    if response.status_code == 207:
        for result in payload["results"]:
            if result["status"] == "failed":
                assert all(d["pointer"].startswith("/entities/") for d in result["error"]["details"]), result
