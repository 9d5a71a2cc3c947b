"""Blueprint definitions: validation, compatibility, deletion."""

from __future__ import annotations

import copy
from typing import Any

from fastapi.testclient import TestClient

from tests.api.conftest import SERVICE_BLUEPRINT


def pointers(response: Any) -> set[str]:
    return {d["pointer"] for d in response.json()["error"]["details"]}


def test_bad_schema_names_the_keyword(client: TestClient) -> None:
    client.post("/v1/blueprints", json={"identifier": "system", "title": "System"})
    bad = copy.deepcopy(SERVICE_BLUEPRINT)
    bad["schema"]["properties"]["tier"] = {"type": "integer", "minimum": "one"}
    response = client.post("/v1/blueprints", json=bad)
    assert response.status_code == 422
    assert pointers(response) == {"/schema/properties/tier/minimum"}

    bad = copy.deepcopy(SERVICE_BLUEPRINT)
    bad["schema"]["properties"]["repo"]["format"] = "uri-thing"
    bad["schema"]["properties"]["x"] = {"type": "strin"}
    bad["schema"]["required"] = ["nope"]
    bad["relations"]["depends_on"]["required"] = True
    response = client.post("/v1/blueprints", json=bad)
    assert pointers(response) == {
        "/schema/properties/repo/format",
        "/schema/properties/x/type",
        "/schema/required/0",
        "/relations/depends_on",
    }
    missing_target = copy.deepcopy(SERVICE_BLUEPRINT)
    missing_target["relations"]["system"]["target"] = "galaxy"
    assert pointers(client.post("/v1/blueprints", json=missing_target)) == {"/relations/system/target"}
    assert client.get("/v1/blueprints/service").status_code == 404


def test_type_change_refused_while_entities_exist(catalog: TestClient) -> None:
    changed = copy.deepcopy(SERVICE_BLUEPRINT)
    changed["schema"]["properties"]["tier"] = {"type": "string"}
    catalog.post(
        "/v1/blueprints/service/entities", json={"identifier": "a", "properties": {"language": "go"}}
    )
    response = catalog.put("/v1/blueprints/service", json=changed)
    assert response.status_code == 409
    assert pointers(response) == {"/schema/properties/tier/type"}

    # removing a property drops its data; the validator follows the new version at once
    dropped = copy.deepcopy(SERVICE_BLUEPRINT)
    del dropped["schema"]["properties"]["tags"]
    catalog.post(
        "/v1/blueprints/service/entities?upsert=true",
        json={"identifier": "a", "properties": {"language": "go", "tags": ["x"]}},
    )
    assert catalog.put("/v1/blueprints/service", json=dropped).status_code == 200
    assert "tags" not in catalog.get("/v1/blueprints/service/entities/a").json()["properties"]
    refused = catalog.post(
        "/v1/blueprints/service/entities?upsert=true",
        json={"identifier": "a", "properties": {"language": "go", "tags": ["x"]}},
    )
    assert refused.status_code == 422


def test_delete_needs_delete_entities(catalog: TestClient) -> None:
    assert catalog.delete("/v1/blueprints/system").status_code == 409  # has entities and is a relation target
    catalog.post(
        "/v1/blueprints/service/entities",
        json={"identifier": "a", "properties": {"language": "go"}, "relations": {"system": "billing"}},
    )
    assert catalog.delete("/v1/blueprints/system?delete_entities=true").status_code == 204
    assert "system" not in catalog.get("/v1/blueprints/service").json()["relations"]
    assert "system" not in catalog.get("/v1/blueprints/service/entities/a").json()["relations"]


def test_auth_and_roles(catalog: TestClient) -> None:
    anonymous = catalog.get("/v1/blueprints", headers={"Authorization": ""})
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthenticated"
    token = catalog.post("/v1/tokens", json={"user": "bob"}).json()["token"]
    bob = {"Authorization": f"Bearer {token}"}
    assert catalog.get("/v1/me", headers=bob).json()["identifier"] == "bob"
    assert (
        catalog.post("/v1/blueprints", json={"identifier": "x", "title": "X"}, headers=bob).status_code == 403
    )
    assert catalog.post("/v1/teams", json={"identifier": "t", "title": "T"}, headers=bob).status_code == 403
    # members write entities
    created = catalog.post("/v1/blueprints/system/entities", json={"identifier": "s2"}, headers=bob)
    assert created.status_code == 201 and created.json()["created_by"] == "bob"
    audit = catalog.get("/v1/audit-log?resource_type=entity&identifier=s2").json()["items"]
    assert audit[0]["actor"] == "bob" and audit[0]["after"]["identifier"] == "s2"
