"""Jinja2's sandbox with budgets: no template may take unbounded time or memory.

Jinja's sandbox stops templates reaching Python internals, not ``{{ 'a' * 10**8 }}``,
``{{ 3 ** 30000000 }}`` or nested loops. This environment adds:

- arithmetic caps: ``*``, ``**`` and ``+`` refuse results longer than :data:`MAX_OUTPUT`
  characters (strings, lists) or integers wider than :data:`MAX_INT_BITS` bits, *before*
  computing them; ``%`` and ``format`` refuse huge field widths;
- a step budget: every loop iteration and every call (macros included) spends one of
  :data:`MAX_STEPS` per rendered string;
- a size cap on everything passed to a call or stored in a ``namespace``, so doubling a
  string through macro recursion stops at :data:`MAX_OUTPUT`.

The renderer (``catalog.sandbox.templates``) also caps what a template outputs. A limit hit is a
``SecurityError`` (a ``TemplateError``), which the renderer reports like any template error.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes
from jinja2.filters import do_center, do_format, do_indent
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import Namespace

MAX_OUTPUT = 1024 * 1024  # characters a template may output (or build in one value)
MAX_STEPS = 100_000  # loop iterations and calls per rendered string
MAX_INT_BITS = 4096  # integers wider than this are refused (about 1,233 decimal digits)
MAX_FIELD_WIDTH = 1000  # widths and precisions in % and format() and filters
# A printf conversion (``%0999d``, ``%.*f``) or a format spec (``{:999}``, ``{:{}}``) with a width
# or precision of four digits or more, or one taken from the arguments.
_WIDE_PRINTF = re.compile(r"%[-#0 +]*(?:\*|\d{4,}|\d*\.(?:\*|\d{4,}))")
_WIDE_SPEC = re.compile(r"\{[^{}]*:[^{}]*(?:\d{4,}|\{)")
_WIDTH_METHODS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs"})
_STEPS_FILTER = "gantry_steps"


@dataclass
class Budget:
    steps: int = MAX_STEPS

    def spend(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise SecurityError(f"the template ran more than {MAX_STEPS} steps (loop iterations and calls)")


_budget: contextvars.ContextVar[Budget | None] = contextvars.ContextVar(
    "gantry_template_budget", default=None
)


def start_budget() -> contextvars.Token[Budget | None]:
    """A fresh step budget for one rendering; pass the token to :func:`end_budget`."""
    return _budget.set(Budget())


def end_budget(token: contextvars.Token[Budget | None]) -> None:
    _budget.reset(token)


def _spend() -> None:
    budget = _budget.get()
    if budget is not None:
        budget.spend()


def size(value: Any) -> int:
    """A cheap measure of a value's size: characters of a string, items of a container."""
    if isinstance(value, str | bytes | list | tuple | dict | set):
        return len(value)
    return 0


def check_size(value: Any, what: str = "a value") -> Any:
    if size(value) > MAX_OUTPUT:
        raise SecurityError(f"{what} would be larger than {MAX_OUTPUT} characters or items")
    return value


def _check_int(value: int) -> int:
    if value.bit_length() > MAX_INT_BITS:
        raise SecurityError(f"integers in templates are limited to {MAX_INT_BITS} bits")
    return value


def _check_width(text: str, pattern: re.Pattern[str] = _WIDE_PRINTF) -> None:
    if pattern.search(text):
        raise SecurityError(f"field widths and precisions are limited to {MAX_FIELD_WIDTH}")


class LimitedNamespace(Namespace):
    """``namespace()`` whose attributes hold values of bounded size."""

    def __setitem__(self, name: str, value: Any) -> None:
        super().__setitem__(name, check_size(value))


def _steps(iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        _spend()
        yield item


def _center(value: str, width: int = 80) -> str:
    return do_center(value, min(int(width), MAX_FIELD_WIDTH))


def _indent(value: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    if isinstance(width, str):
        check_size(width, "an indent")
    else:
        width = min(int(width), MAX_FIELD_WIDTH)
    return check_size(do_indent(value, width, first, blank), "the indented text")


def _format(value: str, *args: Any, **kwargs: Any) -> str:
    _check_width(value)
    return check_size(do_format(value, *args, **kwargs), "the formatted text")


class LimitedEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["namespace"] = LimitedNamespace
        self.filters.update({_STEPS_FILTER: _steps, "center": _center, "indent": _indent, "format": _format})

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Every ``{% for %}`` iterates through the step budget."""
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, _STEPS_FILTER, [], [], None, None, lineno=loop.lineno)
        return tree

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _spend()
        if operator == "*":
            return _multiply(left, right)
        if operator == "**":
            return _power(left, right)
        if operator == "%" and isinstance(left, str):
            _check_width(left)
            return check_size(left % right, "the formatted text")
        if operator == "+":  # checked before adding: an int sum is at most one bit wider
            if size(left) + size(right) > MAX_OUTPUT:
                raise SecurityError(f"a joined value would be longer than {MAX_OUTPUT} characters or items")
            return left + right
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _spend()
        for argument in (*args, *kwargs.values()):
            check_size(argument, "an argument")
        # str.format reaches templates wrapped by the sandbox: its string is the wrapped method's.
        owner = getattr(__obj, "__self__", None) or getattr(
            getattr(__obj, "__wrapped__", None), "__self__", None
        )
        if isinstance(owner, str):
            method = getattr(__obj, "__name__", "")
            if method in ("format", "format_map"):
                _check_width(owner, _WIDE_SPEC)
            wide = any(isinstance(a, int) and a > MAX_FIELD_WIDTH for a in (*args, *kwargs.values()))
            if method in _WIDTH_METHODS and wide:
                raise SecurityError(f"string widths in templates are limited to {MAX_FIELD_WIDTH}")
        return check_size(super().call(__context, __obj, *args, **kwargs), "a call's result")


def _multiply(left: Any, right: Any) -> Any:
    for sequence, times in ((left, right), (right, left)):
        if isinstance(sequence, str | list | tuple) and isinstance(times, int):
            if len(sequence) * max(times, 0) > MAX_OUTPUT:
                raise SecurityError(f"a repeated value would be longer than {MAX_OUTPUT} characters or items")
            return sequence * times
    both_ints = isinstance(left, int) and isinstance(right, int)
    if both_ints and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise SecurityError(f"integers in templates are limited to {MAX_INT_BITS} bits")
    return left * right


def _power(base: Any, exponent: Any) -> Any:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        if (base.bit_length() - 1) * exponent > MAX_INT_BITS:
            raise SecurityError(f"integers in templates are limited to {MAX_INT_BITS} bits")
        return _check_int(base**exponent)
    return base**exponent
