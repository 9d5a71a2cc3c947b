"""The one format of every timestamp Gantry emits: RFC 3339, UTC, ``Z``, milliseconds.

``2026-12-02T04:10:24.123Z`` — fixed width, so string order is time order (stored date-time
properties rely on it), and the same in API responses, events, logs and the CLI. Inputs may be
any RFC 3339 form; :func:`parse_instant` reads them leniently.

Standard library only: workflow code imports it inside Temporal's sandbox.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

# A timestamp as Gantry writes it; tests and clients may match against it.
INSTANT_PATTERN = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"
INSTANT = re.compile(rf"^{INSTANT_PATTERN}$")

# Fractions beyond microseconds (RFC 3339 allows any number of digits; Python reads at most 6).
_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")


def format_instant(moment: datetime) -> str:
    """``moment`` as ``YYYY-MM-DDTHH:MM:SS.sssZ`` in UTC (a naive ``moment`` is taken as UTC)."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def format_optional(moment: datetime | None) -> str | None:
    """:func:`format_instant`, or None for no time (``ended_at`` of an active run, …)."""
    return format_instant(moment) if moment is not None else None


def parse_instant(value: str) -> datetime | None:
    """An RFC 3339 / ISO 8601 date-time with an offset (``Z``, ``z``, ``+02:00``…) as aware UTC;
    None if ``value`` is not one or has no offset."""
    text = _LONG_FRACTION.sub(r"\1", value.strip()).replace("t", "T").replace("z", "Z")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(UTC)


def canonical_instant(value: Any) -> Any:
    """``value`` rewritten to the one format when it is a timestamp string (or a datetime);
    anything else unchanged. For times recorded before the format was settled."""
    if isinstance(value, datetime):
        return format_instant(value)
    if isinstance(value, str) and not INSTANT.match(value) and _looks_like_instant(value):
        parsed = parse_instant(value)
        return format_instant(parsed) if parsed else value
    return value


def canonical_times(value: Any, keys: frozenset[str], skip: frozenset[str] = frozenset()) -> Any:
    """``value`` (JSON) with the timestamps under ``keys`` in the one format, at any depth, not
    looking inside ``skip`` (vendor outputs: their text is theirs, shown as it came)."""
    if isinstance(value, dict):
        return {
            k: v if k in skip else canonical_instant(v) if k in keys else canonical_times(v, keys, skip)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [canonical_times(item, keys, skip) for item in value]
    return value


def _looks_like_instant(value: str) -> bool:
    # Cheap shape check first: only strings shaped like a date and time are parsed.
    return len(value) >= 16 and value[4:5] == "-" and value[10:11] in ("T", "t") and value[:4].isdigit()


class InstantFormatter(logging.Formatter):
    """Log records stamped in the one format (``logging``'s default is local time, ``,mmm``)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return format_instant(datetime.fromtimestamp(record.created, UTC))


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: int = logging.INFO) -> None:
    """Root logging to stderr as ``<instant> LEVEL logger: message``."""
    handler = logging.StreamHandler()
    handler.setFormatter(InstantFormatter(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
