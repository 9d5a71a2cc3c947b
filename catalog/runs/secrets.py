"""Secret action inputs: encrypted at rest with GANTRY_SECRET_KEY, never in records or history.

The workflow sees only a placeholder; the activity that needs the value asks the API for it just
before calling the vendor. A placeholder carries its run's marker (``${secret:MARKER:NAME}``, a
random value the workflow makes when it starts): the renderer puts it where a template reads a
secret input, and the activity substitutes only placeholders bearing the current run's marker.
Text that merely looks like a placeholder — an entity title a member wrote, say — stays literal,
so data can never steer a secret to where its author wanted it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

REDACTED = "********"
# Anything shaped like a placeholder, marked or not (for redaction, never for substitution).
PLACEHOLDER = re.compile(r"\$\{secret:(?:[0-9a-f]+:)?[A-Za-z_][A-Za-z0-9_]*\}")
_MARKED = re.compile(r"\$\{secret:([0-9a-f]+):([A-Za-z_][A-Za-z0-9_]*)\}")


def placeholder(name: str, marker: str = "") -> str:
    """``${secret:MARKER:NAME}``; without a marker the bare ``${secret:NAME}`` (what run records
    and workflow inputs show), which no activity substitutes."""
    return "${secret:" + (f"{marker}:" if marker else "") + name + "}"


def mark_inputs(inputs: dict[str, Any], names: Iterable[str], marker: str) -> dict[str, Any]:
    """The inputs a template sees: each secret input (by name, never by its value's shape) as its
    marked placeholder."""
    secret_names = set(names)
    return {k: (placeholder(k, marker) if k in secret_names else v) for k, v in inputs.items()}


def secret_input_names(definition: dict[str, Any]) -> set[str]:
    """The names of an action's secret inputs."""
    properties = (definition.get("user_inputs") or {}).get("properties") or {}
    return {name for name, schema in properties.items() if isinstance(schema, dict) and schema.get("secret")}


def _fernet(key: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()))


def seal(values: dict[str, str], key: str) -> str:
    return _fernet(key).encrypt(json.dumps(values).encode()).decode()


def unseal(token: str, key: str) -> dict[str, str]:
    try:
        values: dict[str, str] = json.loads(_fernet(key).decrypt(token.encode()))
    except InvalidToken as exc:
        raise ValueError("secret inputs cannot be decrypted with this GANTRY_SECRET_KEY") from exc
    return values


def resolve(value: Any, secrets: dict[str, str], marker: str) -> Any:
    """Replace each ``${secret:MARKER:NAME}`` bearing ``marker`` inside ``value`` with the secret;
    every other placeholder-shaped text is left as it is."""
    if isinstance(value, str):
        if not marker:
            return value
        return _MARKED.sub(
            lambda m: secrets.get(m.group(2), m.group(0)) if m.group(1) == marker else m.group(0), value
        )
    if isinstance(value, dict):
        return {k: resolve(v, secrets, marker) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, secrets, marker) for v in value]
    return value


def mentions_secret(value: Any, marker: str) -> bool:
    """Whether ``value`` holds a placeholder bearing ``marker`` (an empty marker bears none)."""
    if not marker:
        return False
    if isinstance(value, str):
        return any(m.group(1) == marker for m in _MARKED.finditer(value))
    if isinstance(value, dict):
        return any(mentions_secret(v, marker) for v in value.values())
    if isinstance(value, list):
        return any(mentions_secret(v, marker) for v in value)
    return False
