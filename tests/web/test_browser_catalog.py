"""The catalog in Chromium: filters built from the query language, free text, cursor paging, the
entity page (formats, relations both ways, owners, scorecards with failing rules first), data
that tries to be HTML shown as text, and the scorecard page with its drill-down."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from api.web.catalog_pages import PAGE_SIZE
from tests.web.conftest import DEPLOY_SERVICE, LivePortal, PortalPage

pytestmark = [pytest.mark.slow, pytest.mark.temporal]

TABLE = re.compile(r".*/catalog/service\?.*")


def _identifiers(portal: PortalPage) -> list[str]:
    return portal.by_testid("entity-row").locator("td:first-child").all_inner_texts()


def _add_filter(portal: PortalPage, subject: str, operator: str, value: str = "") -> None:
    portal.page.get_by_label("Filter on").select_option(subject)
    portal.page.get_by_label("Operator").select_option(operator)
    portal.page.get_by_label("Value").fill(value)
    portal.follow(lambda: portal.page.get_by_role("button", name="Apply").click(), url=TABLE)


def test_the_entity_table_filters_with_the_query_language_and_free_text(
    open_portal: Callable[..., PortalPage],
) -> None:
    carol = open_portal("carol")
    carol.goto("/catalog")
    counts = dict(
        zip(
            carol.by_testid("blueprint-row").locator("td:nth-child(2)").all_inner_texts(),
            carol.by_testid("blueprint-row").locator("td:nth-child(3)").all_inner_texts(),
            strict=True,
        )
    )
    assert counts["service"] == "7" and counts["system"] == "2"

    carol.goto("/catalog/service")
    assert len(_identifiers(carol)) == 7
    _add_filter(carol, "lifecycle", "=", "experimental")
    assert _identifiers(carol) == ["recommendations"]
    # A second filter narrows further; removing the first widens again.
    carol.goto("/catalog/service")
    _add_filter(carol, "$team", "contains", "payments-team")
    assert sorted(_identifiers(carol)) == ["ledger", "payments", "payouts"]
    _add_filter(carol, "@system", "=", "billing")
    assert set(_identifiers(carol)) <= {"ledger", "payments", "payouts"}
    expect(carol.page.get_by_label("Active filters").locator("li")).to_have_count(2)
    carol.follow(
        lambda: carol.page.get_by_role("link", name=re.compile(r"Remove filter \$team")).click(), url=TABLE
    )
    expect(carol.page.get_by_label("Active filters").locator("li")).to_have_count(1)

    carol.goto("/catalog/service")
    _add_filter(carol, "tier", "in", "1, 2")
    assert "recommendations" not in _identifiers(carol) and "payments" in _identifiers(carol)
    carol.goto("/catalog/service")
    _add_filter(carol, "runbook", "isEmpty")
    assert "payments" not in _identifiers(carol)

    # The scorecard level, and free text over identifiers and titles.
    carol.goto("/catalog/service")
    carol.page.get_by_label("Search identifiers and titles").fill("car")
    carol.follow(lambda: carol.page.get_by_role("button", name="Apply").click(), url=TABLE)
    assert _identifiers(carol) == ["cart"]
    carol.goto("/catalog/service")
    _add_filter(carol, "#production_readiness", ">=", "Basic")
    assert len(_identifiers(carol)) == 7


def test_the_entity_table_pages_with_its_cursor(
    live_portal: LivePortal, open_portal: Callable[..., PortalPage]
) -> None:
    blueprint = f"paging_{uuid.uuid4().hex[:6]}"
    created = live_portal.api.post(
        "/v1/blueprints",
        json={"identifier": blueprint, "title": "Paging probe", "schema": {"properties": {}}},
    )
    assert created.status_code == 201, created.text
    names = [f"item-{n:03d}" for n in range(PAGE_SIZE + 5)]
    bulk = live_portal.api.post(
        f"/v1/blueprints/{blueprint}/entities/bulk",
        json={"entities": [{"identifier": name, "title": name.upper()} for name in names]},
    )
    assert bulk.status_code == 207 and all(r["http_status"] < 300 for r in bulk.json()["results"]), bulk.text

    dana = open_portal("dana")
    dana.goto(f"/catalog/{blueprint}")
    first = _identifiers(dana)
    assert first == names[:PAGE_SIZE]
    dana.follow(
        lambda: dana.page.get_by_role("link", name="Next page").click(),
        url=re.compile(rf".*/catalog/{blueprint}\?.*cursor=.*"),
    )
    assert _identifiers(dana) == names[PAGE_SIZE:]
    expect(dana.page.get_by_role("link", name="Next page")).to_have_count(0)
    # Sorted the other way, the first page starts from the end.
    dana.goto(f"/catalog/{blueprint}?sort=-$identifier")
    assert _identifiers(dana)[:3] == names[::-1][:3]


def test_the_entity_page_shows_formats_relations_owners_scorecards_and_runs(
    open_portal: Callable[..., PortalPage],
) -> None:
    bob = open_portal("bob")
    bob.goto("/catalog/service/payments")
    props = bob.by_testid("entity-properties")
    expect(props.get_by_role("link", name="https://git.example.com/billing/payments")).to_be_visible()
    expect(props).to_contain_text("Payments")  # the owning team by its name
    expect(props.locator(".md").get_by_role("heading")).to_have_text(
        "Card declines spike"
    )  # markdown, rendered
    expect(props.locator(".md code")).to_have_text("make failover PSP=secondary")
    relations = bob.page.get_by_role("region", name="Relations")
    expect(relations.get_by_role("link", name="billing")).to_be_visible()
    expect(relations.get_by_role("link", name="ledger")).to_be_visible()
    bob.follow(lambda: relations.get_by_role("link", name="ledger").click(), url="/catalog/service/ledger")
    expect(
        bob.page.get_by_role("region", name="Relations").get_by_role("link", name="payments")
    ).to_be_visible()

    bob.goto("/catalog/service/payments")
    statuses = bob.page.get_by_role("region", name="Scorecards").locator(".rules .badge").all_inner_texts()
    assert statuses, "each scorecard lists its rules"
    failing = [s for s in statuses if s == "FAILURE"]
    assert statuses[: len(failing)] == failing, f"failing rules come first: {statuses}"
    expect(bob.by_testid("action-link").filter(has_text=DEPLOY_SERVICE)).to_be_visible()
    expect(bob.page.get_by_role("region", name="Audit")).to_have_count(0)  # audit is for admins


def test_data_that_looks_like_html_is_shown_as_text(
    live_portal: LivePortal, open_portal: Callable[..., PortalPage]
) -> None:
    identifier = f"xss-{uuid.uuid4().hex[:6]}"
    payload = "<script>window.__pwned = 1</script><img src=x onerror=window.__pwned=2>"
    answer = live_portal.api.post(
        "/v1/blueprints/service/entities",
        json={
            "identifier": identifier,
            "title": payload,
            "team": ["catalog-team"],
            "properties": {
                "language": "go",
                "lifecycle": "experimental",
                "runbook": f"# Runbook\n\n{payload}\n\n[x](javascript:alert(1))",
            },
        },
    )
    assert answer.status_code == 201, answer.text
    alice = open_portal("alice")
    alice.goto(f"/catalog/service/{identifier}")
    expect(alice.page.get_by_role("heading", level=1)).to_contain_text("<script>window.__pwned = 1</script>")
    assert alice.page.evaluate("window.__pwned") is None, "nothing the data carried ran"
    assert alice.page.locator("main script, main img[src=x]").count() == 0
    assert alice.page.locator('a[href^="javascript:"]').count() == 0
    expect(alice.page.get_by_role("region", name="Audit")).to_be_visible()  # an admin reads it


def test_the_scorecard_page_charts_levels_and_rules_and_drills_down_to_failing_entities(
    open_portal: Callable[..., PortalPage],
) -> None:
    dana = open_portal("dana")
    dana.goto("/scorecards")
    dana.follow(
        lambda: dana.page.get_by_role("link", name="Production readiness").click(),
        url="/scorecards/service/production_readiness",
    )
    chart = dana.by_testid("scorecard-chart")
    expect(chart).to_be_visible()
    assert chart.evaluate("node => node.tagName.toLowerCase()") == "svg"
    rates = dana.page.get_by_role("region", name="Rules").locator("meter")
    assert rates.count() >= 4
    dana.follow(
        lambda: dana.page.get_by_role("link", name="has_runbook").click(),
        url=re.compile(r".*/scorecards/service/production_readiness\?rule=has_runbook#failing$"),
    )
    failing = dana.by_testid("failing-entities").get_by_role("link").all_inner_texts()
    assert failing and "payments" not in failing, "payments has a runbook"
    dana.follow(
        lambda: dana.by_testid("failing-entities").get_by_role("link").first.click(),
        url=re.compile(r".*/catalog/service/[^/]+$"),
    )


@pytest.mark.parametrize("user", ["alice", "dana"])
def test_every_page_of_the_menu_is_clean_for_an_admin_and_a_viewer(
    open_portal: Callable[..., PortalPage], user: str
) -> None:
    portal = open_portal(user)
    menu = portal.page.get_by_role("navigation", name="Main")
    for label, path in [
        ("Runs", "/runs"),
        ("Approvals", "/approvals"),
        ("Scorecards", "/scorecards"),
        ("Timers", "/timers"),
        ("Data sources", "/data-sources"),
        ("Catalog", "/catalog"),
    ]:
        portal.follow(menu.get_by_role("link", name=label).click, url=path)
        expect(menu.get_by_role("link", name=label)).to_have_attribute("aria-current", "page")


def test_the_runs_list_filters_by_status_and_mine(
    live_portal: LivePortal, open_portal: Callable[..., PortalPage]
) -> None:
    launched = live_portal.client("bob").post(
        "/v1/actions/open_readiness_ticket/runs",
        json={"entity": "ledger", "inputs": {"reason": "browser test"}},
    )
    assert launched.status_code == 202, launched.text
    bob = open_portal("bob")
    bob.goto("/runs")
    bob.page.get_by_label("Mine only").check()
    bob.page.get_by_label("Action").fill("open_readiness_ticket")
    bob.follow(
        lambda: bob.page.get_by_role("button", name="Filter").click(), url=re.compile(r".*/runs\?.*mine=1.*")
    )
    rows = bob.by_testid("run-row")
    expect(rows.filter(has_text=launched.json()["id"])).to_have_count(1)
    assert set(rows.locator("td:nth-child(5)").all_inner_texts()) == {"bob"}
    bob.page.get_by_label("Status").select_option("CANCELLED")
    bob.follow(
        lambda: bob.page.get_by_role("button", name="Filter").click(), url=re.compile(r".*status=CANCELLED.*")
    )
    assert set(rows.locator("td:nth-child(4)").all_inner_texts()) <= {"CANCELLED"}
    expect(rows.filter(has_text=launched.json()["id"])).to_have_count(0)
