"""Templates end quickly with an error on whatever would take unbounded time or memory:
repetition, powers, ranges and nested loops, recursion, output size."""

from __future__ import annotations

import pytest

from catalog.sandbox.jinja import MAX_OUTPUT, MAX_STEPS
from catalog.sandbox.templates import (
    TemplateFailure,
    evaluate_condition,
    references,
    render_string,
    render_value,
)

CONTEXT = {"inputs": {"n": 21, "names": ["a", "b"], "text": "x" * 1000}}


@pytest.mark.parametrize(
    "template, reason",
    [
        ("{{ 'a' * 10**8 }}", "longer than"),
        ("{{ [0] * 10**8 }}", "longer than"),
        ("{{ 3 ** 30000000 }}", "4096 bits"),
        ("{{ 10**1000 * 10**1000 * 10**1000 * 10**1000 * 10**1000 }}", "4096 bits"),
        (
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
            f"{MAX_STEPS} steps",
        ),
        ("{% for a in range(100000) %}{{ inputs.text }}{% endfor %}", "output is larger"),
        (
            "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            "larger",
        ),
        (
            "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% else %}{{ s }}{% endif %}{% endmacro %}{{ d('a', 40) }}",
            "larger",
        ),
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "Recursion"),
        ("{{ '%0999999999d' % 1 }}", "widths"),
        ("{{ '{:999999999}'.format(1) }}", "widths"),
        ("{{ '{:{}}'.format(1, 999999999) }}", "widths"),
        ("{{ '%.*f' % (999999999, 1.0) }}", "widths"),
        ("{{ 'a'.ljust(10**9) }}", "widths"),
        ("{{ 'a'.zfill(10**9) }}", "widths"),
    ],
)
def test_runaway_templates_fail_fast(template: str, reason: str) -> None:
    with pytest.raises(TemplateFailure, match=reason):
        render_string(template, CONTEXT, "/params/x")


def test_an_expression_value_is_bounded_too() -> None:
    with pytest.raises(TemplateFailure, match="value is larger"):
        render_string("{{ [inputs.text] * 2000 }}", CONTEXT)
    # Big but within the limits.
    assert len(render_string("{{ 'a' * 1000000 }}", CONTEXT)) == 1_000_000
    assert render_string("{{ 2 ** 64 }}", CONTEXT) == 2**64
    assert len(render_string("{{ range(100000) | list }}", CONTEXT)) == 100_000


def test_ordinary_templates_still_render() -> None:
    assert render_string("{{ inputs.n * 2 }}", CONTEXT) == 42
    assert render_string("{% for n in inputs.names %}{{ n }};{% endfor %}", CONTEXT) == "a;b;"
    assert render_string("{{ '%5d|%s' % (3, 'x') }}", CONTEXT) == "    3|x"
    assert render_string("{{ 'v{}'.format(inputs.n) }}", CONTEXT) == "v21"
    assert (
        render_string("{{ 'order 12345: %s, %08.2f' % ('x', 1.5) }}", CONTEXT) == "order 12345: x, 00001.50"
    )
    assert render_string("{{ 'order 12345 {:>6}'.format('x') }}", CONTEXT) == "order 12345      x"
    assert render_string("{{ 'a,b,c'.split(',', 5000) }}", CONTEXT) == ["a", "b", "c"]
    assert render_string("{{ 'a' | center(5) }}", CONTEXT) == "  a  "
    assert render_value({"list": ["{{ inputs.names }}"]}, CONTEXT) == {"list": [["a", "b"]]}
    assert evaluate_condition("inputs.n > 20", CONTEXT) is True
    # A budget is per rendering: many small loops in a row are fine.
    for _ in range(3):
        assert len(render_string("{% for i in range(90000) %}{% endfor %}x", CONTEXT)) == 1
    # Loops still show the names they read.
    paths = {r.path for r in references("{% for n in inputs.names %}{{ n }}{% endfor %}")}
    assert ("inputs", "names") in paths
    assert MAX_OUTPUT == 1024 * 1024
