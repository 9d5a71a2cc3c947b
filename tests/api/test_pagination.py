"""Every list of the API pages with ``limit`` and ``cursor``: walking any of them one item at a
time, following ``next_cursor``, sees every item exactly once. The lists come from the OpenAPI
document, so a list route this test does not know how to reach fails it."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from catalog.audit import Actor
from catalog.db import utcnow
from catalog.identity.permissions import Principal
from catalog.initiatives import service as initiatives
from catalog.initiatives.service import InitiativeIn
from config import Settings
from tests.api.conftest import ADMIN_TOKEN, SERVICE_BLUEPRINT, SERVICE_TOKEN, SYSTEM_BLUEPRINT
from tests.api.test_actions import ACTION

SERVICE = {"Authorization": f"Bearer {SERVICE_TOKEN}"}

# The path parameters of each list route, and the query parameters it requires.
LIST_ROUTES: dict[str, dict[str, str]] = {
    "/v1/blueprints": {},
    "/v1/blueprints/{blueprint}/entities": {"blueprint": "service"},
    "/v1/users": {},
    "/v1/teams": {},
    "/v1/tokens": {},
    "/v1/audit-log": {},
    "/v1/actions": {},
    "/v1/runs": {},
    "/v1/runs/{run_id}/logs": {"run_id": "<run>"},
    "/v1/timers": {},
    "/v1/events": {},
    "/v1/blueprints/{blueprint}/scorecards": {"blueprint": "service"},
    "/v1/blueprints/{blueprint}/scorecard-history": {"blueprint": "service", "entity": "svc-0"},
    "/v1/blueprints/{blueprint}/scorecards/{scorecard}/results": {
        "blueprint": "service",
        "scorecard": "gold",
    },
    "/v1/blueprints/{blueprint}/scorecards/{scorecard}/exemptions": {
        "blueprint": "service",
        "scorecard": "gold",
    },
    "/v1/automations": {},
    "/v1/data-sources": {},
    "/v1/data-sources/{data_source}/syncs": {"data_source": "repos"},
    "/v1/data-sources/{data_source}/deliveries": {"data_source": "hooks"},
    "/v1/initiatives": {},
    "/v1/config/revisions": {},
    "/v1/initiatives/{identifier}/progress": {"identifier": "typed"},
}
# Pages whose items are under another key (the rest of the answer counts every item).
ITEMS = {"/v1/initiatives/{identifier}/progress": "failing"}
SEARCH = "/v1/entities/search"  # a POST: limit and cursor travel in the body


class Gateway:
    """Temporal that accepts every start and knows no workflow: runs stay IN_PROGRESS."""

    async def start_action_run(self, *_: Any, **__: Any) -> None:
        return None

    async def arm_timer(self, *_: Any, **__: Any) -> None:
        return None

    async def run_ended(self, *_: Any, **__: Any) -> None:
        return None

    async def start_automation(self, *_: Any, **__: Any) -> bool:
        return True

    async def ended(self, *_: Any, **__: Any) -> None:
        return None


@pytest.fixture
def full(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, str]]:
    """A catalog with at least two items in every list, and the id of a run with two log lines."""
    monkeypatch.setenv(HOOK_SECRET_ENV, HOOK_SECRET)
    app = create_app(settings, temporal=Gateway())  # type: ignore[arg-type]
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        yield client, _fill(client)


def _ok(response: Any, *codes: int) -> Any:
    assert response.status_code in (codes or (200, 201)), response.text
    return response.json()


def _fill(client: TestClient) -> str:
    for team in ("payments-team", "search-team"):
        _ok(client.post("/v1/teams", json={"identifier": team, "title": team}))
    for user in ("bob", "carol"):
        _ok(client.post("/v1/users", json={"identifier": user, "email": f"{user}@example.com"}))
        _ok(client.post("/v1/tokens", json={"user": user}))
    _ok(client.post("/v1/blueprints", json=SYSTEM_BLUEPRINT))
    _ok(client.post("/v1/blueprints", json=SERVICE_BLUEPRINT))
    for i in range(3):
        entity = {
            "identifier": f"svc-{i}",
            "properties": {"language": "go", "tier": 1, "expires_at": "2031-01-01T00:00:00+00:00"},
        }
        _ok(client.post("/v1/blueprints/service/entities", json=entity))
    for name in ("deploy_service", "restart_service"):
        _ok(client.post("/v1/actions", json={**ACTION, "identifier": name}))
    for name in ("gold", "silver"):
        rule = {"identifier": "typed", "title": "Typed", "level": "Gold", "query": _tier_one()}
        card = {"identifier": name, "title": name, "levels": [{"title": "Basic"}, {"title": "Gold"}]}
        _ok(client.post("/v1/blueprints/service/scorecards", json={**card, "rules": [rule]}))
    _ok(client.patch("/v1/blueprints/service/entities/svc-0", json={"properties": {"tier": 2}}))
    for name in ("notify", "audit"):
        automation = {
            "identifier": name,
            "trigger": {"event": "TIMER_EXPIRED", "blueprint": "service"},
            "invoke": {"action": "deploy_service", "entity": "{{ event.entity }}"},
        }
        _ok(client.post("/v1/automations", json=automation))
    _fill_sources(client)
    _fill_exemptions(client)
    _fill_initiatives(client)
    launch = {"entity": "svc-1", "inputs": {"version": "v1"}}
    runs = [_ok(client.post("/v1/actions/deploy_service/runs", json=launch), 202) for _ in range(2)]
    report = {"logs": [{"message": "one"}, {"message": "two"}]}
    _ok(client.post(f"/v1/runs/{runs[0]['id']}/report", json=report, headers=SERVICE))
    return str(runs[0]["id"])


def _fill_initiatives(client: TestClient) -> None:
    """Two initiatives (saved as a create would: this Temporal takes no signals), and two more
    services failing the ``gold`` target (svc-0 has tier 2 already)."""
    for name in ("untyped-0", "untyped-1"):
        _ok(
            client.post(
                "/v1/blueprints/service/entities", json={"identifier": name, "properties": {"language": "go"}}
            )
        )
    target = {"blueprint": "service", "scorecard": "gold", "level": "Gold"}
    app: Any = client.app
    with app.state.sessionmaker() as session:
        for name in ("typed", "typed-too"):
            body = InitiativeIn(
                identifier=name, title=name, targets=[target], deadline="2031-01-01T00:00:00Z"
            )
            initiatives.save(session, body, Actor("admin"), Principal("admin", "admin"))
        session.commit()


HOOK_SECRET_ENV, HOOK_SECRET = "GANTRY_WEBHOOK_PAGINATION", "pagination-secret"


def _fill_sources(client: TestClient) -> None:
    """Two data sources, two syncs of one, two deliveries to the other."""
    mappings = {"identifier": ".name", "blueprint": '"service"', "properties": {"language": ".language"}}
    resource = {"kind": "repository", "port": {"entity": {"mappings": mappings}}}
    _ok(
        client.post(
            "/v1/data-sources", json={"identifier": "repos", "kind": "github", "resources": [resource]}
        )
    )
    hooks = {"kind": "webhook", "security": {"secret_env": HOOK_SECRET_ENV}, "resources": [resource]}
    _ok(client.post("/v1/data-sources", json={"identifier": "hooks", **hooks}))
    for sync_id in ("first", "second"):
        _ok(
            client.put(
                f"/v1/data-sources/repos/syncs/{sync_id}", json={"trigger": "SCHEDULE"}, headers=SERVICE
            )
        )
    for n in range(2):
        body = json.dumps({"name": f"hooked-{n}", "language": "go"}).encode()
        signature = "sha256=" + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {"X-Hub-Signature-256": signature, "X-Delivery-Id": f"d-{n}", "Authorization": ""}
        _ok(client.post("/v1/webhooks/hooks", content=body, headers=headers), 202)


def _fill_exemptions(client: TestClient) -> None:
    """Two exemption requests by the admin (carol, another admin, may approve them)."""
    _ok(client.patch("/v1/users/carol", json={"role": "admin"}))
    expires = (utcnow() + timedelta(days=30)).isoformat()
    for entity in ("svc-0", "svc-1"):
        body = {"entity": entity, "rule": "typed", "reason": "paging", "expires_at": expires}
        _ok(client.post("/v1/blueprints/service/scorecards/gold/exemptions", json=body))


def _tier_one() -> dict[str, Any]:
    return {"combinator": "and", "rules": [{"property": "tier", "operator": "=", "value": 1}]}


def _identity(item: dict[str, Any]) -> str:
    """What names an item across pages (events and runs change as the relay and workflows work)."""
    for key in ("id", "identifier"):
        if key in item:
            return f"{key}={item[key]}"
    return json.dumps(item, sort_keys=True)


def _walk(client: TestClient, path: str, params: dict[str, str], key: str = "items") -> list[str]:
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(1000):
        page = _ok(
            client.get(path, params={**params, "limit": "1", **({"cursor": cursor} if cursor else {})})
        )
        assert len(page[key]) <= 1
        seen += [_identity(item) for item in page[key]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError(f"{path} never ends")


def _list_routes(client: TestClient) -> list[str]:
    """The GET routes whose answer carries ``next_cursor``: the ``Page`` models and the pages
    that carry more than items (scorecard results)."""
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]

    def pages(item: dict[str, Any]) -> bool:
        ref = item["get"]["responses"]["200"]["content"]["application/json"]["schema"].get("$ref", "")
        schema = schemas.get(ref.removeprefix("#/components/schemas/"), {})
        return "next_cursor" in schema.get("properties", {})

    return [path for path, item in document["paths"].items() if "get" in item and pages(item)]


def test_every_list_route_walks_one_item_at_a_time(full: tuple[TestClient, str]) -> None:
    client, run_id = full
    routes = _list_routes(client)
    assert set(routes) == set(LIST_ROUTES), "a list route this test does not walk, or one that is gone"
    for route in routes:
        params = dict(LIST_ROUTES[route])
        path = route
        for name in [n for n in params if "{" + n + "}" in route]:
            path = path.replace("{" + name + "}", params.pop(name).replace("<run>", run_id))
        key = ITEMS.get(route, "items")
        everything = [_identity(i) for i in _ok(client.get(path, params={**params, "limit": "1000"}))[key]]
        assert len(everything) >= 2, f"{route}: fewer than two items to page through"
        walked = _walk(client, path, params, key)
        assert len(walked) == len(set(walked)), f"{route}: an item seen twice"
        assert set(walked) >= set(everything), f"{route}: items missed"


def test_search_pages_with_limit_and_cursor_in_the_body(full: tuple[TestClient, str]) -> None:
    client, _run = full
    body: dict[str, Any] = {"query": {"combinator": "and", "rules": []}, "limit": 1}
    seen: list[str] = []
    while True:
        page = _ok(client.post(SEARCH, json=body))
        seen += [_identity(item) for item in page["items"]]
        if page["next_cursor"] is None:
            break
        body["cursor"] = page["next_cursor"]
    everything = _ok(client.post(SEARCH, json={"query": body["query"], "limit": 1000}))["items"]
    assert len(everything) >= 2
    assert sorted(seen) == sorted(_identity(item) for item in everything)


@pytest.mark.parametrize(
    "route",
    [
        "/v1/blueprints",
        "/v1/teams",
        "/v1/actions",
        "/v1/runs/{run}/logs",
        "/v1/blueprints/service/scorecards/gold/results",
    ],
)
def test_a_cursor_this_api_did_not_make_is_a_422(full: tuple[TestClient, str], route: str) -> None:
    client, run_id = full
    path = route.replace("{run}", run_id)
    for cursor in ("not-a-cursor", "WzFd"):  # garbage; ``[1]``, a list of the wrong kind
        error = _ok(client.get(path, params={"cursor": cursor}), 422)["error"]
        assert [d["pointer"] for d in error["details"]] == ["/cursor"]


def test_limit_is_between_1_and_1000(full: tuple[TestClient, str]) -> None:
    client, _run = full
    for limit in ("0", "1001"):
        assert client.get("/v1/blueprints", params={"limit": limit}).status_code == 422
    assert len(_ok(client.get("/v1/blueprints", params={"limit": "1"}))["items"]) == 1
