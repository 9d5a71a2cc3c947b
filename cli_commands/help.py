"""Help with an example for every command: ``gantry COMMAND --help`` ends with one that works
as printed against the example portal."""

from __future__ import annotations

import argparse
from typing import Any

# Examples for the commands registered elsewhere without one (the imports, data sources…).
EXAMPLES = {
    "gantry token create": "gantry token create --user bob --description 'laptop' --expires-at 2030-01-01T00:00:00Z",
    "gantry import backstage": "gantry import backstage ./catalog-info.yaml --prefix bs_",
    "gantry import port": "gantry import port port-export.json",
    "gantry import csv": "gantry import csv services.csv --blueprint service --dry-run",
    "gantry sources list": "gantry sources list -o yaml",
    "gantry sources preview": "gantry sources preview github_deployments items.json --resource 0",
    "gantry sources sync": "gantry sources sync github_deployments --wait",
    "gantry sources syncs": "gantry sources syncs github_deployments -o json",
    "gantry mcp": "GANTRY_TOKEN=$AGENT_TOKEN gantry mcp   # an MCP server on stdio, for an agent's client",
}


def command(commands: Any, name: str, help: str, example: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand whose help ends with ``example``."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help,
        description=help,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )
    return parser


def leaf_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every command that runs something, by its full name (``gantry sources sync``)."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found |= leaf_parsers(sub) or {sub.prog: sub}
    return found


def has_example(parser: argparse.ArgumentParser) -> bool:
    return "example" in (parser.epilog or "") or "example" in (parser.description or "")


def add_missing_examples(root: argparse.ArgumentParser) -> None:
    """Give the commands registered without an example the one from :data:`EXAMPLES`."""
    for name, parser in leaf_parsers(root).items():
        if not has_example(parser) and name in EXAMPLES:
            parser.epilog = f"example:\n  {EXAMPLES[name]}"
            parser.formatter_class = argparse.RawDescriptionHelpFormatter
