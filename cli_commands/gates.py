"""CI gates and reports: ``gantry check scorecard`` and ``gantry check action`` answer a
pipeline's "may this go ahead?" with an exit code (0 yes, 1 no with the reasons, 2 the question
could not be answered), ``gantry report`` upserts what the pipeline did as one entity."""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from typing import Any
from urllib.parse import quote

import httpx

from cli import ApiError, Gantry, _api_error, _inputs
from cli_commands.help import command

PASSED, BELOW, UNANSWERED = 0, 1, 2


class GateError(Exception):
    """The gate's question has no answer (no such scorecard, or level): exit 2."""


def _part(value: str) -> str:
    return quote(value, safe="")


def _emit(answer: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    print(json.dumps(answer, indent=2, default=str) if as_json else "\n".join(lines))


def _unanswered(exc: Exception, args: argparse.Namespace) -> int:
    """Exit 2 with the reason: on stderr, and as ``{"error"}`` with ``--json`` so a pipeline
    parsing stdout always gets JSON."""
    print(f"error: {exc}", file=sys.stderr)
    if args.json:
        print(json.dumps({"error": str(exc)}))
    return UNANSWERED


# ---- check scorecard -------------------------------------------------------------------------


def scorecard_verdict(
    definition: dict[str, Any], graded: dict[str, Any] | None, required: str
) -> dict[str, Any]:
    """One scorecard's answer: the level held, whether it reaches ``required`` (levels are listed
    lowest first), and the failing rules at or below ``required`` (what keeps it below). An entity
    not graded yet holds the lowest level."""
    titles = [level["title"] for level in definition["levels"]]
    held = (graded or {}).get("level") or titles[0]
    status = {rule["identifier"]: rule["status"] for rule in (graded or {}).get("rules", [])}
    needed = titles.index(required)
    failing = [
        {
            "identifier": rule["identifier"],
            "title": rule.get("title") or rule["identifier"],
            "level": rule["level"],
        }
        for rule in definition.get("rules", [])
        if rule["level"] in titles
        and titles.index(rule["level"]) <= needed
        and status.get(rule["identifier"]) != "SUCCESS"
    ]
    passed = held in titles and titles.index(held) >= needed
    return {
        "scorecard": definition["identifier"],
        "title": definition.get("title") or definition["identifier"],
        "level": held,
        "required": required,
        "passed": passed,
        "failing_rules": [] if passed else failing,
    }


def _scorecards(api: Gantry, blueprint: str, only: str | None, level: str) -> list[dict[str, Any]]:
    """The scorecards to check: ``only``, or every one of the blueprint that has ``level``."""
    if only is not None:
        found = [api.request("GET", f"/v1/blueprints/{_part(blueprint)}/scorecards/{_part(only)}")]
    else:
        found = list(api.pages("GET", f"/v1/blueprints/{_part(blueprint)}/scorecards"))
        if not found:
            raise GateError(f"blueprint '{blueprint}' has no scorecards")
    having = [s for s in found if level in [lvl["title"] for lvl in s["levels"]]]
    if not having:
        levels = ", ".join(dict.fromkeys(lvl["title"] for s in found for lvl in s["levels"]))
        where = f"scorecard '{only}' has no level" if only else f"no scorecard of '{blueprint}' has a level"
        raise GateError(f"{where} '{level}' (levels: {levels})")
    return having


def cmd_check_scorecard(api: Gantry, args: argparse.Namespace) -> int:
    try:
        entity = api.request("GET", f"/v1/blueprints/{_part(args.blueprint)}/entities/{_part(args.entity)}")
        definitions = _scorecards(api, args.blueprint, args.scorecard, args.level)
    except (ApiError, GateError, httpx.HTTPError) as exc:
        return _unanswered(exc, args)
    verdicts = [
        scorecard_verdict(d, entity["scorecards"].get(d["identifier"]), args.level) for d in definitions
    ]
    passed = all(v["passed"] for v in verdicts)
    lines = []
    for v in verdicts:
        head = f"{args.blueprint}/{args.entity} is {v['level']} on {v['scorecard']}"
        if v["passed"]:
            lines.append(f"{head}: at or above {args.level}")
            continue
        lines.append(f"{head}: below {args.level}; failing rules:")
        lines += [f"  - {r['identifier']} ({r['level']}): {r['title']}" for r in v["failing_rules"]]
    answer = {
        "blueprint": args.blueprint,
        "entity": args.entity,
        "level": args.level,
        "passed": passed,
        "scorecards": verdicts,
    }
    _emit(answer, args.json, lines)
    return PASSED if passed else BELOW


# ---- check action ----------------------------------------------------------------------------


def cmd_check_action(api: Gantry, args: argparse.Namespace) -> int:
    body = {"entity": args.entity} if args.entity else {}
    try:
        verdict = api.request("POST", f"/v1/actions/{_part(args.action)}/check", json=body)
    except (ApiError, httpx.HTTPError) as exc:
        return _unanswered(exc, args)
    target = f" on {args.entity}" if args.entity else ""
    if verdict["allowed"]:
        then = " (it has an approval gate: the run may wait for one)" if verdict["needs_approval"] else ""
        lines = [f"yes: you may run {args.action}{target} now{then}"]
    else:
        lines = [f"no: you may not run {args.action}{target} now:"]
        lines += [f"  - {p['check']} {p['pointer']}: {p['message']}" for p in verdict["problems"]]
    _emit(verdict, args.json, lines)
    return PASSED if verdict["allowed"] else BELOW


# ---- report ----------------------------------------------------------------------------------


def relations(pairs: list[str]) -> dict[str, Any]:
    """``name=target`` pairs; a name given twice collects its targets in a list, a JSON value
    (``["a", "b"]``, ``null``) is used as such."""
    collected: dict[str, list[Any]] = defaultdict(list)
    for pair in pairs:
        for name, value in _inputs([pair]).items():
            collected[name].append(value)
    return {name: values[0] if len(values) == 1 else values for name, values in collected.items()}


def cmd_report(api: Gantry, args: argparse.Namespace) -> int:
    """Create the entity, or merge the given properties and relations into it (what it had
    otherwise stays)."""
    entity: dict[str, Any] = {"identifier": args.entity, "properties": _inputs(args.set)}
    if args.relation:
        entity["relations"] = relations(args.relation)
    if args.team:
        entity["team"] = args.team
    if args.title is not None:
        entity["title"] = args.title
    path = f"/v1/blueprints/{_part(args.blueprint)}/entities"
    response = api.http.post(path, params={"merge": "true"}, json=entity)
    if response.status_code >= 400:
        raise _api_error(response)
    how = "created" if response.status_code == 201 else "updated"
    written = response.json()
    _emit({**written, "result": how}, args.json, [f"{args.blueprint}/{written['identifier']}: {how}"])
    return 0


def add_gate_commands(commands: Any) -> None:
    check = commands.add_parser(
        "check", help="CI gates: scorecard | action (exit 0 yes, 1 no, 2 error)"
    ).add_subparsers(dest="gate", required=True)
    scorecard = command(
        check,
        "scorecard",
        "exit 0 when the entity is at or above LEVEL, 1 below (with the failing rules), 2 on error",
        "gantry check scorecard service payments --level Silver --scorecard production_readiness",
    )
    scorecard.add_argument("blueprint", metavar="BP")
    scorecard.add_argument("entity", metavar="ENTITY")
    scorecard.add_argument("--level", required=True, help="the level's title, e.g. Silver")
    scorecard.add_argument("--scorecard", default=None, help="default: every scorecard of BP that has LEVEL")
    scorecard.set_defaults(run=cmd_check_scorecard)

    action = command(
        check,
        "action",
        "whether you may run ACTION now (permission, trigger condition, preconditions), without running it",
        "gantry check action deploy_service --entity payments",
    )
    action.add_argument("action", metavar="ACTION")
    action.add_argument("--entity", default=None, help="the entity a DAY-2 or DELETE action would act on")
    action.set_defaults(run=cmd_check_action)

    report = command(
        commands,
        "report",
        "upsert an entity in one call: create it, or merge the given properties and relations into it",
        "gantry report deployment payments-v1.44.0 --set version=v1.44.0 --set status=SUCCEEDED \\\n"
        "      --set stage=production --relation service=payments --team payments-team",
    )
    report.add_argument("blueprint", metavar="BP")
    report.add_argument("entity", metavar="ID")
    report.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a property (JSON when it parses)"
    )
    report.add_argument(
        "--relation", action="append", default=[], metavar="NAME=TARGET", help="a relation (repeat for many)"
    )
    report.add_argument(
        "--team", action="append", default=[], metavar="TEAM", help="an owning team (repeatable)"
    )
    report.add_argument("--title", default=None)
    report.set_defaults(run=cmd_report)
    for parser in (scorecard, action, report):
        parser.add_argument("--json", action="store_true", help="print the answer as JSON")
