"""The newcomer's path in Chromium, after ``make run``: sign in with the printed link, find
``payments``, deploy it to staging from its form and watch the run finish, have a production
deploy approved by another person from their inbox, and read the readiness distribution.

This file sorts first among the browser tests: make run's sign-in link is single use and lives
minutes, so the path that needs it runs before the rest. ``README_SCREENSHOTS=1`` also writes
the README's pictures along the way."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from tests.web.conftest import DEPLOY_SERVICE, LivePortal, PortalPage, wait_for_run

pytestmark = [pytest.mark.slow, pytest.mark.temporal]

RUN_URL = re.compile(r".*/runs/(r_[^/?#]+)$")
STAGING, PRODUCTION = "v1.44.0", "v1.44.1"


def _launch_deploy(portal: PortalPage, version: str, environment: str) -> str:
    """From payments' entity page: the Deploy service form, filled and submitted; the run's id."""
    portal.follow(
        lambda: portal.by_testid("action-link").filter(has_text=DEPLOY_SERVICE).click(),
        url=re.compile(r".*/actions/deploy_service/launch\?entity=payments$"),
    )
    form = portal.by_testid("action-form")
    form.get_by_label("Version").fill(version)
    form.get_by_label("Environment").select_option(environment)
    portal.readme_shot("form")
    portal.follow(lambda: form.get_by_role("button", name=re.compile("^Run ")).click(), url=RUN_URL)
    match = RUN_URL.match(portal.page.url)
    assert match
    return match.group(1)


def _mark_document(portal: PortalPage) -> None:
    """A flag on this document's window: a reload or a navigation would drop it."""
    portal.page.evaluate("window.__notReloaded = true")


def _still_same_document(portal: PortalPage) -> bool:
    return bool(portal.page.evaluate("window.__notReloaded === true"))


def test_a_newcomer_signs_in_deploys_gets_an_approval_and_reads_readiness(
    live_portal: LivePortal, open_portal: Callable[..., PortalPage]
) -> None:
    assert live_portal.sign_in_link, f"make run printed no sign-in link:\n{live_portal.output()}"
    newcomer = open_portal()
    link = live_portal.sign_in_link

    # The printed link signs the dev admin in (a one-time code, not the token).
    assert live_portal.admin_token not in link
    newcomer.follow(lambda: newcomer.page.goto(link), url="/catalog")
    expect(newcomer.page.get_by_role("button", name="Sign out")).to_be_visible()
    newcomer.readme_shot("catalog")

    # Finds payments: the services table, searched.
    newcomer.follow(
        lambda: newcomer.page.get_by_role("link", name="Service", exact=True).click(), url="/catalog/service"
    )
    newcomer.page.get_by_label("Search identifiers and titles").fill("pay")
    newcomer.follow(
        lambda: newcomer.page.get_by_role("button", name="Apply").click(),
        url=re.compile(r".*/catalog/service\?.*"),
    )
    rows = newcomer.by_testid("entity-row")
    expect(rows.first).to_be_visible()
    assert set(rows.locator("td:first-child").all_inner_texts()) == {"payments", "payouts"}
    newcomer.follow(
        lambda: rows.get_by_role("link", name="payments", exact=True).click(), url="/catalog/service/payments"
    )
    newcomer.readme_shot("entity")

    # Deploys it to staging from the form and watches the run finish, without a reload.
    staging_run = _launch_deploy(newcomer, STAGING, "staging")
    _mark_document(newcomer)
    expect(newcomer.by_testid("run-status")).to_have_text("SUCCESS", timeout=60_000)
    expect(newcomer.by_testid("run-log")).to_contain_text("deploy")
    assert _still_same_document(newcomer), "the run page reloaded to show the end"
    run = wait_for_run(live_portal, staging_run, "SUCCESS")
    assert run["source"] == "UI" and run["inputs"] == {"version": STAGING, "environment": "staging"}
    newcomer.goto(f"/runs/{staging_run}")  # as it stays: the ended run, its steps and log
    newcomer.readme_shot("run")
    deployment = live_portal.api.get(f"/v1/blueprints/deployment/entities/payments-staging-{STAGING}")
    assert deployment.status_code == 200, "the run recorded the deployment in the catalog"

    # A production deploy waits for someone else: the requester may not approve it.
    newcomer.follow(
        lambda: newcomer.page.get_by_role("link", name="payments").first.click(),
        url="/catalog/service/payments",
    )
    production_run = _launch_deploy(newcomer, PRODUCTION, "production")
    expect(newcomer.by_testid("run-status")).to_have_text("WAITING_FOR_APPROVAL", timeout=30_000)
    expect(newcomer.by_testid("approve-button")).to_have_count(0)
    _mark_document(newcomer)
    lines_before = newcomer.by_testid("run-log").locator(".line").count()

    # Erin (platform) approves it from her inbox.
    erin = open_portal("erin")
    erin.follow(lambda: erin.page.get_by_role("link", name="Approvals").click(), url="/approvals")
    item = erin.by_testid("approval-item").filter(has=erin.page.locator(f'a[href="/runs/{production_run}"]'))
    expect(item).to_have_count(1)
    expect(item).to_contain_text(PRODUCTION)
    erin.readme_shot("inbox")
    item.get_by_label("Comment").fill("Go ahead")
    erin.follow(lambda: item.get_by_test_id("approve-button").click(), url="/approvals")
    expect(erin.page.locator(f'a[href="/runs/{production_run}"]')).to_have_count(0)

    # The requester's open run page follows it to the end on its own.
    expect(newcomer.by_testid("run-status")).to_have_text("SUCCESS", timeout=60_000)
    assert _still_same_document(newcomer)
    assert newcomer.by_testid("run-log").locator(".line").count() > lines_before, "the log grew live"
    run = wait_for_run(live_portal, production_run, "SUCCESS")
    assert [(a["user"], a.get("comment")) for a in run["approval"]["approvals"]] == [("erin", "Go ahead")]

    # The readiness distribution.
    newcomer.follow(lambda: newcomer.page.get_by_role("link", name="Scorecards").click(), url="/scorecards")
    newcomer.follow(
        lambda: newcomer.page.get_by_role("link", name="Production readiness").click(),
        url="/scorecards/service/production_readiness",
    )
    chart = newcomer.by_testid("scorecard-chart")
    expect(chart).to_be_visible()
    expect(newcomer.page.get_by_role("heading", name=re.compile(r"Levels \(7 entities\)"))).to_be_visible()
    newcomer.readme_shot("scorecard")

    # The link was single use.
    again = open_portal()
    again.follow(lambda: again.page.goto(link), url=re.compile(r".*/login\?code=.*"), status=400)
    expect(again.page.get_by_role("alert")).to_contain_text("used")
