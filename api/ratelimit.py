"""Per-token rate limits on writes and launches, shared by every API process.

Each token has a fixed-window counter per kind in ``rate_limit_buckets``, bumped by one atomic
``INSERT ... ON CONFLICT DO UPDATE`` (SQLite and PostgreSQL) in its own short transaction, so
replicas share the count without a lock. Members and viewers get ``GANTRY_RATE_LIMIT_WRITES``
and ``GANTRY_RATE_LIMIT_LAUNCHES``; admins ten times that; the worker's ``service`` principal is
not limited. Over the limit: 429 with ``Retry-After`` (the seconds left in the window).

An agent token's launches also count against its own ``runs_per_hour`` (dry runs start nothing
and are not counted).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Literal, cast

from fastapi import Request
from sqlalchemy import Table, case
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from api.errors import RateLimited
from catalog.identity.agents import AgentGrant
from catalog.identity.permissions import ADMIN, SERVICE
from catalog.identity.service import hash_token
from catalog.models import RateLimitBucket, User
from config import Settings, parse_rate

Kind = Literal["writes", "launches"]
BUCKETS = cast(Table, RateLimitBucket.__table__)
ADMIN_FACTOR = 10
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LAUNCH_ROUTES = frozenset({"/v1/actions/{action}/runs", "/v1/runs/{run_id}/retry"})
# Routes only the worker calls (its service principal is never limited anyway), and POSTs that
# change nothing.
UNCOUNTED_ROUTES = frozenset(
    {
        "/v1/runs/{run_id}/report",
        "/v1/timers/reports",
        "/v1/timers/{timer_id:path}/report",
        "/v1/runs/reconcile",
        "/v1/scorecards/regrade",
        "/v1/entities/search",
        "/v1/actions/{action}/check",  # a verdict, nothing written
    }
)
SETTINGS: dict[Kind, str] = {"writes": "GANTRY_RATE_LIMIT_WRITES", "launches": "GANTRY_RATE_LIMIT_LAUNCHES"}


@dataclass(frozen=True)
class Limit:
    count: int
    period: int  # seconds

    @classmethod
    def of(cls, settings: Settings, kind: Kind, role: str) -> Limit:
        count, period = parse_rate(
            settings.rate_limit_writes if kind == "writes" else settings.rate_limit_launches
        )
        return cls(count * ADMIN_FACTOR if role == ADMIN else count, period)


def kind_of(method: str, route_path: str | None) -> Kind | None:
    """What a request counts against: a launch, a write, or nothing."""
    if method not in WRITE_METHODS or route_path is None or not route_path.startswith("/v1/"):
        return None
    if method == "POST" and route_path in LAUNCH_ROUTES:
        return "launches"
    return None if route_path in UNCOUNTED_ROUTES else "writes"


def enforce(
    request: Request, session: Session, user: User, secret: str, agent: AgentGrant | None = None
) -> None:
    """Count this request against its token's limit; raise :class:`RateLimited` past it."""
    if user.role == SERVICE:
        return
    kind = kind_of(request.method, getattr(request.scope.get("route"), "path", None))
    if kind is None:
        return
    now = time.time()
    dry_run = request.query_params.get("dry_run", "").lower() in ("true", "1")
    if kind == "launches" and agent is not None and agent.runs_per_hour is not None and not dry_run:
        _enforce_agent_budget(session, agent, agent.runs_per_hour, now)
    charge(session, request.app.state.settings, user.role, hash_token(secret), kind, now)


def charge(session: Session, settings: Settings, role: str, token_hash: str, kind: Kind, now: float) -> None:
    """Count one request of ``kind`` against the budget of the token with ``token_hash`` (the
    API's requests and the web portal's forms opened with that token share it); raise
    :class:`RateLimited` past it."""
    if role == SERVICE:
        return
    limit = Limit.of(settings, kind, role)
    used, window_start = hit(session, f"{kind}:{token_hash[:40]}", limit.period, now)
    if used > limit.count:
        retry_after = max(1, math.ceil(window_start + limit.period - now))
        raise RateLimited(
            f"rate limit exceeded: {limit.count} {kind} per {limit.period} s for this token "
            f"({SETTINGS[kind]}{', x10 for admins' if role == ADMIN else ''}); retry in {retry_after} s",
            retry_after,
        )


def _enforce_agent_budget(session: Session, agent: AgentGrant, runs_per_hour: int, now: float) -> None:
    used, window_start = hit(session, f"agent-runs:{agent.token_id}", 3600, now)
    if used > runs_per_hour:
        retry_after = max(1, math.ceil(window_start + 3600 - now))
        raise RateLimited(
            f"agent '{agent.name}' has used its budget of {runs_per_hour} runs per hour; "
            f"retry in {retry_after} s",
            retry_after,
        )


def hit(session: Session, key: str, period: int, now: float) -> tuple[int, int]:
    """Add one to ``key``'s counter in the current window (a new window starts at 1) and commit.
    Returns (the count including this hit, the window's start)."""
    start = int(now) - int(now) % period
    insert: Any = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(BUCKETS).values(key=key, window_start=start, count=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=[BUCKETS.c.key],
        set_={
            "count": case(
                (BUCKETS.c.window_start == stmt.excluded.window_start, BUCKETS.c.count + 1), else_=1
            ),
            "window_start": stmt.excluded.window_start,
        },
    ).returning(BUCKETS.c.count, BUCKETS.c.window_start)
    row = session.execute(stmt).one()
    session.commit()
    count, window_start = row
    return int(count), int(window_start)
