"""The harness's own checks catch what they promise: a console error, a request to another
origin, a serious accessibility violation, an unexpected status, a page never checked.

Pages are served by Playwright itself (``route.fulfill``) on a made-up origin, so these need
Chromium but no stack."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Route

from tests.web.conftest import ARTIFACTS, PortalPage, _guarded_context

ORIGIN = "http://portal.test"
GOOD = """<!doctype html><html lang="en"><head><title>Fine</title></head>
<body><main><h1>Fine</h1><a href="/next">Next</a></main></body></html>"""
PAGES = {
    "/good": (200, GOOD),
    "/next": (200, GOOD.replace("Fine", "Next")),
    "/console": (200, GOOD.replace("</main>", "<script>console.error('boom')</script></main>")),
    "/thrown": (200, GOOD.replace("</main>", "<script>undefined.x()</script></main>")),
    "/cdn": (
        200,
        GOOD.replace("</head>", '<link rel="stylesheet" href="https://cdn.example.com/x.css"></head>'),
    ),
    "/unlabelled": (
        200,
        GOOD.replace(
            "</main>", '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw="><input type="text"></main>'
        ),
    ),
    "/invalid": (422, GOOD.replace("Fine", "Check the form")),
}


@pytest.fixture
def fake_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[PortalPage]:
    context = _guarded_context(browser, ORIGIN)

    def serve(route: Route) -> None:
        path = route.request.url.removeprefix(ORIGIN)
        status, body = PAGES.get(path, (404, GOOD.replace("Fine", "Not found")))
        route.fulfill(status=status, body=body, content_type="text/html")

    context.route(f"{ORIGIN}/**", serve)
    portal = PortalPage(context.new_page(), ORIGIN, f"harness-{request.node.name}")
    yield portal
    context.close()


def test_a_clean_page_passes_and_is_photographed_at_both_widths(fake_page: PortalPage) -> None:
    fake_page.goto("/good")
    fake_page.follow(lambda: fake_page.page.get_by_role("link", name="Next").click(), url="/next")
    shots = sorted(p.name for p in ARTIFACTS.glob(f"{fake_page.name}-*.png"))
    assert shots == [
        f"{fake_page.name}-01-good-1280.png",
        f"{fake_page.name}-01-good-390.png",
        f"{fake_page.name}-02-next-1280.png",
        f"{fake_page.name}-02-next-390.png",
    ]
    assert fake_page.page.viewport_size == {"width": 1280, "height": 800}, "back at desktop width"
    fake_page.close()


@pytest.mark.parametrize("path", ["/console", "/thrown"])
def test_a_console_error_fails_the_page(fake_page: PortalPage, path: str) -> None:
    with pytest.raises(AssertionError, match="console errors"):
        fake_page.goto(path)


def test_a_request_to_another_origin_fails_the_page_and_never_leaves(fake_page: PortalPage) -> None:
    with pytest.raises(AssertionError, match=r"other origins.*GET https://cdn\.example\.com/x\.css"):
        fake_page.goto("/cdn")


def test_serious_accessibility_violations_fail_the_page(fake_page: PortalPage) -> None:
    with pytest.raises(AssertionError, match=r"image-alt \(critical\)[\s\S]*label \(critical\)"):
        fake_page.goto("/unlabelled")


def test_the_status_is_checked_and_an_expected_error_status_is_no_console_error(
    fake_page: PortalPage,
) -> None:
    with pytest.raises(AssertionError, match="answered 422, expected 200"):
        fake_page.goto("/invalid")
    fake_page.console_errors.clear()
    fake_page.goto("/invalid", status=422)
    assert not fake_page.console_errors


def test_a_page_never_checked_fails_at_close(fake_page: PortalPage) -> None:
    fake_page.goto("/good")
    fake_page.page.get_by_role("link", name="Next").click()
    fake_page.page.wait_for_url(f"{ORIGIN}/next")
    fake_page.page.wait_for_load_state("load")
    with pytest.raises(AssertionError, match="never checked"):
        fake_page.close()
