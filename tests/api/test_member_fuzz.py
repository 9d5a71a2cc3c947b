"""Fuzzing the whole API as a member of another team: whatever they send, the answer is never a
5xx, nothing they may not touch changes, and nothing they may not read leaks into a response.

Seeded as the admin: ``payments`` (a service owned by ``payments-team``), a ``vault`` blueprint
whose entities only their owning team reads (``read: {owned_by_team: true}``) holding a canary
value, an action, a scorecard and an automation. The member, Mel, is in ``search-team``. Two
phases: schemathesis over every operation (random paths and bodies), then Hypothesis bodies sent
to the URLs of exactly those protected objects. SQLite only, bounded and derandomized.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error, response_schema_conformance

from api.app import create_app
from catalog.migrate import upgrade
from config import Settings
from tests.api.conftest import ADMIN_TOKEN, SERVICE_BLUEPRINT, SERVICE_TOKEN, SYSTEM_BLUEPRINT
from tests.api.test_fuzz import assert_error_shape, json_values

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CANARY = "canary-7f3e9b1c-not-for-search-team"
VAULT: dict[str, Any] = {
    "identifier": "vault",
    "title": "Vault",
    "schema": {"properties": {"secret_note": {"type": "string"}}},
    "permissions": {"read": {"owned_by_team": True}},
}
ACTION: dict[str, Any] = {
    "identifier": "restart",
    "title": "Restart",
    "blueprint": "service",
    "trigger": {"operation": "DAY-2"},
    "steps": [
        {
            "id": "mark",
            "uses": "catalog.upsert_entity",
            "with": {"blueprint": "service", "identifier": "{{ entity.identifier }}", "properties": {}},
        }
    ],
}
SCORECARD: dict[str, Any] = {
    "identifier": "owned",
    "title": "Owned",
    "levels": [{"title": "Basic"}, {"title": "Gold"}],
    "rules": [
        {
            "identifier": "has_team",
            "level": "Gold",
            "query": {"combinator": "and", "rules": [{"property": "$team", "operator": "isNotEmpty"}]},
        }
    ],
}
AUTOMATION: dict[str, Any] = {
    "identifier": "restart_new",
    "trigger": {"event": "ENTITY_CREATED", "blueprint": "service"},
    "invoke": {"action": "restart", "entity": "{{ event.entity }}"},
}
# What Mel may not change, as the admin reads it: compared before and after the fuzzing.
PROTECTED = (
    "/v1/blueprints/service",
    "/v1/blueprints/vault",
    "/v1/blueprints/system",
    "/v1/blueprints/service/entities/payments",
    "/v1/blueprints/vault/entities/ledger-keys",
    "/v1/blueprints/system/entities/billing",
    "/v1/actions/restart",
    "/v1/blueprints/service/scorecards/owned",
    "/v1/automations/restart_new",
    "/v1/users/olive",
    "/v1/users/mel",
    "/v1/teams/payments-team",
    "/v1/teams/search-team",
)
FUZZ = settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _ok(response: Any) -> Any:
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def _seed(client: TestClient) -> str:
    """The protected objects; the member's token."""
    for team in ("payments-team", "search-team"):
        _ok(client.post("/v1/teams", json={"identifier": team, "title": team}))
    _ok(
        client.post(
            "/v1/users",
            json={"identifier": "olive", "email": "olive@example.com", "teams": ["payments-team"]},
        )
    )
    _ok(
        client.post(
            "/v1/users", json={"identifier": "mel", "email": "mel@example.com", "teams": ["search-team"]}
        )
    )
    for blueprint in (SYSTEM_BLUEPRINT, SERVICE_BLUEPRINT, VAULT):
        _ok(client.post("/v1/blueprints", json=blueprint))
    _ok(
        client.post(
            "/v1/blueprints/system/entities", json={"identifier": "billing", "team": ["payments-team"]}
        )
    )
    payments = {
        "identifier": "payments",
        "team": ["payments-team"],
        "properties": {"language": "go", "tier": 1},
        "relations": {"system": "billing"},
    }
    _ok(client.post("/v1/blueprints/service/entities", json=payments))
    vault = {"identifier": "ledger-keys", "team": ["payments-team"], "properties": {"secret_note": CANARY}}
    _ok(client.post("/v1/blueprints/vault/entities", json=vault))
    _ok(client.post("/v1/actions", json=ACTION))
    _ok(client.post("/v1/blueprints/service/scorecards", json=SCORECARD))
    _ok(client.post("/v1/automations", json=AUTOMATION))
    token: str = _ok(client.post("/v1/tokens", json={"user": "mel"}))["token"]
    return token


def _snapshot(client: TestClient) -> dict[str, Any]:
    """The protected objects as the admin sees them, without what time alone moves."""
    found = {}
    for url in PROTECTED:
        body = _ok(client.get(url, headers=ADMIN))
        found[url] = {k: v for k, v in body.items() if k not in ("scorecards",)}
    return found


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, str]]:
    data_dir: Path = tmp_path_factory.mktemp("member-fuzz")
    url = f"sqlite:///{data_dir / 'catalog.db'}"
    upgrade(url)
    app = create_app(
        Settings(database_url=url, data_dir=data_dir, admin_token=ADMIN_TOKEN, service_token=SERVICE_TOKEN),
        migrate=False,
    )
    with TestClient(app, headers=ADMIN) as client:
        token = _seed(client)
    yield app, token


def _operations(schema: Any) -> Iterator[Any]:
    for result in schema.get_all_operations():
        yield result.ok()


def test_a_member_fuzzing_every_route_changes_and_reads_nothing_of_others(
    fuzzed: tuple[FastAPI, str],
) -> None:
    app, token = fuzzed
    member = {"Authorization": f"Bearer {token}"}
    with TestClient(app, raise_server_exceptions=False) as client:
        before = _snapshot(client)
        leaks: list[str] = []
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = list(_operations(schema))
        assert len(operations) >= 60, "every documented operation is fuzzed"
        for operation in operations:

            @given(case=operation.as_strategy())
            @FUZZ
            def check(case: Any) -> None:
                response = case.call(headers=member)
                case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
                assert_error_shape(response.status_code, response.json() if response.content else None)
                if CANARY in response.text:
                    leaks.append(f"{case.method} {case.formatted_path}")

            check()
        _targeted(client, member, leaks)
        assert leaks == [], f"another team's unreadable value was answered by: {leaks}"
        after = _snapshot(client)
    changed = {url: (before[url], after[url]) for url in PROTECTED if before[url] != after[url]}
    assert changed == {}, changed


# ---- phase 2: the protected objects' own URLs, with random bodies ---------------------------

WRITES = st.sampled_from(
    [
        ("PUT", "/v1/blueprints/service/entities/payments"),
        ("PATCH", "/v1/blueprints/service/entities/payments"),
        ("DELETE", "/v1/blueprints/service/entities/payments"),
        ("PATCH", "/v1/blueprints/vault/entities/ledger-keys"),
        ("PUT", "/v1/blueprints/vault/entities/ledger-keys"),
        ("DELETE", "/v1/blueprints/vault/entities/ledger-keys"),
        ("POST", "/v1/blueprints/service/entities?upsert=true"),
        ("POST", "/v1/blueprints/service/entities?merge=true"),
        ("POST", "/v1/blueprints/vault/entities?merge=true"),
        ("PATCH", "/v1/blueprints/service"),
        ("PUT", "/v1/actions/restart"),
        ("DELETE", "/v1/actions/restart"),
        ("PUT", "/v1/blueprints/service/scorecards/owned"),
        ("DELETE", "/v1/automations/restart_new"),
        ("PATCH", "/v1/users/mel"),
        ("PATCH", "/v1/teams/payments-team"),
    ]
)
# Bodies that name the protected objects, so a write that should be refused would otherwise land.
TARGETED_BODY = st.fixed_dictionaries(
    {},
    optional={
        "identifier": st.sampled_from(["payments", "ledger-keys", "billing"]),
        "team": st.sampled_from([["search-team"], ["payments-team"], [], ["payments-team", "search-team"]]),
        "title": st.text(max_size=8),
        "properties": st.dictionaries(
            st.sampled_from(["language", "tier", "secret_note"]), json_values, max_size=2
        ),
        "relations": st.dictionaries(
            st.sampled_from(["system"]), st.sampled_from(["billing", None]), max_size=1
        ),
        "role": st.sampled_from(["admin", "member"]),
        "teams": st.sampled_from([["payments-team"], ["search-team", "payments-team"]]),
    },
)
READS = st.sampled_from(
    [
        "/v1/blueprints/vault/entities",
        "/v1/blueprints/vault/entities/ledger-keys",
        "/v1/timers",
        "/v1/runs",
        "/v1/blueprints/vault/scorecards",
    ]
)


def _targeted(client: TestClient, member: dict[str, str], leaks: list[str]) -> None:
    @given(target=WRITES, body=TARGETED_BODY | json_values)
    @settings(
        max_examples=120,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def write(target: tuple[str, str], body: Any) -> None:
        method, url = target
        response = client.request(method, url, json=None if method == "DELETE" else body, headers=member)
        assert response.status_code < 500, (method, url, body, response.text)
        # A 2xx is fine only for a no-op the member may make (a merge creating their own entity).
        if response.status_code < 300 and method != "POST":
            raise AssertionError(
                f"{method} {url} answered {response.status_code} to a member of another team"
            )
        if CANARY in response.text:
            leaks.append(f"{method} {url}")

    @given(url=READS, search=st.sampled_from(["secret_note", "$identifier", "$team"]))
    @settings(
        max_examples=15,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def read(url: str, search: str) -> None:
        query = {"combinator": "and", "rules": [{"property": search, "operator": "isNotEmpty"}]}
        for response in (
            client.get(url, headers=member),
            client.post("/v1/entities/search", json={"query": query}, headers=member),
        ):
            assert response.status_code < 500, response.text
            if CANARY in response.text:
                leaks.append(f"{response.request.method} {response.request.url.path}")

    write()
    read()
