"""Action forms and runs in Chromium: the browser's own check of a pattern, the API's 422 shown
next to the field with no run created, buttons hidden from who may not use them (and their
routes refusing them anyway), a decline from the inbox that the requester's open run page
shows on its own, and an exemption request declined from the inbox after a look at the
initiative it would help."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from playwright.sync_api import expect

from devtools.testing import eventually
from tests.web.conftest import DEPLOY_SERVICE, LivePortal, PortalPage, wait_for_run

pytestmark = [pytest.mark.slow, pytest.mark.temporal]

FORM = "/actions/deploy_service/launch?entity=payments"
RUN_URL = re.compile(r".*/runs/(r_[^/?#]+)$")


def _deploys_of_payments(live_portal: LivePortal) -> int:
    return len(live_portal.runs(action="deploy_service", entity="payments"))


def test_the_form_is_generated_from_user_inputs(open_portal: Callable[..., PortalPage]) -> None:
    bob = open_portal("bob")
    bob.goto(FORM)
    form = bob.by_testid("action-form")
    version = form.get_by_label("Version")
    expect(version).to_have_attribute("required", "")
    expect(version).to_have_attribute("data-pattern", re.compile(r"v\[0-9\]"))
    expect(form.get_by_text("A release tag such as v1.43.0.")).to_be_visible()
    environment = form.get_by_label("Environment")
    assert environment.evaluate("node => node.tagName") == "SELECT"
    assert environment.locator("option").all_inner_texts() == ["staging", "production"]


def test_a_422_is_shown_next_to_the_field_and_nothing_is_launched(
    live_portal: LivePortal, open_portal: Callable[..., PortalPage]
) -> None:
    bob = open_portal("bob")
    bob.goto(FORM)
    before = _deploys_of_payments(live_portal)
    form = bob.by_testid("action-form")
    form.get_by_label("Version").fill("1.2")
    form.get_by_label("Environment").select_option("staging")

    # The browser checks the pattern first: no request leaves.
    form.get_by_role("button", name=re.compile("^Run ")).click()
    # (the schema's pattern, checked by the page's script as the API checks it: a custom validity)
    assert form.get_by_label("Version").evaluate("node => node.validity.customError")
    assert bob.page.url == bob.url(FORM)

    # Without the browser's check, the API's 422 comes back next to the field.
    form.evaluate("node => { node.noValidate = true }")
    bob.follow(
        lambda: form.get_by_role("button", name=re.compile("^Run ")).click(),
        url="/actions/deploy_service/launch",
        status=422,
    )
    error = bob.page.locator("#error-version")
    expect(error).to_be_visible()
    expect(error).to_contain_text(re.compile(r"pattern|match", re.IGNORECASE))
    version = bob.by_testid("action-form").get_by_label("Version")
    expect(version).to_have_value("1.2")
    expect(version).to_have_attribute("aria-invalid", "true")
    assert _deploys_of_payments(live_portal) == before


def test_buttons_are_hidden_from_who_may_not_use_them_and_their_routes_refuse(
    live_portal: LivePortal, open_portal: Callable[..., PortalPage]
) -> None:
    # A viewer: no action on any entity, and the form itself is refused.
    dana = open_portal("dana")
    dana.goto("/catalog/service/payments")
    expect(dana.by_testid("action-link")).to_have_count(0)
    dana.goto(FORM, status=403)
    # A member of other teams: no deploy of payments, but of the service carol's team owns.
    carol = open_portal("carol")
    carol.goto("/catalog/service/payments")
    expect(carol.by_testid("action-link").filter(has_text=DEPLOY_SERVICE)).to_have_count(0)
    carol.goto("/catalog/service/checkout")
    expect(carol.by_testid("action-link").filter(has_text=DEPLOY_SERVICE)).to_be_visible()
    carol.goto(FORM, status=404)  # an action she may not see on it: not there for her

    # A run waiting for approval: its requester may cancel but not approve it; a viewer may do neither.
    launched = live_portal.client("bob").post(
        "/v1/actions/deploy_service/runs",
        json={"entity": "payments", "inputs": {"version": "v2.0.0", "environment": "production"}},
    )
    assert launched.status_code == 202, launched.text
    run_id = launched.json()["id"]
    wait_for_run(live_portal, run_id, "WAITING_FOR_APPROVAL")
    bob = open_portal("bob")
    bob.goto(f"/runs/{run_id}")
    expect(bob.by_testid("cancel-button")).to_be_visible()
    expect(bob.by_testid("approve-button")).to_have_count(0)
    bob.goto("/approvals")
    expect(bob.page.locator(f'a[href="/runs/{run_id}"]')).to_have_count(0)
    # The platform team approves production deploys: erin sees the buttons.
    erin = open_portal("erin")
    erin.goto(f"/runs/{run_id}")
    expect(erin.by_testid("approve-button")).to_be_visible()
    expect(erin.by_testid("decline-button")).to_be_visible()
    # A viewer who may not see the action does not learn the run exists.
    dana.goto(f"/runs/{run_id}", status=404)
    expect(dana.by_testid("run-status")).to_have_count(0)

    # The requester cancels it from the run page.
    bob.goto(f"/runs/{run_id}")
    bob.follow(lambda: bob.by_testid("cancel-button").click(), url=f"/runs/{run_id}")
    wait_for_run(live_portal, run_id, "CANCELLED")
    expect(bob.by_testid("run-status")).to_have_text("CANCELLED", timeout=30_000)


def test_a_decline_from_the_inbox_reaches_the_requesters_open_run_page(
    live_portal: LivePortal, open_portal: Callable[..., PortalPage]
) -> None:
    bob = open_portal("bob")
    bob.goto(FORM)
    form = bob.by_testid("action-form")
    form.get_by_label("Version").fill("v2.1.0")
    form.get_by_label("Environment").select_option("production")
    bob.follow(lambda: form.get_by_role("button", name=re.compile("^Run ")).click(), url=RUN_URL)
    match = RUN_URL.match(bob.page.url)
    assert match
    run_id = match.group(1)
    expect(bob.by_testid("run-status")).to_have_text("WAITING_FOR_APPROVAL", timeout=30_000)
    bob.page.evaluate("window.__notReloaded = true")

    alice = open_portal("alice")
    alice.goto("/approvals")
    item = alice.by_testid("approval-item").filter(has=alice.page.locator(f'a[href="/runs/{run_id}"]'))
    item.get_by_label("Comment").fill("Not during the freeze")
    alice.follow(lambda: item.get_by_test_id("decline-button").click(), url="/approvals")

    expect(bob.by_testid("run-status")).to_have_text("DECLINED", timeout=30_000)
    assert bob.page.evaluate("window.__notReloaded === true"), "no reload"
    run = wait_for_run(live_portal, run_id, "DECLINED")
    assert run["source"] == "UI"
    # Deciding again is refused, and said so.
    answer = alice.page.request.post(
        alice.url(f"/runs/{run_id}/approval"),
        form={"decision": "APPROVE", "comment": "", "csrf_token": _csrf(alice)},
        max_redirects=0,
    )
    assert answer.status == 409 and "Decision refused" in answer.text(), (answer.status, answer.text())
    alice.goto(f"/runs/{run_id}")
    expect(alice.by_testid("approve-button")).to_have_count(0)


def _csrf(portal: PortalPage) -> str:
    return str(portal.page.locator("input[name=csrf_token]").first.get_attribute("value"))


def test_a_create_form_types_its_inputs_and_the_new_environment_counts_down_and_extends(
    live_portal: LivePortal, open_portal: Callable[..., PortalPage]
) -> None:
    name = f"pr-{uuid.uuid4().hex[:6]}"
    carol = open_portal("carol")
    carol.goto("/catalog/environment")
    carol.follow(
        lambda: carol.page.get_by_role("link", name="Create environment").click(),
        url="/actions/create_environment/launch",
    )
    form = carol.by_testid("action-form")
    service = form.get_by_label("Service")  # format: entity, a picker of the services she reads
    picks = form.locator(f"datalist#{service.get_attribute('list')} option")
    assert "checkout" in [option.get_attribute("value") for option in picks.all()]
    days = form.get_by_label("Days to live")
    expect(days).to_have_attribute("type", "number")
    expect(days).to_have_attribute("min", "1")
    expect(days).to_have_attribute("max", "14")
    expect(days).to_have_value("5")  # the default
    expect(form.get_by_label("Size")).to_have_value("small")
    expect(form.get_by_label("Name")).to_have_attribute("data-pattern", re.compile(r"\[a-z\]"))

    service.fill("checkout")
    form.get_by_label("Name").fill(name)
    days.fill("3")
    form.get_by_label("Size").select_option("medium")
    carol.follow(lambda: form.get_by_role("button", name=re.compile("^Run ")).click(), url=RUN_URL)
    match = RUN_URL.match(carol.page.url)
    assert match
    run = wait_for_run(live_portal, match.group(1), "SUCCESS", timeout=90)
    assert run["inputs"] == {"service": "checkout", "name": name, "ttl_days": 3, "size": "medium"}

    # The new environment's timer counts down; an admin extends it from its page (it has no
    # owning team, so only moderators and admins may change it).
    before = live_portal.api.get(f"/v1/blueprints/environment/entities/{name}").json()["properties"][
        "expires_at"
    ]
    carol.goto(f"/catalog/environment/{name}")
    timers = carol.page.get_by_role("region", name="Timers")
    expect(timers.locator("time[data-countdown]").first).to_have_text(re.compile(r"^in 2d 23h \d+m$"))
    expect(timers.get_by_test_id("extend-button")).to_have_count(0)
    alice = open_portal("alice")
    alice.goto(f"/catalog/environment/{name}")
    timers = alice.page.get_by_role("region", name="Timers")
    timers.get_by_label("Extend by").select_option("P1D")
    alice.follow(
        lambda: timers.get_by_test_id("extend-button").click(),
        url=re.compile(rf".*/catalog/environment/{name}#timers$"),
    )
    after = live_portal.api.get(f"/v1/blueprints/environment/entities/{name}").json()["properties"][
        "expires_at"
    ]
    moved = datetime.fromisoformat(after) - datetime.fromisoformat(before)
    assert moved == timedelta(days=1), (before, after)
    expect(timers.locator("time[data-countdown]").first).to_have_text(re.compile(r"^in 3d 23h \d+m$"))


def test_an_initiatives_progress_then_an_exemption_request_declined_from_the_inbox(
    live_portal: LivePortal, open_portal: Callable[..., PortalPage]
) -> None:
    """Bob (payments-team) asks to exempt payments from a readiness rule; Alice (admin) reads the
    production-ready initiative from the scorecards page, then declines the request from her
    inbox (declined, so the other tests' payments keeps its grades)."""
    expires = (datetime.now().astimezone() + timedelta(days=14)).isoformat()
    with live_portal.client("bob") as bob_api:
        asked = bob_api.post(
            "/v1/blueprints/service/scorecards/production_readiness/exemptions",
            json={
                "entity": "payments",
                "rule": "has_on_call",
                "reason": "<b>rota</b> next week",
                "expires_at": expires,
            },
        )
    assert asked.status_code == 201, asked.text
    exemption = asked.json()
    eventually(
        lambda: (
            (live_portal.api.get(f"/v1/runs/{exemption['run_id']}").json().get("approval") or {}).get(
                "status"
            )
            == "PENDING"
        ),
        what="the exemption's approval to wait for its approvers",
    )

    alice = open_portal("alice")
    alice.goto("/scorecards")
    initiative = alice.page.locator('[data-initiative="production-ready"]')
    expect(initiative.locator("progress")).to_have_count(1)
    alice.follow(
        lambda: initiative.get_by_role("link", name=re.compile("production-ready", re.I)).first.click(),
        url="/initiatives/production-ready",
    )
    expect(alice.by_testid("initiative-progress")).to_be_visible()
    expect(alice.by_testid("initiative-teams").locator("tbody tr").first).to_be_visible()
    failing = alice.by_testid("initiative-failing").get_by_role("link", name="payouts")
    alice.follow(lambda: failing.click(), url="/catalog/service/payouts")
    # A failing rule offers the exemption form (folded), checked with the page by axe.
    asking = alice.by_testid("exemption-form").first
    expect(asking).to_be_hidden()
    asking.locator("xpath=..").locator("summary").click()
    expect(asking.get_by_label("Reason")).to_be_visible()

    alice.goto("/approvals")
    item = alice.page.locator(f'[data-exemption="{exemption["id"]}"]')
    expect(item).to_contain_text("<b>rota</b> next week")  # shown as text
    expect(item.locator("code")).to_have_text("has_on_call")
    item.get_by_label("Comment").fill("Set up the rota first")
    alice.follow(lambda: item.get_by_test_id("decline-button").click(), url="/approvals")
    expect(alice.page.locator(f'[data-exemption="{exemption["id"]}"]')).to_have_count(0)
    base = "/v1/blueprints/service/scorecards/production_readiness/exemptions"
    decided = eventually(
        lambda: (
            (found := live_portal.api.get(f"{base}/{exemption['id']}").json())["status"] == "DECLINED"
            and found
        ),
        what="the exemption to be declined",
    )
    assert decided["decided_by"] == "alice"
