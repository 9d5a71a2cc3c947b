"""A developer's run and timer chores: approve or decline, cancel, retry, read or follow a run's
log, extend a timer. Each prints one human line (or the API's answer with ``--json``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from cli import POLL_INTERVAL, TERMINAL, Gantry
from cli_commands.help import command
from cli_commands.output import Format, add_output, dump, print_items

LOG_COLUMNS = ("at", "level", "step_id", "message")


def _run_path(run_id: str, *rest: str) -> str:
    return "/".join(["/v1/runs", quote(run_id, safe=""), *rest])


def _answer(value: dict[str, Any], as_json: bool, line: str) -> None:
    print(json.dumps(value, indent=2, default=str) if as_json else line)


def cmd_approve(api: Gantry, args: argparse.Namespace) -> None:
    body = {"decision": "DECLINE" if args.decline else "APPROVE", "comment": args.message}
    state = api.request("POST", _run_path(args.run_id, "approval"), json=body)
    verb = "declined" if args.decline else "approved"
    counts = f"{len(state.get('approvals') or [])}/{state.get('required') or '?'} approvals"
    _answer(state, args.json, f"run {args.run_id}: {verb}; the approval is {state['status']} ({counts})")


def cmd_cancel(api: Gantry, args: argparse.Namespace) -> None:
    run = api.request("POST", _run_path(args.run_id, "cancel"))
    label = run.get("status_label") or run["status"]
    _answer(run, args.json, f"run {run['id']}: cancel requested ({run['status']}: {label})")


def cmd_retry(api: Gantry, args: argparse.Namespace) -> None:
    run = api.request("POST", _run_path(args.run_id, "retry"))
    _answer(run, args.json, f"run {run['id']}: retried, {run['status']}  {run.get('temporal_ui_url') or ''}")


def log_lines(api: Gantry, run_id: str, after: int | None) -> Iterator[dict[str, Any]]:
    """The run's log lines after line ``after`` (every line when None), page by page."""
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if after is not None:
            params["after"] = after
        if cursor:
            params["cursor"] = cursor
        page = api.request("GET", _run_path(run_id, "logs"), params=params)
        yield from page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return


def _print_line(line: dict[str, Any], fmt: Format) -> None:
    """One line as it arrives: a row, a JSON object per line, or a YAML document."""
    if fmt == "table":
        step = line.get("step_id") or "-"
        print(f"{line['at']}  {line['level']:<7} {step:<12} {line['message']}", flush=True)
    elif fmt == "json":
        print(json.dumps(line, default=str), flush=True)
    else:
        print("---\n" + dump(line, "yaml"), flush=True)


def cmd_logs(api: Gantry, args: argparse.Namespace) -> int:
    """The log; ``--follow`` prints new lines until the run ends and exits 0 only on SUCCESS.
    The run's status is read before each batch of lines, so the batch read after it ended holds
    its last line."""
    if not args.follow:
        lines = log_lines(api, args.run_id, None)
        if args.output == "table":
            for line in lines:
                _print_line(line, "table")
        else:
            print_items(lines, args.output)
        return 0
    seen: int | None = None
    while True:
        run = api.request("GET", _run_path(args.run_id))
        for line in log_lines(api, args.run_id, seen):
            seen = line["id"]
            _print_line(line, args.output)
        if run["status"] in TERMINAL:
            break
        time.sleep(POLL_INTERVAL)
    print(f"run {run['id']} {run['status']}", file=sys.stderr)
    return 0 if run["status"] == "SUCCESS" else 1


def cmd_extend(api: Gantry, args: argparse.Namespace) -> None:
    path = "/".join(
        [
            "/v1/blueprints",
            quote(args.blueprint, safe=""),
            "entities",
            quote(args.entity, safe=""),
            "timers",
            quote(args.property, safe=""),
            "extend",
        ]
    )
    timer = api.request("POST", path, json={"by": args.by})
    line = (
        f"{args.blueprint}/{args.entity} {args.property}: extended by {args.by}, now due {timer['deadline']}"
    )
    _answer(timer, args.json, line)


def add_run_commands(commands: Any) -> None:
    approve = command(
        commands,
        "approve",
        "approve (or --decline) a run that waits for your approval",
        "gantry approve r_3f9c2a -m 'checked the change log'\n  gantry approve r_3f9c2a --decline -m 'not during the freeze'",
    )
    approve.add_argument("run_id", metavar="RUN")
    approve.add_argument("--decline", action="store_true", help="decline instead of approving")
    approve.add_argument(
        "-m", "--message", default="", metavar="COMMENT", help="a comment kept with the decision"
    )
    approve.set_defaults(run=cmd_approve)

    cancel = command(
        commands,
        "cancel",
        "cancel a run: its running step is cancelled, completed steps are compensated",
        "gantry cancel r_3f9c2a",
    )
    cancel.set_defaults(run=cmd_cancel)

    retry = command(
        commands,
        "retry",
        "resume a failed, cancelled, declined or timed-out run from its failed step",
        "gantry retry r_3f9c2a && gantry logs r_3f9c2a --follow",
    )
    retry.set_defaults(run=cmd_retry)
    for parser in (cancel, retry):
        parser.add_argument("run_id", metavar="RUN")
    for parser in (approve, cancel, retry):
        parser.add_argument("--json", action="store_true", help="print the API's answer as JSON")

    logs = command(
        commands,
        "logs",
        "a run's log; --follow prints new lines until the run ends (exit 0 only on SUCCESS)",
        "gantry logs r_3f9c2a --follow",
    )
    logs.add_argument("run_id", metavar="RUN")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing lines until the run ends")
    add_output(logs)
    logs.set_defaults(run=cmd_logs)

    extend = command(
        commands,
        "extend",
        "push a timer's deadline back, within the blueprint's policy",
        "gantry extend environment pr-1234 expires_at P2D",
    )
    extend.add_argument("blueprint", metavar="BP")
    extend.add_argument("entity", metavar="ID")
    extend.add_argument("property", metavar="PROPERTY", help="the entity's timer property")
    extend.add_argument("by", metavar="BY", help="an ISO 8601 duration: PT4H, P2D")
    extend.add_argument("--json", action="store_true", help="print the timer as JSON")
    extend.set_defaults(run=cmd_extend)
