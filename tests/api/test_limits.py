"""Every limit is a 4xx naming the limit, checked before parsing: body sizes (chunked too),
JSON nesting, numbers beyond 64 bits or ±2^53, string formats on huge values (SQLite and
PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.limits import json_depth
from config import Settings
from tests.api.conftest import ADMIN_TOKEN
from tests.api.test_errors import ApiResponse, error

JSON = {"content-type": "application/json"}
MIB = 1024 * 1024


@pytest.fixture
def small(settings: Settings, tmp_path: Path) -> Iterator[TestClient]:
    """A client whose limits are small enough to cross cheaply."""
    limited = settings.model_copy(
        update={"max_body_bytes": 2000, "max_bulk_body_bytes": 8000, "max_slack_body_bytes": 500}
    )
    with TestClient(create_app(limited), raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        yield c


def test_a_body_over_the_limit_is_refused_before_it_is_parsed(catalog: TestClient) -> None:
    big = json.dumps(
        {"identifier": "x", "properties": {"language": "python", "tags": ["a" * 1024] * 20 * 1024}}
    )
    assert len(big) > 20 * MIB
    found = error(
        catalog.post("/v1/blueprints/service/entities", content=big, headers=JSON), 413, "too_large"
    )
    assert "GANTRY_MAX_BODY_BYTES" in found["message"] and str(MIB) in found["message"]
    # Slack's route: 64 KiB, before its signature is even looked at (no token either).
    slack = catalog.post(
        "/v1/slack/interactions",
        content=b"payload=" + b"a" * (30 * MIB),
        headers={"content-type": "application/x-www-form-urlencoded", "Authorization": ""},
    )
    assert "GANTRY_MAX_SLACK_BODY_BYTES" in error(slack, 413, "too_large")["message"]
    assert catalog.get("/v1/blueprints/service/entities/x").status_code == 404  # nothing changed


def test_bulk_routes_take_more(small: TestClient) -> None:
    assert small.post("/v1/blueprints", json={"identifier": "svc", "title": "S"}).status_code == 201
    entities = [{"identifier": f"e{i}", "title": "t" * 40} for i in range(80)]
    body = json.dumps({"entities": entities})
    assert 2000 < len(body) < 8000
    assert small.post("/v1/blueprints/svc/entities/bulk", content=body, headers=JSON).status_code == 207
    one = json.dumps({"identifier": "big", "title": "t" * 3000})
    found = error(small.post("/v1/blueprints/svc/entities", content=one, headers=JSON), 413, "too_large")
    assert "2000" in found["message"]
    bigger = json.dumps({"entities": entities * 3})
    found = error(
        small.post("/v1/blueprints/svc/entities/bulk", content=bigger, headers=JSON), 413, "too_large"
    )
    assert "GANTRY_MAX_BULK_BODY_BYTES" in found["message"]


def test_a_chunked_body_is_counted_as_it_arrives(small: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the middleware counts
        yield b'{"identifier": "x", "title": "'
        for _ in range(100):
            yield b"a" * 100
        yield b'"}'

    assert small.post("/v1/blueprints", json={"identifier": "svc", "title": "S"}).status_code == 201
    response = small.post("/v1/blueprints/svc/entities", content=chunks(), headers=JSON)
    assert "GANTRY_MAX_BODY_BYTES" in error(response, 413, "too_large")["message"]
    assert small.get("/v1/blueprints/svc/entities/x").status_code == 404


def test_deep_json_is_refused_before_parsing(catalog: TestClient) -> None:
    for deep in ("[" * 300 + "]" * 300, '{"a":' * 300 + "1" + "}" * 300, "[" * 100_000):
        for url in ("/v1/blueprints/service/entities", "/v1/entities/search", "/v1/actions/nope/runs"):
            found = error(catalog.post(url, content=deep, headers=JSON), 422, "validation_error")
            assert "GANTRY_MAX_JSON_DEPTH" in found["message"]
    nested = {"identifier": "n", "properties": {"language": "go", "tags": ["x"]}}
    assert catalog.post("/v1/blueprints/service/entities", json=nested).status_code == 201
    # Brackets inside strings are text, not nesting.
    text = {"identifier": "t", "properties": {"language": "go", "tags": ["[" * 100 + '\\"{' * 50]}}
    assert catalog.post("/v1/blueprints/service/entities", json=text).status_code == 201


def test_json_depth_counts_nesting_outside_strings() -> None:
    assert json_depth(b'{"a": [1, {"b": "[[[["}]}') == 3
    assert json_depth(b'"{{{"') == 0
    assert json_depth(b'["\\"[", [[]]]') == 3


@pytest.mark.parametrize(
    "body, where",
    [
        ('{"identifier": "x", "properties": {"language": "go", "tier": 1e400}}', "/properties/tier"),
        (
            '{"identifier": "x", "properties": {"language": "go", "tier": 123456789012345678901234567890}}',
            "/properties/tier",
        ),
        ('{"identifier": "x", "properties": {"language": "go", "tier": NaN}}', "/properties/tier"),
        ('{"identifier": -99999999999999999999, "properties": {}}', "/identifier"),
        ('{"identifier": "x", "properties": {"tags": [1, Infinity]}}', "/properties/tags/1"),
        (
            '{"identifier": "x", "properties": {"language": "go", "tier": ' + "9" * 5000 + "}}",
            "/properties/tier",
        ),
    ],
)
def test_numbers_beyond_64_bits_or_not_finite_are_refused(catalog: TestClient, body: str, where: str) -> None:
    found = error(
        catalog.post("/v1/blueprints/service/entities", content=body, headers=JSON), 422, "validation_error"
    )
    assert [d["pointer"] for d in found["details"]] == [where]
    assert catalog.get("/v1/blueprints/service/entities/x").status_code == 404


def test_big_numbers_elsewhere_are_a_422_never_a_500(catalog: TestClient) -> None:
    huge = "123456789012345678901234567890"
    for url, body in [
        ("/v1/entities/search", '{"limit": ' + huge + "}"),
        (
            "/v1/entities/search",
            '{"query": {"combinator": "and", "rules": [{"property": "tier", "operator": "=", "value": '
            + huge
            + "}]}}",
        ),
        ("/v1/actions/nope/runs", '{"entity": "x", "inputs": {"n": ' + huge + "}}"),
        (
            "/v1/blueprints",
            '{"identifier": "b", "title": "B", "schema": {"properties": {"n": {"type": "integer", "maximum": '
            + huge
            + "}}}}",
        ),
    ]:
        error(catalog.post(url, content=body, headers=JSON), 422, "validation_error")


def test_property_integers_stay_within_2_to_the_53(catalog: TestClient) -> None:
    blueprint = {
        "identifier": "counter",
        "title": "C",
        "schema": {
            "properties": {"n": {"type": "integer"}, "v": {"type": "number"}, "list": {"type": "array"}}
        },
    }
    assert catalog.post("/v1/blueprints", json=blueprint).status_code == 201
    ok = {"identifier": "ok", "properties": {"n": 2**53, "v": -(2**53), "list": [[2**53]]}}
    assert catalog.post("/v1/blueprints/counter/entities", json=ok).status_code == 201
    for props, where in [
        ({"n": 2**53 + 1}, "/properties/n"),
        ({"v": -(2**60)}, "/properties/v"),
        ({"list": [[1, 2**62]]}, "/properties/list"),
    ]:
        found = error(
            catalog.post("/v1/blueprints/counter/entities", json={"identifier": "no", "properties": props}),
            422,
            "validation_error",
        )
        assert [d["pointer"] for d in found["details"]] == [where]
        assert "2^53" in found["details"][0]["message"]
    assert catalog.get("/v1/blueprints/counter/entities/no").status_code == 404


def test_string_formats_are_linear_with_length_caps(catalog: TestClient) -> None:
    blueprint = {
        "identifier": "contact",
        "title": "Contact",
        "schema": {
            "properties": {
                "email": {"type": "string", "format": "email"},
                "site": {"type": "string", "format": "url"},
                "when": {"type": "string", "format": "date-time"},
                "doc": {"type": "string", "format": "yaml"},
                "emails": {"type": "array", "items": {"type": "string", "format": "email"}},
            }
        },
    }
    assert catalog.post("/v1/blueprints", json=blueprint).status_code == 201

    def post(props: dict[str, Any]) -> ApiResponse:
        return catalog.post("/v1/blueprints/contact/entities", json={"identifier": "c", "properties": props})

    for name, value, limit in [
        ("email", "a@" + "." * 40_000 + "@", "320"),  # took 12.7 s of CPU with the old pattern
        ("email", "a" * 900_000 + "@example.com", "320"),
        ("site", "https://example.com/" + "a" * 900_000, "2048"),
        ("when", "2026-01-01T00:00:00" + "0" * 40_000 + "Z", "64"),
        ("emails", ["bob@example.com", "x@" + "y." * 30_000], "320"),
    ]:
        found = error(post({name: value}), 422, "validation_error")
        assert found["details"][0]["pointer"] == f"/properties/{name}"
        assert limit in found["details"][0]["message"] and len(found["details"][0]["message"]) < 200
    # Just under the caps: answered by the (linear) checks themselves.
    found = error(post({"email": "a@" + "." * 300 + "@"}), 422, "validation_error")
    assert found["details"][0]["message"] == "is not a valid email (format)"
    assert (
        error(post({"site": "https://" + " " * 2000}), 422, "validation_error")["details"][0]["pointer"]
        == "/properties/site"
    )
    good = {
        "email": "Bob.Smith+ops@example.co.uk",
        "site": "https://u@example.com:8443/a?b#c",
        "when": "2026-01-01T00:00:00Z",
        "doc": "a: [1, 2]",
    }
    assert post(good).status_code == 201, post(good).text
