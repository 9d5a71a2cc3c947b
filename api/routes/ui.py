"""The web portal's one API route: a one-time sign-in code (``make run`` prints its link)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends
from fastapi.security import HTTPAuthorizationCredentials

from api.deps import AdminUser, SessionDep, SettingsDep, bearer
from api.openapi import errors
from api.schemas import SignInCode
from api.web.sessions import CODE_TTL, issue_code, live_token
from catalog import audit
from catalog.audit import Actor
from catalog.db import utcnow
from catalog.errors import Unauthenticated
from catalog.timefmt import format_instant

router = APIRouter(tags=["identity"])


@router.post(
    "/v1/ui/sign-in-codes",
    status_code=201,
    response_model=SignInCode,
    operation_id="create_sign_in_code",
    responses=errors(403),
)
def create_sign_in_code(
    session: SessionDep,
    settings: SettingsDep,
    user: AdminUser,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
) -> dict[str, Any]:
    """A one-time code that signs the calling admin into the web portal (admins only): valid
    five minutes, single use, and only as long as the token that asked for it. The link, not
    the token, is what ``make run`` prints."""
    now = utcnow()
    token = live_token(session, credentials.credentials if credentials else "", now)
    if token is None:
        raise Unauthenticated("the token is unknown, revoked or expired")
    code = issue_code(session, token, now, CODE_TTL)
    audit.record(
        session, Actor(user.identifier), "CREATE", "sign_in_code", token.id, after={"token": token.id}
    )
    session.commit()
    return {
        "code": code,
        "expires_at": format_instant(now + CODE_TTL),
        "url": f"{settings.api_url.rstrip('/')}/login?code={quote(code)}",
    }
