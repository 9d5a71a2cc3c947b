"""Exemptions in the portal, on Temporal's time-skipping server with the real API (served over
HTTP), worker and workflows: the entity's owner asks from the entity page (the failing rule's
form); the blueprint's moderator finds the request (entity, rule, reason, date) in the approvals
inbox next to run approvals and approves it through the run's approval Update; the rule shows
EXEMPT with its reason; a second decision is shown as refused; the requester revokes it from the
entity page (another team's member may not). The requester and another team never see it in
their inbox."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from catalog.db import utcnow
from devtools.testing import eventually_async
from tests.exemptions.conftest import BASE
from tests.exemptions.test_workflow import card, exemption_stack, status_of
from tests.temporal_env import start_time_skipping
from tests.workflows.conftest import stack_settings

REASON = "the repository <b>moves</b> next month"
SHOWN = "the repository &lt;b&gt;moves&lt;/b&gt; next month"  # as text, never markup


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


async def test_asked_from_the_entity_page_approved_from_the_inbox_and_revoked(people: dict[str, Any]) -> None:
    mo, olive, oscar = [await signed_in(people, u) for u in ("mo", "olive", "oscar")]
    try:
        # olive (owner of pay) asks from the entity page: the failing rule's form
        page = (await olive.get("/catalog/service/pay")).text
        assert 'data-testid="exemption-form"' in page
        assert 'data-testid="exemption-form"' not in (await oscar.get("/catalog/service/pay")).text
        until = (utcnow() + timedelta(days=10)).date().isoformat()
        asked = await olive.post(
            "/catalog/service/pay/scorecards/readiness/exemptions",
            data={"csrf_token": csrf(page), "rule": "has_repo", "reason": REASON, "until": until},
        )
        assert asked.status_code == 303 and asked.headers["location"].startswith("/runs/"), asked.text
        listed = (await people["admin"].get(BASE, params={"entity": "pay"})).json()["items"]
        (exemption,) = listed
        assert exemption["status"] == "PENDING" and exemption["requested_by"] == "olive"
        assert exemption["expires_at"].startswith(
            (utcnow() + timedelta(days=11)).date().isoformat()
        )  # the end of the day asked for
        assert asked.headers["location"] == f"/runs/{exemption['run_id']}"
        await gate_open(people, exemption)
        pending = (await olive.get("/catalog/service/pay")).text
        assert 'data-testid="exemption-pending"' in pending and exemption["run_id"] in pending

        inbox = (await mo.get("/approvals")).text
        item = re.search(
            rf'<article class="card" data-testid="exemption-item" data-exemption="{exemption["id"]}">(.*?)</article>',
            inbox,
            re.S,
        )
        assert item, inbox
        shown = item.group(1)
        assert 'href="/catalog/service/pay"' in shown and "<code>has_repo</code>" in shown
        assert SHOWN in shown and REASON not in shown and "olive" in shown
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
        after = (await mo.get("/approvals")).text
        assert exemption["id"] not in after and 'data-testid="no-exemption-approvals"' in after
        again = await mo.post(
            f"/runs/{exemption['run_id']}/approval",
            data={"csrf_token": csrf(after), "decision": "DECLINE", "comment": ""},
        )
        assert again.status_code in (403, 409) and "Decision refused" in again.text

        # the entity page: EXEMPT with its reason; olive (the requester) may revoke it, oscar not
        entity = (await olive.get("/catalog/service/pay")).text
        rule = re.search(r'<li class="rule-exempt">(.*?)</li>', entity, re.S)
        assert rule and "has_repo" in rule.group(1) and SHOWN in rule.group(1)
        assert 'data-testid="revoke-exemption"' in rule.group(1)
        assert 'data-testid="revoke-exemption"' not in (await oscar.get("/catalog/service/pay")).text
        revoke = f"/catalog/service/pay/exemptions/{exemption['id']}/revoke"
        forged = await oscar.post(revoke, data={"csrf_token": csrf(await _text(oscar, "/catalog"))})
        assert forged.status_code == 403
        revoked = await olive.post(revoke, data={"csrf_token": csrf(entity)})
        assert revoked.status_code == 303
        await status_of(people, exemption, "REVOKED")
        assert (await card(people))["has_repo"] == "FAILURE"
    finally:
        for browser in (mo, olive, oscar):
            await browser.aclose()


async def _text(client: httpx.AsyncClient, path: str) -> str:
    return (await client.get(path)).text


async def gate_open(people: dict[str, Any], exemption: dict[str, Any]) -> None:
    async def opened() -> bool:
        run = (await people["admin"].get(f"/v1/runs/{exemption['run_id']}")).json()
        return (run.get("approval") or {}).get("status") == "PENDING"

    await eventually_async(opened, what="the approval run to wait for its approvers")
