"""The browser tests' harness: a live portal as ``make run`` starts it, Chromium, a page per user.

- ``live_portal`` (session): ``python devstack.py`` on free ports — Temporal dev server, local
  AWS, the demo deploy receiver, the Jira and Slack stand-ins, the API and the worker, with the
  example portal applied — plus an API token for each of the example portal's users.
- ``browser`` (session): Debian's ``/usr/bin/chromium``, headless (never a Playwright download).
  Missing, the browser tests skip locally and fail in CI (``.ci/run`` installs it).
- ``open_portal`` (per test): ``open_portal("bob")`` is a fresh browser context signed in with
  bob's token through the sign-in form; ``open_portal()`` is a signed-out one.

Every page a test visits goes through :meth:`PortalPage.settled` (``goto`` and ``follow`` call
it): the document's status is the expected one, no console error and no request to another
origin happened (they are also blocked), axe-core finds nothing serious or critical, and a
screenshot at 1280 px and at 390 px is saved to ``tests/web/artifacts/``. A page that loaded but
was never checked fails the test at teardown, so nothing a test walks through goes unscanned.

``README_SCREENSHOTS=1`` also writes the pictures the README shows (``PortalPage.readme_shot``)
to ``docs/screenshots/`` at 1280x800.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    Playwright,
    ViewportSize,
    sync_playwright,
)
from playwright.sync_api import Request as BrowserRequest
from playwright.sync_api import Response as BrowserResponse

from contracts.runs import TERMINAL
from devtools.processes import free_port
from devtools.testing import eventually
from tests.conftest import IN_CI
from tests.test_devstack import Devstack, _clean_env

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
README_SHOTS = ROOT / "docs" / "screenshots"
DESKTOP = ViewportSize(width=1280, height=800)
PHONE = ViewportSize(width=390, height=844)
# The example portal's people (portal/users.yaml): admin, members of two teams, a viewer.
USERS = ("alice", "bob", "carol", "dana", "erin")
BLOCKING_IMPACTS = ("serious", "critical")
SIGN_IN_LINK = re.compile(r"https?://\S+/login\?code=\S+")
FAILED_LOAD = re.compile(r"^Failed to load resource: the server responded with a status of (\d{3})")
# The example portal's deploy action by its exact label ("Deploy service to several regions" also
# contains the words).
DEPLOY_SERVICE = re.compile(r"^Deploy service$")
UI_TIMEOUT_MS = 20_000  # a loaded 2-core CI machine has taken more than 10 s
STACK_TIMEOUT = 180.0


# --- the live portal -------------------------------------------------------------------------


@dataclass
class LivePortal:
    """The running stack: where it answers, its admin token, the one-time sign-in link it
    printed (None if it printed none), a token per example user, and an admin API client."""

    url: str
    admin_token: str
    sign_in_link: str | None
    tokens: dict[str, str]
    env: dict[str, str]
    api: httpx.Client
    output: Callable[[], str]

    def client(self, user: str) -> httpx.Client:
        """An API client as ``user`` (for arranging and checking what the browser cannot see)."""
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=15)

    def runs(self, **params: str) -> list[dict[str, Any]]:
        """Runs as the admin sees them (one page of 100, newest first)."""
        answer = self.api.get("/v1/runs", params={"limit": "100", **params})
        answer.raise_for_status()
        return list(answer.json()["items"])


def _mint_tokens(api: httpx.Client) -> dict[str, str]:
    tokens = {}
    for user in USERS:
        answer = api.post("/v1/tokens", json={"user": user, "description": "browser tests"})
        assert answer.status_code == 201, answer.text
        tokens[user] = answer.json()["token"]
    return tokens


def _started_devstack(tmp_path_factory: pytest.TempPathFactory) -> tuple[Devstack, dict[str, str], str]:
    """``make run`` on free ports, and its dev admin's token. A free port can be taken by another
    process between its choice and its bind (the tests run on two processes): a stack that stops
    because an address is in use is started again on other ports."""
    for attempt in range(3):
        env = {
            **_clean_env(tmp_path_factory.mktemp("web-devstack")),
            "GANTRY_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
            "GANTRY_TEMPORAL_UI_URL": f"http://127.0.0.1:{free_port()}",
        }
        stack = Devstack(env)
        try:
            # make run's banner: generous, as applying the example portal on a loaded machine is slow.
            banner = stack.wait_for("export GANTRY_TOKEN=", timeout=STACK_TIMEOUT)
        except AssertionError:
            stack.cleanup()
            if attempt == 2 or "address already in use" not in "".join(stack.output):
                raise
            continue
        return stack, env, banner.strip().split("=", 1)[1]
    raise AssertionError("unreachable")  # the loop returns or raises


@pytest.fixture(scope="session")
def live_portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePortal]:
    stack, env, token = _started_devstack(tmp_path_factory)
    try:
        url = next(line for line in stack.output if "export GANTRY_API_URL=" in line).strip().split("=", 1)[1]
        stack.children()  # remembered, so cleanup() reaps them whatever happens
        # The sign-in link comes after the banner (None when the line says why there is none).
        link = SIGN_IN_LINK.search(stack.wait_for("  web portal ", timeout=30))
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=15)
        portal = LivePortal(
            url=url,
            admin_token=token,
            sign_in_link=link.group(0) if link else None,
            tokens=_mint_tokens(api),
            env=env,
            api=api,
            output=lambda: "".join(stack.output),
        )
        yield portal
        api.close()
    finally:
        stack.cleanup()


# --- the browser -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not os.access(CHROMIUM, os.X_OK):
        reason = f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does it)"
        if IN_CI:
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright_driver: Playwright, chromium_path: Path) -> Iterator[Browser]:
    # Chromium's sandbox needs user namespaces that root in a container does not get.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    launched = playwright_driver.chromium.launch(executable_path=str(chromium_path), headless=True, args=args)
    yield launched
    launched.close()


@pytest.fixture(scope="session", autouse=True)
def _fresh_artifacts() -> None:
    """Each run's screenshots only: the folder is emptied once per session."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)


# --- one page, checked -------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:60] or "root"


@dataclass
class PortalPage:
    """A browser tab on the live portal, with the checks every visited page must pass."""

    page: Page
    origin: str
    name: str
    user: str | None = None
    off_origin: list[str] = field(default_factory=list)
    console_errors: list[tuple[str, str]] = field(default_factory=list)  # (text, url)
    document_status: int | None = None
    unchecked: list[str] = field(default_factory=list)
    visited: int = 0

    def __post_init__(self) -> None:
        self.page.set_default_timeout(UI_TIMEOUT_MS)
        self.page.on("console", self._on_console)
        self.page.on(
            "pageerror", lambda error: self.console_errors.append((f"uncaught: {error}", self.page.url))
        )
        self.page.on("request", self._on_request)
        self.page.on("response", self._on_response)
        self.page.on("load", lambda _: self.unchecked.append(self.page.url))

    # listeners: record only (no browser calls from inside an event)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append((message.text, str(message.location.get("url", ""))))

    def _on_request(self, request: BrowserRequest) -> None:
        if not self.same_origin(request.url):
            self.off_origin.append(f"{request.method} {request.url}")

    def _on_response(self, response: BrowserResponse) -> None:
        request = response.request
        if request.is_navigation_request() and request.frame == self.page.main_frame:
            self.document_status = response.status

    def same_origin(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about"):
            return True
        return f"{parts.scheme}://{parts.netloc}" == self.origin

    # what tests call

    def url(self, path: str) -> str:
        return self.origin + path

    def goto(self, path: str, *, status: int = 200) -> BrowserResponse | None:
        """Open ``path`` and check the page (its document must answer ``status``)."""
        response = self.page.goto(self.url(path))
        self.settled(status=status)
        return response

    def follow(self, action: Callable[[], Any], *, url: str | re.Pattern[str], status: int = 200) -> None:
        """Do ``action`` (a click, a submit) and check the page it leads to, at ``url``."""
        with self.page.expect_navigation(url=url if isinstance(url, re.Pattern) else self.url(url)):
            action()
        self.settled(status=status)

    def by_testid(self, testid: str) -> Locator:
        return self.page.get_by_test_id(testid)

    def settled(self, *, status: int = 200) -> None:
        """The checks every page passes; then its screenshots."""
        self.page.wait_for_load_state("load")
        url = self.page.url
        # Chromium logs a non-2xx document as a failed load: the status check below covers it.
        self.console_errors = [
            (text, where)
            for text, where in self.console_errors
            if not (where == url and FAILED_LOAD.match(text))
        ]
        assert self.document_status == status, f"{url} answered {self.document_status}, expected {status}"
        self.assert_clean()
        self.assert_accessible()
        self.screenshots()
        self.unchecked.clear()

    def assert_clean(self) -> None:
        assert not self.off_origin, f"requests to other origins from {self.page.url}: {self.off_origin}"
        assert not self.console_errors, f"console errors on {self.page.url}: {self.console_errors}"

    def assert_accessible(self) -> None:
        from axe_playwright_python.sync_playwright import Axe

        violations = Axe().run(self.page).response["violations"]
        blocking = [
            f"{v['id']} ({v['impact']}): {v['help']} at "
            + ", ".join(str(node["target"]) for node in v["nodes"][:5])
            for v in violations
            if v.get("impact") in BLOCKING_IMPACTS
        ]
        assert not blocking, f"axe on {self.page.url}:\n  " + "\n  ".join(blocking)

    def screenshots(self) -> None:
        self.visited += 1
        path = urlsplit(self.page.url)
        stem = f"{self.name}-{self.visited:02d}-{_slug(path.path)}"  # never the query: it may hold a code
        for size in (DESKTOP, PHONE):
            self.page.set_viewport_size(size)
            self.page.screenshot(path=ARTIFACTS / f"{stem}-{size['width']}.png", full_page=True)
        self.page.set_viewport_size(DESKTOP)

    def readme_shot(self, name: str) -> None:
        """With README_SCREENSHOTS=1: this view, 1280x800, as docs/screenshots/``name``.png."""
        if os.environ.get("README_SCREENSHOTS") != "1":
            return
        README_SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.set_viewport_size(DESKTOP)
        self.page.screenshot(path=README_SHOTS / f"{name}.png", full_page=False)

    def close(self) -> None:
        """The last checks: nothing logged or fetched after the last page's checks, and no page
        left unchecked."""
        try:
            self.assert_clean()
            assert not self.unchecked, f"pages loaded but never checked (call settled()): {self.unchecked}"
        finally:
            self.page.context.close()


def sign_in(portal: PortalPage, token: str) -> None:
    """Through the sign-in form, as a person does: the token, then the catalog."""
    portal.goto("/login")
    form = portal.by_testid("signin-form")
    form.locator("input[name=token]").fill(token)
    portal.follow(lambda: form.locator("[type=submit]").click(), url=re.compile(r".*/catalog$"))


def _guarded_context(browser: Browser, origin: str) -> BrowserContext:
    context = browser.new_context(viewport=DESKTOP, base_url=origin)

    def block(route: Any) -> None:
        route.abort("blockedbyclient")

    # Recorded by the page's request listener (and failed there); never let one leave the machine.
    context.route(lambda url: urlsplit(url).scheme in ("http", "https") and not url.startswith(origin), block)
    return context


@pytest.fixture
def open_portal(
    browser: Browser, live_portal: LivePortal, request: pytest.FixtureRequest
) -> Iterator[Callable[..., PortalPage]]:
    """``open_portal(user=None)``: a new browser context on the live portal; signed in as
    ``user`` (a name from USERS, or ``"admin"`` for make run's admin token) when given."""
    opened: list[PortalPage] = []
    test_name = _slug(request.node.name)

    def open_(user: str | None = None) -> PortalPage:
        context = _guarded_context(browser, live_portal.url)
        name = f"{test_name}-{len(opened) + 1}-{user or 'anonymous'}"
        portal = PortalPage(context.new_page(), live_portal.url, name, user)
        opened.append(portal)
        if user is not None:
            token = live_portal.admin_token if user == "admin" else live_portal.tokens[user]
            sign_in(portal, token)
        return portal

    yield open_
    errors = []
    for portal in opened:
        try:
            portal.close()
        except AssertionError as exc:
            errors.append(str(exc))
    assert not errors, "\n".join(errors)


def wait_for_run(portal: LivePortal, run_id: str, status: str, timeout: float = 60.0) -> dict[str, Any]:
    """The run (admin view) once it has ``status``; fails early if it ends otherwise."""

    def reached() -> dict[str, Any] | None:
        run: dict[str, Any] = portal.api.get(f"/v1/runs/{run_id}").json()
        if run["status"] in TERMINAL and run["status"] != status:
            pytest.fail(f"run {run_id} ended {run['status']}, expected {status}: {run}")
        return run if run["status"] == status else None

    return eventually(reached, timeout=timeout, interval=0.3, what=f"run {run_id} is {status}")
