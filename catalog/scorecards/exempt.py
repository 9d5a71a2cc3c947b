"""The approved exemptions grading applies: which failing rules of which entities are excused.

Read by :mod:`catalog.scorecards.service` for each graded chunk in one indexed statement, so an
exemption costs grading nothing per entity. An exemption applies while it is APPROVED and its
``expires_at`` is ahead of the grading's ``now``: a regrade after expiry drops it even before
its timer marks it EXPIRED.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from catalog.models import ScorecardExemption
from catalog.timefmt import format_instant

APPROVED = "APPROVED"


def active(
    connection: Any, blueprint: str, scorecard: str, ids: list[int] | None, now: datetime
) -> dict[int, dict[str, dict[str, Any]]]:
    """Entity id -> rule -> ``{"id", "reason", "expires_at"}`` of the exemptions in force."""
    table = ScorecardExemption
    stmt = select(table.entity_id, table.rule, table.id, table.reason, table.expires_at).where(
        table.blueprint == blueprint,
        table.scorecard == scorecard,
        table.status == APPROVED,
        table.expires_at > now,
    )
    if ids is not None:
        stmt = stmt.where(table.entity_id.in_(ids))
    found: dict[int, dict[str, dict[str, Any]]] = {}
    # Latest expiry last: when two overlap (a renewal approved before the first ran out), the
    # longer one is shown.
    for entity_id, rule, exemption_id, reason, expires_at in connection.execute(
        stmt.order_by(table.expires_at)
    ).all():
        found.setdefault(entity_id, {})[rule] = {
            "id": exemption_id,
            "reason": reason,
            "expires_at": format_instant(expires_at),
        }
    return found
