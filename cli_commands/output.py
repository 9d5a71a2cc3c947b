"""``--output table|json|yaml`` for every read: tab-separated rows without a header (for
``cut`` and ``while read``), or the API's own objects as JSON or YAML."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from typing import Any, Literal

import yaml

Format = Literal["table", "json", "yaml"]
FORMATS = ("table", "json", "yaml")


def add_output(parser: argparse.ArgumentParser, default: Format = "table") -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=FORMATS,
        default=default,
        help=f"table (tab-separated), json or yaml (default {default})",
    )


def cell(value: Any) -> str:
    """One table cell: nothing for null, compact JSON for lists and objects."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (a runbook, release notes) as ``|`` blocks, readable as written."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def dump(value: Any, fmt: Format) -> str:
    """``value`` as JSON (indented) or YAML (keys in the API's order)."""
    if fmt == "yaml":
        text = yaml.dump(value, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)
        return text.rstrip()
    return json.dumps(value, indent=2, default=str)


def print_items(items: Iterable[dict[str, Any]], fmt: Format, *columns: str) -> None:
    """A list: one row per item (``columns``) as it arrives, or the whole list as JSON/YAML."""
    if fmt == "table":
        for item in items:
            print("\t".join(cell(item.get(column)) for column in columns))
        return
    print(dump(list(items), fmt))


def print_object(value: dict[str, Any], fmt: Format) -> None:
    """One object: ``key<TAB>value`` rows, or the object as JSON/YAML."""
    if fmt == "table":
        for key, item in value.items():
            print(f"{key}\t{cell(item)}")
        return
    print(dump(value, fmt))
