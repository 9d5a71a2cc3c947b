"""URL path segments built from data: each one percent-encoded, none allowed to climb.

A step's parameters come from templates over data that members write (an entity's identifier, a
repository name). Sent with the worker's credentials, ``../../users/alice`` in a path would reach
another resource; so every such segment is encoded with nothing left safe (``/`` becomes ``%2F``),
and ``.``/``..`` — which encoding leaves as they are and servers resolve — are refused.
"""

from __future__ import annotations

from urllib.parse import quote

from temporalio.exceptions import ApplicationError

from activities.errors import bad_params


def segment(value: object, what: str = "path segment") -> str:
    """``value`` as one encoded URL path segment; a non-retryable error for ``.``, ``..`` or empty."""
    text = str(value)
    if text in ("", ".", ".."):
        raise refused(text, what)
    return quote(text, safe="")


def segments(value: object, what: str = "path") -> list[str]:
    """``a/b/c`` as encoded segments (for paths the vendor nests, such as Jenkins folders); a
    ``.`` or ``..`` anywhere in it is refused."""
    parts = [part for part in str(value).split("/") if part]
    if not parts:
        raise refused(str(value), what)
    return [segment(part, what) for part in parts]


def identifier(value: object, what: str = "entity identifier") -> str:
    """An identifier that may hold ``/`` as one encoded segment; refused when any part between
    its slashes is ``.`` or ``..`` (the catalog refuses such identifiers too)."""
    text = str(value)
    if any(part in (".", "..") for part in text.split("/")):
        raise refused(text, what)
    return segment(text, what)


def path(*parts: object) -> str:
    """``/`` + the encoded segments, e.g. ``path("v1", "runs", run_id)``."""
    return "/" + "/".join(segment(part) for part in parts)


def refused(text: str, what: str) -> ApplicationError:
    return bad_params(f"{what} {text!r} is not a usable URL path segment (empty, '.' or '..')")
