"""The audit log."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from api.deps import AdminUser, SessionDep
from api.schemas import AuditRecordView, Cursor, Limit, Page
from catalog import audit

router = APIRouter(tags=["audit"])


@router.get("/v1/audit-log", response_model=Page[AuditRecordView], operation_id="list_audit_records")
def audit_log(
    session: SessionDep,
    _: AdminUser,
    resource_type: str | None = None,
    blueprint: str | None = None,
    identifier: str | None = None,
    run_id: str | None = None,
    actor: str | None = None,
    # Any RFC 3339 date-time with an offset; one without names no instant (422, not a 500).
    from_: AwareDatetime | None = Query(None, alias="from"),
    to: AwareDatetime | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Every write, newest first: who, when, what, and the before/after (admins only: the
    before/after of any entity, user or token is in it, whoever may read them)."""
    page = audit.list_records(
        session,
        resource_type=resource_type,
        blueprint=blueprint,
        identifier=identifier,
        run_id=run_id,
        actor=actor,
        since=from_,
        until=to,
        limit=limit,
        cursor=cursor,
    )
    return {"items": [audit.audit_to_dict(r) for r in page.items], "next_cursor": page.next_cursor}
