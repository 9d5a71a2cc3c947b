"""Sign-in (an API token or a one-time code), sign-out, and the front door."""

from __future__ import annotations

from datetime import timedelta

from starlette.responses import Response

from api.web.core import Page, local_path, page, see_other
from api.web.sessions import COOKIE, live_token, open_session, redeem_code, revoke_session
from catalog.db import utcnow
from catalog.models import ApiToken


@page("/", signed_in=False)
def home(ctx: Page) -> Response:
    return see_other("/catalog" if ctx.web else "/login")


@page("/login", signed_in=False)
def login_form(ctx: Page) -> Response:
    code = ctx.param("code")
    if code:
        token = redeem_code(ctx.db, code, utcnow())
        if token is None:
            ctx.db.commit()
            return _form(ctx, "This sign-in link is unknown, used or expired: ask for a new one.", 400)
        return _signed_in(ctx, token, "/catalog")
    if ctx.web is not None:
        return see_other("/catalog")
    ended = "Your session has ended: sign in again." if ctx.param("ended") else None
    return _form(ctx, None, 200, notice=ended)


@page("/login", ("POST",), signed_in=False)
def login(ctx: Page) -> Response:
    origin = ctx.request.headers.get("origin")
    if origin and origin != f"{ctx.request.url.scheme}://{ctx.request.url.netloc}":
        return _form(ctx, "Sign in from this site's own sign-in page.", 403)
    token = live_token(ctx.db, ctx.field("token").strip(), utcnow())
    if token is None:
        return _form(ctx, "That token is unknown, revoked or expired.", 401)
    return _signed_in(ctx, token, local_path(ctx.field("next") or "/catalog"))


@page("/logout", ("POST",))
def logout(ctx: Page) -> Response:
    revoke_session(ctx.db, ctx.request.cookies.get(COOKIE, ""), utcnow())
    ctx.db.commit()
    response = see_other("/login")
    response.delete_cookie(COOKIE, path="/")
    return response


def _form(ctx: Page, error: str | None, status: int, notice: str | None = None) -> Response:
    ctx.web = None
    return ctx.render(
        "login.html",
        status=status,
        error=error,
        notice=notice,
        next=local_path(ctx.param("next") or "/catalog"),
    )


def _signed_in(ctx: Page, token: ApiToken, target: str) -> Response:
    """A new session, ``GANTRY_WEB_SESSION_TTL`` long (the cookie lasts as long; the server's
    expiry is what counts)."""
    ttl = ctx.settings.web_session_ttl
    session_id = open_session(ctx.db, token, utcnow(), timedelta(seconds=ttl))
    ctx.db.commit()
    response = see_other(target)
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=ttl,
        path="/",
        httponly=True,
        samesite="strict",
        secure=ctx.request.url.scheme == "https",
    )
    return response


ROUTES = [home, login_form, login, logout]
