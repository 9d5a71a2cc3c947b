"""The OpenAPI document is a contract a client can be generated from: typed answers, the one
error shape under each route's real codes, clean operationIds."""

from __future__ import annotations

from typing import Any

import pytest

from api.app import create_app
from config import Settings


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app(Settings(), migrate=False).openapi()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, item in document["paths"].items() for method, op in item.items()]


def test_no_fastapi_validation_error_schema(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert "HTTPValidationError" not in str(document)


def test_every_success_answer_is_a_named_schema(document: dict[str, Any]) -> None:
    untyped = []
    for method, path, op in _operations(document):
        for code, answer in op["responses"].items():
            if not code.startswith("2") or code == "204":
                continue
            schema = answer.get("content", {}).get("application/json", {}).get("schema")
            if path == "/v1/slack/interactions":
                assert schema is None  # Slack wants an empty 200
            elif not schema or not ("$ref" in schema or "oneOf" in schema):
                untyped.append(f"{method} {path} {code}: {schema}")
    assert not untyped


def test_operation_ids_are_clean_and_unique(document: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in _operations(document)]
    assert len(ids) == len(set(ids))
    assert all(
        "_v1_" not in i and not i.endswith(("_get", "_post", "_put", "_patch", "_delete")) for i in ids
    )
    assert {"list_blueprints", "create_blueprint", "get_entity", "search_entities", "launch_run"} <= set(ids)
    assert {"get_run", "decide_approval", "list_run_logs", "extend_timer"} <= set(ids)


def test_every_operation_has_a_tag(document: dict[str, Any]) -> None:
    assert all(op.get("tags") for _, _, op in _operations(document))
    assert {t["name"] for t in document["tags"]} >= {"blueprints", "entities", "runs", "identity"}


def _errors(document: dict[str, Any], method: str, path: str) -> set[int]:
    answers = document["paths"][path][method]["responses"]
    for code, answer in answers.items():
        if int(code) >= 400:
            ref = answer["content"]["application/json"]["schema"]["$ref"]
            assert ref == "#/components/schemas/ErrorResponse", (method, path, code)
    return {int(code) for code in answers if int(code) >= 400}


@pytest.mark.parametrize(
    ("method", "path", "codes"),
    [
        ("get", "/v1/blueprints", {401, 422, 503}),
        ("post", "/v1/blueprints", {401, 403, 409, 413, 422, 429, 503}),
        ("get", "/v1/blueprints/{blueprint}", {401, 404, 422, 503}),  # 422: a bad ?format
        ("post", "/v1/actions/{action}/runs", {401, 403, 404, 409, 413, 422, 429, 503}),
        ("post", "/v1/runs/{run_id}/approval", {401, 403, 404, 409, 413, 422, 429, 503}),
        ("get", "/v1/runs/{run_id}/logs", {401, 403, 404, 422, 503}),
        ("get", "/v1/audit-log", {401, 403, 422, 503}),
        ("post", "/v1/runs/{run_id}/report", {401, 403, 404, 413, 422, 503}),
        ("get", "/readyz", {503}),
    ],
)
def test_routes_document_their_real_error_codes(
    document: dict[str, Any], method: str, path: str, codes: set[int]
) -> None:
    assert _errors(document, method, path) == codes


def test_every_authenticated_route_documents_401_and_the_error_shape(document: dict[str, Any]) -> None:
    for method, path, op in _operations(document):
        codes = _errors(document, method, path)
        if op.get("security"):
            assert 401 in codes, (method, path)
    error = document["components"]["schemas"]["ErrorResponse"]
    assert error["required"] == ["error"]
    body = document["components"]["schemas"]["ErrorBody"]
    assert set(body["properties"]) == {"code", "message", "details"}


def test_rate_limited_and_unavailable_answers_name_retry_after(document: dict[str, Any]) -> None:
    for method, path, _op in _operations(document):
        answers = document["paths"][path][method]["responses"]
        for code in ("429", "503"):
            if code in answers:
                assert "Retry-After" in answers[code]["headers"], (method, path, code)
