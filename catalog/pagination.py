"""Opaque cursors for keyset pagination: ``{"items": [...], "next_cursor": "..."|null}``."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from catalog.errors import FieldError, Invalid

T = TypeVar("T")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass
class Page(Generic[T]):
    items: list[T] = field(default_factory=list)
    next_cursor: str | None = None


def encode_cursor(key: list[Any]) -> str:
    """The cursor that resumes after the row whose sort key is ``key``."""
    raw = json.dumps(key, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *, size: int | None = None, pointer: str = "/cursor") -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid("invalid cursor", [FieldError(pointer, "not a cursor returned by this API")]) from exc
    if not isinstance(key, list) or (size is not None and len(key) != size):
        raise Invalid("invalid cursor", [FieldError(pointer, "not a cursor returned by this API")])
    return key


def check_limit(limit: int, *, pointer: str = "/limit") -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid("invalid limit", [FieldError(pointer, f"must be between 1 and {MAX_LIMIT}")])
    return limit


def page_after(
    items: Sequence[T], key: Callable[[T], list[Any]], *, limit: int, cursor: str | None
) -> Page[T]:
    """The page of ``items`` in ``key`` order (unique per item) that follows ``cursor``.

    For the lists of definitions (blueprints, teams, actions…): they are small and some are
    filtered by permission in Python, so the page is cut after the filter, on the same opaque
    cursor as the keyset pages cut in SQL."""
    check_limit(limit)
    rest = sorted(items, key=key)
    if cursor is not None and rest:
        after = decode_cursor(cursor, size=len(key(rest[0])))
        try:
            rest = [item for item in rest if key(item) > after]
        except TypeError as exc:  # a forged cursor whose values do not compare with the keys
            raise Invalid(
                "invalid cursor", [FieldError("/cursor", "not a cursor returned by this API")]
            ) from exc
    more = len(rest) > limit
    return Page(rest[:limit], encode_cursor(key(rest[limit - 1])) if more else None)
