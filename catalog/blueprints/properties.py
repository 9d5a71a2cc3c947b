"""Blueprint property schemas: checking them, compiling them once, validating entity properties.

A blueprint's ``schema`` is a restricted JSON Schema (README: Blueprints). Validators are compiled once
per blueprint *version* and cached, never per entity.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import jsonschema_rs
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError

from catalog.errors import FieldError, pointer
from catalog.timefmt import format_instant, parse_instant

PROPERTY_TYPES = {"string", "number", "integer", "boolean", "object", "array"}
STRING_FORMATS = {"url", "email", "date-time", "user", "team", "timer", "yaml", "markdown"}
TIME_FORMATS = {"date-time", "timer"}
REFERENCE_FORMATS = {"user", "team"}
# Port's identifier rule (catalog.schemas.PROPERTY_NAME), for property, relation and computed names.
PROPERTY_NAME = re.compile(r"^[A-Za-z0-9@_=-]{1,100}$")
PROPERTY_NAME_RULE = "^[A-Za-z0-9@_=-]{1,100}$"
# Integers a property may hold: exactly representable as JSON numbers everywhere (JavaScript,
# jq, PostgreSQL's jsonb numeric) and storable by the JSON columns.
MAX_SAFE_INTEGER = 2**53
# Longest value of each string format. Every check below is linear in the value's length, and
# the caps bound the work (and the echo in error messages) on top of that.
FORMAT_MAX_LENGTH = {
    "email": 320,
    "url": 2048,
    "date-time": 64,
    "timer": 64,
    "user": 200,
    "team": 200,
    "yaml": 256 * 1024,
    "markdown": 1024 * 1024,
}
_EMAIL_FORBIDDEN = frozenset(' \t\r\n\x0b\x0c<>()[],;:"\\')
_URL_FORBIDDEN = frozenset(" \t\r\n\x0b\x0c")

FORMAT_CHECKER = _checker = FormatChecker(formats=())


def _is_email_text(value: str) -> bool:
    """``local@domain.tld``: one ``@``, no spaces or specials, a dot inside the domain."""
    if len(value) > FORMAT_MAX_LENGTH["email"] or value.count("@") != 1:
        return False
    local, domain = value.split("@")
    if not local or len(local) > 64 or not 3 <= len(domain) <= 255:
        return False
    if "." not in domain[1:-1] or domain.startswith(".") or domain.endswith(".") or ".." in domain:
        return False
    return not _EMAIL_FORBIDDEN.intersection(value)


def _is_url_text(value: str) -> bool:
    """``http(s)://host[/...]``: a scheme, a non-empty host (user info allowed), no whitespace."""
    if len(value) > FORMAT_MAX_LENGTH["url"] or _URL_FORBIDDEN.intersection(value):
        return False
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return False
    authority = rest
    for end in "/?#":
        authority = authority.split(end, 1)[0]
    host = authority.rpartition("@")[2]
    return bool(host) and authority.count("@") <= 1


@_checker.checks("url")
def _is_url(value: object) -> bool:
    return not isinstance(value, str) or _is_url_text(value)


@_checker.checks("email")
def _is_email(value: object) -> bool:
    return not isinstance(value, str) or _is_email_text(value)


@_checker.checks("date-time")
@_checker.checks("timer")
def _is_datetime(value: object) -> bool:
    return not isinstance(value, str) or (
        len(value) <= FORMAT_MAX_LENGTH["date-time"] and parse_time(value) is not None
    )


@_checker.checks("yaml")
def _is_yaml(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if len(value) > FORMAT_MAX_LENGTH["yaml"]:
        return False
    try:
        yaml.load(value, Loader=_YAML_LOADER)
    except (yaml.YAMLError, RecursionError):
        return False
    return True


# libyaml's parser when PyYAML has it (many times faster than the pure-Python one).
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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


# The stored form of a time is the one timestamp format (fixed-width UTC: string order is time order).
parse_time = parse_instant
format_time = format_instant


def check_blueprint_schema(schema: dict[str, Any], base: str = "/schema") -> list[FieldError]:
    """Every problem in a blueprint's property schema, each named by JSON pointer."""
    errors: list[FieldError] = []
    properties = schema.get("properties", {})
    for name, definition in properties.items():
        where = pointer("schema", "properties", name) if base == "/schema" else f"{base}/properties/{name}"
        if not PROPERTY_NAME.match(name):
            errors.append(FieldError(where, f"property names must match {PROPERTY_NAME_RULE}"))
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
        limited = self._limits(present, base)
        if limited:
            # Refused before the schema validators see it: a huge or out-of-range value is
            # named with its limit, and never echoed back in a message.
            present = {k: v for k, v in present.items() if base + pointer(k) not in limited}
            errors.extend(limited.values())
        if self.fast is not None and self.fast.is_valid(present):
            return errors
        for error in self.validator.iter_errors(present):
            path = "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in error.absolute_path)
            message = (
                f"is not a valid {error.validator_value}" if error.validator == "format" else error.message
            )
            errors.append(FieldError(f"{base}{path}", _reason(error.validator, message)))
        return errors

    def _limits(self, values: dict[str, Any], base: str) -> dict[str, FieldError]:
        """The values past a format's length cap, or holding an integer beyond ±2^53 or a
        non-finite number, by the pointer of their property."""
        found: dict[str, FieldError] = {}
        for name, value in values.items():
            where = base + pointer(name)
            definition = self.properties.get(name) or {}
            fmt = definition.get("format") or (definition.get("items") or {}).get("format")
            problem = _too_long(value, fmt) or _number_problem(value)
            if problem:
                found[where] = FieldError(where, problem)
        return found

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


def _too_long(value: Any, fmt: str | None) -> str | None:
    cap = FORMAT_MAX_LENGTH.get(fmt or "")
    if cap is None:
        return None
    texts = value if isinstance(value, list) else [value]
    if any(isinstance(text, str) and len(text) > cap for text in texts):
        return f"{fmt} values may be at most {cap} characters (a format's length limit)"
    return None


def _number_problem(value: Any) -> str | None:
    """Why a value holds a number the catalog refuses (walked without recursion)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, int) and not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
            return f"integers must be within ±2^53 ({MAX_SAFE_INTEGER})"
        if isinstance(item, float) and not math.isfinite(item):
            return "numbers must be finite"
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


# Messages longer than this are cut: validators quote the value, which may be a megabyte.
MAX_MESSAGE = 300


def _reason(keyword: str | None, message: str) -> str:
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
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
