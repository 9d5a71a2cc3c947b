"""Versions of configuration objects (``ETag`` / ``If-Match``) and dry-run writes.

A configuration object's ETag is a hash of its stored view (definition and write stamps), so
every saved change gives it a new one. A ``PUT``/``PATCH`` that carries ``If-Match`` is refused
with 412 when the object changed since the caller read it: two pipelines applying at once
never silently overwrite each other. ``?dry_run=true`` runs the whole write (every check the
real one makes) and rolls it back, so ``gantry plan`` can validate before anything changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from api.errors import error_body
from catalog.errors import NotFound

T = TypeVar("T")

IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description="the ETag read with GET: the write is refused (412) if the object changed since",
    ),
]
DryRun = Annotated[
    bool, Query(description="check the write as if it were made, save nothing, answer what would be saved")
]
STALE_WRITE: dict[int | str, dict[str, Any]] = {
    412: {"description": "If-Match named a version the object no longer has: read it again."}
}


class PreconditionFailed(Exception):
    """``If-Match`` named a version the object no longer has (or the object is gone)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def etag(view: dict[str, Any]) -> str:
    """A strong ETag of a stored view: the same view always hashes the same."""
    encoded = json.dumps(view, sort_keys=True, separators=(",", ":"), default=str).encode()
    return '"' + hashlib.sha256(encoded).hexdigest()[:32] + '"'


def tagged(response: Response, view: dict[str, Any]) -> dict[str, Any]:
    """Answer ``view`` with its ETag."""
    response.headers["ETag"] = etag(view)
    return view


def check_if_match(if_match: str | None, current: Callable[[], dict[str, Any]]) -> None:
    """Refuse the write (412) when ``If-Match`` names none of the object's current version.
    ``current`` reads the stored view; it is called only when the header is present, and an
    object that does not exist matches nothing (not even ``*``)."""
    if if_match is None:
        return
    try:
        view = current()
    except NotFound as exc:
        raise PreconditionFailed(f"If-Match: {exc.message}; nothing was changed") from exc
    wanted = {tag.strip() for tag in if_match.split(",") if tag.strip()}
    if "*" not in wanted and etag(view) not in wanted:
        raise PreconditionFailed("If-Match: the object changed since it was read; read it again and retry")


def settle(session: Session, dry_run: bool, present: Callable[[], T]) -> T:
    """Commit the write and answer ``present()``; a dry run flushes (so the database checks
    it too), answers what would have been saved, and rolls everything back."""
    if not dry_run:
        session.commit()
        return present()
    session.flush()
    answer = present()
    session.rollback()
    return answer


async def _precondition_failed(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PreconditionFailed)
    details = [{"pointer": "/", "in": "header", "field": "If-Match", "message": exc.message}]
    return JSONResponse(error_body("precondition_failed", exc.message, details), status_code=412)


def install(app: FastAPI) -> None:
    """Answer :class:`PreconditionFailed` as a 412 in the one error shape."""
    app.add_exception_handler(PreconditionFailed, _precondition_failed)
