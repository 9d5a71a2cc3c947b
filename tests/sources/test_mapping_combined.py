"""A resource's mapping runs as one combined jq program per item: the same entity as the
expressions evaluated one by one, and, when the combined program fails for an item, that item's
errors still name the failing expression while the other items of the page still map. The jq
programs run in the real sandbox."""

from __future__ import annotations

from typing import Any

from catalog.sandbox.jq import run_jq
from catalog.sources.definitions import Resource
from catalog.sources.mapping import combined_program, map_items

AT = "/resources/0/port/entity/mappings"


def _resource(mappings: dict[str, Any]) -> Resource:
    base = {"identifier": ".name", "blueprint": '"service"'}
    return Resource.model_validate(
        {"kind": "repository", "port": {"entity": {"mappings": {**base, **mappings}}}}
    )


def test_the_combined_program_yields_every_output_of_each_expression_in_order() -> None:
    program = combined_program([".a", ".b[]", "empty", ".c # a trailing comment"])
    assert run_jq(program, {"a": 1, "b": [2, 3], "c": None}) == [[[1], [2, 3], [], [None]]]


def test_first_output_counts_and_null_or_nothing_leaves_unset() -> None:
    resource = _resource(
        {
            "title": ".names[]  # the first of several",
            "properties": {"lang": ".language", "none": "empty", "tags": "[.topics[]]"},
            "relations": {"owner": ".owner # comment"},
        }
    )
    mapping = map_items(
        resource, 0, [{"name": "api", "names": ["A", "B"], "language": None, "topics": ["x"]}]
    )
    assert mapping.errors == []
    assert [m.entity for m in mapping.entities] == [
        {"identifier": "api", "title": "A", "properties": {"tags": ["x"]}, "relations": {}}
    ]


def test_an_item_whose_combined_program_fails_reports_the_failing_field_alone() -> None:
    resource = _resource({"properties": {"url": ".html_url", "size": ".size + 1", "lang": ".language"}})
    items = [
        {"name": "ok-1", "html_url": "https://a", "size": 1, "language": "go"},
        {"name": "broken", "html_url": "https://b", "size": "big", "language": "go"},
        {"name": "ok-2", "html_url": "https://c", "size": 2},
    ]
    mapping = map_items(resource, 0, items)
    assert [(e.key, e.pointer, e.item) for e in mapping.errors] == [("broken", f"{AT}/properties/size", 1)]
    assert "cannot be added" in mapping.errors[0].message
    assert mapping.failed == {1}
    assert [(m.index, m.entity["properties"]) for m in mapping.entities] == [
        (0, {"url": "https://a", "size": 2, "lang": "go"}),
        (2, {"url": "https://c", "size": 3}),
    ]


def test_a_runaway_expression_stops_its_item_only_and_is_named() -> None:
    resource = _resource({"properties": {"slow": 'if .name == "loop" then last(range(1e12)) else 1 end'}})
    mapping = map_items(resource, 0, [{"name": "fine"}, {"name": "loop"}])
    assert [(e.key, e.pointer) for e in mapping.errors] == [("loop", f"{AT}/properties/slow")]
    assert "CPU time" in mapping.errors[0].message
    assert [m.entity["properties"] for m in mapping.entities] == [{"slow": 1}]
