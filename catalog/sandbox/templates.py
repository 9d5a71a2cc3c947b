"""The one template renderer: sandboxed, strict Jinja2 over ``inputs entity steps run user event``.

Pure and deterministic, so workflows render step parameters themselves (the rendered values are
what Temporal UI shows). A string that is exactly one ``{{ expression }}`` renders to the
expression's native value (a list stays a list); anything else renders to a string. Undefined
names are errors. :func:`references` finds the names a template uses, so actions are checked
when they are saved.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined, nodes
from jinja2.sandbox import SecurityError

from catalog.blueprints.properties import format_time, parse_time
from catalog.durations import parse_duration
from catalog.sandbox.jinja import MAX_OUTPUT, LimitedEnvironment, end_budget, start_budget

CONTEXT_NAMES = ("inputs", "entity", "steps", "run", "user", "event")
_SINGLE = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.DOTALL)


class TemplateFailure(Exception):
    """A template could not be parsed or rendered; the message says why and where."""


def add_duration(moment: str, duration: str) -> str:
    """``{{ run.started_at | add_duration('P5D') }}``: an ISO time plus an ISO 8601 duration, in the
    catalog's stored time form. Pure, so workflows may use it (templates have no ``now``)."""
    start = parse_time(moment)
    if start is None:
        raise ValueError(f"{moment!r} is not an ISO 8601 time with an offset")
    return format_time(start + parse_duration(duration))


@functools.cache
def _env() -> LimitedEnvironment:
    # Budgets on time and size (catalog.sandbox.jinja): a template can neither hang a
    # workflow nor fill its memory.
    env = LimitedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.filters["add_duration"] = add_duration
    return env


@functools.lru_cache(maxsize=4096)
def _compile_expression(source: str) -> Any:
    return _env().compile_expression(source, undefined_to_none=False)


@functools.lru_cache(maxsize=4096)
def _compile_template(source: str) -> Any:
    return _env().from_string(source)


def _is_single_expression(text: str) -> str | None:
    match = _SINGLE.match(text)
    if match and "{{" not in match.group(1) and "}}" not in match.group(1) and "{%" not in text:
        return match.group(1).strip()
    return None


def render_value(value: Any, context: dict[str, Any], where: str = "") -> Any:
    """Render every string inside ``value`` (dicts and lists are walked)."""
    if isinstance(value, str):
        return render_string(value, context, where)
    if isinstance(value, dict):
        return {k: render_value(v, context, f"{where}/{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, context, f"{where}/{i}") for i, v in enumerate(value)]
    return value


def render_string(text: str, context: dict[str, Any], where: str = "") -> Any:
    if "{{" not in text and "{%" not in text:
        return text
    budget = start_budget()
    try:
        expression = _is_single_expression(text)
        if expression is not None:
            return _bounded(_defined(_compile_expression(expression)(**context)))
        return _render_bounded(_compile_template(text), context)
    except TemplateError as exc:
        raise TemplateFailure(f"{where or 'template'}: {exc.message or exc}") from exc
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise TemplateFailure(f"{where or 'template'}: {exc}") from exc
    except (RecursionError, MemoryError) as exc:  # a macro calling itself without end
        raise TemplateFailure(f"{where or 'template'}: {exc.__class__.__name__}: {exc}") from exc
    finally:
        end_budget(budget)


def _render_bounded(template: Any, context: dict[str, Any]) -> str:
    """The template's text, stopped as soon as it passes ``MAX_OUTPUT`` characters."""
    parts: list[str] = []
    written = 0
    for part in template.generate(**context):
        written += len(part)
        if written > MAX_OUTPUT:
            raise SecurityError(f"the template's output is larger than {MAX_OUTPUT} characters")
        parts.append(part)
    return "".join(parts)


def _bounded(value: Any) -> Any:
    """An expression's native value, refused past ``MAX_OUTPUT`` characters or items in all."""
    remaining = MAX_OUTPUT
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str | bytes):
            remaining -= len(item)
        elif isinstance(item, dict):
            remaining -= len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set):
            remaining -= len(item)
            stack.extend(item)
        if remaining < 0:
            raise SecurityError(f"the template's value is larger than {MAX_OUTPUT} characters or items")
    return value


def evaluate_condition(text: str, context: dict[str, Any], where: str = "") -> bool:
    """A step's ``if``: an expression, with or without ``{{ }}``."""
    source = _is_single_expression(text)
    expression = source if source is not None else text
    budget = start_budget()
    try:
        return bool(_defined(_compile_expression(expression)(**context)))
    except TemplateError as exc:
        raise TemplateFailure(f"{where or 'if'}: {exc.message or exc}") from exc
    except (RecursionError, MemoryError) as exc:
        raise TemplateFailure(f"{where or 'if'}: {exc.__class__.__name__}: {exc}") from exc
    finally:
        end_budget(budget)


def _defined(value: Any) -> Any:
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    return value


@dataclass(frozen=True)
class Reference:
    """A dotted name a template reads, e.g. ``("steps", "dispatch", "outputs")``."""

    path: tuple[str, ...]


def references(value: Any, *, expression: bool = False) -> Iterator[Reference]:
    """Every dotted context name used by the templates inside ``value``; raises TemplateFailure
    on a syntax error."""
    if isinstance(value, dict):
        for v in value.values():
            yield from references(v, expression=expression)
        return
    if isinstance(value, list):
        for v in value:
            yield from references(v)
        return
    if not isinstance(value, str):
        return
    if expression:
        inner = _is_single_expression(value)
        source = "{{ " + (inner if inner is not None else value) + " }}"
    elif "{{" in value or "{%" in value:
        source = value
    else:
        return
    try:
        tree = _env().parse(source)
    except TemplateError as exc:
        raise TemplateFailure(str(exc.message or exc)) from exc
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        path = _dotted(node)
        if path and path[0] not in assigned:
            yield Reference(path)


def _dotted(node: nodes.Node) -> tuple[str, ...] | None:
    parts: list[str] = []
    while True:
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
            node = node.node
        elif (
            isinstance(node, nodes.Getitem)
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
        ):
            parts.append(node.arg.value)
            node = node.node
        elif isinstance(node, nodes.Name):
            if node.ctx != "load":
                return None
            parts.append(node.name)
            return tuple(reversed(parts))
        else:
            return None
