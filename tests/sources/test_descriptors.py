"""The descriptor converter: Backstage catalog-info.yaml of every kind and gantry.yaml, valid and not."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from catalog.schemas import BlueprintIn
from catalog.sources.descriptors import (
    BUILTIN_BLUEPRINTS,
    DescriptorEntity,
    DescriptorError,
    DescriptorTeam,
    DescriptorUser,
    builtin_blueprints,
    convert_document,
    descriptor_entities,
    descriptor_to_entity,
    parse_ref,
)

CATALOG_INFO = """
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: payments
  title: Payments service
  description: Takes card payments.
  annotations:
    github.com/project-slug: acme/payments
  labels: {tier: critical}
  tags: [python, pci]
  links:
    - url: https://dashboards.example.com/payments
      title: Dashboard
spec:
  type: service
  lifecycle: production
  owner: group:default/Payments.Team
  system: billing
  subcomponentOf: platform-core
  dependsOn: [component:ledger, resource:payments-db, "resource:ops/queue"]
  providesApis: [payments-api]
  consumesApis: ["api:fraud/scoring"]
---
apiVersion: backstage.io/v1alpha1
kind: API
metadata: {name: payments-api, description: The payments REST API}
spec:
  type: openapi
  lifecycle: production
  owner: payments-team
  system: billing
  definition: |
    openapi: 3.0.0
---
apiVersion: backstage.io/v1alpha1
kind: System
metadata: {name: billing}
spec: {owner: payments-team, domain: finance}
---
apiVersion: backstage.io/v1alpha1
kind: Domain
metadata: {name: finance, title: Finance}
spec: {owner: "group:finance"}
---
apiVersion: backstage.io/v1alpha1
kind: Resource
metadata: {name: payments-db, namespace: default}
spec: {type: database, owner: payments-team, system: billing, dependsOn: ["resource:storage"]}
---
apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {name: payments-team, description: Card payments}
spec:
  type: team
  profile: {displayName: Payments}
  parent: engineering
  children: [payments-oncall]
  members: [alice]
---
apiVersion: backstage.io/v1alpha1
kind: User
metadata: {name: alice}
spec:
  profile: {displayName: Alice Martin, email: alice@example.com}
  memberOf: [payments-team, "group:default/Platform"]
"""


def _documents() -> list[Any]:
    return list(yaml.safe_load_all(CATALOG_INFO))


LOCATION = "https://github.com/acme/payments/blob/main/catalog-info.yaml"


def test_a_component_keeps_metadata_owner_and_every_relation() -> None:
    result = descriptor_to_entity(_documents()[0], location=LOCATION)
    assert isinstance(result, DescriptorEntity), result
    assert result.blueprint == "component"
    assert result.entity == {
        "identifier": "payments",
        "title": "Payments service",
        "team": ["payments-team"],
        "properties": {
            "location": LOCATION,
            "description": "Takes card payments.",
            "annotations": {"github.com/project-slug": "acme/payments"},
            "labels": {"tier": "critical"},
            "tags": ["python", "pci"],
            "links": [{"url": "https://dashboards.example.com/payments", "title": "Dashboard"}],
            "type": "service",
            "lifecycle": "production",
            "owner": "group:default/Payments.Team",
        },
        "relations": {
            "system": "billing",
            "subcomponent_of": "platform-core",
            "depends_on": ["ledger"],
            "depends_on_resources": ["payments-db", "ops/queue"],
            "provides_apis": ["payments-api"],
            "consumes_apis": ["fraud/scoring"],
        },
    }
    assert result.warnings == []


def test_api_system_domain_and_resource() -> None:
    docs = _documents()
    api, system, domain, resource = (descriptor_to_entity(d, location="x.yaml") for d in docs[1:5])
    assert isinstance(api, DescriptorEntity) and api.blueprint == "api"
    assert api.entity["properties"]["definition"].startswith("openapi: 3.0.0")
    assert api.entity["relations"] == {"system": "billing"} and api.entity["team"] == ["payments-team"]
    assert isinstance(system, DescriptorEntity) and system.entity["relations"] == {"domain": "finance"}
    assert isinstance(domain, DescriptorEntity) and domain.entity["title"] == "Finance"
    assert domain.entity["team"] == ["finance"] and "relations" not in domain.entity
    assert isinstance(resource, DescriptorEntity) and resource.blueprint == "resource"
    assert resource.entity["relations"] == {"system": "billing", "depends_on": ["storage"]}
    assert resource.entity["properties"]["type"] == "database"


def test_groups_become_teams_and_users_users() -> None:
    docs = _documents()
    team = convert_document(docs[5], location="org.yaml")
    assert team == DescriptorTeam(
        identifier="payments-team",
        title="Payments",
        description="Card payments",
        parent="engineering",
        children=["payments-oncall"],
        members=["alice"],
        warnings=["team hierarchy (spec.parent, spec.children) is not kept: Gantry's teams are flat"],
    )
    user = convert_document(docs[6], location="org.yaml")
    assert user == DescriptorUser("alice", "alice@example.com", "Alice Martin", ["payments-team", "platform"])
    # The files data source writes entities only: a Group or User there is an error naming the kind.
    as_entity = descriptor_to_entity(docs[5], location="org.yaml")
    assert isinstance(as_entity, DescriptorError) and as_entity.field == "/kind"


def test_a_prefix_renames_the_blueprints() -> None:
    result = descriptor_to_entity(_documents()[0], location="x", prefix="bs_")
    assert isinstance(result, DescriptorEntity) and result.blueprint == "bs_component"
    bodies = builtin_blueprints("bs_")
    assert [b["identifier"] for b in bodies] == [f"bs_{n}" for n in BUILTIN_BLUEPRINTS]
    assert bodies[-1]["relations"]["provides_apis"]["target"] == "bs_api"


def test_builtin_blueprints_are_valid_and_created_after_their_targets() -> None:
    seen: set[str] = set()
    for body in builtin_blueprints():
        BlueprintIn.model_validate(body)
        seen.add(body["identifier"])
        assert {r["target"] for r in body["relations"].values()} <= seen


def test_the_component_properties_fit_the_builtin_schema() -> None:
    from catalog.blueprints.properties import validator_for

    schemas = {b["identifier"]: b for b in builtin_blueprints()}
    for document in _documents()[:5]:
        result = descriptor_to_entity(document, location="x")
        assert isinstance(result, DescriptorEntity)
        schema = schemas[result.blueprint]
        assert (
            validator_for(result.blueprint, 1, schema["schema"]).validate(result.entity["properties"]) == []
        )
        assert set(result.entity.get("relations", {})) <= set(schema["relations"])


def test_unmapped_spec_keys_and_odd_references_are_listed_not_dropped() -> None:
    doc = {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Resource",
        "metadata": {"name": "bucket"},
        "spec": {"type": "s3", "owner": "user:bob", "dependsOn": ["component:web"], "region": "eu"},
    }
    result = descriptor_to_entity(doc, location="x")
    assert isinstance(result, DescriptorEntity)
    assert "team" not in result.entity and result.entity["properties"]["owner"] == "user:default/bob"
    assert result.warnings == [
        "spec.owner user:bob is kept in the owner property only",
        "spec.dependsOn[0] component:web cannot be related from a Resource",
        "spec.region has no place in Gantry and was not imported",
    ]


def _backstage(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": "web"},
        "spec": {"type": "website", "owner": "team-a"},
    }
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            doc[section][name] = value
        else:
            doc[section] = value
    return doc


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ("just text", ""),
        ({"title": "no kind"}, ""),
        (_backstage(apiVersion="v1"), "/apiVersion"),
        (_backstage(kind="Template"), "/kind"),
        (_backstage(metadata=None), "/metadata"),
        (_backstage(metadata={"name": "has space"}), "/metadata/name"),
        (_backstage(metadata={"name": "x" * 64}), "/metadata/name"),
        (_backstage(metadata={"name": "web", "namespace": "a/b"}), "/metadata/namespace"),
        (_backstage(metadata={"name": "web", "tags": "python"}), "/metadata/tags"),
        (_backstage(metadata={"name": "web", "links": [{"title": "no url"}]}), "/metadata/links/0/url"),
        (_backstage(metadata={"name": "web", "labels": {"a": 1}}), "/metadata/labels"),
        (_backstage(spec=["not", "a", "mapping"]), "/spec"),
        (_backstage(spec__owner="group:9-bad"), "/spec/owner"),
        (_backstage(spec__system=["billing"]), "/spec/system"),
        (_backstage(spec__system="domain:finance"), "/spec/system"),
        (_backstage(spec__dependsOn="ledger"), "/spec/dependsOn"),
        (_backstage(spec__providesApis=["ok", "bad name"]), "/spec/providesApis/1"),
        (_backstage(spec__type=3), "/spec/type"),
        (
            {"apiVersion": "backstage.io/v1alpha1", "kind": "User", "metadata": {"name": "x"}, "spec": {}},
            "/spec/profile/email",
        ),
    ],
)
def test_invalid_backstage_documents_name_the_field(document: Any, field: str) -> None:
    result = descriptor_to_entity(document, location="bad.yaml")
    assert isinstance(result, DescriptorError), result
    assert result.field == field and result.location == "bad.yaml"
    assert str(result).startswith("bad.yaml: ")


def test_gantry_yaml_one_entity_many_entities_and_the_apply_shape() -> None:
    one = {"blueprint": "service", "identifier": "cart", "team": "checkout-team", "properties": {"tier": 2}}
    result = descriptor_to_entity(one, location="gantry.yaml")
    assert result == DescriptorEntity(
        "service", {"identifier": "cart", "team": "checkout-team", "properties": {"tier": 2}}
    )
    many = {
        "entities": [
            {"blueprint": "ec2Instance", "identifier": "i-1", "relations": {"cluster": "prod"}},
            {"blueprint": "service", "identifier": "../../users/alice"},
            {"blueprint": "service", "identifier": "ok", "owner": "x"},
        ]
    }
    results = descriptor_entities(many, location="gantry.yaml")
    assert results[0] == DescriptorEntity(
        "ec2Instance", {"identifier": "i-1", "relations": {"cluster": "prod"}}
    )
    assert isinstance(results[1], DescriptorError) and results[1].field == "/entities/1/identifier"
    assert isinstance(results[2], DescriptorError) and results[2].field == "/entities/2/owner"
    applied = {"kind": "Entity", "spec": {"blueprint": "service", "identifier": "cart", "title": "Cart"}}
    assert descriptor_to_entity(applied, location="x") == DescriptorEntity(
        "service", {"identifier": "cart", "title": "Cart"}
    )


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"blueprint": "bad.name", "identifier": "x"}, "/blueprint"),
        ({"blueprint": "service"}, "/identifier"),
        ({"blueprint": "service", "identifier": "a/./b"}, "/identifier"),
        ({"blueprint": "service", "identifier": "x", "title": 3}, "/title"),
        ({"blueprint": "service", "identifier": "x", "team": [1]}, "/team"),
        ({"blueprint": "service", "identifier": "x", "properties": []}, "/properties"),
        ({"blueprint": "service", "identifier": "x", "relations": {"system": 1}}, "/relations"),
        ({"entities": "nope"}, "/entities"),
    ],
)
def test_invalid_gantry_yaml_names_the_field(document: Any, field: str) -> None:
    results = descriptor_entities(document, location="gantry.yaml")
    assert len(results) == 1 and isinstance(results[0], DescriptorError)
    assert results[0].field == field


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("web", ("", "default", "web")),
        ("component:web", ("component", "default", "web")),
        ("Group:ops/sre", ("group", "ops", "sre")),
        ("ops/sre", ("", "ops", "sre")),
    ],
)
def test_entity_references(text: str, expected: tuple[str, str, str]) -> None:
    ref = parse_ref(text)
    assert ref is not None and (ref.kind, ref.namespace, ref.name) == expected
    assert parse_ref({"kind": "API", "name": "x"}) is not None
    assert parse_ref("a:b:c/d e") is None and parse_ref(3) is None
