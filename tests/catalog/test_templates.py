"""The template renderer: native values for a single expression, strings otherwise, strict about
undefined names, ``add_duration``, and secret inputs as the run's marked placeholders."""

from __future__ import annotations

from typing import Any

import pytest

from catalog.runs.secrets import mark_inputs, placeholder, secret_input_names
from catalog.sandbox.templates import (
    TemplateFailure,
    add_duration,
    evaluate_condition,
    references,
    render_string,
    render_value,
)

CONTEXT: dict[str, Any] = {
    "inputs": {"replicas": 3, "regions": ["eu", "us"], "flag": True, "name": "api", "empty": None},
    "entity": {"identifier": "payments", "properties": {"tier": 1, "labels": {"team": "core"}}},
    "steps": {"record": {"outputs": {"id": "rec-7"}, "status": "SUCCESS"}},
    "run": {"id": "r1", "started_at": "2026-03-01T10:00:00Z"},
    "user": {"identifier": "alice"},
    "event": None,
}


@pytest.mark.parametrize(
    "template, expected",
    [
        ("{{ inputs.replicas }}", 3),
        ("{{ inputs.regions }}", ["eu", "us"]),
        ("{{ inputs.flag }}", True),
        ("{{ inputs.empty }}", None),
        ("{{ entity.properties.labels }}", {"team": "core"}),
        ("  {{ inputs.replicas + 1 }}  ", 4),  # surrounding blanks: still one expression
        ("{{ inputs.regions | length }}", 2),
    ],
)
def test_a_single_expression_renders_to_its_native_value(template: str, expected: Any) -> None:
    assert render_string(template, CONTEXT) == expected


@pytest.mark.parametrize(
    "template, expected",
    [
        ("replicas={{ inputs.replicas }}", "replicas=3"),
        ("{{ inputs.name }}-{{ entity.identifier }}", "api-payments"),
        ("{% if inputs.flag %}on{% endif %}", "on"),
        ("{{ inputs.regions | join(',') }};\n", "eu,us;\n"),  # trailing newline kept
        ("no template here {", "no template here {"),
    ],
)
def test_anything_else_renders_to_a_string(template: str, expected: str) -> None:
    assert render_string(template, CONTEXT) == expected


def test_render_value_walks_dicts_and_lists_and_keeps_other_values() -> None:
    value = {"a": ["{{ inputs.replicas }}", 5, None], "b": {"c": "id={{ steps.record.outputs.id }}"}}
    assert render_value(value, CONTEXT) == {"a": [3, 5, None], "b": {"c": "id=rec-7"}}


@pytest.mark.parametrize(
    "template",
    ["{{ inputs.missing }}", "x {{ inputs.missing }}", "{{ steps.later.outputs.url }}", "{{ secrets.x }}"],
)
def test_an_undefined_name_is_an_error_naming_where(template: str) -> None:
    with pytest.raises(TemplateFailure, match=r"^/steps/0/with/url: .*(undefined|has no attribute)"):
        render_value({"url": template}, CONTEXT, "/steps/0/with")


def test_a_syntax_error_is_a_template_failure() -> None:
    with pytest.raises(TemplateFailure, match=r"^/x: "):
        render_string("{{ inputs. }}", CONTEXT, "/x")


@pytest.mark.parametrize(
    "condition, expected",
    [
        ("{{ inputs.replicas > 2 }}", True),
        ("inputs.replicas > 5", False),  # without braces too
        ("{{ entity.properties.tier == 1 and user.identifier == 'alice' }}", True),
        ("{{ inputs.empty }}", False),
        ("{{ steps.record.status == 'SUCCESS' }}", True),
    ],
)
def test_conditions_are_expressions_with_or_without_braces(condition: str, expected: bool) -> None:
    assert evaluate_condition(condition, CONTEXT) is expected


def test_a_condition_on_an_undefined_name_fails_rather_than_being_false() -> None:
    with pytest.raises(TemplateFailure, match=r"^/steps/1/if: "):
        evaluate_condition("{{ inputs.missing == 1 }}", CONTEXT, "/steps/1/if")


@pytest.mark.parametrize(
    "moment, duration, expected",
    [
        ("2026-03-01T10:00:00Z", "P5D", "2026-03-06T10:00:00.000Z"),
        ("2026-03-01T10:00:00+02:00", "PT90M", "2026-03-01T09:30:00.000Z"),
        ("2026-02-28T23:00:00Z", "PT2H", "2026-03-01T01:00:00.000Z"),
    ],
)
def test_add_duration(moment: str, duration: str, expected: str) -> None:
    assert add_duration(moment, duration) == expected


def test_add_duration_as_a_filter_and_its_errors() -> None:
    assert render_string("{{ run.started_at | add_duration('P1D') }}", CONTEXT) == "2026-03-02T10:00:00.000Z"
    with pytest.raises(TemplateFailure, match="not an ISO 8601 time with an offset"):
        render_string("{{ '2026-03-01' | add_duration('P1D') }}", CONTEXT)
    with pytest.raises(TemplateFailure):
        render_string("{{ run.started_at | add_duration('five days') }}", CONTEXT)


def test_secret_inputs_render_as_the_runs_marked_placeholders() -> None:
    action = {"user_inputs": {"properties": {"token": {"type": "string", "secret": True}, "v": {}}}}
    names = secret_input_names(action)
    assert names == {"token"}
    inputs = mark_inputs({"token": "s3cret", "v": "1"}, names, "abc123")
    context = {**CONTEXT, "inputs": inputs}
    assert render_string("{{ inputs.token }}", context) == "${secret:abc123:token}"
    assert render_string("Bearer {{ inputs.token }}", context) == "Bearer ${secret:abc123:token}"
    assert render_string("{{ inputs.v }}", context) == "1"
    assert placeholder("token", "abc123") == "${secret:abc123:token}"


def test_references_name_what_a_template_reads() -> None:
    # Each dotted name is reported with its prefixes (``steps``, ``steps.record`` …).
    found = {r.path for r in references({"a": "{{ steps.record.outputs.id }} {{ inputs['name'] }}"})}
    assert max(found, key=len) == ("steps", "record", "outputs", "id")
    assert ("inputs", "name") in found
    assert {p[0] for p in found} == {"steps", "inputs"}
    loops = {r.path for r in references("{% for r in inputs.regions %}{{ r.x }}{% endfor %}")}
    assert {p[0] for p in loops} == {"inputs"}, "loop variables are not context names"
    assert ("inputs", "flag") in {r.path for r in references("inputs.flag", expression=True)}
