"""Sign-in with a token, the session cookie's flags, sign-out, and forged POSTs refused: without
the form's CSRF token, with a wrong one, and from another site's page."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright._impl._api_structures import SetCookieParam
from playwright.sync_api import Browser, Route, expect

from tests.web.conftest import LivePortal, PortalPage, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.temporal]

ATTACKER = "http://attacker.test"
DEPLOY: dict[str, str | float | bool] = {"entity": "payments", "version": "v9.9.9", "environment": "staging"}


def _deploys_of_payments(live_portal: LivePortal) -> int:
    return len(live_portal.runs(action="deploy_service", entity="payments"))


def test_a_token_opens_a_session_in_a_strict_http_only_cookie_and_sign_out_ends_it(
    live_portal: LivePortal, open_portal: Callable[..., PortalPage]
) -> None:
    portal = open_portal()
    portal.follow(lambda: portal.page.goto(portal.url("/")), url=re.compile(r".*/login(\?.*)?$"))

    # A wrong token: said next to the field, no cookie.
    portal.page.get_by_label("API token").fill("gantry_not_a_token")
    portal.follow(lambda: portal.page.get_by_role("button", name="Sign in").click(), url="/login", status=401)
    expect(portal.page.locator("#error-token")).to_contain_text("unknown")
    assert not portal.page.context.cookies()

    sign_in(portal, live_portal.tokens["bob"])
    expect(portal.page.locator("header")).to_contain_text("Bob Nguyen")
    [cookie] = portal.page.context.cookies()
    assert cookie["name"] == "gantry_session"
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert live_portal.tokens["bob"] not in cookie["value"], "the cookie holds a session id, not the token"
    assert portal.page.evaluate("document.cookie") == "", "scripts cannot read the session"

    portal.follow(lambda: portal.page.get_by_role("button", name="Sign out").click(), url="/login")
    assert not portal.page.context.cookies()
    # The old session id is dead even if a copy of the cookie survives.
    portal.page.context.add_cookies(
        [SetCookieParam(name=cookie["name"], value=cookie["value"], url=live_portal.url, httpOnly=True)]
    )
    portal.follow(lambda: portal.page.goto(portal.url("/catalog")), url=re.compile(r".*/login\?next=.*"))


def test_a_post_without_the_forms_csrf_token_is_refused_and_changes_nothing(
    live_portal: LivePortal, open_portal: Callable[..., PortalPage]
) -> None:
    bob = open_portal("bob")
    before = _deploys_of_payments(live_portal)
    # The session cookie goes along (same origin), only the token is missing or wrong.
    for form in (DEPLOY, {**DEPLOY, "csrf_token": "forged"}):
        answer = bob.page.request.post(bob.url("/actions/deploy_service/launch"), form=form, max_redirects=0)
        assert answer.status == 403, answer.text()
        assert "CSRF" in answer.text()
    signed_out = bob.page.request.post(bob.url("/logout"), form={}, max_redirects=0)
    assert signed_out.status == 403
    assert _deploys_of_payments(live_portal) == before
    bob.goto("/catalog")  # still signed in: the forged sign-out did nothing
    expect(bob.page.get_by_role("button", name="Sign out")).to_be_visible()


def test_another_sites_auto_submitting_form_launches_nothing(
    live_portal: LivePortal, browser: Browser, open_portal: Callable[..., PortalPage]
) -> None:
    bob = open_portal("bob")  # signed in, with the session cookie in this context
    before = _deploys_of_payments(live_portal)
    fields = "".join(f'<input name="{k}" value="{v}">' for k, v in DEPLOY.items())
    evil = (
        f'<!doctype html><html lang="en"><title>win a prize</title><body>'
        f'<form id="f" method="post" action="{live_portal.url}/actions/deploy_service/launch">{fields}</form>'
        f"<script>document.getElementById('f').submit()</script></body></html>"
    )
    context = bob.page.context

    def serve(route: Route) -> None:
        route.fulfill(status=200, body=evil, content_type="text/html")

    # The attacker's page is served by Playwright itself (this route, registered last, wins over
    # the harness's block of other origins); the POST goes to the real portal.
    context.route(f"{ATTACKER}/**", serve)
    page = context.new_page()
    with page.expect_response(lambda r: r.url.startswith(f"{live_portal.url}/actions/")) as answer:
        page.goto(f"{ATTACKER}/prize")
    assert answer.value.status in (303, 403), "refused (the cookie is SameSite=Strict, the form has no token)"
    page.close()
    assert _deploys_of_payments(live_portal) == before
