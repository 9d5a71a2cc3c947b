"""Slack request signatures (the ``v0`` scheme) and a replay guard.

Slack signs each request with the app's signing secret: ``X-Slack-Signature`` is ``v0=`` and
the hex HMAC-SHA256 of ``v0:{X-Slack-Request-Timestamp}:{raw body}``. A request is accepted
only within ``tolerance`` seconds of its timestamp, and only once: a captured request replayed
inside that window is refused by :class:`ReplayGuard`. The guard is per process; behind several
API processes a replay can reach each once, and the approval gate refuses a second decision
by the same approver anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import threading

TOLERANCE = 300  # seconds, as Slack recommends


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
    """Remembers each accepted (timestamp, signature) for the tolerance window."""

    def __init__(self, tolerance: int = TOLERANCE) -> None:
        self._tolerance = tolerance
        self._seen: dict[tuple[str, str], float] = {}  # → when it may be forgotten
        self._lock = threading.Lock()

    def check(self, timestamp: str, signature: str, now: float) -> None:
        """Raise :class:`SignatureError` if this request was seen before; remember it otherwise.
        Call it only for requests whose signature :func:`verify` accepted."""
        key = (timestamp, signature)
        with self._lock:
            # Oldest first (insertion order, near enough to timestamp order).
            while self._seen:
                oldest, forget_at = next(iter(self._seen.items()))
                if forget_at >= now:
                    break
                del self._seen[oldest]
            if key in self._seen:
                raise SignatureError("this request was already received (replay)")
            # Past this, verify refuses the timestamp as stale: no need to remember it longer.
            self._seen[key] = int(timestamp) + self._tolerance + 1
