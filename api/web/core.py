"""What every page shares: templates, the signed-in user, CSRF, and errors as pages.

Pages are plain Starlette routes (HTML, outside the OpenAPI document). Each handler is a sync
function run in a worker thread with its own database session, like the JSON routes, and it
calls the same catalog services and permission checks: the portal never calls its own API.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from api import ratelimit
from api.errors import RateLimited, ServiceUnavailable
from api.web import markdown
from api.web.sessions import COOKIE, WebSession, csrf_matches, find_session
from catalog.db import utcnow
from catalog.errors import CatalogError, Conflict, Forbidden, Invalid, NotFound
from catalog.identity.permissions import Principal, principal_of
from catalog.models import User
from config import Settings

TEMPLATES = Path(__file__).parent / "templates"
MAX_FORM = 256 * 1024

env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters["markdown"] = markdown.render
env.filters["q"] = lambda value: quote(str(value), safe="")


@dataclass
class Page:
    """One request to a page: the database session, the signed-in person, the form sent."""

    request: Request
    db: Session
    settings: Settings
    web: WebSession | None
    form: dict[str, list[str]] = field(default_factory=dict)
    _who: Principal | None = None

    @property
    def who(self) -> Principal:
        assert self.web is not None
        if self._who is None:
            self._who = principal_of(self.db, self.web.user)
        return self._who

    @property
    def user(self) -> User:
        """The signed-in person (pages that run only signed in)."""
        assert self.web is not None
        return self.web.user

    def param(self, name: str, default: str = "") -> str:
        return self.request.query_params.get(name, default)

    def field(self, name: str, default: str = "") -> str:
        values = self.form.get(name)
        return values[-1] if values else default

    def charge(self, kind: ratelimit.Kind) -> None:
        """Count this form against the signed-in token's rate limit of ``kind``, as the API
        counts its launches and writes (one budget per token, shared with the API and every
        replica through the database): :class:`RateLimited` past it, before anything is done."""
        assert self.web is not None
        ratelimit.charge(self.db, self.settings, self.user.role, self.web.token_hash, kind, time.time())

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(template).render(
            web=self.web, who=self.who if self.web else None, path=self.request.url.path, **context
        )
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


SECURITY_HEADERS = {
    # Everything is served from here: no inline script, no other origin, no framing.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

Handler = Callable[[Page], Response]


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def url_with(base: str, **params: Any) -> str:
    kept = {k: v for k, v in params.items() if v not in (None, "", [])}
    return f"{base}?{urlencode(kept, doseq=True)}" if kept else base


def page(
    path: str, methods: tuple[str, ...] = ("GET",), *, signed_in: bool = True
) -> Callable[[Handler], Route]:
    """A page route. Signed-out visitors of a signed-in page go to ``/login``; every POST must
    carry the session's CSRF token (403 and nothing done otherwise)."""

    def wrap(handler: Handler) -> Route:
        async def endpoint(request: Request) -> Response:
            form: dict[str, list[str]] = {}
            if request.method == "POST":
                body = await request.body()
                if len(body) > MAX_FORM:
                    return _plain(413, "the form is too large")
                form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            return await run_in_threadpool(_run, handler, request, form, signed_in)

        return Route(path, endpoint, methods=list(methods), name=handler.__name__)

    return wrap


def _run(handler: Handler, request: Request, form: dict[str, list[str]], signed_in: bool) -> Response:
    settings: Settings = request.app.state.settings
    with request.app.state.sessionmaker() as db:
        web = find_session(db, request.cookies.get(COOKIE), utcnow())
        ctx = Page(request, db, settings, web, form)
        if signed_in and web is None:
            # A cookie without a live session: it expired (GANTRY_WEB_SESSION_TTL), was signed
            # out elsewhere, or its token was deleted. Say so on the sign-in page, drop the cookie.
            ended = request.cookies.get(COOKIE) is not None
            if request.method == "GET" or request.url.path == "/logout":  # signing out: done
                back = _local(request.url.path) if request.method == "GET" else None
                response: Response = see_other(url_with("/login", next=back, ended="1" if ended else None))
            else:
                response = _plain(403, "you are signed out: sign in again")
            if ended:
                response.delete_cookie(COOKIE, path="/")
            return response
        if request.method == "POST" and signed_in and not csrf_matches(web, ctx.field("csrf_token")):  # type: ignore[arg-type]
            return _plain(403, "the form's CSRF token is missing or wrong: reload the page and try again")
        try:
            return handler(ctx)
        except CatalogError as exc:
            db.rollback()
            return error_page(ctx, exc)
        except ServiceUnavailable as exc:
            db.rollback()
            return error_page(ctx, exc, status=503, title="Temporarily unavailable")
        except RateLimited as exc:
            db.rollback()
            response = error_page(ctx, exc, status=429, title="Too many requests")
            response.headers["Retry-After"] = str(exc.retry_after)
            return response


STATUS = {
    NotFound: (404, "Not found"),
    Forbidden: (403, "Not allowed"),
    Conflict: (409, "Conflict"),
    Invalid: (422, "Invalid"),
}


def error_page(ctx: Page, exc: Exception, *, status: int | None = None, title: str = "Error") -> Response:
    if isinstance(exc, CatalogError):
        status, title = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), (400, "Error"))
        message = str(exc)
    else:
        message = getattr(exc, "message", str(exc))
    if ctx.web is None:
        return _plain(status or 400, message)
    return ctx.render("error.html", status=status or 400, title=title, message=message)


def _plain(status: int, message: str) -> HTMLResponse:
    body = env.get_template("plain.html").render(status=status, message=message)
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


def _local(path: str) -> str:
    """Only a path of this site may be a redirect target after sign-in."""
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else "/catalog"


local_path = _local
Endpoint = Callable[[Request], Awaitable[Response]]
