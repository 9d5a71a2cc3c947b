"""Small documents the tests build directories from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def write_docs(directory: Path, name: str, *docs: tuple[str, dict[str, Any]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(
        yaml.safe_dump_all([{"kind": kind, "spec": spec} for kind, spec in docs], sort_keys=False)
    )
    return path


def team(identifier: str, title: str | None = None) -> tuple[str, dict[str, Any]]:
    return "Team", {"identifier": identifier, "title": title or identifier.title()}


def blueprint(identifier: str, **extra: Any) -> tuple[str, dict[str, Any]]:
    schema = {"properties": {"tier": {"type": "string", "enum": ["a", "b"]}}}
    return "Blueprint", {"identifier": identifier, "title": identifier.title(), "schema": schema, **extra}


def action(identifier: str, on: str, uses: str = "catalog.upsert_entity") -> tuple[str, dict[str, Any]]:
    return "Action", {
        "identifier": identifier,
        "title": identifier,
        "blueprint": on,
        "trigger": {"operation": "DAY-2"},
        "steps": [
            {
                "id": "touch",
                "uses": uses,
                "with": {
                    "blueprint": on,
                    "identifier": "{{ entity.identifier }}",
                    "properties": {"tier": "a"},
                },
            }
        ],
    }
