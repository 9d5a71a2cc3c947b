"""The ``gantry`` subcommands of portal as code: plan, apply, export, history, revert.

Exit codes: ``plan`` 0 nothing to do, 2 changes, 1 error; the others 0 done, 1 error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cli import Gantry, print_json, print_rows
from portal_as_code.apply import ApplyError, apply_plan
from portal_as_code.export import export
from portal_as_code.live import fetch, kind_of, write
from portal_as_code.model import KINDS
from portal_as_code.plan import PlanError, make_plan, update_body

EXAMPLES = {
    "plan": "gantry plan portal/ --prune      # exit 0: nothing to do, 2: changes, 1: error",
    "apply": "gantry apply portal/ --prune --yes",
    "export": "gantry export exported/ [--entities]",
    "history": "gantry history Blueprint service   (scorecards: Scorecard service/dora)",
    "revert": "gantry revert 1234                 (a revision id from gantry history)",
}


def _planned(api: Gantry, args: argparse.Namespace) -> Any:
    try:
        return make_plan(
            api, Path(args.dir), prune=args.prune, prune_entities=getattr(args, "prune_entities", False)
        )
    except PlanError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return None


def cmd_plan(api: Gantry, args: argparse.Namespace) -> int:
    plan = _planned(api, args)
    if plan is None:
        return 1
    if args.json:
        print_json(plan.as_json())
    else:
        print(plan.render())
    return 2 if plan.pending else 0


def cmd_apply(api: Gantry, args: argparse.Namespace) -> int:
    plan = _planned(api, args)
    if plan is None:
        return 1
    print(plan.render())
    if not plan.pending:
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            print("error: not applied: stdin is not a terminal; pass --yes to apply", file=sys.stderr)
            return 1
        if input("\nApply these changes? Only 'yes' applies: ").strip() != "yes":
            print("Not applied.")
            return 1
    try:
        apply_plan(api, plan)
    except ApplyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print("The objects before it were applied; fix it and run apply again to continue.", file=sys.stderr)
        return 1
    print(
        f"Apply complete: {plan.count('create')} created, {plan.count('update')} updated, "
        f"{plan.count('delete')} deleted."
    )
    return 0


def cmd_export(api: Gantry, args: argparse.Namespace) -> int:
    written = export(api, Path(args.dir), entities=args.entities)
    print(f"{len(written)} files written to {args.dir}")
    return 0


def cmd_history(api: Gantry, args: argparse.Namespace) -> int:
    kind = kind_of(args.kind)
    params = {"kind": kind.name, "identifier": args.id}
    if kind.scoped_by:
        blueprint, _, identifier = args.id.partition("/")
        params.update(identifier=identifier, blueprint=blueprint)
    revisions = api.pages("GET", "/v1/config/revisions", params=params)
    if args.json:
        print_json(list(revisions))
    else:
        print_rows(revisions, "id", "at", "actor", "operation", "kind", "identifier")
    return 0


def cmd_revert(api: Gantry, args: argparse.Namespace) -> int:
    """Put the object back as it was before the revision: written again (or deleted, when the
    revision created it), as a new change with its own revision."""
    revision = api.request("GET", f"/v1/config/revisions/{args.revision}")
    kind = KINDS[revision["kind"]]
    scope = {"blueprint": revision["blueprint"]} if kind.scoped_by else {}
    target = {"identifier": revision["identifier"], **scope}
    current, etag = fetch(api, kind.path_of(target))
    if revision["before"] is None:
        if current is not None:
            api.request("DELETE", kind.path_of(target))
        print(f"{kind.name} {kind.key(target)}: deleted (revision {args.revision} created it)")
        return 0
    spec = kind.normalize({**revision["before"], **scope})
    if current is None:
        write(api, "POST", kind.collection_of(spec), kind.body(spec))
        how = "created again"
    else:
        write(
            api,
            "PATCH" if kind.patch else "PUT",
            kind.path_of(spec),
            update_body(kind.name, spec),
            if_match=etag,
        )
        how = "restored"
    print(f"{kind.name} {kind.key(spec)}: {how} as before revision {args.revision}")
    return 0


def add_portal_commands(commands: Any) -> None:
    """Register plan, apply, export, history and revert on the ``gantry`` parser."""

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=help,
            description=f"{help}\n\nexample: {EXAMPLES[name]}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    plan = command("plan", "show what apply would create, update and delete")
    plan.add_argument("dir", help="a directory of YAML documents (or one file)")
    plan.add_argument("--prune", action="store_true", help="also show configuration not in DIR (deleted)")
    plan.add_argument(
        "--prune-entities", action="store_true", help="and entities of DIR's blueprints not in it"
    )
    plan.add_argument("--json", action="store_true", help="the plan as JSON")
    plan.set_defaults(run=cmd_plan)

    apply = command("apply", "make the portal match DIR, in dependency order")
    apply.add_argument("dir", help="a directory of YAML documents (or one file)")
    apply.add_argument("--prune", action="store_true", help="delete configuration objects not in DIR")
    apply.add_argument(
        "--prune-entities", action="store_true", help="delete entities of DIR's blueprints not in it"
    )
    apply.add_argument(
        "--yes", action="store_true", help="apply without asking (needed when not on a terminal)"
    )
    apply.set_defaults(run=cmd_apply)

    exported = command("export", "write the live configuration as YAML, one file per object")
    exported.add_argument("dir", help="an empty or new directory")
    exported.add_argument(
        "--entities", action="store_true", help="entities too (not those a data source owns)"
    )
    exported.set_defaults(run=cmd_export)

    history = command("history", "the revisions of one configuration object, newest first")
    history.add_argument("kind", choices=sorted(KINDS))
    history.add_argument("id", help="its identifier (a scorecard: BLUEPRINT/SCORECARD)")
    history.add_argument("--json", action="store_true")
    history.set_defaults(run=cmd_history)

    revert = command("revert", "put an object back as it was before a revision (a new revision)")
    revert.add_argument("revision", type=int)
    revert.set_defaults(run=cmd_revert)
