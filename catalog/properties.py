"""Blueprint property schemas: checking them, compiling them once, validating entity properties.

A blueprint's ``schema`` is a restricted JSON Schema (DESIGN §4). Validators are compiled once
per blueprint *version* and cached, never per entity.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jsonschema_rs
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError

from catalog.errors import FieldError, pointer

PROPERTY_TYPES = {"string", "number", "integer", "boolean", "object", "array"}
STRING_FORMATS = {"url", "email", "date-time", "user", "team", "timer", "yaml", "markdown"}
TIME_FORMATS = {"date-time", "timer"}
REFERENCE_FORMATS = {"user", "team"}
PROPERTY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

FORMAT_CHECKER = _checker = FormatChecker(formats=())


URL = re.compile(r"^https?://[^\s/?#@]+(?:@[^\s/?#]+)?(?:[/?#][^\s]*)?$", re.IGNORECASE)


@_checker.checks("url")
def _is_url(value: object) -> bool:
    return not isinstance(value, str) or bool(URL.match(value))


@_checker.checks("email")
def _is_email(value: object) -> bool:
    return not isinstance(value, str) or bool(EMAIL.match(value))


@_checker.checks("date-time")
@_checker.checks("timer")
def _is_datetime(value: object) -> bool:
    return not isinstance(value, str) or parse_time(value) is not None


@_checker.checks("yaml")
def _is_yaml(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        yaml.safe_load(value)
    except yaml.YAMLError:
        return False
    return True


# Our formats for jsonschema-rs (it calls them with strings only).
_FORMAT_FUNCTIONS = {
    "url": _is_url,
    "email": _is_email,
    "date-time": _is_datetime,
    "timer": _is_datetime,
    "yaml": _is_yaml,
    "user": lambda value: True,
    "team": lambda value: True,
    "markdown": lambda value: True,
}


def parse_time(value: str) -> datetime | None:
    """An ISO 8601 date-time with an offset (or ``Z``), as UTC; None if it is not one."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(UTC)


def format_time(value: datetime) -> str:
    """The one stored form of a time: fixed-width UTC, so string order is time order."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def check_blueprint_schema(schema: dict[str, Any], base: str = "/schema") -> list[FieldError]:
    """Every problem in a blueprint's property schema, each named by JSON pointer."""
    errors: list[FieldError] = []
    properties = schema.get("properties", {})
    for name, definition in properties.items():
        where = pointer("schema", "properties", name) if base == "/schema" else f"{base}/properties/{name}"
        if not PROPERTY_NAME.match(name):
            errors.append(FieldError(where, "property names must match ^[A-Za-z_][A-Za-z0-9_]*$"))
            continue
        errors.extend(_check_property(definition, where))
    for index, name in enumerate(schema.get("required", [])):
        if name not in properties:
            errors.append(FieldError(f"{base}/required/{index}", f"'{name}' is not a defined property"))
    return errors


def _check_property(definition: Any, where: str) -> list[FieldError]:
    if not isinstance(definition, dict):
        return [FieldError(where, "a property definition must be an object")]
    kind = definition.get("type")
    if kind not in PROPERTY_TYPES:
        allowed = ", ".join(sorted(PROPERTY_TYPES))
        return [FieldError(f"{where}/type", f"type must be one of {allowed}, not {kind!r}")]
    fmt = definition.get("format")
    if fmt is not None:
        if kind != "string":
            return [FieldError(f"{where}/format", "format applies to string properties only")]
        if fmt not in STRING_FORMATS:
            allowed = ", ".join(sorted(STRING_FORMATS))
            return [FieldError(f"{where}/format", f"format must be one of {allowed}, not {fmt!r}")]
    items = definition.get("items")
    if kind == "array" and isinstance(items, dict) and items.get("format") not in (None, *STRING_FORMATS):
        return [FieldError(f"{where}/items/format", f"unknown format {items.get('format')!r}")]
    try:
        Draft202012Validator.check_schema(definition)
    except SchemaError as exc:
        path = "".join(f"/{p}" for p in exc.absolute_path)
        return [FieldError(f"{where}{path}", exc.message)]
    return []


@dataclass
class PropertyValidator:
    """A compiled validator for one blueprint version."""

    properties: dict[str, dict[str, Any]]
    required: list[str]
    validator: Draft202012Validator
    time_properties: set[str] = field(default_factory=set)
    # property -> "user" | "team", for single values or arrays of them
    references: dict[str, str] = field(default_factory=dict)
    # The same schema compiled by jsonschema-rs: a fast yes/no; the Python validator above
    # explains only the values it rejects.
    fast: Any = None

    def validate(self, values: dict[str, Any], base: str = "/properties") -> list[FieldError]:
        errors = [
            FieldError(base + pointer(name), "is required")
            for name in self.required
            if values.get(name) is None
        ]
        for name in values:
            if name not in self.properties:
                errors.append(FieldError(base + pointer(name), "is not a property of the blueprint"))
        present = {k: v for k, v in values.items() if k in self.properties and v is not None}
        if self.fast is not None and self.fast.is_valid(present):
            return errors
        for error in self.validator.iter_errors(present):
            path = "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in error.absolute_path)
            errors.append(FieldError(f"{base}{path}", _reason(error.validator, error.message)))
        return errors

    def normalize(self, values: dict[str, Any]) -> dict[str, Any]:
        """Drop nulls and store times in their one canonical form (call after validate)."""
        out: dict[str, Any] = {}
        for name, value in values.items():
            if value is None:
                continue
            if name in self.time_properties and isinstance(value, str):
                parsed = parse_time(value)
                value = format_time(parsed) if parsed else value
            out[name] = value
        return out

    def referenced(self, values: dict[str, Any]) -> dict[str, set[str]]:
        """The users and teams that ``values`` name through ``format: user|team`` properties."""
        found: dict[str, set[str]] = {"user": set(), "team": set()}
        for name, kind in self.references.items():
            value = values.get(name)
            if isinstance(value, str):
                found[kind].add(value)
            elif isinstance(value, list):
                found[kind].update(v for v in value if isinstance(v, str))
        return found


def _reason(keyword: str | None, message: str) -> str:
    return f"{message} ({keyword})" if keyword else message


_cache: dict[tuple[str, int, str], PropertyValidator] = {}


def _fast(properties: dict[str, dict[str, Any]]) -> Any:
    """A jsonschema-rs validator with our formats, or None where it cannot compile the schema."""
    formats = dict(_FORMAT_FUNCTIONS)
    try:
        return jsonschema_rs.Draft202012Validator(
            {"type": "object", "properties": properties}, formats=formats, validate_formats=True
        )
    except (ValueError, jsonschema_rs.ValidationError):
        return None


def validator_for(identifier: str, version: int, schema: dict[str, Any]) -> PropertyValidator:
    # The schema's digest is in the key: a blueprint deleted and created again restarts at version 1.
    digest = hashlib.sha1(json.dumps(schema, sort_keys=True).encode(), usedforsecurity=False).hexdigest()
    key = (identifier, version, digest)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    properties: dict[str, dict[str, Any]] = schema.get("properties", {})
    compiled = Draft202012Validator({"type": "object", "properties": properties}, format_checker=_checker)
    references: dict[str, str] = {}
    time_properties: set[str] = set()
    for name, definition in properties.items():
        fmt = definition.get("format") or (definition.get("items") or {}).get("format")
        if fmt in REFERENCE_FORMATS:
            references[name] = fmt
        if definition.get("format") in TIME_FORMATS:
            time_properties.add(name)
    result = PropertyValidator(
        properties, list(schema.get("required", [])), compiled, time_properties, references, _fast(properties)
    )
    if len(_cache) > 10_000:
        _cache.clear()
    _cache[key] = result
    return result
