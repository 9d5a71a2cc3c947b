"""Property test: a member's search results are exactly the entities that match the query AND
that the member may read, whatever the teams, memberships, read policies and moderators.

The reference is plain Python, written from the contract (not from catalog/identity/permissions.py): a
policy passes on any of its roles, users or teams, or with ``owned_by_team`` on a shared team;
no read policy means everyone reads; moderators read everything. Results are collected by
walking cursors with a small page size, so the filter must apply before paging.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TEAMS = ["t0", "t1", "t2", "t3"]
BLUEPRINTS = ["alpha", "beta"]
MEMBER = "m"

teams = st.lists(st.sampled_from(TEAMS), max_size=2, unique=True)
policies = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "roles": st.lists(st.sampled_from(["admin", "member", "viewer"]), max_size=1, unique=True),
            "users": st.lists(st.sampled_from([MEMBER, "someone"]), max_size=1, unique=True),
            "teams": teams,
            "owned_by_team": st.booleans(),
        },
    ),
)
moderators = st.fixed_dictionaries(
    {"users": st.just([]), "teams": st.lists(st.sampled_from(TEAMS), max_size=1)}
)
entities = st.lists(st.tuples(teams, st.integers(0, 3)), max_size=6)
queries = st.one_of(
    st.none(),
    st.builds(lambda k: ("tier>=", k), st.integers(0, 3)),
    st.builds(lambda t: ("team", t), st.sampled_from(TEAMS)),
    st.builds(lambda b: ("blueprint", b), st.sampled_from(BLUEPRINTS)),
)


@dataclass(frozen=True)
class World:
    member_teams: list[str]
    blueprints: dict[str, tuple[dict[str, Any] | None, dict[str, Any], list[tuple[list[str], int]]]]


worlds = st.builds(
    World,
    teams,
    st.fixed_dictionaries({bp: st.tuples(policies, moderators, entities) for bp in BLUEPRINTS}),
)


def readable(policy: dict[str, Any] | None, mods: dict[str, Any], mine: set[str], owners: list[str]) -> bool:
    if MEMBER in mods["users"] or mine & set(mods["teams"]):
        return True
    if policy is None:
        return True
    return (
        "member" in policy.get("roles", [])
        or MEMBER in policy.get("users", [])
        or bool(mine & set(policy.get("teams", [])))
        or (policy.get("owned_by_team", False) and bool(mine & set(owners)))
    )


def matches(query: tuple[str, Any] | None, bp: str, owners: list[str], tier: int) -> bool:
    if query is None:
        return True
    kind, value = query
    if kind == "tier>=":
        return tier >= value
    if kind == "team":
        return value in owners
    return bool(bp == value)


def as_search(query: tuple[str, Any] | None) -> dict[str, Any] | None:
    if query is None:
        return None
    kind, value = query
    rule = {
        "tier>=": {"property": "tier", "operator": ">=", "value": value},
        "team": {"property": "$team", "operator": "contains", "value": value},
        "blueprint": {"property": "$blueprint", "operator": "=", "value": value},
    }[kind]
    return {"combinator": "and", "rules": [rule]}


def set_up(client: TestClient) -> dict[str, str]:
    for team in TEAMS:
        assert client.post("/v1/teams", json={"identifier": team, "title": team}).status_code == 201
    user = {"identifier": MEMBER, "email": "m@example.com", "role": "member"}
    assert client.post("/v1/users", json=user).status_code == 201
    token = client.post("/v1/tokens", json={"user": MEMBER}).json()["token"]
    return {"Authorization": f"Bearer {token}"}


def build(client: TestClient, world: World) -> None:
    """Make ``world`` in the catalog: the member's teams, both blueprints and their entities."""
    assert client.patch(f"/v1/users/{MEMBER}", json={"teams": world.member_teams}).status_code == 200
    for bp, (policy, mods, rows) in world.blueprints.items():
        client.delete(f"/v1/blueprints/{bp}", params={"delete_entities": "true"})
        definition = {
            "identifier": bp,
            "title": bp,
            "schema": {"properties": {"tier": {"type": "integer"}}},
            "moderators": mods,
            "permissions": {"read": policy} if policy is not None else {},
        }
        assert client.post("/v1/blueprints", json=definition).status_code == 201
        items = [
            {"identifier": f"{bp}-{i}", "team": t, "properties": {"tier": k}} for i, (t, k) in enumerate(rows)
        ]
        if items:
            written = client.post(f"/v1/blueprints/{bp}/entities/bulk", json={"entities": items})
            assert all(r["status"] == "created" for r in written.json()["results"]), written.text


def searched(
    client: TestClient, headers: dict[str, str], query: dict[str, Any] | None, limit: int
) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    cursor = None
    for _ in range(100):
        body: dict[str, Any] = {"limit": limit, "sort": [{"property": "tier", "order": "desc"}]}
        if query is not None:
            body["query"] = query
        if cursor is not None:
            body["cursor"] = cursor
        page = client.post("/v1/entities/search", json=body, headers=headers)
        assert page.status_code == 200, page.text
        found += [(e["blueprint"], e["identifier"]) for e in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return found
    raise AssertionError("the cursor walk did not end")


def test_member_search_equals_the_reference(client: TestClient) -> None:
    headers = set_up(client)

    @settings(
        max_examples=25,
        derandomize=True,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(world=worlds, query=queries, limit=st.integers(1, 4))
    def check(world: World, query: tuple[str, Any] | None, limit: int) -> None:
        build(client, world)
        mine = set(world.member_teams)
        expected = {
            (bp, f"{bp}-{i}")
            for bp, (policy, mods, rows) in world.blueprints.items()
            for i, (owners, tier) in enumerate(rows)
            if matches(query, bp, owners, tier) and readable(policy, mods, mine, owners)
        }
        found = searched(client, headers, as_search(query), limit)
        assert len(found) == len(set(found)), "a cursor walk repeated an entity"
        assert set(found) == expected

    check()
