"""Slack request signatures (the ``v0`` scheme) and a replay guard.

Slack signs each request with the app's signing secret: ``X-Slack-Signature`` is ``v0=`` and
the hex HMAC-SHA256 of ``v0:{X-Slack-Request-Timestamp}:{raw body}``. A request is accepted
only within ``tolerance`` seconds of its timestamp, and only once: a captured request replayed
inside that window is refused by :class:`ReplayGuard`. On PostgreSQL the guard keeps what it
saw in the catalog's database, so behind several API processes a replay is refused by all of them.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from typing import cast

from sqlalchemy import Table, delete
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.orm import Session, sessionmaker

from catalog.models import RateLimitBucket

TOLERANCE = 300  # seconds, as Slack recommends
BUCKETS = cast(Table, RateLimitBucket.__table__)
SEEN_PREFIX, SEEN_END = "slack:", "slack;"  # ";" follows ":": every "slack:…" key sorts between
PRUNE_EVERY = 60.0  # seconds between sweeps of expired requests, per process


class SignatureError(Exception):
    """Why a request is not Slack's (or not anymore)."""


def sign(signing_secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Slack-Signature`` Slack sends for ``body`` at ``timestamp``."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


def verify(
    signing_secret: str,
    timestamp: str | None,
    body: bytes,
    signature: str | None,
    now: float,
    tolerance: int = TOLERANCE,
) -> None:
    """Raise :class:`SignatureError` unless ``signature`` is Slack's for ``body`` and
    ``timestamp`` is within ``tolerance`` seconds of ``now`` (either side)."""
    if not timestamp or not signature:
        raise SignatureError("the X-Slack-Request-Timestamp and X-Slack-Signature headers are required")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise SignatureError("X-Slack-Request-Timestamp is not a Unix timestamp") from None
    if now - sent_at > tolerance:
        raise SignatureError(f"the request timestamp is more than {tolerance} s old")
    if sent_at - now > tolerance:
        raise SignatureError(f"the request timestamp is more than {tolerance} s in the future")
    if not hmac.compare_digest(sign(signing_secret, timestamp, body), signature):
        raise SignatureError("the Slack signature does not match the body")


class ReplayGuard:
    """Remembers each accepted request (by its signature) for the tolerance window.

    On PostgreSQL the memory is the catalog's ``rate_limit_buckets`` (a row per request, keyed
    ``slack:{signature}``, its window starting at the request's timestamp), so every API process
    refuses a request any of them has already accepted; the insert is atomic (``ON CONFLICT``):
    of two processes receiving one request at once, exactly one accepts it. SQLite serves one
    API process only (``GANTRY_API_WORKERS`` > 1 is refused), so there the memory is the
    process's own, and the acknowledgement never waits for SQLite's single writer lock."""

    def __init__(self, factory: sessionmaker[Session], tolerance: int = TOLERANCE) -> None:
        self._factory = factory
        self._tolerance = tolerance
        self._pruned_at = 0.0
        self._shared = factory.kw["bind"].dialect.name == "postgresql"
        self._seen: dict[str, float] = {}  # without a shared memory: key → when it may be forgotten
        self._lock = threading.Lock()

    def check(self, timestamp: str, signature: str, now: float) -> None:
        """Raise :class:`SignatureError` if this request was seen before; remember it otherwise.
        Call it only for requests whose signature :func:`verify` accepted (so a caller without
        the signing secret cannot fill the memory)."""
        key = SEEN_PREFIX + signature.removeprefix("v0=")[:160]
        first_time = self._remember_shared(key, timestamp, now) if self._shared else self._remember(key, now)
        if not first_time:
            raise SignatureError("this request was already received (replay)")

    def _remember(self, key: str, now: float) -> bool:
        with self._lock:
            for old in [old for old, forget_at in self._seen.items() if forget_at < now]:
                del self._seen[old]
            if key in self._seen:
                return False
            # Past this, verify refuses the timestamp as stale: no need to remember it longer.
            self._seen[key] = now + self._tolerance + 1
            return True

    def _remember_shared(self, key: str, timestamp: str, now: float) -> bool:
        with self._factory() as session, session.begin():
            stmt = (
                postgresql_insert(BUCKETS)
                .values(key=key, window_start=int(timestamp), count=1)
                # A row past its window is one the sweep has not reached yet: it blocks nothing.
                .on_conflict_do_update(
                    index_elements=[BUCKETS.c.key],
                    set_={"window_start": int(timestamp), "count": 1},
                    where=BUCKETS.c.window_start < int(now) - self._tolerance - 1,
                )
                .returning(BUCKETS.c.key)
            )
            if now - self._pruned_at >= PRUNE_EVERY:
                self._pruned_at = now
                self._forget(session, now)
            return session.execute(stmt).scalar() is not None

    def _forget(self, session: Session, now: float) -> None:
        """Past the window, :func:`verify` refuses a request as stale: no need to remember it.
        The key range keeps this to the Slack rows of the primary key's index."""
        session.execute(
            delete(BUCKETS).where(
                BUCKETS.c.key >= SEEN_PREFIX,
                BUCKETS.c.key < SEEN_END,
                BUCKETS.c.window_start < int(now) - self._tolerance - 1,
            )
        )
