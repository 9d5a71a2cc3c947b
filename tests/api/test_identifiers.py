"""Port's identifier rule for blueprints, properties and relations (``^[A-Za-z0-9@_=-]{1,100}$``):
camelCase blueprints, and names with ``@ = -`` reach URL paths, the query compiler's JSON paths
(quoted on SQLite, bound on PostgreSQL), sorting and computed properties intact."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

ODD_NAMES = ["a=b", "@x", "my-prop", "9lives", "UPPER_case"]

INSTANCE: dict[str, Any] = {
    "identifier": "ec2Instance",
    "title": "EC2 instance",
    "schema": {
        "properties": {
            "a=b": {"type": "string"},
            "@x": {"type": "number"},
            "my-prop": {"type": "string"},
            "9lives": {"type": "boolean"},
            "UPPER_case": {"type": "array", "items": {"type": "string"}},
        }
    },
}

CLUSTER: dict[str, Any] = {
    "identifier": "eks-Cluster",
    "title": "Cluster",
    "schema": {"properties": {"region@aws": {"type": "string"}}},
}


@pytest.fixture
def portal(client: TestClient) -> TestClient:
    assert client.post("/v1/blueprints", json=CLUSTER).status_code == 201
    instance = {
        **INSTANCE,
        "relations": {"cluster@eks": {"target": "eks-Cluster"}},
        "mirror_properties": {"cluster-region": {"path": "cluster@eks.region@aws"}},
    }
    assert client.post("/v1/blueprints", json=instance).status_code == 201
    cluster = {
        **CLUSTER,
        "relations": {"run-on=": {"target": "ec2Instance", "many": True}},
        "aggregation_properties": {"instance-count": {"target": "ec2Instance", "function": "count"}},
    }
    response = client.put("/v1/blueprints/eks-Cluster", json=cluster)
    assert response.status_code == 200, response.text
    cluster = {"identifier": "prod", "properties": {"region@aws": "eu-west-1"}}
    assert client.post("/v1/blueprints/eks-Cluster/entities", json=cluster).status_code == 201
    for i, (ab, x, flag) in enumerate([("x=1", 3, True), ("y", 1, False), ("x=1", 2, False)]):
        entity = {
            "identifier": f"i-{i}",
            "properties": {"a=b": ab, "@x": x, "my-prop": f"p{i}", "9lives": flag, "UPPER_case": [ab]},
            "relations": {"cluster@eks": "prod"},
        }
        response = client.post("/v1/blueprints/ec2Instance/entities", json=entity)
        assert response.status_code == 201, response.text
    response = client.patch(
        "/v1/blueprints/eks-Cluster/entities/prod", json={"relations": {"run-on=": ["i-0"]}}
    )
    assert response.status_code == 200, response.text
    return client


def _search(
    client: TestClient, *rules: dict[str, Any], sort: list[dict[str, Any]] | None = None
) -> list[str]:
    body: dict[str, Any] = {"query": {"combinator": "and", "rules": list(rules)}}
    if sort:
        body["sort"] = sort
    response = client.post("/v1/entities/search", json=body)
    assert response.status_code == 200, response.text
    return [e["identifier"] for e in response.json()["items"]]


def test_a_camel_case_blueprint_and_odd_names_round_trip_through_url_paths(portal: TestClient) -> None:
    bp = portal.get("/v1/blueprints/ec2Instance").json()
    assert set(bp["schema"]["properties"]) == set(ODD_NAMES)
    assert set(bp["relations"]) == {"cluster@eks"}
    entity = portal.get("/v1/blueprints/ec2Instance/entities/i-0").json()
    assert entity["properties"]["a=b"] == "x=1" and entity["properties"]["@x"] == 3
    assert entity["properties"]["cluster-region"] == "eu-west-1"  # the mirror read `region@aws`
    cluster = portal.get("/v1/blueprints/eks-Cluster/entities/prod").json()
    assert cluster["properties"]["instance-count"] == 3  # the instances whose `cluster@eks` is prod
    assert cluster["relations"]["run-on="] == ["i-0"]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"property": "a=b", "operator": "=", "value": "x=1"}, ["i-0", "i-2"]),
        ({"property": "@x", "operator": ">", "value": 1}, ["i-0", "i-2"]),
        ({"property": "@x", "operator": "between", "value": {"from": 1, "to": 2}}, ["i-1", "i-2"]),
        ({"property": "my-prop", "operator": "beginsWith", "value": "p1"}, ["i-1"]),
        ({"property": "9lives", "operator": "=", "value": True}, ["i-0"]),
        ({"property": "UPPER_case", "operator": "contains", "value": "y"}, ["i-1"]),
        ({"property": "UPPER_case", "operator": "isEmpty"}, []),
        ({"property": "a=b", "operator": "notIn", "value": ["y"]}, ["i-0", "i-2"]),
        ({"relation": "cluster@eks", "operator": "=", "value": "prod"}, ["i-0", "i-1", "i-2"]),
        (
            {"operator": "relatedTo", "blueprint": "eks-Cluster", "value": "prod", "direction": "downstream"},
            ["i-0", "i-1", "i-2"],
        ),
    ],
)
def test_query_rules_on_odd_names(portal: TestClient, rule: dict[str, Any], expected: list[str]) -> None:
    blueprint = {"property": "$blueprint", "operator": "=", "value": "ec2Instance"}
    assert sorted(_search(portal, blueprint, rule)) == expected


def test_sorting_by_odd_names(portal: TestClient) -> None:
    blueprint = {"property": "$blueprint", "operator": "=", "value": "ec2Instance"}
    assert _search(portal, blueprint, sort=[{"property": "@x", "order": "desc"}]) == ["i-0", "i-2", "i-1"]
    assert _search(portal, blueprint, sort=[{"property": "my-prop"}]) == ["i-0", "i-1", "i-2"]


@pytest.mark.parametrize(
    "name",
    ['a"b', "a.b", "$x", "a b", "a[0]", "x') OR 1=1 --", 'a"), "$.b', "", "x" * 101, "ü"],
)
def test_names_outside_the_rule_are_a_422_naming_them(client: TestClient, name: str) -> None:
    bad_property = {"identifier": "box", "title": "Box", "schema": {"properties": {name: {"type": "string"}}}}
    response = client.post("/v1/blueprints", json=bad_property)
    assert response.status_code == 422, response.text
    fields = [d["pointer"] for d in response.json()["error"]["details"]]
    assert fields and fields[0].startswith("/schema/properties/")
    bad_relation = {"identifier": "box", "title": "Box", "relations": {name: {"target": "box"}}}
    response = client.post("/v1/blueprints", json=bad_relation)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["pointer"].startswith("/relations")
    response = client.post("/v1/blueprints", json={"identifier": name, "title": "Box"})
    assert response.status_code == 422 and response.json()["error"]["details"][0]["pointer"] == "/identifier"
    assert client.get("/v1/blueprints/box").status_code == 404


@pytest.mark.parametrize("name", ['a"b', "a.b", 'x") OR 1=1 --', "a[0]", "$.x", "x' --"])
def test_a_query_on_a_name_outside_the_rule_is_a_422_not_sql(portal: TestClient, name: str) -> None:
    rule = {"property": name, "operator": "=", "value": "x"}
    response = portal.post("/v1/entities/search", json={"query": {"combinator": "and", "rules": [rule]}})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["pointer"] == "/query/rules/0/property"
    relation = {"relation": name, "operator": "=", "value": "x"}
    response = portal.post("/v1/entities/search", json={"query": {"combinator": "and", "rules": [relation]}})
    assert response.status_code == 422, response.text
    response = portal.post("/v1/entities/search", json={"sort": [{"property": name}]})
    assert response.status_code == 422, response.text
