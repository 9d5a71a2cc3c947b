"""``gantry export DIR``: the live configuration as files, one per object, a folder per kind.

What is written is exactly what ``plan`` compares with (the normalised live object), so
``export`` then ``plan`` shows no changes. Keys are in the kind's field order at the top and
sorted below it, so exporting twice writes the same bytes. The bootstrap admin and the service
principal come from settings and are left out; entities only with ``--entities`` (and never
those a data source owns: its sync writes them). No secret is ever part of a definition: data
sources name the environment variable that holds one, actions reference them by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cli import Gantry
from portal_as_code.live import computed_properties, entity_spec, live_objects
from portal_as_code.model import ENTITY, KINDS, ConfigError, Spec


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def _file_name(part: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in part) or "_"


def dump(kind: str, spec: Spec) -> str:
    """One document, top-level keys as given, nested keys sorted."""
    ordered = {k: _sorted(v) for k, v in spec.items()}
    return yaml.safe_dump({"kind": kind, "spec": ordered}, sort_keys=False, allow_unicode=True, width=100)


def export(api: Gantry, directory: Path, *, entities: bool = False) -> list[Path]:
    """Write every configuration object (and entities when asked) under ``directory``, which
    must be empty or absent; the files written."""
    if directory.exists() and any(directory.iterdir()):
        raise ConfigError(f"{directory}: export writes into an empty (or new) directory")
    written: list[Path] = []
    live = live_objects(api)
    for (name, key), item in sorted(live.items(), key=lambda kv: (KINDS[kv[0][0]].rank, kv[0][1])):
        kind = KINDS[name]
        spec = kind.normalize(item)
        parts = key.split("/")
        path = (
            directory
            / kind.folder
            / Path(*[_file_name(p) for p in parts[:-1]])
            / f"{_file_name(parts[-1])}.yaml"
        )
        written.append(_write(path, dump(name, spec)))
    if entities:
        for (name, blueprint), bp in sorted(live.items()):
            if name != "Blueprint":
                continue
            computed = computed_properties(bp)
            for entity in api.pages("GET", f"/v1/blueprints/{blueprint}/entities"):
                if entity.get("source"):
                    continue
                path = (
                    directory
                    / "entities"
                    / _file_name(blueprint)
                    / f"{_file_name(entity['identifier'])}.yaml"
                )
                written.append(_write(path, dump(ENTITY, entity_spec(entity, computed))))
    return written


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():  # two identifiers that differ only in characters a file name cannot hold
        raise ConfigError(f"{path}: two objects map to this file name")
    path.write_text(text)
    return path
