"""``gantry get`` and ``gantry search``: the catalog and runs as rows, JSON or YAML."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cli import (
    BULK_LIMIT,
    RUN_COLUMNS,
    RUN_FILTERS,
    Gantry,
    _add_wait_for,
    _describe_filters,
    _newest_run,
    _run_fetcher,
    wait_for_run,
)
from cli_commands.help import command
from cli_commands.output import FORMATS, Format, add_output, print_items, print_object

GET_USAGE = "usage: gantry get blueprints | entities BP | entity BP ID | runs | run ID"
# Keys of the API's search body; a document with none of them is a bare query.
BODY_KEYS = frozenset({"query", "sort", "limit", "cursor"})


def _part(value: str) -> str:
    return quote(value, safe="")


def cmd_get(api: Gantry, args: argparse.Namespace) -> None:
    what, rest = args.what, args.ids
    if args.wait_for and not (what == "run" and len(rest) == 1) and what != "runs":
        raise SystemExit("usage: --wait-for goes with `gantry get run ID` or `gantry get runs`")
    listing: Format = args.output or "table"
    single: Format = args.output or "json"  # one object reads best whole
    if what == "blueprints":
        print_items(api.pages("GET", "/v1/blueprints"), listing, "identifier", "title")
    elif what == "entities" and len(rest) == 1:
        entities = api.pages("GET", f"/v1/blueprints/{_part(rest[0])}/entities")
        print_items(entities, listing, "identifier", "title")
    elif what == "entity" and len(rest) == 2:
        path = f"/v1/blueprints/{_part(rest[0])}/entities/{_part(rest[1])}"
        print_object(api.request("GET", path), single)
    elif what == "runs" and not rest:
        filters = {k: v for k in RUN_FILTERS if (v := getattr(args, k))}
        if args.wait_for:
            newest = _newest_run(api, filters)
            wait_for_run(
                newest, args.wait_for, args.timeout, f"the newest run ({_describe_filters(filters)})"
            )
        print_items(api.pages("GET", "/v1/runs", params=filters), listing, *RUN_COLUMNS)
    elif what == "run" and len(rest) == 1:
        fetch = _run_fetcher(api, _part(rest[0]))
        print_object(wait_for_run(fetch, args.wait_for, args.timeout) if args.wait_for else fetch(), single)
    else:
        raise SystemExit(GET_USAGE)


def search_body(text: str, where: str) -> dict[str, Any]:
    """The API's search body (``{"query", "sort", "limit", "cursor"}``, as the README's curl
    examples send it) or a bare query (``{"combinator", "rules"}``), as a search body."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where} is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ValueError(f"{where} must be a JSON object: a search body or a query")
    if document and set(document) <= BODY_KEYS:
        return document
    return {"query": document}


def search(api: Gantry, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every match in the body's ``sort`` order, page by page from its ``cursor``; its ``limit``
    caps how many in all (without one, every match)."""
    wanted = body.get("limit")
    cursor = body.get("cursor")
    sent = 0
    while True:
        size = BULK_LIMIT if wanted is None else max(1, min(BULK_LIMIT, wanted - sent))
        page = api.request("POST", "/v1/entities/search", json={**body, "limit": size, "cursor": cursor})
        for item in page["items"]:
            if wanted is not None and sent >= wanted:
                return
            sent += 1
            yield item
        cursor = page.get("next_cursor")
        if not cursor or (wanted is not None and sent >= wanted):
            return


def cmd_search(api: Gantry, args: argparse.Namespace) -> None:
    if (args.query is None) == (args.file is None):
        raise SystemExit("usage: gantry search QUERY | -f FILE | -f - (one of them)")
    if args.file is None:
        body = search_body(args.query, "the query")
    elif args.file == "-":
        body = search_body(sys.stdin.read(), "standard input")
    else:
        body = search_body(Path(args.file).read_text(), args.file)
    print_items(search(api, body), args.output, "blueprint", "identifier", "title")


def add_read_commands(commands: Any) -> None:
    get = command(
        commands,
        "get",
        "blueprints | entities BP | entity BP ID | runs | run ID",
        "gantry get entities service -o yaml\n"
        "  gantry get runs --action deploy_service --status FAILURE\n"
        "  gantry get run r_3f9c2a --wait-for SUCCESS",
    )
    get.add_argument("what", choices=["blueprints", "entities", "entity", "runs", "run"])
    get.add_argument("ids", nargs="*")
    for name in RUN_FILTERS:
        get.add_argument(f"--{name}", default=None, help=f"runs: only those of this {name}")
    get.add_argument(
        "-o",
        "--output",
        choices=FORMATS,
        default=None,
        help="table (tab-separated), json or yaml (default: table for lists, json for one object)",
    )
    _add_wait_for(get, "run ID: wait until the run is in one of these statuses; runs: its newest run")
    get.set_defaults(run=cmd_get)

    found = command(
        commands,
        "search",
        "search entities: a query, or the API's search body from a file or standard input",
        'gantry search \'{"combinator": "and", "rules": '
        '[{"property": "$blueprint", "operator": "=", "value": "service"}]}\'\n'
        "  gantry search -f body.json -o json\n"
        "  gantry search -f - < body.json",
    )
    found.add_argument("query", nargs="?", default=None, help="a query or a search body, as JSON")
    found.add_argument(
        "-f", "--file", default=None, metavar="FILE", help="read the query or body from FILE (- for stdin)"
    )
    add_output(found)
    found.set_defaults(run=cmd_search)
