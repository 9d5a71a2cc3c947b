"""Ocean-shape mappings, field by field: raw vendor data + a resource's mapping → the entity
(or the item's errors). The jq programs run in the real sandbox; nothing here needs a database."""

from __future__ import annotations

from typing import Any

import pytest

from catalog.sources.definitions import Resource
from catalog.sources.mapping import map_items


def _resource(mappings: dict[str, Any], **port: Any) -> Resource:
    base = {"identifier": ".name", "blueprint": '"service"'}
    return Resource.model_validate(
        {"kind": "repository", "port": {"entity": {"mappings": {**base, **mappings}}, **port}}
    )


# (raw item, mappings beside identifier/blueprint, expected entity without identifier)
TABLE: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ("string literal", {"name": "api"}, {"title": '"Service"'}, {"title": "Service"}),
    (
        "property path",
        {"name": "api", "html_url": "https://x"},
        {"properties": {"url": ".html_url"}},
        {"properties": {"url": "https://x"}},
    ),
    (
        "null leaves unset",
        {"name": "api", "language": None},
        {"properties": {"language": ".language"}},
        {"properties": {}},
    ),
    ("missing leaves unset", {"name": "api"}, {"properties": {"language": ".language"}}, {"properties": {}}),
    (
        "array value",
        {"name": "api", "topics": ["a", "b"]},
        {"properties": {"tags": ".topics"}},
        {"properties": {"tags": ["a", "b"]}},
    ),
    (
        "first output counts",
        {"name": "api", "topics": ["a", "b"]},
        {"properties": {"first": ".topics[]"}},
        {"properties": {"first": "a"}},
    ),
    (
        "false is kept",
        {"name": "api", "private": False},
        {"properties": {"private": ".private"}},
        {"properties": {"private": False}},
    ),
    (
        "object value",
        {"name": "api", "meta": {"k": 1}},
        {"properties": {"meta": ".meta"}},
        {"properties": {"meta": {"k": 1}}},
    ),
    (
        "team as string",
        {"name": "api", "owner": {"login": "core"}},
        {"team": ".owner.login"},
        {"team": ["core"]},
    ),
    ("team as array", {"name": "api", "teams": ["a", "b"]}, {"team": ".teams"}, {"team": ["a", "b"]}),
    (
        "relation identifier",
        {"name": "api", "topics": ["billing"]},
        {"relations": {"system": ".topics[0]"}},
        {"relations": {"system": "billing"}},
    ),
    (
        "relation array",
        {"name": "api", "deps": ["db", "cache"]},
        {"relations": {"depends_on": ".deps"}},
        {"relations": {"depends_on": ["db", "cache"]}},
    ),
    (
        "relation null unset",
        {"name": "api", "topics": []},
        {"relations": {"system": ".topics[0]"}},
        {"relations": {}},
    ),
    (
        "composite identifier",
        {"name": "api", "org": "acme"},
        {"identifier": '.org + "/" + .name'},
        {"identifier": "acme/api"},
    ),
    ("number identifier", {"name": "api", "id": 42}, {"identifier": ".id"}, {"identifier": "42"}),
    (
        "jq functions",
        {"name": "api", "full": "ACME/API"},
        {"properties": {"slug": ".full | ascii_downcase"}},
        {"properties": {"slug": "acme/api"}},
    ),
]


@pytest.mark.parametrize(("case", "raw", "mappings", "expected"), TABLE, ids=[row[0] for row in TABLE])
def test_compatibility_table(
    case: str, raw: dict[str, Any], mappings: dict[str, Any], expected: dict[str, Any]
) -> None:
    mapped = map_items(_resource(mappings), 0, [raw])
    assert mapped.errors == [], case
    (entity,) = mapped.entities
    assert entity.blueprint == "service"
    want = {"identifier": "api", "properties": {}, "relations": {}, **expected}
    assert entity.entity == want


def test_items_to_parse_yields_one_entity_per_element_seen_as_item() -> None:
    resource = _resource(
        {"identifier": '.repo + "-" + .item.name', "properties": {"image": ".item.image", "repo": ".repo"}},
        itemsToParse=".workloads",
    )
    raw = {"repo": "shop", "workloads": [{"name": "web", "image": "web:1"}, {"name": "job", "image": None}]}
    mapped = map_items(resource, 0, [raw])
    assert [(e.index, e.entity) for e in mapped.entities] == [
        (0, {"identifier": "shop-web", "properties": {"image": "web:1", "repo": "shop"}, "relations": {}}),
        (0, {"identifier": "shop-job", "properties": {"repo": "shop"}, "relations": {}}),
    ]


def test_selector_keeps_items_whose_first_output_is_true_and_counts_them_seen() -> None:
    resource = Resource.model_validate(
        {
            "kind": "repository",
            "selector": {"query": ".archived == false"},
            "port": {"entity": {"mappings": {"identifier": ".name", "blueprint": '"service"'}}},
        }
    )
    mapped = map_items(
        resource, 0, [{"name": "a", "archived": False}, {"name": "b", "archived": True}, {"name": "c"}]
    )
    assert mapped.seen == 1
    assert [e.entity["identifier"] for e in mapped.entities] == ["a"]


def test_search_relation_leaves_are_evaluated_into_a_query() -> None:
    relation = {
        "combinator": '"and"',
        "rules": [{"property": '"$identifier"', "operator": '"in"', "value": ".deps"}],
    }
    mapped = map_items(
        _resource({"relations": {"depends_on": relation}}), 0, [{"name": "api", "deps": ["db"]}]
    )
    (entity,) = mapped.entities
    assert entity.searches == {
        "depends_on": {
            "combinator": "and",
            "rules": [{"property": "$identifier", "operator": "in", "value": ["db"]}],
        }
    }


def test_errors_name_the_field_and_the_item_and_other_items_still_map() -> None:
    resource = _resource({"properties": {"port": ".port | tonumber"}})
    mapped = map_items(
        resource, 2, [{"name": "ok", "port": "80"}, {"name": "bad", "port": "eighty"}, {"port": "1"}]
    )
    assert [e.entity["identifier"] for e in mapped.entities] == ["ok"]
    by_key = {e.key: e for e in mapped.errors}
    assert by_key["bad"].pointer == "/resources/2/port/entity/mappings/properties/port"
    assert "cannot be parsed as a number" in by_key["bad"].message
    # no identifier produced: the item is named by its index
    assert by_key[2].pointer == "/resources/2/port/entity/mappings/identifier"
    assert mapped.failed == {1, 2}


def test_a_runaway_program_fails_its_item_only() -> None:
    resource = _resource({"properties": {"spin": "if .spin then last(range(1e12)) else 1 end"}})
    mapped = map_items(resource, 0, [{"name": "calm"}, {"name": "busy", "spin": True}])
    assert [e.entity["identifier"] for e in mapped.entities] == ["calm"]
    (error,) = mapped.errors
    assert error.key == "busy" and "CPU" in error.message
