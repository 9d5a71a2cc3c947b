"""Entity writes through the API, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient


def pointers(response: Any) -> set[str]:
    return {d["pointer"] for d in response.json()["error"]["details"]}


def test_create_get_and_computed_fields(catalog: TestClient) -> None:
    body = {
        "identifier": "payments",
        "title": "Payments",
        "team": ["payments-team"],
        "properties": {
            "language": "python",
            "tier": 1,
            "repo": "https://git.example/payments",
            "expires_at": "2030-01-02T03:04:05+02:00",
        },
        "relations": {"system": "billing", "depends_on": []},
    }
    created = catalog.post("/v1/blueprints/service/entities", json=body)
    assert created.status_code == 201, created.text
    entity = catalog.get("/v1/blueprints/service/entities/payments").json()
    assert entity["properties"]["expires_at"] == "2030-01-02T01:04:05.000Z"
    assert entity["relations"] == {"system": "billing", "depends_on": []}
    assert entity["created_by"] == "admin" and entity["scorecards"] == {}

    again = catalog.post("/v1/blueprints/service/entities", json=body)
    assert again.status_code == 409

    computed = catalog.post(
        "/v1/blueprints/service/entities", json={**body, "identifier": "x", "created_at": "now"}
    )
    assert computed.status_code == 422 and pointers(computed) == {"/created_at"}


def test_invalid_entity_names_every_field_and_changes_nothing(catalog: TestClient) -> None:
    bad = {
        "identifier": "ledger",
        "team": ["nobody-team"],
        "properties": {"tier": 7, "repo": "not a url", "on_call": "ghost", "colour": "red"},
        "relations": {"system": "atlantis", "depends_on": "not-a-list"},
    }
    response = catalog.post("/v1/blueprints/service/entities", json=bad)
    assert response.status_code == 422, response.text
    assert {
        "/properties/language",
        "/properties/tier",
        "/properties/repo",
        "/properties/colour",
        "/relations/depends_on",
    } <= pointers(response)
    assert catalog.get("/v1/blueprints/service/entities/ledger").status_code == 404

    refs = {
        "identifier": "ledger",
        "team": ["nobody-team"],
        "properties": {"language": "go", "on_call": "ghost"},
        "relations": {"system": "atlantis"},
    }
    response = catalog.post("/v1/blueprints/service/entities", json=refs)
    assert response.status_code == 422
    assert pointers(response) == {"/team/0", "/properties/on_call", "/relations/system"}


def test_upsert_merge_patch_put(catalog: TestClient) -> None:
    url = "/v1/blueprints/service/entities"
    assert (
        catalog.post(
            url, json={"identifier": "cart", "properties": {"language": "go", "tier": 2}}
        ).status_code
        == 201
    )
    merged = catalog.post(
        f"{url}?merge=true", json={"identifier": "cart", "properties": {"repo": "https://x.example/cart"}}
    )
    assert merged.status_code == 200
    assert merged.json()["properties"] == {"language": "go", "tier": 2, "repo": "https://x.example/cart"}

    replaced = catalog.post(
        f"{url}?upsert=true", json={"identifier": "cart", "properties": {"language": "python"}}
    )
    assert replaced.json()["properties"] == {"language": "python"}

    patched = catalog.patch(
        f"{url}/cart", json={"properties": {"tier": 3}, "relations": {"system": "billing"}}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["properties"] == {"language": "python", "tier": 3}
    assert patched.json()["relations"]["system"] == "billing"

    removed = catalog.patch(f"{url}/cart", json={"properties": {"tier": None}})
    assert removed.json()["properties"] == {"language": "python"}

    put = catalog.put(
        f"{url}/cart", json={"identifier": "cart", "title": "Cart", "properties": {"language": "go"}}
    )
    assert put.status_code == 200 and put.json()["title"] == "Cart" and put.json()["relations"] == {}
    assert (
        catalog.put(f"{url}/nope", json={"identifier": "nope", "properties": {"language": "go"}}).status_code
        == 404
    )


def test_missing_related_entities_can_be_created(catalog: TestClient) -> None:
    url = "/v1/blueprints/service/entities"
    body = {"identifier": "checkout", "properties": {"language": "go"}, "relations": {"system": "storefront"}}
    assert catalog.post(url, json=body).status_code == 422
    created = catalog.post(f"{url}?create_missing_related_entities=true", json=body)
    assert created.status_code == 201, created.text
    assert catalog.get("/v1/blueprints/system/entities/storefront").status_code == 200


def test_delete_refused_while_required_by_others(catalog: TestClient) -> None:
    deployment = {
        "identifier": "deployment",
        "title": "Deployment",
        "relations": {"service": {"target": "service", "required": True}},
    }
    assert catalog.post("/v1/blueprints", json=deployment).status_code == 201
    assert (
        catalog.post(
            "/v1/blueprints/service/entities",
            json={"identifier": "api", "properties": {"language": "go"}, "relations": {"system": "billing"}},
        ).status_code
        == 201
    )
    dep = {"identifier": "api-v1", "relations": {"service": "api"}}
    assert catalog.post("/v1/blueprints/deployment/entities", json=dep).status_code == 201

    refused = catalog.delete("/v1/blueprints/service/entities/api")
    assert refused.status_code == 409
    assert catalog.delete("/v1/blueprints/deployment/entities/api-v1").status_code == 204
    # a non-required relation pointing at a deleted entity is cleared
    assert catalog.delete("/v1/blueprints/system/entities/billing").status_code == 204
    assert catalog.get("/v1/blueprints/service/entities/api").json()["relations"]["system"] is None
    assert catalog.delete("/v1/blueprints/service/entities/api").status_code == 204


def test_bulk_writes_valid_items_and_reports_invalid_ones(catalog: TestClient) -> None:
    entities: list[dict[str, Any]] = [
        {"identifier": f"svc-{i}", "properties": {"language": "go", "tier": 1 + i % 3}} for i in range(50)
    ]
    entities[7]["properties"]["tier"] = 9
    entities[8] = {
        "identifier": "svc-8",
        "properties": {"language": "go"},
        "relations": {"system": "nowhere"},
    }
    entities.append({"identifier": "svc-0", "properties": {"language": "go"}})
    response = catalog.post("/v1/blueprints/service/entities/bulk", json={"entities": entities})
    assert response.status_code == 207, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results].count("created") == 48
    assert results[7]["error"]["details"][0]["pointer"] == "/entities/7/properties/tier"
    assert results[8]["error"]["details"][0]["pointer"] == "/entities/8/relations/system"
    assert results[50]["error"]["details"][0]["pointer"] == "/entities/50/identifier"
    assert catalog.get("/v1/blueprints/service/entities/svc-7").status_code == 404
    listed = catalog.get("/v1/blueprints/service/entities?limit=20")
    assert len(listed.json()["items"]) == 20 and listed.json()["next_cursor"]

    too_many = catalog.post(
        "/v1/blueprints/service/entities/bulk", json={"entities": [{"identifier": "a"}] * 1001}
    )
    assert too_many.status_code == 422
