"""The example portal's initiative applies with ``gantry apply`` (its workflow started on a dev
server), shows progress over the production services, and at its deadline the events it emits
open one ticket per failing team through the portal's automation (and none for the overall one)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from catalog.automations.service import matches
from catalog.sandbox.templates import render_value
from tests.test_portal import api

pytestmark = pytest.mark.temporal
__all__ = ["api"]  # the example portal, applied to the real API on a dev server


def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def test_the_portal_initiative_and_its_tickets(api: httpx.Client) -> None:
    initiative = _ok(api.get("/v1/initiatives/production-ready"))
    assert initiative["workflow_id"] == "initiative:production-ready"
    assert initiative["remind_before"] == ["P14D", "P1D"]
    progress = _ok(api.get("/v1/initiatives/production-ready/progress"))
    production = _ok(
        api.post(
            "/v1/entities/search",
            json={"query": {"combinator": "and", "rules": [
                {"property": "$blueprint", "operator": "=", "value": "service"},
                {"property": "lifecycle", "operator": "=", "value": "production"},
            ]}, "limit": 1000},
        )
    )["items"]  # fmt: skip
    assert progress["total"] == len(production) > 0
    assert progress["total"] - progress["passing"] == len(progress["failing"])

    # Only the worker reports a deadline; the events it then emits, one per failing team and one
    # for the initiative, go through the automation's condition and templates here.
    refused = api.post("/v1/initiatives/production-ready/deadline", json={"deadline": initiative["deadline"]})
    assert refused.status_code == 403
    automation = _ok(api.get("/v1/automations/ticket_per_team_at_initiative_deadline"))
    failing_teams = sorted({t for f in progress["failing"] for t in f["team"]})
    for team in [None, *failing_teams]:
        event = {
            "type": "INITIATIVE_DEADLINE_PASSED",
            "initiative": {"identifier": "production-ready", "title": initiative["title"]},
            "team": team,
            "failing": [f["entity"] for f in progress["failing"] if team in f["team"]],
        }
        assert matches(automation["trigger"]["condition"], event) is (team is not None)
        if team is not None:
            inputs = render_value(automation["invoke"]["inputs"], {"event": event}, "/inputs")
            assert inputs["team"] == team and inputs["initiative"] == initiative["title"]
            assert inputs["failing"] == ", ".join(event["failing"])
