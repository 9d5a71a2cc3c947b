"""Secret action inputs: encrypted at rest with GANTRY_SECRET_KEY, never in records or history.

The workflow sees only a placeholder (``${secret:NAME}``); the activity that needs the value
asks the API for it just before calling the vendor.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

REDACTED = "********"
PLACEHOLDER = re.compile(r"\$\{secret:([A-Za-z_][A-Za-z0-9_]*)\}")


def placeholder(name: str) -> str:
    return "${secret:" + name + "}"


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


def resolve(value: Any, secrets: dict[str, str]) -> Any:
    """Replace every ``${secret:NAME}`` inside ``value`` with the secret."""
    if isinstance(value, str):
        return PLACEHOLDER.sub(lambda m: secrets.get(m.group(1), m.group(0)), value)
    if isinstance(value, dict):
        return {k: resolve(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, secrets) for v in value]
    return value


def mentions_secret(value: Any) -> bool:
    if isinstance(value, str):
        return bool(PLACEHOLDER.search(value))
    if isinstance(value, dict):
        return any(mentions_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(mentions_secret(v) for v in value)
    return False
