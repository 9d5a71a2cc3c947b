"""Dataclasses whose JSON keys differ from their Python field names, on Temporal's JSON converter.

An action's steps are keyed ``with`` and ``if`` on the wire (the action definition as its
author wrote it and the catalog stores it, and as recorded workflow histories carry it); both
are Python keywords, so no dataclass field can be named after them. A dataclass declares the
difference in ``WIRE_NAMES`` (field name → key) and is then a *spec*: :func:`to_wire` writes its
fields under those keys and leaves out the ones that are None, as the catalog stores a
definition (absent means "the default"), and :data:`WIRE_NAMES_CONVERTER` reads them back.

Why not ``temporalio.contrib.pydantic`` with aliases: it needs its data converter on every client,
worker and replayer, and the recorded histories are replayed with the default one. A dataclass
that converts itself (see :class:`contracts.runs.RunInput`) works with any data converter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar, get_type_hints

from temporalio.converter import JSONTypeConverter, value_to_type


class WireError(TypeError):
    """A known field with a value of the wrong shape."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def is_spec(cls: object) -> bool:
    return isinstance(getattr(cls, "WIRE_NAMES", None), Mapping)


def to_wire(value: Any) -> Any:
    """``value`` as JSON-ready data: dataclasses as dicts under their wire names (a spec's None
    fields left out), containers recursively, everything else as it is."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names: Mapping[str, str] = getattr(value, "WIRE_NAMES", {})
        spec = is_spec(type(value))
        return {
            names.get(f.name, f.name): to_wire(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not (spec and getattr(value, f.name) is None)
        }
    if isinstance(value, Mapping):
        return {key: to_wire(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_wire(item) for item in value]
    return value


class WireNamesConverter(JSONTypeConverter):
    """Reads a spec from its wire keys. Tolerant as the default converter is: unknown keys are
    ignored, a missing required field raises ``TypeError``."""

    def to_typed_value(self, hint: type, value: Any) -> Any:
        if not is_spec(hint) or not dataclasses.is_dataclass(hint) or not isinstance(value, dict):
            return JSONTypeConverter.Unhandled
        names: Mapping[str, str] = getattr(hint, "WIRE_NAMES", {})
        hints = get_type_hints(hint)
        known = {}
        for f in dataclasses.fields(hint):
            key = names.get(f.name, f.name)
            if key not in value:
                continue
            try:
                known[f.name] = value_to_type(hints[f.name], value[key], [self])
            except Exception as exc:
                raise TypeError(f"{hint.__name__}.{key}: {exc}") from exc
        return hint(**known)


WIRE_NAMES_CONVERTER = WireNamesConverter()
T = TypeVar("T")


def from_wire(cls: type[T], data: Any) -> T:
    """``data`` (JSON as it arrived) read as ``cls``, specs by their wire names."""
    value: T = value_to_type(cls, data, [WIRE_NAMES_CONVERTER])
    return value
