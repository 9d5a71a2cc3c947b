"""``gantry``: the command line client of the catalog API.

    gantry plan portal/ [--prune] [--json]      # what apply would change; exit 0 none, 2 some, 1 error
    gantry apply portal/ [--prune] [--yes]     # teams, users, blueprints, entities, actions …
    gantry export DIR [--entities] | history KIND ID | revert REVISION
    gantry get blueprints | entities BP | entity BP ID | runs | run ID   [-o table|json|yaml]
    gantry search '{"combinator": "and", "rules": [...]}' | -f BODY.json | -f -
    gantry run deploy_service --entity payments -i version=v1.44.0 -i environment=staging --wait
    gantry run deploy_service --entity payments -i version=v1.44.0 --dry-run  # the plan, runs nothing
    gantry approve RUN [--decline] [-m COMMENT] | cancel RUN | retry RUN | logs RUN [--follow]
    gantry extend environment checkout-pr-482 expires_at P2D
    gantry check scorecard service payments --level Silver   # exit 0 at or above, 1 below, 2 error
    gantry check action deploy_service --entity payments      # may I run it now? (runs nothing)
    gantry report deployment payments-v1.44.0 --set status=SUCCEEDED --relation service=payments
    gantry completion bash|zsh
    gantry token create --user bob
    gantry import backstage DIR|FILE... [--prefix bs_] | port EXPORT.json | csv FILE --blueprint B
    gantry sources list | preview ID ITEMS.json [--resource N] | sync ID [--wait] | syncs ID

Waiting: ``gantry run … --wait-for WAITING_FOR_APPROVAL`` launches, waits until the run reaches
that status (or ends) and prints its id; ``gantry get run ID --wait-for SUCCESS`` and
``gantry get runs --action A --wait-for SUCCESS`` (the newest run of the list) wait likewise.
Each gives up after ``--timeout`` seconds (default 120); a run that ends in a status it was not
waiting for is an error (exit 1).

``--api-url`` (``GANTRY_API_URL``) and ``--token`` (``GANTRY_TOKEN``) say where and who.
``apply`` shows the plan and asks (``--yes`` when not on a terminal); a second apply changes nothing.
The commands beyond apply and run live in ``cli_commands/``; this module builds the parser.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import yaml

BULK_LIMIT = 1000


class ApiError(Exception):
    def __init__(self, status: int, message: str, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []

    def __str__(self) -> str:
        lines = [f"{self.status}: {self.message}"]
        lines += [f"  - {_describe(detail)}" for detail in self.details]
        return "\n".join(lines)


def _describe(detail: Any) -> str:
    if isinstance(detail, dict):
        where = detail.get("pointer") or detail.get("field") or detail.get("identifier") or ""
        what = detail.get("message") or detail.get("reason") or detail.get("error") or json.dumps(detail)
        return f"{where}: {what}" if where else str(what)
    return str(detail)


class Gantry:
    """A thin client of the Gantry API; every non-2xx answer raises :class:`ApiError`."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    @classmethod
    def connect(cls, api_url: str, token: str | None) -> Gantry:
        headers = {"User-Agent": "gantry-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return cls(httpx.Client(base_url=api_url, headers=headers, timeout=30.0))

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _api_error(response)
        return response.json() if response.content else None

    def exists(self, path: str) -> bool:
        try:
            self.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def pages(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Iterator[Any]:
        """Every item of a paginated list, following ``next_cursor``."""
        cursor = None
        while True:
            if method == "GET":
                paging = {"limit": BULK_LIMIT, **({"cursor": cursor} if cursor else {})}
                page = self.request("GET", path, params={**(params or {}), **paging})
            else:
                page = self.request(
                    method, path, json={**(body or {}), "limit": BULK_LIMIT, "cursor": cursor}
                )
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return


def _api_error(response: httpx.Response) -> ApiError:
    try:
        error = response.json()["error"]
        return ApiError(response.status_code, error.get("message", ""), error.get("details"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return ApiError(response.status_code, response.text[:500] or response.reason_phrase)


# --- sources ----------------------------------------------------------------------------------

SYNC_ENDED = frozenset({"SUCCESS", "PARTIAL", "FAILURE"})


def _source_path(source: str, *rest: str) -> str:
    return "/".join(["/v1/data-sources", *(quote(part, safe="") for part in (source, *rest))])


def cmd_sources(api: Gantry, args: argparse.Namespace) -> int:
    """Thin calls to the data-source routes; exit 1 when a preview has errors or a waited sync
    did not succeed."""
    from cli_commands.output import print_items

    if args.action == "list":
        print_items(api.pages("GET", "/v1/data-sources"), args.output, "identifier", "kind", "schedule")
        return 0
    if args.action == "preview":
        items = json.loads(Path(args.items).read_text())
        resource: int | str = int(args.resource) if args.resource.isdigit() else args.resource
        body = {"resource": resource, "items": items if isinstance(items, list) else [items]}
        answer = api.request("POST", _source_path(args.id, "preview"), json=body)
        print_json(answer)
        return 1 if answer.get("errors") else 0
    if args.action == "syncs":
        records = api.pages("GET", _source_path(args.id, "syncs"))
        # a row flattens the counts; JSON and YAML give the records as the API answers them
        rows = ({**s, **s["counts"]} for s in records) if args.output == "table" else records
        print_items(
            rows,
            args.output,
            "id",
            "status",
            "trigger",
            "started_at",
            "seen",
            "created",
            "updated",
            "deleted",
            "failed",
        )
        return 0
    sync = api.request("POST", _source_path(args.id, "syncs"))
    if args.wait:
        sync = _wait_for_sync(api, args.id, sync["id"], args.timeout)
    if args.json or args.wait:
        print_json(sync)
    else:
        print(sync["id"])
    return 0 if sync["status"] in ("RUNNING", "SUCCESS") else 1


def _wait_for_sync(api: Gantry, source: str, sync_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        sync: dict[str, Any] = api.request("GET", _source_path(source, "syncs", sync_id))
        if sync["status"] in SYNC_ENDED:
            return sync
        if time.monotonic() >= deadline:
            raise WaitError(f"sync {sync_id} of {source} is still {sync['status']} after {timeout:g}s")
        time.sleep(max(0.0, min(POLL_INTERVAL, deadline - time.monotonic())))


# --- command line ------------------------------------------------------------------------------


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False, default=str))


def print_rows(items: Iterable[dict[str, Any]], *columns: str) -> None:
    for item in items:
        print("\t".join(str(item.get(column) if item.get(column) is not None else "") for column in columns))


def cmd_token_create(api: Gantry, args: argparse.Namespace) -> None:
    body = {"user": args.user, "description": args.description, "expires_at": args.expires_at}
    created = api.request("POST", "/v1/tokens", json=body)
    print(created["token"])
    print(f"token {created['id']} for {created['user']}; it is shown only once", file=sys.stderr)


TERMINAL = {"SUCCESS", "FAILURE", "DECLINED", "CANCELLED", "TIMED_OUT"}
RUN_STATUSES = (
    "WAITING_FOR_APPROVAL",
    "IN_PROGRESS",
    "SUCCESS",
    "FAILURE",
    "DECLINED",
    "CANCELLED",
    "TIMED_OUT",
)
RUN_FILTERS = ("action", "entity", "status", "source")
RUN_COLUMNS = ("id", "action", "entity", "status", "created_at")
POLL_INTERVAL = 0.5
DEFAULT_WAIT_TIMEOUT = 120.0


class WaitError(Exception):
    """A wait that ran out of time, or a run that ended in a status nobody waited for."""


def run_statuses(value: str) -> frozenset[str]:
    """The argument of ``--wait-for``: ``STATUS[,STATUS…]``, case-insensitive."""
    wanted = frozenset(part.strip().upper() for part in value.split(",") if part.strip())
    unknown = sorted(wanted - set(RUN_STATUSES))
    if not wanted or unknown:
        raise argparse.ArgumentTypeError(
            f"{', '.join(unknown) or 'nothing'} is not a run status; use {', '.join(RUN_STATUSES)}"
        )
    return wanted


def wait_for_run(
    fetch: Callable[[], dict[str, Any] | None],
    wanted: frozenset[str],
    timeout: float,
    what: str | None = None,
) -> dict[str, Any]:
    """Poll ``fetch`` until the run it returns is in one of the ``wanted`` statuses and return it.
    A run that ends otherwise cannot get there any more, so that is a :class:`WaitError` at once,
    as is still waiting after ``timeout`` seconds. ``fetch`` returns None while there is no run."""
    deadline = time.monotonic() + timeout
    goal = " or ".join(sorted(wanted))
    while True:
        run = fetch()
        if run is not None and (run["status"] in wanted or run["status"] in TERMINAL):
            break
        if time.monotonic() >= deadline:
            state = f"is still {run['status']}" if run else "does not exist"
            name = what or (f"run {run['id']}" if run else "the run")
            raise WaitError(f"{name} {state} after {timeout:g}s of waiting for {goal}")
        time.sleep(max(0.0, min(POLL_INTERVAL, deadline - time.monotonic())))
    if run["status"] not in wanted:
        reason = f": {run['error']}" if run.get("error") else ""
        raise WaitError(f"run {run['id']} ended {run['status']}, not {goal}{reason}")
    return run


def _run_fetcher(api: Gantry, run_id: str) -> Callable[[], dict[str, Any]]:
    return lambda: dict(api.request("GET", f"/v1/runs/{run_id}"))


def _newest_run(api: Gantry, filters: dict[str, str]) -> Callable[[], dict[str, Any] | None]:
    """The newest run of a filtered list, read again by id: reading a run by id is what
    converges it with its workflow."""

    def fetch() -> dict[str, Any] | None:
        items = api.request("GET", "/v1/runs", params={**filters, "limit": 1})["items"]
        return _run_fetcher(api, items[0]["id"])() if items else None

    return fetch


def _describe_filters(filters: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in filters.items()) or "any"


def _inputs(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; a value that parses as JSON (numbers, booleans, lists) is used as such."""
    inputs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"an input is key=value, not {pair!r}")
        try:
            inputs[key] = json.loads(raw)
        except json.JSONDecodeError:
            inputs[key] = raw
    return inputs


def print_plan(plan: dict[str, Any]) -> None:
    """A dry run's plan: one line per step on stderr, the plan as JSON on stdout."""
    target = f" on {plan['entity']}" if plan["entity"] else ""
    warning = "  DESTRUCTIVE" if plan["destructive"] else ""
    print(f"plan of {plan['action']} v{plan['action_version']}{target}{warning}", file=sys.stderr)
    for step in plan["steps"]:
        runs = {True: "runs", False: "skipped", None: "decided at run time"}[step["would_run"]]
        flag = "  destructive" if step["destructive"] else ""
        print(f"  {step['id']:<20} {step['uses']:<32} {runs}{flag}", file=sys.stderr)
    print(json.dumps(plan, indent=2))


def cmd_run(api: Gantry, args: argparse.Namespace) -> None:
    if args.wait and args.wait_for:
        raise SystemExit("usage: --wait follows a run to its end; --wait-for stops at a status: pick one")
    if args.dry_run and (args.wait or args.wait_for):
        raise SystemExit("usage: --dry-run starts nothing to wait for")
    body: dict[str, Any] = {"inputs": _inputs(args.input), "source": "CLI"}
    if args.entity:
        body["entity"] = args.entity
    if args.idempotency_key:
        body["idempotency_key"] = args.idempotency_key
    if args.dry_run:
        print_plan(api.request("POST", f"/v1/actions/{args.action}/runs?dry_run=true", json=body))
        return
    run = api.request("POST", f"/v1/actions/{args.action}/runs", json=body)
    print(f"run {run['id']} {run['status']}  {run['temporal_ui_url']}", file=sys.stderr)
    if args.wait_for:
        try:  # the id goes to stdout even when the wait fails: the run exists either way
            reached = wait_for_run(_run_fetcher(api, run["id"]), args.wait_for, args.timeout)
            print(f"run {run['id']} {reached['status']}", file=sys.stderr)
        finally:
            print(run["id"])
        return
    if not args.wait:
        print(run["id"])
        return
    seen: int | None = None
    while True:
        query = f"?after={seen}" if seen is not None else ""
        for line in api.request("GET", f"/v1/runs/{run['id']}/logs{query}")["items"]:
            seen = line["id"]
            print(f"{line['at']} {line['level']:<7} {line['message']}", file=sys.stderr)
        run = api.request("GET", f"/v1/runs/{run['id']}")
        if run["status"] in TERMINAL:
            break
        time.sleep(1)
    print(run["status"])
    if run["status"] != "SUCCESS":
        raise SystemExit(1)


def cmd_mcp(api: Gantry, args: argparse.Namespace) -> int:
    """The MCP server over stdio; its tools call the API with ``--token``."""
    from api.mcp.stdio import run

    if not args.token:
        raise ValueError("gantry mcp needs a token: set GANTRY_TOKEN (an agent's token) or pass --token")
    return run(args.api_url, args.token)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="gantry", description="Gantry developer portal CLI")
    root.add_argument("--api-url", default=os.environ.get("GANTRY_API_URL", "http://127.0.0.1:8000"))
    root.add_argument("--token", default=os.environ.get("GANTRY_TOKEN"), help="default: $GANTRY_TOKEN")
    commands = root.add_subparsers(dest="command", required=True)
    from cli_commands.gates import add_gate_commands  # the commands build on this module's client
    from cli_commands.help import add_missing_examples, command
    from cli_commands.output import add_output
    from cli_commands.reads import add_read_commands
    from cli_commands.runs import add_run_commands

    add_read_commands(commands)

    run = command(
        commands,
        "run",
        "launch an action: gantry run ACTION [--entity ID] [-i key=value ...]",
        "gantry run deploy_service --entity payments -i version=v1.44.0 -i environment=staging --wait",
    )
    run.add_argument("action")
    run.add_argument("--entity", default=None, help="the entity a DAY-2 or DELETE action acts on")
    run.add_argument("-i", "--input", action="append", default=[], help="an input as key=value (repeatable)")
    run.add_argument("--idempotency-key", default=None, help="the same key returns the same run")
    run.add_argument("--wait", action="store_true", help="follow the run's log until it ends")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="check and show the plan (rendered steps, plan_hash); start nothing",
    )
    _add_wait_for(run, "wait until the run is in one of these statuses, then print its id")
    run.set_defaults(run=cmd_run)
    add_run_commands(commands)
    add_gate_commands(commands)

    token = commands.add_parser("token", help="manage API tokens").add_subparsers(
        dest="action", required=True
    )
    create = token.add_parser("create", help="create a token for a user (shown once)")
    create.add_argument("--user", required=True)
    create.add_argument("--description", default="")
    create.add_argument("--expires-at", default=None, help="ISO date-time; default: never")
    create.set_defaults(run=cmd_token_create)

    mcp = commands.add_parser("mcp", help="serve MCP over stdio for an agent (GANTRY_API_URL, GANTRY_TOKEN)")
    mcp.set_defaults(run=cmd_mcp)

    from importers import add_import_commands  # importers builds on this module's client

    add_import_commands(commands)
    from portal_as_code.commands import add_portal_commands  # builds on this module's client

    add_portal_commands(commands)
    sources = commands.add_parser(
        "sources", help="data sources: list | preview | sync | syncs"
    ).add_subparsers(dest="action", required=True)
    listed = sources.add_parser("list", help="every data source")
    preview = sources.add_parser("preview", help="what raw items would become, writing nothing")
    preview.add_argument("id")
    preview.add_argument("items", metavar="FILE.json", help="a JSON list of raw items (or one item)")
    preview.add_argument("--resource", default="0", help="the resource's index or kind (default 0)")
    sync = sources.add_parser("sync", help="start a sync now; prints its id")
    sync.add_argument("id")
    sync.add_argument("--wait", action="store_true", help="wait until it ends and print its record")
    sync.add_argument("--json", action="store_true", help="print the record, not only its id")
    sync.add_argument("--timeout", type=float, default=DEFAULT_WAIT_TIMEOUT, metavar="SECONDS")
    syncs = sources.add_parser("syncs", help="a source's syncs, newest first")
    syncs.add_argument("id")
    for subcommand in (listed, preview, sync, syncs):
        subcommand.set_defaults(run=cmd_sources)
    for subcommand in (listed, syncs):
        add_output(subcommand)
    from cli_commands.completion import add_completion_command

    add_completion_command(commands)
    add_missing_examples(root)
    return root


def _add_wait_for(parser: argparse.ArgumentParser, help: str) -> None:
    """``--wait-for STATUS[,STATUS…]`` and its ``--timeout``."""
    parser.add_argument("--wait-for", type=run_statuses, default=None, metavar="STATUS[,STATUS…]", help=help)
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_WAIT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long --wait-for waits (default {DEFAULT_WAIT_TIMEOUT:g})",
    )


def _token_hint(token: str | None) -> str:
    if not token:
        return (
            "hint: no token was given. Set GANTRY_TOKEN (or pass --token). `make run` prints a dev admin\n"
            "token; an admin creates one for you with `gantry token create --user YOU`."
        )
    return "hint: the token is unknown, revoked or expired: ask an admin for a new one (gantry token create)."


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    api = Gantry.connect(args.api_url, args.token)
    try:
        code = args.run(api, args)
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.status == 401:
            print(_token_hint(args.token), file=sys.stderr)
        return 1
    except (WaitError, ValueError, OSError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except httpx.TransportError as exc:
        print(f"error: cannot reach the Gantry API at {args.api_url}: {exc}", file=sys.stderr)
        return 1
    finally:
        api.http.close()
    return code or 0


if __name__ == "__main__":
    import cli  # one module object: importers.py raises the ApiError that main catches

    sys.exit(cli.main())
