"""Browser sessions and one-time sign-in codes, kept server-side.

The cookie carries a random session id; the database keeps only its SHA-256, the user, the API
token it was opened with, a CSRF token and an expiry. Signing out revokes the row, and deleting
the token (or its user) deletes the row with it, so a session is never worth more than the
token it came from. Sign-in codes are the same idea for one click: single use, minutes long.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from catalog.db import UTCDateTime
from catalog.identity.permissions import SERVICE
from catalog.identity.service import hash_token
from catalog.models import AgentToken, ApiToken, User

CODE_TTL = timedelta(minutes=5)
COOKIE = "gantry_session"

metadata = sa.MetaData()
web_sessions = sa.Table(
    "web_sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("token_id", sa.String(40), nullable=False),
    sa.Column("user", sa.String(256), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
    sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", UTCDateTime(timezone=True)),
)
sign_in_codes = sa.Table(
    "web_sign_in_codes",
    metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("token_id", sa.String(40), nullable=False),
    sa.Column("user", sa.String(256), nullable=False),
    sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
    sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False),
    sa.Column("used_at", UTCDateTime(timezone=True)),
)


@dataclass(frozen=True)
class WebSession:
    """A signed-in browser: who, the CSRF token its forms must send back, and the hash of the
    API token it was opened with (the key of that token's rate limits, which the browser's
    launches and writes share)."""

    user: User
    csrf_token: str
    expires_at: datetime
    token_hash: str


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def live_token(session: Session, secret: str, now: datetime) -> ApiToken | None:
    """The unexpired token with this secret, if it belongs to a person (never the worker, nor an
    agent: a browser session would carry none of its narrowing)."""
    token = session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == hash_token(secret)))
    if token is None or (token.expires_at is not None and token.expires_at <= now):
        return None
    if session.get(AgentToken, token.id) is not None:
        return None
    user = session.get(User, token.user)
    return token if user is not None and user.role != SERVICE else None


def open_session(session: Session, token: ApiToken, now: datetime, ttl: timedelta) -> str:
    """A new session for the token's user, ``ttl`` long (``GANTRY_WEB_SESSION_TTL``); returns the
    cookie value (shown once, stored hashed)."""
    session_id = secrets.token_urlsafe(32)
    session.execute(
        web_sessions.insert().values(
            id_hash=_digest(session_id),
            token_id=token.id,
            user=token.user,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + ttl,
        )
    )
    return session_id


def find_session(session: Session, session_id: str | None, now: datetime) -> WebSession | None:
    """The live session behind a cookie: not revoked, not expired, its token still valid."""
    if not session_id or len(session_id) > 128:
        return None
    row = session.execute(
        sa.select(
            web_sessions, ApiToken.expires_at.label("token_expires"), ApiToken.token_hash.label("token_hash")
        )
        .join(ApiToken, ApiToken.id == web_sessions.c.token_id)
        .where(web_sessions.c.id_hash == _digest(session_id))
    ).first()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    if row.token_expires is not None and row.token_expires <= now:
        return None
    user = session.get(User, row.user)
    if user is None or user.role == SERVICE:
        return None
    return WebSession(
        user=user, csrf_token=row.csrf_token, expires_at=row.expires_at, token_hash=row.token_hash
    )


def revoke_session(session: Session, session_id: str, now: datetime) -> None:
    session.execute(
        web_sessions.update()
        .where(web_sessions.c.id_hash == _digest(session_id), web_sessions.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def csrf_matches(web: WebSession, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(web.csrf_token.encode(), str(sent).encode())


def issue_code(session: Session, token: ApiToken, now: datetime, ttl: timedelta = CODE_TTL) -> str:
    """A one-time sign-in code for the token's user (single use, ``ttl`` long)."""
    code = secrets.token_urlsafe(24)
    session.execute(
        sign_in_codes.insert().values(
            code_hash=_digest(code), token_id=token.id, user=token.user, created_at=now, expires_at=now + ttl
        )
    )
    return code


def redeem_code(session: Session, code: str, now: datetime) -> ApiToken | None:
    """The token a code signs in with, using the code up; None when unknown, used or expired.
    The update is conditional, so two requests racing on one code cannot both win."""
    if not code or len(code) > 128:
        return None
    digest = _digest(code)
    row = session.execute(sa.select(sign_in_codes).where(sign_in_codes.c.code_hash == digest)).first()
    if row is None or row.used_at is not None or row.expires_at <= now:
        return None
    used = session.execute(
        sign_in_codes.update()
        .where(sign_in_codes.c.code_hash == digest, sign_in_codes.c.used_at.is_(None))
        .values(used_at=now)
    )
    if used.rowcount != 1:  # type: ignore[attr-defined]
        return None
    token = session.get(ApiToken, row.token_id)
    if token is None or (token.expires_at is not None and token.expires_at <= now):
        return None
    return token
