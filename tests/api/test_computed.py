"""Computed properties: mirror properties and aggregation properties, kept current by entity
writes and deletes, moved by time on the scheduled regrade, refused to clients, checked when
saved — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

import catalog.changes.pipeline
from tests.api.conftest import SERVICE_BLUEPRINT, SERVICE_TOKEN

SYSTEM: dict[str, Any] = {
    "identifier": "system",
    "title": "System",
    "schema": {"properties": {"owner": {"type": "string"}, "criticality": {"type": "string"}}},
}
DEPLOYMENT: dict[str, Any] = {
    "identifier": "deployment",
    "title": "Deployment",
    "schema": {
        "properties": {
            "status": {"type": "string", "enum": ["succeeded", "failed"]},
            "lead_time": {"type": "number"},
            "deployed_at": {"type": "string", "format": "date-time"},
            "notes": {"type": "string"},
        }
    },
    "relations": {"service": {"target": "service", "many": False, "required": True}},
}
FAILED = {"combinator": "and", "rules": [{"property": "status", "operator": "=", "value": "failed"}]}
COMPUTED: dict[str, Any] = {
    "mirror_properties": {
        "system_owner": {"title": "System owner", "path": "system.owner"},
        "system_title": {"path": "system.$title"},
    },
    "aggregation_properties": {
        "deployments": {"target": "deployment", "function": "count"},
        "lead_time_total": {"target": "deployment", "function": "sum", "property": "lead_time"},
        "lead_time_min": {"target": "deployment", "function": "min", "property": "lead_time"},
        "lead_time_max": {"target": "deployment", "function": "max", "property": "lead_time"},
        "lead_time_avg": {"target": "deployment", "function": "average", "property": "lead_time"},
        "failed_deployments": {"target": "deployment", "function": "count", "query": FAILED},
        "change_failure_rate": {"target": "deployment", "function": "ratio", "match": FAILED},
        "deployments_7d": {
            "target": "deployment",
            "relation": "service",
            "function": "count",
            "window": "P7D",
            "time_property": "deployed_at",
        },
        "recorded_7d": {"target": "deployment", "function": "count", "window": "P7D"},
    },
}
AGGREGATES = (
    "deployments",
    "lead_time_total",
    "lead_time_min",
    "lead_time_max",
    "lead_time_avg",
    "failed_deployments",
    "change_failure_rate",
)

SERVICE = {"Authorization": f"Bearer {SERVICE_TOKEN}"}


@pytest.fixture
def portal(client: TestClient) -> TestClient:
    """system, service (with computed properties), deployment; systems billing and storefront,
    services payments and checkout."""
    assert client.post("/v1/blueprints", json=SYSTEM).status_code == 201
    assert client.post("/v1/blueprints", json=SERVICE_BLUEPRINT).status_code == 201
    assert client.post("/v1/blueprints", json=DEPLOYMENT).status_code == 201
    response = client.put("/v1/blueprints/service", json={**SERVICE_BLUEPRINT, **COMPUTED})
    assert response.status_code == 200, response.text
    write(client, "system", "billing", title="Billing", properties={"owner": "alice"})
    write(client, "system", "storefront", title="Storefront", properties={"owner": "carol"})
    write(client, "service", "payments", properties={"language": "go"}, relations={"system": "billing"})
    write(client, "service", "checkout", properties={"language": "go"})
    return client


def write(client: TestClient, blueprint: str, identifier: str, **fields: Any) -> dict[str, Any]:
    response = client.post(
        f"/v1/blueprints/{blueprint}/entities?upsert=true", json={"identifier": identifier, **fields}
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


def deploy(client: TestClient, identifier: str, service: str, **properties: Any) -> None:
    write(client, "deployment", identifier, properties=properties, relations={"service": service})


def props(client: TestClient, identifier: str) -> dict[str, Any]:
    response = client.get(f"/v1/blueprints/service/entities/{identifier}")
    assert response.status_code == 200, response.text
    return response.json()["properties"]


def aggregates(client: TestClient, identifier: str) -> dict[str, Any]:
    found = props(client, identifier)
    return {name: found.get(name) for name in AGGREGATES}


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


def test_a_mirror_follows_the_related_entity_and_the_relation(portal: TestClient) -> None:
    assert props(portal, "payments")["system_owner"] == "alice"
    assert props(portal, "payments")["system_title"] == "Billing"
    assert "system_owner" not in props(portal, "checkout")

    # the related entity changes
    write(portal, "system", "billing", title="Billing & invoicing", properties={"owner": "bob"})
    assert props(portal, "payments")["system_owner"] == "bob"
    assert props(portal, "payments")["system_title"] == "Billing & invoicing"
    updates = portal.get("/v1/events?type=ENTITY_UPDATED&blueprint=service&entity=payments").json()["items"]
    assert updates[0]["diff"]["after"]["properties"]["system_owner"] == "bob"
    assert updates[0]["diff"]["before"]["properties"]["system_owner"] == "alice"

    # the relation changes (a merge that leaves the computed values alone otherwise)
    response = portal.patch(
        "/v1/blueprints/service/entities/payments", json={"relations": {"system": "storefront"}}
    )
    assert response.status_code == 200, response.text
    assert response.json()["properties"]["system_owner"] == "carol"
    write(portal, "service", "checkout", properties={"language": "go"}, relations={"system": "billing"})
    assert props(portal, "checkout")["system_owner"] == "bob"

    # an unrelated change of the system writes nothing to its services
    before = len(portal.get("/v1/events?type=ENTITY_UPDATED&blueprint=service").json()["items"])
    write(
        portal,
        "system",
        "billing",
        title="Billing & invoicing",
        properties={"owner": "bob", "criticality": "high"},
    )
    after = len(portal.get("/v1/events?type=ENTITY_UPDATED&blueprint=service").json()["items"])
    assert after == before

    # the relation is removed; then the related entity is deleted
    portal.patch("/v1/blueprints/service/entities/payments", json={"relations": {"system": None}})
    assert "system_owner" not in props(portal, "payments")
    assert portal.delete("/v1/blueprints/system/entities/billing").status_code == 204
    assert "system_owner" not in props(portal, "checkout")
    assert "system_title" not in props(portal, "checkout")


def test_count_sum_min_max_average_ratio_and_query(portal: TestClient) -> None:
    assert aggregates(portal, "payments") == {
        "deployments": 0,
        "lead_time_total": 0,
        "lead_time_min": None,
        "lead_time_max": None,
        "lead_time_avg": None,
        "failed_deployments": 0,
        "change_failure_rate": None,
    }
    deploy(portal, "d1", "payments", status="succeeded", lead_time=2)
    deploy(portal, "d2", "payments", status="failed", lead_time=4.5)
    deploy(portal, "d3", "payments", status="succeeded", lead_time=10)
    deploy(portal, "d4", "payments", status="succeeded")
    deploy(portal, "c1", "checkout", status="failed", lead_time=1)
    assert aggregates(portal, "payments") == {
        "deployments": 4,
        "lead_time_total": 16.5,
        "lead_time_min": 2,
        "lead_time_max": 10,
        "lead_time_avg": 5.5,
        "failed_deployments": 1,
        "change_failure_rate": 0.25,
    }
    assert aggregates(portal, "checkout")["change_failure_rate"] == 1

    # a change of the aggregated property, and of the query's property
    deploy(portal, "d3", "payments", status="failed", lead_time=1)
    found = aggregates(portal, "payments")
    assert (found["lead_time_total"], found["lead_time_max"], found["failed_deployments"]) == (7.5, 4.5, 2)
    assert found["change_failure_rate"] == 0.5

    # a deployment moved to another service changes both
    deploy(portal, "d2", "checkout", status="failed", lead_time=4.5)
    assert aggregates(portal, "payments")["deployments"] == 3
    assert aggregates(portal, "payments")["lead_time_max"] == 2
    assert aggregates(portal, "checkout")["deployments"] == 2
    assert aggregates(portal, "checkout")["lead_time_avg"] == 2.75

    # deleting a related entity updates the aggregate
    assert portal.delete("/v1/blueprints/deployment/entities/d1").status_code == 204
    found = aggregates(portal, "payments")
    assert (found["deployments"], found["lead_time_total"], found["lead_time_min"]) == (2, 1, 1)


def test_unchanged_aggregates_write_nothing(portal: TestClient) -> None:
    deploy(portal, "d1", "payments", status="succeeded", lead_time=2)
    events = portal.get("/v1/events?type=ENTITY_UPDATED&blueprint=service&entity=payments").json()["items"]
    # notes is read by no computed property of payments: nothing to recompute or write
    deploy(portal, "d1", "payments", status="succeeded", lead_time=2, notes="rolled out")
    again = portal.get("/v1/events?type=ENTITY_UPDATED&blueprint=service&entity=payments").json()["items"]
    assert len(again) == len(events)


def test_a_window_counts_recent_entities_and_moves_with_time(
    portal: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy(portal, "recent", "payments", status="succeeded", deployed_at=ago(days=2))
    deploy(portal, "old", "payments", status="succeeded", deployed_at=ago(days=10))
    deploy(portal, "undated", "payments", status="succeeded")
    found = props(portal, "payments")
    assert found["deployments_7d"] == 1  # on deployed_at
    assert found["recorded_7d"] == 3  # on $created_at

    # six days later, the scheduled regrade moves the windows
    later = datetime.now(UTC) + timedelta(days=6)
    monkeypatch.setattr(catalog.changes.pipeline, "utcnow", lambda: later)
    assert portal.post("/v1/scorecards/regrade", headers=SERVICE).status_code == 200
    found = props(portal, "payments")
    assert (found["deployments_7d"], found["recorded_7d"]) == (0, 3)
    later = datetime.now(UTC) + timedelta(days=8)
    assert portal.post("/v1/scorecards/regrade", headers=SERVICE).status_code == 200
    assert props(portal, "payments")["recorded_7d"] == 0


def test_the_scorecard_regrades_when_an_aggregate_changes(portal: TestClient) -> None:
    dora = {
        "identifier": "dora",
        "title": "DORA",
        "levels": [{"title": "Low"}, {"title": "High"}],
        "rules": [
            {
                "identifier": "frequent",
                "level": "High",
                "query": {
                    "combinator": "and",
                    "rules": [{"property": "recorded_7d", "operator": ">=", "value": 2}],
                },
            },
            {
                "identifier": "reliable",
                "level": "High",
                "query": {
                    "combinator": "and",
                    "rules": [{"property": "change_failure_rate", "operator": "<=", "value": 0.25}],
                },
            },
        ],
    }
    assert portal.post("/v1/blueprints/service/scorecards", json=dora).status_code == 201
    deploy(portal, "d1", "payments", status="succeeded")
    level = portal.get("/v1/blueprints/service/entities/payments").json()["scorecards"]["dora"]["level"]
    assert level == "Low"
    deploy(portal, "d2", "payments", status="succeeded")
    level = portal.get("/v1/blueprints/service/entities/payments").json()["scorecards"]["dora"]["level"]
    assert level == "High"
    deploy(portal, "d3", "payments", status="failed")  # a third of them failed
    events = portal.get("/v1/events?type=SCORECARD_LEVEL_CHANGED&entity=payments").json()["items"]
    assert [e["scorecard"]["direction"] for e in events] == ["DROPPED", "RAISED"]
    assert events[0]["scorecard"] == {
        "identifier": "dora",
        "from": "High",
        "to": "Low",
        "direction": "DROPPED",
    }

    # and search sees the values
    query = {"combinator": "and", "rules": [{"property": "failed_deployments", "operator": ">", "value": 0}]}
    found = portal.post("/v1/entities/search", json={"query": query}).json()["items"]
    assert [e["identifier"] for e in found] == ["payments"]


def test_clients_cannot_write_computed_properties(portal: TestClient) -> None:
    body = {
        "identifier": "ledger",
        "properties": {"language": "go", "system_owner": "mallory", "deployments": 9},
    }
    response = portal.post("/v1/blueprints/service/entities", json=body)
    assert response.status_code == 422
    pointers = {d["pointer"] for d in response.json()["error"]["details"]}
    assert pointers == {"/properties/system_owner", "/properties/deployments"}

    response = portal.patch(
        "/v1/blueprints/service/entities/payments", json={"properties": {"system_owner": "mallory"}}
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["pointer"] == "/properties/system_owner"

    response = portal.post(
        "/v1/blueprints/service/entities/bulk?merge=true",
        json={"entities": [{"identifier": "payments", "properties": {"deployments": 3}}]},
    )
    error = response.json()["results"][0]["error"]
    assert error["details"][0]["pointer"] == "/entities/0/properties/deployments"

    # writes that leave them out keep them: PUT, merge and PATCH
    payments = {
        "identifier": "payments",
        "properties": {"language": "python"},
        "relations": {"system": "billing"},
    }
    assert portal.put("/v1/blueprints/service/entities/payments", json=payments).status_code == 200
    assert props(portal, "payments")["system_owner"] == "alice"
    merged = {"identifier": "payments", "properties": {"tier": 2}}
    assert portal.post("/v1/blueprints/service/entities?merge=true", json=merged).status_code == 200
    patched = portal.patch("/v1/blueprints/service/entities/payments", json={"properties": {"tier": 3}})
    assert patched.status_code == 200
    assert patched.json()["properties"]["system_owner"] == "alice"
    assert patched.json()["properties"]["deployments"] == 0


BAD_DEFINITIONS: list[tuple[dict[str, Any], str]] = [
    ({"mirror_properties": {"x": {"path": "nowhere.owner"}}}, "/mirror_properties/x/path"),
    ({"mirror_properties": {"x": {"path": "system"}}}, "/mirror_properties/x/path"),
    ({"mirror_properties": {"x": {"path": "system.unknown"}}}, "/mirror_properties/x/path"),
    ({"mirror_properties": {"x": {"path": "system.$nothing"}}}, "/mirror_properties/x/path"),
    ({"mirror_properties": {"x": {"path": "depends_on.language"}}}, "/mirror_properties/x/path"),
    ({"mirror_properties": {"tier": {"path": "system.owner"}}}, "/mirror_properties/tier"),
    ({"mirror_properties": {"system": {"path": "system.owner"}}}, "/mirror_properties/system"),
    (
        {"aggregation_properties": {"x": {"target": "nothing", "function": "count"}}},
        "/aggregation_properties/x/target",
    ),
    (
        {"aggregation_properties": {"x": {"target": "system", "function": "count"}}},
        "/aggregation_properties/x/relation",
    ),
    (
        {"aggregation_properties": {"x": {"target": "deployment", "relation": "nope", "function": "count"}}},
        "/aggregation_properties/x/relation",
    ),
    (
        {"aggregation_properties": {"x": {"target": "deployment", "function": "median"}}},
        "/aggregation_properties/x/function",
    ),
    (
        {"aggregation_properties": {"x": {"target": "deployment", "function": "sum"}}},
        "/aggregation_properties/x/property",
    ),
    (
        {"aggregation_properties": {"x": {"target": "deployment", "function": "sum", "property": "status"}}},
        "/aggregation_properties/x/property",
    ),
    (
        {
            "aggregation_properties": {
                "x": {"target": "deployment", "function": "count", "property": "lead_time"}
            }
        },
        "/aggregation_properties/x/property",
    ),
    (
        {"aggregation_properties": {"x": {"target": "deployment", "function": "count", "window": "7 days"}}},
        "/aggregation_properties/x/window",
    ),
    (
        {
            "aggregation_properties": {
                "x": {"target": "deployment", "function": "count", "window": "P7D", "time_property": "notes"}
            }
        },
        "/aggregation_properties/x/time_property",
    ),
    (
        {
            "aggregation_properties": {
                "x": {
                    "target": "deployment",
                    "function": "count",
                    "query": {"combinator": "xor", "rules": []},
                }
            }
        },
        "/aggregation_properties/x/query/combinator",
    ),
    (
        {"aggregation_properties": {"x": {"target": "deployment", "function": "ratio"}}},
        "/aggregation_properties/x/match",
    ),
    (
        {"aggregation_properties": {"language": {"target": "deployment", "function": "count"}}},
        "/aggregation_properties/language",
    ),
]


@pytest.mark.parametrize(("computed", "where"), BAD_DEFINITIONS)
def test_bad_definitions_are_refused_by_pointer(
    portal: TestClient, computed: dict[str, Any], where: str
) -> None:
    response = portal.put("/v1/blueprints/service", json={**SERVICE_BLUEPRINT, **computed})
    assert response.status_code == 422, response.text
    assert where in [d["pointer"] for d in response.json()["error"]["details"]]


def test_definitions_added_and_removed_compute_and_drop_values(portal: TestClient) -> None:
    deploy(portal, "d1", "payments", status="failed", lead_time=3)
    # the aggregation's relation was resolved and stored
    stored = portal.get("/v1/blueprints/service").json()["aggregation_properties"]["deployments"]
    assert stored == {"target": "deployment", "function": "count", "relation": "service"}

    response = portal.patch("/v1/blueprints/service", json={"aggregation_properties": {}})
    assert response.status_code == 200, response.text
    assert "deployments" not in props(portal, "payments")
    assert props(portal, "payments")["system_owner"] == "alice"
    response = portal.patch(
        "/v1/blueprints/service",
        json={
            "aggregation_properties": {
                "failures": {"target": "deployment", "function": "count", "query": FAILED}
            }
        },
    )
    assert response.status_code == 200, response.text
    assert props(portal, "payments")["failures"] == 1

    # what other blueprints' computed properties read cannot be removed from under them
    system = {**SYSTEM, "schema": {"properties": {"criticality": {"type": "string"}}}}
    response = portal.put("/v1/blueprints/system", json=system)
    assert response.status_code == 409
    assert response.json()["error"]["details"][0]["pointer"] == "/schema/properties/owner"
    response = portal.put("/v1/blueprints/deployment", json={**DEPLOYMENT, "relations": {}})
    assert response.status_code == 409
    assert response.json()["error"]["details"][0]["pointer"] == "/relations/service"

    # deleting an aggregated blueprint: refused, unless its dependents' definitions go too
    response = portal.delete("/v1/blueprints/deployment")
    assert response.status_code == 409
    assert "/aggregation_properties/failures" in [d["pointer"] for d in response.json()["error"]["details"]]
    assert portal.delete("/v1/blueprints/deployment?delete_entities=true").status_code == 204
    assert portal.get("/v1/blueprints/service").json()["aggregation_properties"] == {}
    assert "failures" not in props(portal, "payments")


def test_concurrent_writes_to_one_service_count_every_deployment(portal: TestClient) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def post(n: int) -> int:
        body = {
            "identifier": f"d{n}",
            "properties": {"status": "succeeded"},
            "relations": {"service": "payments"},
        }
        return portal.post("/v1/blueprints/deployment/entities", json=body).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(post, range(24)))
    assert codes == [201] * 24
    assert props(portal, "payments")["deployments"] == 24
