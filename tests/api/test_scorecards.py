"""Scorecards: level semantics, filters, regrading, results, search filters, history, events and
action preconditions — on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

READINESS: dict[str, Any] = {
    "identifier": "production_readiness",
    "title": "Production readiness",
    "filter": {"combinator": "and", "rules": [{"property": "language", "operator": "isNotEmpty"}]},
    "levels": [{"title": "Basic"}, {"title": "Bronze"}, {"title": "Silver"}, {"title": "Gold"}],
    "rules": [
        {
            "identifier": "has_owner",
            "title": "Has an owning team",
            "level": "Bronze",
            "query": {"combinator": "and", "rules": [{"property": "$team", "operator": "isNotEmpty"}]},
        },
        {
            "identifier": "has_repo",
            "level": "Silver",
            "query": {"combinator": "and", "rules": [{"property": "repo", "operator": "isNotEmpty"}]},
        },
        {
            "identifier": "tier_set",
            "level": "Gold",
            "query": {"combinator": "and", "rules": [{"property": "tier", "operator": "<=", "value": 2}]},
        },
    ],
}


def level_of(client: TestClient, identifier: str) -> str | None:
    entity = client.get(f"/v1/blueprints/service/entities/{identifier}").json()
    return entity["scorecards"].get("production_readiness", {}).get("level")


def put(client: TestClient, identifier: str, **fields: Any) -> None:
    body = {"identifier": identifier, "properties": {"language": "go"}, **fields}
    response = client.post("/v1/blueprints/service/entities?upsert=true", json=body)
    assert response.status_code in (200, 201), response.text


def test_levels_follow_rules_and_lower_failures_cap_the_level(catalog: TestClient) -> None:
    put(catalog, "bare")
    put(catalog, "owned", team=["payments-team"])
    put(
        catalog,
        "gold",
        team=["payments-team"],
        properties={"language": "go", "repo": "https://x.example", "tier": 1},
    )
    put(catalog, "no-owner", properties={"language": "go", "repo": "https://x.example", "tier": 1})
    assert catalog.post("/v1/blueprints/service/scorecards", json=READINESS).status_code == 201
    assert level_of(catalog, "bare") == "Basic"
    assert level_of(catalog, "owned") == "Bronze"
    assert level_of(catalog, "gold") == "Gold"
    # passes the Silver and Gold rules, but not Bronze's: held at the floor
    assert level_of(catalog, "no-owner") == "Basic"
    rules = catalog.get("/v1/blueprints/service/entities/no-owner").json()["scorecards"][
        "production_readiness"
    ]["rules"]
    assert {r["identifier"]: r["status"] for r in rules} == {
        "has_owner": "FAILURE",
        "has_repo": "SUCCESS",
        "tier_set": "SUCCESS",
    }

    # an entity write regrades it in the same transaction, and a drop is an event
    put(catalog, "gold", team=["payments-team"], properties={"language": "go", "tier": 1})
    assert level_of(catalog, "gold") == "Bronze"
    events = catalog.get("/v1/events?type=SCORECARD_LEVEL_CHANGED&entity=gold").json()["items"]
    assert events[0]["scorecard"] == {
        "identifier": "production_readiness",
        "from": "Gold",
        "to": "Bronze",
        "direction": "DROPPED",
    }
    history = catalog.get("/v1/blueprints/service/scorecard-history?entity=gold").json()["items"]
    assert [(h["from"], h["to"]) for h in history] == [(None, "Gold"), ("Gold", "Bronze")]

    results = catalog.get("/v1/blueprints/service/scorecards/production_readiness/results").json()
    assert results["distribution"] == {"Basic": 2, "Bronze": 2, "Silver": 0, "Gold": 0}
    assert {r["identifier"]: r["passed"] for r in results["rules"]} == {
        "has_owner": 2,
        "has_repo": 1,
        "tier_set": 2,
    }
    assert results["total"] == 4 and len(results["items"]) == 4

    search = {
        "query": {
            "combinator": "and",
            "rules": [{"scorecard": "production_readiness", "operator": ">=", "value": "Bronze"}],
        }
    }
    found = catalog.post("/v1/entities/search", json=search).json()["items"]
    assert sorted(e["identifier"] for e in found) == ["gold", "owned"]


def test_changing_rules_regrades_everyone_and_filters_choose_who(catalog: TestClient) -> None:
    put(catalog, "a", team=["payments-team"])
    put(catalog, "b")
    assert catalog.post("/v1/blueprints/service/scorecards", json=READINESS).status_code == 201
    assert level_of(catalog, "a") == "Bronze"
    easier = {
        **READINESS,
        "rules": [
            {**READINESS["rules"][0], "query": {"combinator": "and", "rules": []}},
            *READINESS["rules"][1:],
        ],
    }
    assert (
        catalog.put("/v1/blueprints/service/scorecards/production_readiness", json=easier).status_code == 200
    )
    assert level_of(catalog, "b") == "Bronze"
    assert (
        catalog.get("/v1/events?type=SCORECARD_LEVEL_CHANGED&entity=b").json()["items"][0]["scorecard"][
            "direction"
        ]
        == "RAISED"
    )
    only_tier_one = {
        **READINESS,
        "filter": {"combinator": "and", "rules": [{"property": "tier", "operator": "=", "value": 1}]},
    }
    catalog.put("/v1/blueprints/service/scorecards/production_readiness", json=only_tier_one)
    assert level_of(catalog, "a") is None  # not graded any more


def test_bad_scorecards_are_422(catalog: TestClient) -> None:
    bad = {
        **READINESS,
        "levels": [{"title": "Basic"}, {"title": "Basic"}],
        "rules": [
            {"identifier": "x", "level": "Basic", "query": {"combinator": "xor", "rules": []}},
            {"identifier": "x", "level": "Platinum", "query": {"combinator": "and", "rules": []}},
        ],
    }
    response = catalog.post("/v1/blueprints/service/scorecards", json=bad)
    assert response.status_code == 422
    pointers = {d["pointer"] for d in response.json()["error"]["details"]}
    assert {
        "/levels/1/title",
        "/rules/0/level",
        "/rules/0/query/combinator",
        "/rules/1/identifier",
        "/rules/1/level",
    } <= pointers


def test_action_preconditions_refuse_with_the_failing_rules(catalog: TestClient) -> None:
    catalog.post("/v1/blueprints/service/scorecards", json=READINESS)
    put(catalog, "payments", team=["payments-team"])
    action = {
        "identifier": "deploy",
        "title": "Deploy",
        "blueprint": "service",
        "trigger": {"operation": "DAY-2"},
        "preconditions": {"scorecards": {"production_readiness": "Silver"}},
        "steps": [{"id": "s", "uses": "sleep", "with": {"duration": "PT1S"}}],
    }
    assert catalog.post("/v1/actions", json=action).status_code == 201
    refused = catalog.post("/v1/actions/deploy/runs", json={"entity": "payments"})
    assert refused.status_code == 409
    (detail,) = refused.json()["error"]["details"]
    assert detail["pointer"] == "/preconditions/scorecards/production_readiness"
    assert detail["message"] == "needs Silver, entity is Bronze; failing rules: has_repo"
    unknown = {**action, "identifier": "deploy2", "preconditions": {"scorecards": {"nope": "Gold"}}}
    assert catalog.post("/v1/actions", json=unknown).status_code == 422


LEDGER: dict[str, Any] = {
    "identifier": "ledger",
    "title": "Ledger",
    "schema": {"properties": {"tier": {"type": "integer"}}},
    "permissions": {"read": {"owned_by_team": True}},
}
TIERED: dict[str, Any] = {
    "identifier": "tiered",
    "title": "Tiered",
    "levels": [{"title": "Low"}, {"title": "High"}],
    "rules": [
        {
            "identifier": "high",
            "level": "High",
            "query": {"combinator": "and", "rules": [{"property": "tier", "operator": ">=", "value": 2}]},
        }
    ],
}
TIERED_RESULTS = "/v1/blueprints/ledger/scorecards/tiered/results"


def _result_pages(client: TestClient, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every page of the tiered results, two entities at a time, following ``next_cursor``."""
    pages: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 2}
    while len(pages) < 100:
        response = client.get(TIERED_RESULTS, params=params, headers=headers)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        if pages[-1]["next_cursor"] is None:
            return pages
        params["cursor"] = pages[-1]["next_cursor"]
    raise AssertionError("the results never end")


def test_results_page_by_cursor_over_what_the_caller_may_read(catalog: TestClient) -> None:
    assert catalog.post("/v1/blueprints", json=LEDGER).status_code == 201
    for i in range(5):
        team = ["payments-team"] if i % 2 == 0 else []
        body = {"identifier": f"led-{i}", "team": team, "properties": {"tier": i}}
        assert catalog.post("/v1/blueprints/ledger/entities", json=body).status_code == 201
    assert catalog.post("/v1/blueprints/ledger/scorecards", json=TIERED).status_code == 201
    token = catalog.post("/v1/tokens", json={"user": "bob"})
    assert token.status_code == 201, token.text
    bob = {"Authorization": f"Bearer {token.json()['token']}"}

    # the admin walks every entity once, in identifier order; the counts cover all, on every page
    pages = _result_pages(catalog)
    assert [[i["entity"] for i in p["items"]] for p in pages] == [
        ["led-0", "led-1"],
        ["led-2", "led-3"],
        ["led-4"],
    ]
    assert all(p["total"] == 5 and p["distribution"] == {"Low": 2, "High": 3} for p in pages)
    assert all(p["rules"][0]["passed"] == 3 for p in pages)

    # bob (payments-team) reads only his team's ledger entities: the pages and the counts alike
    pages = _result_pages(catalog, bob)
    assert [[i["entity"] for i in p["items"]] for p in pages] == [["led-0", "led-2"], ["led-4"]]
    assert all(p["total"] == 3 and p["distribution"] == {"Low": 1, "High": 2} for p in pages)

    # a keyset does not shift: deleting an entity already seen skips nothing on the next page
    first = catalog.get(TIERED_RESULTS, params={"limit": 2}).json()
    assert catalog.delete("/v1/blueprints/ledger/entities/led-0").status_code == 204
    second = catalog.get(TIERED_RESULTS, params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [i["entity"] for i in second["items"]] == ["led-2", "led-3"] and second["total"] == 4

    # a cursor this API did not make, or a limit out of range, is a 422 naming it
    for params, pointer in (({"cursor": "WzFd"}, "/cursor"), ({"cursor": "nope"}, "/cursor")):
        refused = catalog.get(TIERED_RESULTS, params=params)
        assert refused.status_code == 422
        assert [d["pointer"] for d in refused.json()["error"]["details"]] == [pointer]
    refused = catalog.get(TIERED_RESULTS, params={"limit": 0})
    assert refused.status_code == 422, refused.text
    assert [d["pointer"] for d in refused.json()["error"]["details"]] == ["/limit"]
    # ``offset`` is gone, not a second way to page: the first page is the first page
    assert catalog.get(TIERED_RESULTS, params={"offset": 2}).json()["items"][0]["entity"] == "led-1"
