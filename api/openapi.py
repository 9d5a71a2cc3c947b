"""The OpenAPI document as a contract: clean operationIds, and every route's real error answers.

FastAPI documents a 422 ``HTTPValidationError`` that this API never sends and no other error.
Here each operation gets ``ErrorResponse`` under the codes it can answer, read from what the
route depends on (a token: 401; a role check or an audit actor: 403; a path object: 404;
parameters or a body: 422; a body: 413; a counted write or launch: 429; the database or
Temporal: 503) plus the codes its decorator adds with :func:`errors`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from api import deps, ratelimit
from api.schemas import ErrorResponse

ERROR_REF = "#/components/schemas/ErrorResponse"
DESCRIPTIONS = {
    401: "No token, or an unknown, revoked or expired one.",
    403: "The caller's role or permissions refuse this.",
    404: "The object in the path does not exist, or the caller may not see it.",
    409: "The request conflicts with the current state.",
    413: "The request body is too large.",
    422: "The request is invalid; each detail names a failing place with a JSON pointer.",
    429: "The token went over a rate limit; retry after `Retry-After` seconds.",
    503: "The database or Temporal is unavailable; retry after `Retry-After` seconds.",
}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
TAGS = [
    {"name": "blueprints", "description": "The schemas of the catalog."},
    {"name": "entities", "description": "Entities: one, lists, bulk writes and search."},
    {"name": "identity", "description": "Users, teams and API tokens."},
    {"name": "actions", "description": "Action definitions and launching runs."},
    {"name": "runs", "description": "Runs: state, logs, approvals, cancel and retry."},
    {"name": "timers", "description": "TTL timers and the event log."},
    {"name": "scorecards", "description": "Scorecards, their results and level history."},
    {"name": "initiatives", "description": "Scorecard targets by a deadline, progress, reminders."},
    {"name": "automations", "description": "When an event matches, invoke an action."},
    {"name": "data-sources", "description": "Data sources: definitions, mappings, preview, syncs."},
    {"name": "webhooks", "description": "Signed deliveries to webhook data sources."},
    {"name": "audit", "description": "Every write: who, when, what."},
    {"name": "slack", "description": "Slack's interactivity endpoint."},
    {"name": "health", "description": "Liveness and readiness."},
]
# FastAPI's validation error schemas: nothing answers with them.
FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for error codes a route's own code raises (409, a handler's 403…)."""
    return {code: {"description": DESCRIPTIONS[code]} for code in codes}


def operation_id(route: APIRoute) -> str:
    """The route function's name (``list_blueprints``), or its decorator's ``operation_id``."""
    return route.name


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def derived_codes(route: Any) -> set[int]:
    """The error codes a route can answer because of what it depends on."""
    calls = set(_calls(route.dependant))
    codes: set[int] = set()
    if deps.current_user in calls:
        codes.add(401)
        if any(ratelimit.kind_of(method, route.path) for method in route.methods):
            codes.add(429)
    if calls & {deps.admin_user, deps.service_user, deps.writer_user, deps.current_actor}:
        codes.add(403)
    if route.dependant.path_params:
        codes.add(404)
    if route.dependant.query_params or route.dependant.header_params or route.body_field:
        codes.add(422)
    if route.body_field:
        codes.add(413)
    if deps.get_session in calls:
        codes.add(503)
    return codes


def _error_response(code: int, declared: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": declared.get("description") or DESCRIPTIONS.get(code, "An error."),
        "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
    }
    if code in (429, 503):
        answer["headers"] = RETRY_AFTER
    return answer


def _document_errors(document: dict[str, Any], route: Any) -> None:
    declared = {int(code): value for code, value in route.responses.items() if int(code) >= 400}
    codes = derived_codes(route) | set(declared)
    for method in route.methods:
        operation = document["paths"][route.path_format][method.lower()]
        answers = operation["responses"]
        answers.pop("422", None)  # FastAPI's HTTPValidationError, replaced below when it applies
        for code in codes:
            answers[str(code)] = _error_response(code, declared.get(code, {}))
        operation["responses"] = dict(sorted(answers.items()))


def _schema(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    # Included routers are resolved lazily: their routes, with the prefix applied, come from here.
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, APIRoute) and route.include_in_schema:
            _document_errors(document, route)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in FASTAPI_VALIDATION:
        schemas.pop(name, None)
    error_schema = ErrorResponse.model_json_schema(
        ref_template="#/components/schemas/{model}", mode="serialization"
    )
    schemas.update(error_schema.pop("$defs", {}))
    schemas["ErrorResponse"] = error_schema
    return document


def install(app: FastAPI) -> None:
    """Serve the document built here at ``/openapi.json`` (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _schema(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
