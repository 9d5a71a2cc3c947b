"""Entity ownership and blueprint permissions through the API, on SQLite and PostgreSQL.

The ``catalog`` fixture has teams, the ``service`` and ``system`` blueprints and an admin client.
Here two members of different teams, a viewer and a moderator try what the contract allows and
refuses: writes to another team's entity (403), reads of what they may not read (404, and
absent from lists, searches, counts and timers), field policies, moderators and timers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

URL = "/v1/blueprints/service/entities"


def user_token(client: TestClient, identifier: str, teams: list[str], role: str = "member") -> dict[str, str]:
    """Create a user and answer the headers carrying a token of theirs."""
    body = {"identifier": identifier, "email": f"{identifier}@example.com", "teams": teams, "role": role}
    assert client.post("/v1/users", json=body).status_code == 201
    created = client.post("/v1/tokens", json={"user": identifier})
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['token']}"}


def pointers(response: Any) -> list[str]:
    return [d["pointer"] for d in response.json()["error"]["details"]]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


@pytest.fixture
def people(catalog: TestClient) -> dict[str, dict[str, str]]:
    """alice (payments-team), carol (search-team), vic (viewer), mo (moderator of service),
    and the entities ``pay`` of payments-team and ``find`` of search-team."""
    assert catalog.post("/v1/teams", json={"identifier": "search-team", "title": "Search"}).status_code == 201
    tokens = {
        "alice": user_token(catalog, "alice", ["payments-team"]),
        "carol": user_token(catalog, "carol", ["search-team"]),
        "vic": user_token(catalog, "vic", ["payments-team"], role="viewer"),
        "mo": user_token(catalog, "mo", []),
    }
    assert catalog.patch("/v1/blueprints/service", json={"moderators": {"users": ["mo"]}}).status_code == 200
    for identifier, team in (("pay", "payments-team"), ("find", "search-team")):
        body = {"identifier": identifier, "team": [team], "properties": {"language": "go", "tier": 2}}
        assert catalog.post(URL, json=body).status_code == 201
    return tokens


def test_a_member_writes_only_their_teams_entities(catalog: TestClient, people: dict[str, Any]) -> None:
    alice = people["alice"]
    own = {"identifier": "pay-2", "team": ["payments-team"], "properties": {"language": "go"}}
    assert catalog.post(URL, json=own, headers=alice).status_code == 201
    foreign = {"identifier": "find-2", "team": "search-team", "properties": {"language": "go"}}
    refused = catalog.post(URL, json=foreign, headers=alice)
    assert refused.status_code == 403 and pointers(refused) == ["/team/0"]
    assert refused.json()["error"]["code"] == "forbidden"

    find = {"identifier": "find", "team": ["search-team"], "properties": {"language": "python"}}
    attempts = [
        catalog.patch(f"{URL}/find", json={"properties": {"tier": 1}}, headers=alice),
        catalog.put(f"{URL}/find", json=find, headers=alice),
        catalog.post(f"{URL}?upsert=true", json=find, headers=alice),
        catalog.post(f"{URL}?merge=true", json=find, headers=alice),
        catalog.delete(f"{URL}/find", headers=alice),
    ]
    assert [a.status_code for a in attempts] == [403] * 5
    after = catalog.get(f"{URL}/find").json()
    assert after["properties"] == {"language": "go", "tier": 2} and after["updated_by"] == "admin"

    patched = catalog.patch(f"{URL}/pay", json={"properties": {"tier": 3}}, headers=alice)
    assert patched.status_code == 200 and patched.json()["updated_by"] == "alice"
    assert catalog.delete(f"{URL}/pay-2", headers=alice).status_code == 204


def test_bulk_answers_each_item_and_writes_the_allowed_ones(
    catalog: TestClient, people: dict[str, Any]
) -> None:
    entities = [
        {"identifier": "pay", "team": ["payments-team"], "properties": {"language": "python"}},
        {"identifier": "find", "team": ["search-team"], "properties": {"language": "python"}},
        {"identifier": "new", "team": ["search-team"], "properties": {"language": "go"}},
        {"identifier": "mine", "team": ["payments-team"], "properties": {"language": "go"}},
    ]
    response = catalog.post(f"{URL}/bulk", json={"entities": entities}, headers=people["alice"])
    assert response.status_code == 207, response.text
    results = response.json()["results"]
    assert [r["http_status"] for r in results] == [200, 403, 403, 201]
    assert [r["status"] for r in results] == ["updated", "failed", "failed", "created"]
    assert results[1]["error"]["code"] == "forbidden"
    assert results[2]["error"]["details"][0]["pointer"] == "/entities/2/team/0"
    assert catalog.get(f"{URL}/find").json()["properties"]["language"] == "go"
    assert catalog.get(f"{URL}/new").status_code == 404
    assert catalog.get(f"{URL}/pay").json()["properties"] == {"language": "python"}


def test_nobody_adopts_or_gives_away_what_they_do_not_own(
    catalog: TestClient, people: dict[str, Any]
) -> None:
    alice = people["alice"]
    adopt = catalog.patch(f"{URL}/find", json={"team": ["payments-team"]}, headers=alice)
    assert adopt.status_code == 403
    give = catalog.patch(f"{URL}/pay", json={"team": ["search-team"]}, headers=alice)
    assert give.status_code == 403 and "/team/0" in pointers(give)
    share = catalog.patch(f"{URL}/pay", json={"team": ["payments-team", "search-team"]}, headers=alice)
    assert share.status_code == 403 and pointers(share) == ["/team/1"]
    assert catalog.get(f"{URL}/pay").json()["team"] == ["payments-team"]

    # A member of both teams may move between them; the moderator and admins may set any team.
    assert (
        catalog.patch("/v1/users/carol", json={"teams": ["search-team", "payments-team"]}).status_code == 200
    )
    moved = catalog.patch(f"{URL}/pay", json={"team": ["search-team"]}, headers=people["carol"])
    assert moved.status_code == 200 and moved.json()["team"] == ["search-team"]
    back = catalog.patch(f"{URL}/pay", json={"team": ["payments-team"]}, headers=people["mo"])
    assert back.status_code == 200 and back.json()["updated_by"] == "mo"
    assert catalog.patch(f"{URL}/pay", json={"team": []}).status_code == 200

    # An entity without a team is changed only by moderators and admins.
    orphan = catalog.patch(f"{URL}/pay", json={"properties": {"tier": 1}}, headers=alice)
    assert orphan.status_code == 403 and pointers(orphan) == ["/team"]
    assert (
        catalog.patch(f"{URL}/pay", json={"properties": {"tier": 1}}, headers=people["mo"]).status_code == 200
    )


def test_a_viewer_reads_but_never_writes(catalog: TestClient, people: dict[str, Any]) -> None:
    vic = people["vic"]
    assert catalog.get(f"{URL}/pay", headers=vic).status_code == 200
    body = {"identifier": "v", "team": ["payments-team"], "properties": {"language": "go"}}
    assert catalog.post(URL, json=body, headers=vic).status_code == 403
    assert catalog.patch(f"{URL}/pay", json={"properties": {"tier": 1}}, headers=vic).status_code == 403
    assert catalog.delete(f"{URL}/pay", headers=vic).status_code == 403
    bulk = catalog.post(f"{URL}/bulk", json={"entities": [body]}, headers=vic)
    assert [r["http_status"] for r in bulk.json()["results"]] == [403]
    assert catalog.get(f"{URL}/v").status_code == 404


def test_a_timer_of_another_team_cannot_be_set_in_the_past(
    catalog: TestClient, people: dict[str, Any]
) -> None:
    soon = iso(datetime.now(UTC) + timedelta(days=3))
    assert catalog.patch(f"{URL}/find", json={"properties": {"expires_at": soon}}).status_code == 200
    past = iso(datetime.now(UTC) - timedelta(days=1))
    refused = catalog.patch(f"{URL}/find", json={"properties": {"expires_at": past}}, headers=people["alice"])
    assert refused.status_code == 403
    timers = catalog.get("/v1/timers", params={"blueprint": "service"}).json()["items"]
    assert [(t["entity"], t["state"]) for t in timers] == [("find", "active")]
    assert timers[0]["deadline"][:16] == soon[:16]


ENVIRONMENT = {
    "identifier": "environment",
    "title": "Environment",
    "schema": {"properties": {"expires_at": {"type": "string", "format": "timer"}}},
    "timers": {"expires_at": {"max_extension": "P1D"}},
    "moderators": {"teams": ["search-team"]},
}


def test_direct_timer_writes_are_held_to_max_extension(catalog: TestClient, people: dict[str, Any]) -> None:
    assert catalog.post("/v1/blueprints", json=ENVIRONMENT).status_code == 201
    url = "/v1/blueprints/environment/entities"
    first = datetime.now(UTC) + timedelta(days=2)
    body = {"identifier": "env-1", "team": ["payments-team"], "properties": {"expires_at": iso(first)}}
    assert catalog.post(url, json=body, headers=people["alice"]).status_code == 201

    too_far = {"properties": {"expires_at": iso(first + timedelta(days=2))}}
    refused = catalog.patch(f"{url}/env-1", json=too_far, headers=people["alice"])
    assert refused.status_code == 403 and pointers(refused) == ["/properties/expires_at"]
    assert "P1D" in refused.json()["error"]["details"][0]["message"]
    within = {"properties": {"expires_at": iso(first + timedelta(hours=20))}}
    assert catalog.patch(f"{url}/env-1", json=within, headers=people["alice"]).status_code == 200
    sooner = {"properties": {"expires_at": iso(first - timedelta(hours=1))}}
    assert catalog.patch(f"{url}/env-1", json=sooner, headers=people["alice"]).status_code == 200
    # Moderators (here: search-team) and admins are not held to it.
    assert catalog.patch(f"{url}/env-1", json=too_far, headers=people["carol"]).status_code == 200

    # The extend endpoint needs update permission too: another team's member is refused
    # before any workflow is asked.
    extend = f"{url}/env-1/timers/expires_at/extend"
    assert catalog.patch("/v1/users/carol", json={"teams": []}).status_code == 200
    assert catalog.post(extend, json={"by": "PT1H"}, headers=people["carol"]).status_code == 403


SECRET = {
    "identifier": "secret",
    "title": "Secret",
    "schema": {"properties": {"rank": {"type": "integer"}}},
    "permissions": {"read": {"owned_by_team": True}},
}
SCORECARD = {
    "identifier": "ranked",
    "title": "Ranked",
    "levels": [{"title": "Low"}, {"title": "High"}],
    "rules": [
        {
            "identifier": "high",
            "level": "High",
            "query": {"combinator": "and", "rules": [{"property": "rank", "operator": ">=", "value": 3}]},
        }
    ],
}


def test_what_a_member_may_not_read_is_nowhere(catalog: TestClient, people: dict[str, Any]) -> None:
    assert catalog.post("/v1/blueprints", json=SECRET).status_code == 201
    url = "/v1/blueprints/secret/entities"
    entities = [
        {"identifier": f"{team[:3]}-{i}", "team": [team], "properties": {"rank": i}}
        for team in ("payments-team", "search-team")
        for i in range(4)
    ] + [{"identifier": "nobody", "properties": {"rank": 9}}]
    assert all(
        r["status"] == "created"
        for r in catalog.post(f"{url}/bulk", json={"entities": entities}).json()["results"]
    )
    assert catalog.post("/v1/blueprints/secret/scorecards", json=SCORECARD).status_code == 201
    alice = people["alice"]
    mine = {"pay-0", "pay-1", "pay-2", "pay-3"}

    assert catalog.get(f"{url}/sea-1", headers=alice).status_code == 404
    assert catalog.get(f"{url}/nobody", headers=alice).status_code == 404
    assert catalog.get(f"{url}/pay-1", headers=alice).status_code == 200
    assert catalog.patch(f"{url}/sea-1", json={"properties": {"rank": 0}}, headers=alice).status_code == 404
    assert catalog.delete(f"{url}/sea-1", headers=alice).status_code == 404
    assert (
        catalog.get(
            "/v1/blueprints/secret/scorecard-history", params={"entity": "sea-1"}, headers=alice
        ).status_code
        == 404
    )

    listed = walk(
        lambda cursor: catalog.get(
            url, params={"limit": 1, **({"cursor": cursor} if cursor else {})}, headers=alice
        ).json()
    )
    assert listed == ["pay-0", "pay-1", "pay-2", "pay-3"]

    def search(cursor: str | None) -> Any:
        body: dict[str, Any] = {"limit": 1, "sort": [{"property": "rank", "order": "desc"}]}
        if cursor:
            body["cursor"] = cursor
        return catalog.post("/v1/entities/search", json=body, headers=alice).json()

    found = walk(search)
    assert set(found) == mine | {"pay", "find", "billing"} and found[:4] == [
        "pay-3",
        "pay-2",
        "pay-1",
        "pay-0",
    ]
    query = {"query": {"combinator": "and", "rules": [{"property": "rank", "operator": ">=", "value": 2}]}}
    ranked = catalog.post("/v1/entities/search", json=query, headers=alice).json()["items"]
    assert sorted(e["identifier"] for e in ranked) == ["pay-2", "pay-3"]

    results = catalog.get("/v1/blueprints/secret/scorecards/ranked/results", headers=alice).json()
    assert (
        results["total"] == 4
        and results["distribution"] == {"Low": 3, "High": 1}
        and results["rules"][0]["passed"] == 1
    )
    assert [i["entity"] for i in results["items"]] == sorted(mine)
    everything = catalog.get("/v1/blueprints/secret/scorecards/ranked/results").json()
    assert everything["total"] == 9 and everything["distribution"] == {"Low": 6, "High": 3}
    # Carol sees her team's entities; the moderators and admins see everything.
    carol = catalog.get(url, headers=people["carol"]).json()["items"]
    assert {e["identifier"] for e in carol} == {"sea-0", "sea-1", "sea-2", "sea-3"}


def test_timers_list_only_readable_entities(catalog: TestClient, people: dict[str, Any]) -> None:
    secret = {**SECRET, "schema": {"properties": {"expires_at": {"type": "string", "format": "timer"}}}}
    assert catalog.post("/v1/blueprints", json=secret).status_code == 201
    deadline = iso(datetime.now(UTC) + timedelta(days=1))
    for identifier, team in (("s-pay", "payments-team"), ("s-find", "search-team")):
        body = {"identifier": identifier, "team": [team], "properties": {"expires_at": deadline}}
        assert catalog.post("/v1/blueprints/secret/entities", json=body).status_code == 201
    assert catalog.patch(f"{URL}/find", json={"properties": {"expires_at": deadline}}).status_code == 200

    def entities(headers: dict[str, str] | None) -> set[str]:
        return {t["entity"] for t in catalog.get("/v1/timers", headers=headers).json()["items"]}

    assert entities(people["alice"]) == {"s-pay", "find"}
    assert entities(people["carol"]) == {"s-find", "find"}
    assert entities(None) == {"s-pay", "s-find", "find"}


def walk(fetch: Any) -> list[str]:
    """Every identifier of a cursor-paged listing, in order."""
    seen: list[str] = []
    cursor = None
    for _ in range(50):
        page = fetch(cursor)
        seen += [e["identifier"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("the cursor walk did not end")


def test_update_properties_and_relations_narrow_update(catalog: TestClient, people: dict[str, Any]) -> None:
    permissions = {
        "update_properties": {"tier": {"roles": ["admin"]}},
        "update_relations": {"system": {"users": ["carol"]}},
    }
    assert catalog.patch("/v1/blueprints/service", json={"permissions": permissions}).status_code == 200
    alice = people["alice"]
    tier = catalog.patch(f"{URL}/pay", json={"properties": {"tier": 1}}, headers=alice)
    assert tier.status_code == 403 and pointers(tier) == ["/properties/tier"]
    system = catalog.patch(f"{URL}/pay", json={"relations": {"system": "billing"}}, headers=alice)
    assert system.status_code == 403 and pointers(system) == ["/relations/system"]
    assert (
        catalog.patch(f"{URL}/pay", json={"properties": {"language": "python"}}, headers=alice).status_code
        == 200
    )
    # Both must pass: carol passes update_relations but not update (pay is not her team's).
    assert (
        catalog.patch(
            f"{URL}/pay", json={"relations": {"system": "billing"}}, headers=people["carol"]
        ).status_code
        == 403
    )
    assert (
        catalog.patch(
            f"{URL}/find", json={"relations": {"system": "billing"}}, headers=people["carol"]
        ).status_code
        == 200
    )
    # A moderator and an admin pass the field policies.
    assert (
        catalog.patch(f"{URL}/pay", json={"properties": {"tier": 1}}, headers=people["mo"]).status_code == 200
    )

    stored = catalog.get("/v1/blueprints/service").json()
    assert stored["permissions"]["update_properties"] == {
        "tier": {"roles": ["admin"], "users": [], "teams": [], "owned_by_team": False}
    }
    assert stored["permissions"]["read"] is None and stored["moderators"] == {"users": ["mo"], "teams": []}


def test_blueprint_permissions_are_validated_by_pointer(catalog: TestClient) -> None:
    bad = [
        ({"permissions": {"update_properties": {"nope": {}}}}, "/permissions/update_properties/nope"),
        ({"permissions": {"update_relations": {"tier": {}}}}, "/permissions/update_relations/tier"),
        ({"permissions": {"read": {"owned_by_teams": True}}}, "/permissions/read/owned_by_teams"),
        ({"permissions": {"share": {}}}, "/permissions/share"),
        ({"permissions": {"create": {"roles": ["service"]}}}, "/permissions/create/roles/0"),
        ({"moderators": {"groups": []}}, "/moderators/groups"),
    ]
    for body, where in bad:
        response = catalog.patch("/v1/blueprints/service", json=body)
        assert response.status_code == 422 and where in pointers(response), (body, response.text)
    assert catalog.get("/v1/blueprints/service").json()["permissions"]["update_properties"] == {}


def test_moderators_administer_their_blueprint_only(catalog: TestClient, people: dict[str, Any]) -> None:
    mo, alice = people["mo"], people["alice"]
    body = {"identifier": "anyone", "team": ["search-team"], "properties": {"language": "go"}}
    assert catalog.post(URL, json=body, headers=mo).status_code == 201
    assert catalog.delete(f"{URL}/find", headers=mo).status_code == 204
    scorecard = {**SCORECARD, "rules": []}
    assert catalog.post("/v1/blueprints/service/scorecards", json=scorecard, headers=mo).status_code == 201
    assert catalog.post("/v1/blueprints/service/scorecards", json=scorecard, headers=alice).status_code == 403
    assert catalog.delete("/v1/blueprints/service/scorecards/ranked", headers=alice).status_code == 403
    assert (
        catalog.put("/v1/blueprints/service/scorecards/ranked", json=scorecard, headers=mo).status_code == 200
    )
    assert catalog.post("/v1/blueprints/system/scorecards", json=scorecard, headers=mo).status_code == 403
    assert (
        catalog.patch("/v1/blueprints/system/entities/billing", json={"title": "B"}, headers=mo).status_code
        == 403
    )
    assert catalog.patch("/v1/blueprints/service", json={"title": "S"}, headers=mo).status_code == 403


def test_a_failed_bulk_item_leaves_no_related_stubs(catalog: TestClient) -> None:
    entities = [
        {"identifier": "bad", "properties": {"language": "cobol"}, "relations": {"system": "ghost-1"}},
        {"identifier": "good", "properties": {"language": "go"}, "relations": {"system": "ghost-2"}},
        {
            "identifier": "lost",
            "team": ["no-such-team"],
            "properties": {"language": "go"},
            "relations": {"system": "ghost-3"},
        },
    ]
    response = catalog.post(f"{URL}/bulk?create_missing_related_entities=true", json={"entities": entities})
    assert [r["http_status"] for r in response.json()["results"]] == [422, 201, 422]
    systems = {e["identifier"] for e in catalog.get("/v1/blueprints/system/entities").json()["items"]}
    assert systems == {"billing", "ghost-2"}


def test_related_stubs_need_create_permission_on_their_blueprint(
    catalog: TestClient, people: dict[str, Any]
) -> None:
    closed = {"permissions": {"create": {"roles": ["admin"]}}}
    assert catalog.patch("/v1/blueprints/system", json=closed).status_code == 200
    body = {
        "identifier": "pay-3",
        "team": ["payments-team"],
        "properties": {"language": "go"},
        "relations": {"system": "ghost"},
    }
    refused = catalog.post(f"{URL}?create_missing_related_entities=true", json=body, headers=people["alice"])
    assert refused.status_code == 403 and pointers(refused) == ["/relations/system"]
    assert catalog.get("/v1/blueprints/system/entities/ghost").status_code == 404
