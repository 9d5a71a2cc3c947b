"""Exemption requests in the approvals inbox, on Temporal's time-skipping server with the real
API (served over HTTP), worker and workflows: the blueprint's moderator finds the request (with
its entity, rule, reason and date) next to run approvals, approves it from the inbox through the
run's approval Update, and the exemption becomes APPROVED with the rule EXEMPT; a second decision
is shown as refused; the requester and a member of another team never see it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.exemptions.test_workflow import ask, card, exemption_stack, status_of
from tests.temporal_env import start_time_skipping
from tests.workflows.conftest import stack_settings


@pytest.fixture
async def skipping() -> AsyncIterator[WorkflowEnvironment]:
    async with start_time_skipping() as env:
        yield env


@pytest.fixture
async def people(tmp_path: Path, skipping: WorkflowEnvironment) -> AsyncIterator[dict[str, Any]]:
    settings = stack_settings(tmp_path, skipping, temporal_search_attributes=False)
    async with exemption_stack(settings, skipping) as clients:
        yield clients


async def signed_in(people: dict[str, Any], user: str) -> httpx.AsyncClient:
    """A browser-like client of the portal: the sign-in form with the user's token, then only
    the session cookie."""
    api: httpx.AsyncClient = people[user]
    browser = httpx.AsyncClient(base_url=str(api.base_url))
    token = api.headers["Authorization"].removeprefix("Bearer ")
    answer = await browser.post("/login", data={"token": token})
    assert answer.status_code == 303, answer.text
    return browser


def csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found
    return found.group(1)


async def test_a_moderator_approves_an_exemption_request_from_the_inbox(people: dict[str, Any]) -> None:
    exemption = await ask(people)  # olive (owner of pay) asks; its approval run waits
    mo, olive, oscar = [await signed_in(people, u) for u in ("mo", "olive", "oscar")]
    try:
        inbox = (await mo.get("/approvals")).text
        item = re.search(
            rf'<article class="card" data-testid="exemption-item" data-exemption="{exemption["id"]}">(.*?)</article>',
            inbox,
            re.S,
        )
        assert item, inbox
        shown = item.group(1)
        assert 'href="/catalog/service/pay"' in shown and "<code>has_repo</code>" in shown
        assert "the repository moves next month" in shown and "olive" in shown
        assert f'action="/runs/{exemption["run_id"]}/approval"' in shown
        assert 'data-testid="approval-item"' not in inbox  # not listed again as a run
        for other in (olive, oscar):  # the requester, a member of another team
            assert exemption["id"] not in (await other.get("/approvals")).text

        decided = await mo.post(
            f"/runs/{exemption['run_id']}/approval",
            data={"csrf_token": csrf(inbox), "decision": "APPROVE", "comment": "a month", "back": "inbox"},
        )
        assert decided.status_code == 303 and decided.headers["location"] == "/approvals"
        assert (await status_of(people, exemption, "APPROVED"))["decided_by"] == "mo"
        assert (await card(people))["has_repo"] == "EXEMPT"
        entity = (await mo.get("/catalog/service/pay")).text
        rule = re.search(r'<li class="rule-exempt">(.*?)</li>', entity, re.S)
        assert rule and "has_repo" in rule.group(1) and "the repository moves next month" in rule.group(1)
        after = (await mo.get("/approvals")).text
        assert exemption["id"] not in after and 'data-testid="no-exemption-approvals"' in after

        again = await mo.post(
            f"/runs/{exemption['run_id']}/approval",
            data={"csrf_token": csrf(after), "decision": "DECLINE", "comment": ""},
        )
        assert again.status_code in (403, 409) and "Decision refused" in again.text
        assert (await status_of(people, exemption, "APPROVED"))["decided_by"] == "mo"
    finally:
        for browser in (mo, olive, oscar):
            await browser.aclose()
