"""The one error shape, on every kind of failure, and never a 500 for bad input (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from fastapi.testclient import TestClient


class ApiResponse(Protocol):
    """What the checks read of a response: a TestClient's (httpx2) or an httpx client's."""

    @property
    def status_code(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    def json(self) -> Any: ...


def error(response: ApiResponse, status: int, code: str) -> dict[str, Any]:
    """The response's error object, after checking the status and the shape."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    found: dict[str, Any] = body["error"]
    assert set(found) == {"code", "message", "details"}, found
    assert found["code"] == code and isinstance(found["message"], str) and found["message"]
    assert isinstance(found["details"], list)
    return found


def pointers(found: dict[str, Any], where: str | None = None) -> set[str]:
    return {d["pointer"] for d in found["details"] if where is None or d.get("in") == where}


def test_not_found(catalog: TestClient) -> None:
    error(catalog.get("/v1/no-such-route"), 404, "not_found")
    error(catalog.get("/nowhere"), 404, "not_found")
    assert "nope" in error(catalog.get("/v1/blueprints/nope"), 404, "not_found")["message"]
    error(catalog.get("/v1/blueprints/nope/entities"), 404, "not_found")
    error(catalog.get("/v1/blueprints/nope/entities/payments"), 404, "not_found")
    assert "ghost" in error(catalog.get("/v1/blueprints/service/entities/ghost"), 404, "not_found")["message"]
    error(catalog.delete("/v1/blueprints/service/entities/ghost"), 404, "not_found")
    error(catalog.get("/v1/users/ghost"), 404, "not_found")
    error(catalog.get("/v1/teams/ghost"), 404, "not_found")
    error(catalog.delete("/v1/tokens/tok_ghost"), 404, "not_found")


def test_method_not_allowed(catalog: TestClient) -> None:
    response = catalog.delete("/v1/users")
    error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["allow"]
    error(catalog.put("/v1/entities/search", json={}), 405, "method_not_allowed")


def test_unauthenticated(catalog: TestClient) -> None:
    anonymous = {"Authorization": ""}
    for method, url in [
        ("GET", "/v1/blueprints"),
        ("POST", "/v1/entities/search"),
        ("GET", "/v1/me"),
        ("GET", "/v1/audit-log"),
        ("DELETE", "/v1/blueprints/service"),
    ]:
        error(catalog.request(method, url, headers=anonymous), 401, "unauthenticated")
        error(catalog.request(method, url, headers={"Authorization": "Bearer wrong"}), 401, "unauthenticated")
    # Health checks need no token.
    assert catalog.get("/healthz", headers=anonymous).status_code == 200
    assert catalog.get("/readyz", headers=anonymous).status_code == 200
    assert catalog.get("/v1/blueprints/service").status_code == 200


def test_forbidden(catalog: TestClient) -> None:
    secret = catalog.post("/v1/tokens", json={"user": "bob"}).json()["token"]
    member = {"Authorization": f"Bearer {secret}"}
    error(catalog.delete("/v1/blueprints/service", headers=member), 403, "forbidden")
    error(catalog.post("/v1/teams", json={"identifier": "x", "title": "X"}, headers=member), 403, "forbidden")
    error(catalog.post("/v1/tokens", json={"user": "admin"}, headers=member), 403, "forbidden")
    assert catalog.get("/v1/blueprints/service").status_code == 200


def test_conflict(catalog: TestClient) -> None:
    error(catalog.post("/v1/teams", json={"identifier": "payments-team", "title": "Again"}), 409, "conflict")
    error(catalog.post("/v1/blueprints", json={"identifier": "system", "title": "Again"}), 409, "conflict")
    error(catalog.post("/v1/blueprints/system/entities", json={"identifier": "billing"}), 409, "conflict")
    found = error(
        catalog.post("/v1/users", json={"identifier": "bob2", "email": "bob@example.com"}), 409, "conflict"
    )
    assert pointers(found) == {"/email"}
    # Still there while it has entities.
    error(catalog.delete("/v1/blueprints/system"), 409, "conflict")


def test_validation_pointers_in_body_query_and_path(catalog: TestClient) -> None:
    body = error(
        catalog.post("/v1/teams", json={"identifier": "Not A Slug", "title": ""}), 422, "validation_error"
    )
    assert pointers(body, "body") == {"/identifier", "/title"}

    nested = error(
        catalog.post("/v1/users", json={"identifier": "eve", "email": "eve@example.com", "teams": ["ok", 7]}),
        422,
        "validation_error",
    )
    assert pointers(nested) == {"/teams/1"}

    query = error(
        catalog.get("/v1/audit-log", params={"limit": 0, "from": "yesterday"}), 422, "validation_error"
    )
    assert pointers(query, "query") == {"/limit", "/from"}
    error(catalog.get("/v1/blueprints/service/entities", params={"limit": 5000}), 422, "validation_error")
    error(
        catalog.delete("/v1/blueprints/system", params={"delete_entities": "maybe"}), 422, "validation_error"
    )

    # The entity named by the path and by the body must agree.
    path = error(
        catalog.put(
            "/v1/blueprints/service/entities/payments",
            json={"identifier": "other", "properties": {"language": "go"}},
        ),
        422,
        "validation_error",
    )
    assert pointers(path) == {"/identifier"}

    search = error(catalog.post("/v1/entities/search", json={"query": {"combinator": "and", "rules": [
        {"property": "tier", "operator": "~", "value": 1}]}}), 422, "validation_error")  # fmt: skip
    assert pointers(search) == {"/query/rules/0/operator"}

    entity = error(catalog.post("/v1/blueprints/service/entities",
                                json={"identifier": "x", "properties": {"language": "cobol", "tier": "1"}}),
                   422, "validation_error")  # fmt: skip
    assert pointers(entity) == {"/properties/language", "/properties/tier"}
    assert catalog.get("/v1/blueprints/service/entities/x").status_code == 404


def test_malformed_json_and_wrong_content_type(catalog: TestClient) -> None:
    json_header = {"content-type": "application/json"}
    for raw in (b'{"identifier": ', b"\xff\xfe", b"nul", b'{"identifier": "x",}'):
        found = error(catalog.post("/v1/teams", content=raw, headers=json_header), 422, "validation_error")
        assert pointers(found) == {"/"}, found
    error(catalog.post("/v1/entities/search", content=b"[", headers=json_header), 422, "validation_error")
    error(catalog.post("/v1/teams", content=b"", headers=json_header), 422, "validation_error")
    error(catalog.post("/v1/teams", json=["not", "an", "object"]), 422, "validation_error")

    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        response = catalog.post(
            "/v1/teams", content=b'{"identifier": "x", "title": "X"}', headers={"content-type": content_type}
        )
        assert response.status_code in (415, 422), response.text
        error(
            response,
            response.status_code,
            "unsupported_media_type" if response.status_code == 415 else "validation_error",
        )
    assert catalog.get("/v1/teams/x").status_code == 404


def test_odd_inputs_are_never_a_server_error(catalog: TestClient) -> None:
    long_id = "a" * 300
    requests: list[tuple[str, str, Any]] = [
        ("GET", f"/v1/blueprints/service/entities/{long_id}", None),
        ("GET", "/v1/blueprints/%F0%9F%92%A5/entities", None),
        ("POST", "/v1/blueprints/service/entities", {"identifier": long_id, "properties": {"language": "go"}}),
        ("POST", "/v1/blueprints/service/entities", {"identifier": "x\u0000y", "properties": {"language": "go"}}),
        ("POST", "/v1/blueprints/service/entities", {"identifier": "x", "properties": {"language": "go", "tier": 1e308}}),
        ("POST", "/v1/blueprints/service/entities/bulk", {"entities": [None, 1, "x", [], {}]}),
        ("POST", "/v1/blueprints/service/entities/bulk", {"entities": [{"identifier": "x"}] * 1001}),
        ("POST", "/v1/entities/search", {"query": {"combinator": "and", "rules": [
            {"property": "tier", "operator": "between", "value": {"from": "a", "to": []}}]}}),
        ("POST", "/v1/entities/search", {"cursor": "!!!", "limit": 1}),
        ("POST", "/v1/entities/search", {"sort": [{"property": "'; drop table entities; --"}]}),
        ("GET", "/v1/audit-log?cursor=e30&limit=1", None),
        ("GET", "/v1/audit-log?from=9999-99-99", None),
        ("PATCH", "/v1/users/bob", {"teams": None, "email": None}),
        ("POST", "/v1/tokens", {"user": "bob", "expires_at": "not a date"}),
        ("POST", "/v1/blueprints", {"identifier": "x", "title": "X", "schema": {"properties": {"p": []}}}),
        ("POST", "/v1/blueprints", {"identifier": "x", "title": "X", "schema": {"properties": {"p": {
            "type": "string", "pattern": "("}}}}),
    ]  # fmt: skip
    for method, url, body in requests:
        response = catalog.request(method, url, json=body)
        assert response.status_code < 500, (method, url, response.text)
        if response.status_code >= 400:
            error(response, response.status_code, response.json()["error"]["code"])
    assert catalog.get("/v1/blueprints/service/entities").json()["items"] == []


NUL_REQUESTS: list[tuple[str, str, Any]] = [
    ("GET", "/v1/blueprints/service/entities/a%00b", None),
    ("GET", "/v1/users/a%00b", None),
    ("GET", "/v1/audit-log?actor=a%00b", None),
    ("POST", "/v1/teams", {"identifier": "t", "title": "a\u0000b"}),
    ("POST", "/v1/entities/search", {"query": {"combinator": "and", "rules": [
        {"property": "$identifier", "operator": "=", "value": "a\u0000b"}]}}),
]  # fmt: skip


def test_nul_characters_are_a_client_error(catalog: TestClient) -> None:
    """PostgreSQL refuses NUL in text; that is the client's error, not the server's (SQLite stores it)."""
    for method, url, body in NUL_REQUESTS:
        response = catalog.request(method, url, json=body)
        assert response.status_code < 500, (method, url, response.text)
        if response.status_code >= 400:
            error(response, response.status_code, response.json()["error"]["code"])
