"""Port's blueprint JSON accepted as is by POST/PUT /v1/blueprints, and given back with ?format=port."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient

from catalog.sources.port import blueprint_from_port, entity_from_port
from tests.api.conftest import client, settings  # noqa: F401 (fixtures)

# As Port's UI exports them (stamps included), camelCase identifiers and all.
MICROSERVICE: dict[str, Any] = {
    "identifier": "microservice",
    "title": "Microservice",
    "icon": "Microservice",
    "description": "A deployable service",
    "schema": {
        "properties": {
            "readme": {"title": "README", "type": "string", "format": "markdown", "icon": "Book"},
            "url": {"title": "URL", "type": "string", "format": "url"},
            "onCall": {"title": "On call", "type": "string", "format": "user"},
            "slackChannel": {"type": "string", "format": "email"},
            "language": {"type": "string", "enum": ["Go", "Python"], "enumColors": {"Go": "blue"}},
            "config": {"type": "string", "format": "yaml"},
            "ttl": {"type": "string", "format": "timer"},
            "lastDeploy": {"type": "string", "format": "date-time"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "meta": {"type": "object"},
            "replicas": {"type": "number"},
        },
        "required": ["language"],
    },
    "relations": {"system": {"title": "System", "target": "ec2System", "required": False, "many": False}},
    "mirrorProperties": {"systemTitle": {"title": "System", "path": "system.$title"}},
    "calculationProperties": {},
    "aggregationProperties": {},
    "ownership": {"type": "Direct"},
    "createdAt": "2024-01-01T00:00:00.000Z",
    "createdBy": "someone@example.com",
}
SYSTEM: dict[str, Any] = {
    "identifier": "ec2System",
    "title": "System",
    "schema": {"properties": {}, "required": []},
    "relations": {},
    "mirrorProperties": {},
    "calculationProperties": {},
    "aggregationProperties": {
        "serviceCount": {
            "title": "Services",
            "target": "microservice",
            "calculationSpec": {"calculationBy": "entities", "func": "count"},
            "query": {
                "combinator": "and",
                "rules": [{"property": "$createdAt", "operator": ">", "value": "2020-01-01T00:00:00Z"}],
            },
        },
        "totalReplicas": {
            "title": "Replicas",
            "target": "microservice",
            "calculationSpec": {"calculationBy": "property", "func": "sum", "property": "replicas"},
            "pathFilter": [{"path": ["system"], "fromBlueprint": "microservice"}],
        },
    },
}


@pytest.fixture
def ported(client: TestClient) -> TestClient:  # noqa: F811
    plain = {**SYSTEM, "aggregationProperties": {}}
    assert client.post("/v1/blueprints", json=plain).status_code == 201
    response = client.post("/v1/blueprints", json=MICROSERVICE)
    assert response.status_code == 201, response.text
    response = client.put("/v1/blueprints/ec2System", json=SYSTEM)
    assert response.status_code == 200, response.text
    return client


def test_a_port_blueprint_is_accepted_as_is_and_computes(ported: TestClient) -> None:
    bp = ported.get("/v1/blueprints/microservice").json()
    assert bp["schema"] == MICROSERVICE["schema"]
    assert bp["mirror_properties"] == {"systemTitle": {"title": "System", "path": "system.$title"}}
    system = ported.get("/v1/blueprints/ec2System").json()
    assert system["aggregation_properties"]["totalReplicas"]["function"] == "sum"
    assert system["aggregation_properties"]["serviceCount"]["query"]["rules"][0]["property"] == "$created_at"
    assert (
        ported.post(
            "/v1/blueprints/ec2System/entities", json={"identifier": "web", "title": "Web"}
        ).status_code
        == 201
    )
    for name, replicas in (("cart", 2), ("shop", 3)):
        body = {
            "identifier": name,
            "properties": {"language": "Go", "replicas": replicas},
            "relations": {"system": "web"},
        }
        assert ported.post("/v1/blueprints/microservice/entities", json=body).status_code == 201
    web = ported.get("/v1/blueprints/ec2System/entities/web").json()
    assert web["properties"] == {"serviceCount": 2, "totalReplicas": 5}
    cart = ported.get("/v1/blueprints/microservice/entities/cart").json()
    assert cart["properties"]["systemTitle"] == "Web"


def test_get_in_port_format_gives_the_port_json_back(ported: TestClient) -> None:
    response = ported.get("/v1/blueprints/ec2System", params={"format": "port"})
    assert response.status_code == 200, response.text
    assert response.json() == {**SYSTEM, "icon": None, "description": ""} | {
        "aggregationProperties": {
            **SYSTEM["aggregationProperties"],
            # The relation Gantry resolved is named, as Port's pathFilter.
            "serviceCount": {
                **SYSTEM["aggregationProperties"]["serviceCount"],
                "pathFilter": [{"path": ["system"], "fromBlueprint": "microservice"}],
            },
        }
    }
    microservice = ported.get("/v1/blueprints/microservice?format=port").json()
    given = {k: v for k, v in MICROSERVICE.items() if k not in ("ownership", "createdAt", "createdBy")}
    assert microservice == given
    # And the Port form is accepted back unchanged.
    assert ported.put("/v1/blueprints/microservice", json=microservice).status_code == 200
    assert ported.get("/v1/blueprints/nope?format=port").status_code == 404
    assert ported.get("/v1/blueprints/microservice?format=yaml").status_code == 422


@pytest.mark.parametrize(
    ("change", "pointer"),
    [
        (
            {"calculationProperties": {"age": {"calculation": ".x", "type": "number"}}},
            "/calculationProperties/age",
        ),
        ({"ownership": {"type": "Inherited", "path": "system"}}, "/ownership"),
        ({"teamInheritance": {"path": "system"}}, "/teamInheritance"),
        ({"changelogDestination": {"type": "WEBHOOK", "url": "https://x"}}, "/changelogDestination"),
        (
            {
                "aggregationProperties": {
                    "m": {
                        "target": "microservice",
                        "calculationSpec": {
                            "calculationBy": "property",
                            "func": "median",
                            "property": "replicas",
                        },
                    }
                }
            },
            "/aggregationProperties/m/calculationSpec",
        ),
        (
            {
                "aggregationProperties": {
                    "m": {
                        "target": "microservice",
                        "calculationSpec": {
                            "calculationBy": "entities",
                            "func": "average",
                            "averageOf": "week",
                        },
                    }
                }
            },
            "/aggregationProperties/m/calculationSpec",
        ),
        (
            {
                "aggregationProperties": {
                    "m": {
                        "target": "microservice",
                        "pathFilter": [{"path": ["a", "b"]}],
                        "calculationSpec": {"calculationBy": "entities", "func": "count"},
                    }
                }
            },
            "/aggregationProperties/m/pathFilter",
        ),
        ({"mirrorProperties": {}, "mirror_properties": {}}, "/mirrorProperties"),
    ],
)
def test_what_gantry_cannot_express_is_a_422_naming_it(
    ported: TestClient, change: dict[str, Any], pointer: str
) -> None:
    body = {**copy.deepcopy(SYSTEM), "identifier": "other", **change}
    response = ported.post("/v1/blueprints", json=body)
    assert response.status_code == 422, response.text
    assert [d["pointer"] for d in response.json()["error"]["details"]] == [pointer]
    assert ported.get("/v1/blueprints/other").status_code == 404


def test_port_formats_gantry_lacks_are_named_by_the_schema_check(ported: TestClient) -> None:
    body = {**copy.deepcopy(SYSTEM), "identifier": "other", "aggregationProperties": {}}
    body["schema"]["properties"]["ip"] = {"type": "string", "format": "ipv4"}
    response = ported.post("/v1/blueprints", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["pointer"] == "/schema/properties/ip/format"


def test_port_entities_convert() -> None:
    entity, dropped = entity_from_port(
        {
            "identifier": "cart",
            "title": "Cart",
            "blueprint": "microservice",
            "team": [],
            "icon": "Cart",
            "properties": {"language": "Go"},
            "relations": {"system": "web", "deps": [], "owner": None},
            "createdAt": "2024-01-01T00:00:00.000Z",
            "scorecards": {},
        }
    )
    assert entity == {
        "identifier": "cart",
        "title": "Cart",
        "properties": {"language": "Go"},
        "relations": {"system": "web"},
    }
    assert dropped == ["scorecards", "icon"]
    assert blueprint_from_port({"identifier": "x", "title": "X", "mirrorProperties": {}}).unsupported == []
