"""The one error shape of the API: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from catalog.errors import CatalogError, Conflict, Forbidden, Invalid, NotFound, Unauthenticated, pointer

log = logging.getLogger("gantry.api")

STATUS = {NotFound: 404, Conflict: 409, Invalid: 422, Forbidden: 403, Unauthenticated: 401}
CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


class ServiceUnavailable(Exception):
    """A dependency (Temporal, the database) is down: 503 with Retry-After."""

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class RateLimited(Exception):
    """A token went over a rate limit: 429 with Retry-After, naming the limit."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or []}}


def _pointer_from_loc(loc: tuple[Any, ...]) -> tuple[str, str]:
    """Pydantic's ``('body', 'properties', 'tier')`` as (location, JSON pointer ``/properties/tier``)."""
    where = str(loc[0]) if loc else "body"
    return where, pointer(*loc[1:]) if len(loc) > 1 else ""


async def _catalog_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CatalogError)
    status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 400)
    details = [d.as_dict() for d in exc.details]
    return JSONResponse(error_body(exc.code, exc.message, details), status_code=status)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = []
    for err in exc.errors():
        where, ptr = _pointer_from_loc(tuple(err.get("loc", ())))
        ptr = "/" if err.get("type") == "json_invalid" else ptr  # its loc is a character offset
        details.append({"pointer": ptr or "/", "in": where, "message": err.get("msg", "invalid")})
    return JSONResponse(error_body("validation_error", "the request is invalid", details), status_code=422)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = CODES.get(exc.status_code, "error")
    return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)


async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceUnavailable)
    return JSONResponse(
        error_body("unavailable", exc.message), status_code=503, headers={"Retry-After": str(exc.retry_after)}
    )


async def _rate_limited(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RateLimited)
    return JSONResponse(
        error_body("rate_limited", exc.message),
        status_code=429,
        headers={"Retry-After": str(exc.retry_after)},
    )


async def _data_error(_: Request, exc: Exception) -> JSONResponse:
    # The database refused a value the request carried (PostgreSQL: a NUL character in text).
    return JSONResponse(
        error_body(
            "validation_error", "a value in the request cannot be stored (for example a NUL character)"
        ),
        status_code=422,
    )


# Seconds a client should wait before retrying when the database does not answer: about
# the time a restarted PostgreSQL or a failed-over connection takes to come back.
DATABASE_RETRY_AFTER = 5


def database_down(exc: BaseException) -> bool:
    """True when ``exc`` says the database could not be reached (not that a statement was wrong):
    a refused or dropped connection, or a connection SQLAlchemy had to invalidate."""
    if not isinstance(exc, DBAPIError):
        return False
    return isinstance(exc, OperationalError | InterfaceError) or bool(exc.connection_invalidated)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    if not database_down(exc):
        return await _unexpected(request, exc)
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc.__class__.__name__)
    return JSONResponse(
        error_body("unavailable", "the catalog database is unavailable; retry later"),
        status_code=503,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER)},
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(error_body("internal_error", "an unexpected error occurred"), status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(CatalogError, _catalog_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ServiceUnavailable, _unavailable)
    app.add_exception_handler(RateLimited, _rate_limited)
    app.add_exception_handler(DataError, _data_error)
    # DataError is a DBAPIError too: Starlette picks the handler of the closest class in the MRO.
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(Exception, _unexpected)
