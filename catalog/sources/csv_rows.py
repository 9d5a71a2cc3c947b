"""CSV rows as entities of one blueprint, each value coerced by the blueprint's schema (pure).

The header names the columns: the identifier column (``identifier`` unless told), the title
column (``title``), ``team`` (one team, or several separated by ``,`` or as a JSON list), the
blueprint's properties and its relations. A cell is read by its property's type: numbers and
integers as JSON numbers, booleans from ``true/false/yes/no/1/0`` (any case), arrays and
objects as JSON, strings as they are; an empty cell leaves the property unset. A relation takes
an identifier, or for a ``many`` relation a JSON list or ``,``-separated identifiers. Every bad
cell is reported by line (as an editor counts them, the header being line 1) and column, and
its row is left out; the other rows import.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
MAX_CELL = 1024 * 1024


@dataclass(frozen=True)
class CellError:
    line: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}"


@dataclass
class CsvEntities:
    entities: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # the line each entity starts on
    errors: list[CellError] = field(default_factory=list)


def _number(text: str) -> float | int:
    try:
        value = json.loads(text)
    except ValueError:
        raise ValueError("is not a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError("is not a number")
    return value


def _integer(text: str) -> int:
    value = _number(text)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("is not an integer")
        value = int(value)
    return value


def _boolean(text: str) -> bool:
    try:
        return BOOLEANS[text.strip().lower()]
    except KeyError:
        raise ValueError("is not a boolean (true/false, yes/no, 1/0)") from None


def _json_of(kind: type) -> Callable[[str], Any]:
    name = "an array" if kind is list else "an object"

    def parse(text: str) -> Any:
        try:
            value = json.loads(text)
        except ValueError:
            raise ValueError(f"is not JSON ({name} is expected)") from None
        if not isinstance(value, kind):
            raise ValueError(f"is not {name}")
        return value

    return parse


COERCE: dict[str, Callable[[str], Any]] = {
    "string": str,
    "number": _number,
    "integer": _integer,
    "boolean": _boolean,
    "array": _json_of(list),
    "object": _json_of(dict),
}


def _identifiers(text: str) -> list[str]:
    if text.lstrip().startswith("["):
        value = json.loads(text)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("must be a JSON list of identifiers")
        return value
    return [part.strip() for part in text.split(",") if part.strip()]


def rows_to_entities(
    text: str,
    blueprint: dict[str, Any],
    *,
    identifier_column: str = "identifier",
    title_column: str = "title",
) -> CsvEntities:
    """The entities of ``text`` (a whole CSV file) for ``blueprint`` (as the API shows it)."""
    result = CsvEntities()
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        result.errors.append(CellError(1, "", "the file is empty: a header row is required"))
        return result
    header = [h.strip() for h in header]
    properties: dict[str, Any] = (blueprint.get("schema") or {}).get("properties", {})
    relations: dict[str, Any] = blueprint.get("relations") or {}
    known = {identifier_column, title_column, "team", *properties, *relations}
    for name in header:
        if name not in known:
            result.errors.append(
                CellError(1, name, f"is neither a property nor a relation of '{blueprint['identifier']}'")
            )
    if identifier_column not in header:
        result.errors.append(CellError(1, identifier_column, "the identifier column is missing"))
    if len(set(header)) != len(header):
        result.errors.append(CellError(1, "", "a column is named twice"))
    if result.errors:
        return result
    line = reader.line_num + 1
    for row in reader:
        start, line = line, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        entity, errors = _row(row, header, start, properties, relations, identifier_column, title_column)
        if errors:
            result.errors.extend(errors)
        else:
            result.entities.append(entity)
            result.lines.append(start)
    return result


def _row(
    row: list[str],
    header: list[str],
    line: int,
    properties: dict[str, Any],
    relations: dict[str, Any],
    identifier_column: str,
    title_column: str,
) -> tuple[dict[str, Any], list[CellError]]:
    errors: list[CellError] = []
    if len(row) != len(header):
        return {}, [CellError(line, "", f"has {len(row)} cells; the header has {len(header)}")]
    entity: dict[str, Any] = {"properties": {}, "relations": {}}
    for name, cell in zip(header, row, strict=True):
        if cell == "":
            continue
        if len(cell) > MAX_CELL:
            errors.append(CellError(line, name, f"is longer than {MAX_CELL} characters"))
            continue
        try:
            if name == identifier_column:
                entity["identifier"] = cell.strip()
            elif name == title_column:
                entity["title"] = cell
            elif name == "team":
                entity["team"] = _identifiers(cell)
            elif name in properties:
                kind = properties[name].get("type", "string")
                entity["properties"][name] = COERCE.get(kind, str)(cell)
            else:
                targets = _identifiers(cell)
                entity["relations"][name] = targets if relations[name].get("many") else cell.strip()
        except ValueError as exc:
            errors.append(CellError(line, name, f"{cell[:80]!r} {exc}"))
    if "identifier" not in entity and not errors:
        errors.append(CellError(line, identifier_column, "is empty: every row needs an identifier"))
    return entity, errors
