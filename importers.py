"""``gantry import backstage|port|csv``: fill the catalog from files, without a running data source.

Each import works through the API like any client (so permissions, validation and audit apply),
reads everything first, checks that the blueprints it needs are absent or compatible *before
writing anything* (an incompatible one stops the import and suggests ``--prefix``), then writes
teams, users, blueprints and entities, entities in bulk. What cannot be imported is reported
(invalid files, bad rows by line and column, entities the API refused) and the rest is imported;
what Gantry cannot express is listed as unsupported, never dropped silently. The exit status is
1 when anything was reported as an error.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from catalog.sources.csv_rows import rows_to_entities
from catalog.sources.descriptors import (
    DescriptorEntity,
    DescriptorError,
    DescriptorTeam,
    DescriptorUser,
    builtin_blueprints,
    descriptor_entities,
    team_identifier,
)
from catalog.sources.port import blueprint_from_port, entity_from_port
from cli import BULK_LIMIT, ApiError, Gantry


@dataclass
class ImportReport:
    """What an import did: counts by kind, errors and unsupported features (each with where)."""

    created: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    existing: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    entities: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: list[dict[str, str]] = field(default_factory=list)
    unsupported: list[dict[str, str]] = field(default_factory=list)
    dry_run: bool = False

    def error(self, where: str, message: str) -> None:
        self.errors.append({"where": where, "message": message})

    def skip(self, where: str, message: str) -> None:
        self.unsupported.append({"where": where, "message": message})

    def as_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "created": dict(self.created),
            "existing": dict(self.existing),
            "entities": dict(self.entities),
            "errors": self.errors,
            "unsupported": self.unsupported,
        }

    def print(self, as_json: bool) -> int:
        if as_json:
            print(json.dumps(self.as_json(), indent=2))
        else:
            verb = "would import" if self.dry_run else "imported"
            counts = ", ".join(f"{n} {bp}" for bp, n in sorted(self.entities.items())) or "none"
            print(f"entities {verb}: {counts}")
            for title, found in (("created", self.created), ("already there", self.existing)):
                if found:
                    print(f"{title}: " + ", ".join(f"{n} {kind}" for kind, n in sorted(found.items())))
            for item in self.unsupported:
                print(f"unsupported: {item['where']}: {item['message']}")
            for item in self.errors:
                print(f"error: {item['where']}: {item['message']}")
            print(f"{len(self.errors)} errors, {len(self.unsupported)} unsupported")
        return 1 if self.errors else 0


class Incompatible(ValueError):
    """A blueprint of the same name exists with another shape: nothing was written."""


# -- shared steps ---------------------------------------------------------------------------


def _path(*parts: str) -> str:
    return "/" + "/".join(quote(p, safe="") for p in parts)


def _get_or_none(api: Gantry, path: str) -> Any:
    try:
        return api.request("GET", path)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


def incompatibilities(existing: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Why ``existing`` cannot hold entities shaped for ``wanted`` (empty: it can)."""
    problems = []
    have = (existing.get("schema") or {}).get("properties", {})
    for name, definition in (wanted.get("schema") or {}).get("properties", {}).items():
        if name not in have:
            problems.append(f"has no property '{name}'")
        elif have[name].get("type") != definition.get("type"):
            problems.append(f"property '{name}' is {have[name].get('type')}, not {definition.get('type')}")
    for name, relation in (wanted.get("relations") or {}).items():
        found = (existing.get("relations") or {}).get(name)
        if found is None:
            problems.append(f"has no relation '{name}'")
        elif (found.get("target"), bool(found.get("many"))) != (
            relation["target"],
            bool(relation.get("many")),
        ):
            problems.append(
                f"relation '{name}' is not {'many ' if relation.get('many') else ''}{relation['target']}"
            )
    return problems


def plan_blueprints(api: Gantry, wanted: list[dict[str, Any]], report: ImportReport) -> list[dict[str, Any]]:
    """The blueprints to create; raises ``Incompatible`` (before any write) naming every clash."""
    missing, clashes = [], []
    for body in wanted:
        existing = _get_or_none(api, _path("v1", "blueprints", body["identifier"]))
        if existing is None:
            missing.append(body)
            continue
        problems = incompatibilities(existing, body)
        if problems:
            clashes.append(f"blueprint '{body['identifier']}' exists and " + "; ".join(problems))
        else:
            report.existing["blueprints"] += 1
    if clashes:
        raise Incompatible(
            "; ".join(clashes) + ". Nothing was imported: choose a prefix for the imported blueprints, "
            "e.g. --prefix bs_ (creates bs_component, …)"
        )
    return missing


def create_blueprints(api: Gantry, bodies: list[dict[str, Any]], report: ImportReport) -> set[str]:
    """Create ``bodies`` in two passes (without relations and computed properties, then whole),
    so relations between them in any order and cycles work. Returns the blueprints that failed."""
    failed: set[str] = set()
    for body in bodies:
        bare = {
            k: v
            for k, v in body.items()
            if k not in ("relations", "mirror_properties", "aggregation_properties")
        }
        try:
            api.request("POST", "/v1/blueprints", json=bare)
            report.created["blueprints"] += 1
        except ApiError as exc:
            failed.add(body["identifier"])
            report.error(f"blueprint {body['identifier']}", str(exc))
    for body in bodies:
        if body["identifier"] in failed or not any(
            body.get(k) for k in ("relations", "mirror_properties", "aggregation_properties")
        ):
            continue
        try:
            api.request("PUT", _path("v1", "blueprints", body["identifier"]), json=body)
        except ApiError as exc:
            failed.add(body["identifier"])
            report.error(f"blueprint {body['identifier']}", str(exc))
    return failed


def ensure_teams(api: Gantry, teams: dict[str, dict[str, Any]], report: ImportReport) -> None:
    for identifier, body in teams.items():
        if _get_or_none(api, _path("v1", "teams", identifier)) is not None:
            report.existing["teams"] += 1
            continue
        try:
            api.request("POST", "/v1/teams", json={"identifier": identifier, **body})
            report.created["teams"] += 1
        except ApiError as exc:
            report.error(f"team {identifier}", str(exc))


def write_entities(
    api: Gantry,
    entities: dict[str, list[dict[str, Any]]],
    report: ImportReport,
    where: dict[str, str] | None = None,
) -> None:
    """Bulk upserts, blueprint by blueprint in the given order. An entity whose relation points at
    one written later (in its batch or another blueprint's) is retried after the round; when a
    round makes no progress (relations in a cycle), the refused entities are written without
    their relations once, then retried whole. Each entity still refused is an error."""
    pending = {bp: items for bp, items in entities.items() if items}
    refused: dict[str, list[tuple[dict[str, Any], str]]] = {}
    bare_tried = False
    while pending:
        refused = _round(api, pending, report, count=True)
        if sum(map(len, refused.values())) == sum(map(len, pending.values())):
            if bare_tried:
                break
            bare_tried = True
            _round(api, _cycle_breakers(refused), report, count=False)
        pending = {bp: [entity for entity, _ in items] for bp, items in refused.items()}
    for blueprint, items in refused.items():
        for entity, message in items:
            identifier = str(entity.get("identifier"))
            report.error((where or {}).get(identifier, f"{blueprint}/{identifier}"), message)


def _cycle_breakers(refused: dict[str, list[tuple[dict[str, Any], str]]]) -> dict[str, list[dict[str, Any]]]:
    """The refused entities whose relations all point at other refused entities, without their
    relations: written bare, they let the cycle's entities be written whole in the next round.
    An entity relating to something outside the import is never written half."""
    waiting = {str(e.get("identifier")) for items in refused.values() for e, _ in items}

    def targets(entity: dict[str, Any]) -> set[str]:
        values = (entity.get("relations") or {}).values()
        return {t for v in values for t in (v if isinstance(v, list) else [v]) if isinstance(t, str)}

    return {
        bp: [{**e, "relations": {}} for e, _ in items if e.get("relations") and targets(e) <= waiting]
        for bp, items in refused.items()
    }


def _round(
    api: Gantry, pending: dict[str, list[dict[str, Any]]], report: ImportReport, *, count: bool
) -> dict[str, list[tuple[dict[str, Any], str]]]:
    refused = {bp: _bulk(api, bp, items, report if count else None) for bp, items in pending.items() if items}
    return {bp: items for bp, items in refused.items() if items}


def _bulk(
    api: Gantry, blueprint: str, entities: list[dict[str, Any]], report: ImportReport | None
) -> list[tuple[dict[str, Any], str]]:
    refused = []
    for start in range(0, len(entities), BULK_LIMIT):
        chunk = entities[start : start + BULK_LIMIT]
        answer = api.request(
            "POST", _path("v1", "blueprints", blueprint, "entities", "bulk"), json={"entities": chunk}
        )
        for entity, result in zip(chunk, answer["results"], strict=True):
            if result.get("error"):
                refused.append((entity, str(ApiError(result["http_status"], **_error_args(result["error"])))))
            elif report is not None:
                report.entities[blueprint] += 1
    return refused


def _error_args(error: Any) -> dict[str, Any]:
    if not isinstance(error, dict):
        return {"message": str(error)}
    return {"message": error.get("message", ""), "details": error.get("details")}


def _targets_first(blueprints: dict[str, dict[str, Any]]) -> list[str]:
    ordered: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in ordered or name in path or name not in blueprints:
            return
        for relation in (blueprints[name].get("relations") or {}).values():
            visit(relation["target"], (*path, name))
        ordered.append(name)

    for name in sorted(blueprints):
        visit(name, ())
    return ordered


# -- backstage ------------------------------------------------------------------------------


def _descriptor_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
        else:
            files.append(path)
    return files


def import_backstage(api: Gantry, paths: list[str], *, prefix: str = "") -> ImportReport:
    report = ImportReport()
    entities: dict[str, list[dict[str, Any]]] = defaultdict(list)
    locations: dict[str, str] = {}
    teams: dict[str, dict[str, Any]] = {}
    users: dict[str, DescriptorUser] = {}
    members: dict[str, set[str]] = defaultdict(set)
    for file in _descriptor_files(paths):
        try:
            documents = [d for d in yaml.safe_load_all(file.read_text()) if d is not None]
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            report.error(str(file), f"cannot be read as YAML: {exc}")
            continue
        for index, document in enumerate(documents):
            location = f"{file}" if len(documents) == 1 else f"{file}#{index + 1}"
            for result in descriptor_entities(document, location=location, prefix=prefix):
                if isinstance(result, DescriptorError):
                    report.error(result.location, f"{result.field or '/'}: {result.message}")
                    continue
                for warning in result.warnings:
                    report.skip(location, warning)
                if isinstance(result, DescriptorTeam):
                    teams[result.identifier] = {"title": result.title, "description": result.description}
                    for member in result.members:
                        members[member].add(result.identifier)
                elif isinstance(result, DescriptorUser):
                    users[result.identifier] = result
                else:
                    _collect(result, entities, locations, location)
    for bodies in entities.values():
        for entity in bodies:
            for team in _teams_of(entity):
                teams.setdefault(team, {"title": team, "description": "named as an owner in catalog files"})
    for user in users.values():
        for team in user.teams:
            teams.setdefault(team, {"title": team, "description": "named by a User's memberOf"})
    missing = plan_blueprints(api, builtin_blueprints(prefix), report)
    ensure_teams(api, teams, report)
    _ensure_users(api, users, members, report)
    failed = create_blueprints(api, missing, report)
    order = [b["identifier"] for b in builtin_blueprints(prefix) if b["identifier"] not in failed]
    write_entities(api, {bp: entities[bp] for bp in order if bp in entities}, report, locations)
    _not_written(entities, failed, report)
    return report


def _not_written(entities: dict[str, list[dict[str, Any]]], failed: set[str], report: ImportReport) -> None:
    for blueprint in sorted(failed & set(entities)):
        report.error(
            f"blueprint {blueprint}",
            f"{len(entities[blueprint])} entities not imported: the blueprint failed",
        )


def _collect(
    result: DescriptorEntity,
    entities: dict[str, list[dict[str, Any]]],
    locations: dict[str, str],
    location: str,
) -> None:
    entities[result.blueprint].append(result.entity)
    locations[result.entity["identifier"]] = f"{location} ({result.blueprint}/{result.entity['identifier']})"


def _teams_of(entity: dict[str, Any]) -> list[str]:
    team = entity.get("team")
    return [team] if isinstance(team, str) else list(team or [])


def _ensure_users(
    api: Gantry, users: dict[str, DescriptorUser], members: dict[str, set[str]], report: ImportReport
) -> None:
    for identifier, user in users.items():
        teams = sorted(set(user.teams) | members.get(identifier, set()))
        if _get_or_none(api, _path("v1", "users", identifier)) is not None:
            report.existing["users"] += 1
            continue
        body = {"identifier": identifier, "email": user.email, "name": user.name, "teams": teams}
        try:
            api.request("POST", "/v1/users", json=body)
            report.created["users"] += 1
        except ApiError as exc:
            report.error(f"user {identifier}", str(exc))


# -- port -----------------------------------------------------------------------------------


def _prefixed_blueprint(body: dict[str, Any], prefix: str, names: set[str]) -> dict[str, Any]:
    def rename(name: str) -> str:
        return prefix + name if name in names else name

    out = {**body, "identifier": prefix + body["identifier"]}
    out["relations"] = {
        k: {**v, "target": rename(v["target"])} for k, v in (body.get("relations") or {}).items()
    }
    out["aggregation_properties"] = {
        k: {**v, "target": rename(v["target"])} for k, v in (body.get("aggregation_properties") or {}).items()
    }
    return out


def import_port(api: Gantry, export_file: str, *, prefix: str = "") -> ImportReport:
    report = ImportReport()
    export = json.loads(Path(export_file).read_text())
    if isinstance(export, list):
        export = {"blueprints": export}
    if not isinstance(export, dict) or not isinstance(export.get("blueprints", []), list):
        raise ValueError(f'{export_file}: a Port export is {{"blueprints": [...], "entities": [...]}}')
    given = [b for b in export.get("blueprints", []) if isinstance(b, dict) and "identifier" in b]
    names = {b["identifier"] for b in given}
    bodies: dict[str, dict[str, Any]] = {}
    for raw in given:
        converted = blueprint_from_port(raw)
        for problem in converted.unsupported:
            report.skip(f"blueprint {raw['identifier']} {problem.pointer}", problem.message)
        body = _prefixed_blueprint(converted.body, prefix, names)
        bodies[body["identifier"]] = body
    for key in sorted(set(export) - {"blueprints", "entities"}):
        report.skip(f"/{key}", "not imported: gantry import port reads blueprints and entities")
    missing = plan_blueprints(api, list(bodies.values()), report)
    by_blueprint: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for index, raw in enumerate(export.get("entities") or []):
        if not isinstance(raw, dict) or not isinstance(raw.get("blueprint"), str):
            report.error(f"/entities/{index}", "an entity needs its blueprint")
            continue
        entity, dropped = entity_from_port(raw)
        for key in dropped:
            report.skip(f"/entities/{index}/{key}", "has no place in Gantry's entities")
        blueprint = prefix + raw["blueprint"] if raw["blueprint"] in names else raw["blueprint"]
        by_blueprint[blueprint].append(entity)
    teams = {t for bodies_ in by_blueprint.values() for e in bodies_ for t in _teams_of(e)}
    valid_teams = {
        t: {"title": t, "description": "an owner in a Port export"} for t in teams if team_identifier(t) == t
    }
    ensure_teams(api, valid_teams, report)
    failed = create_blueprints(api, missing, report)
    known = {**bodies, **{b: {} for b in by_blueprint if b not in bodies}}
    order = [b for b in _targets_first(known) if b in by_blueprint and b not in failed]
    write_entities(api, {bp: by_blueprint[bp] for bp in order}, report)
    _not_written(by_blueprint, failed, report)
    return report


# -- csv ------------------------------------------------------------------------------------


def import_csv(
    api: Gantry,
    csv_file: str,
    *,
    blueprint: str,
    identifier_column: str = "identifier",
    title_column: str = "title",
    dry_run: bool = False,
) -> ImportReport:
    report = ImportReport(dry_run=dry_run)
    definition = api.request("GET", _path("v1", "blueprints", blueprint))
    text = Path(csv_file).read_text(encoding="utf-8-sig")
    rows = rows_to_entities(text, definition, identifier_column=identifier_column, title_column=title_column)
    for problem in rows.errors:
        report.error(
            f"{csv_file} line {problem.line}" + (f", column {problem.column}" if problem.column else ""),
            problem.message,
        )
    if dry_run:
        report.entities[blueprint] = len(rows.entities)
        return report
    where = {
        str(e["identifier"]): f"{csv_file} line {line}"
        for e, line in zip(rows.entities, rows.lines, strict=True)
    }
    write_entities(api, {blueprint: rows.entities}, report, where)
    return report


# -- command line ---------------------------------------------------------------------------


def cmd_import(api: Gantry, args: argparse.Namespace) -> int:
    try:
        if args.source == "backstage":
            report = import_backstage(api, args.paths, prefix=args.prefix)
        elif args.source == "port":
            report = import_port(api, args.export, prefix=args.prefix)
        else:
            report = import_csv(
                api,
                args.file,
                blueprint=args.blueprint,
                identifier_column=args.identifier_column,
                title_column=args.title_column,
                dry_run=args.dry_run,
            )
    except Incompatible as exc:
        if args.json:
            print(json.dumps({"errors": [{"where": "blueprints", "message": str(exc)}]}, indent=2))
            return 1
        raise
    return report.print(args.json)


def add_import_commands(commands: Any) -> None:
    """``gantry import backstage|port|csv`` on the CLI's subcommands."""
    sources = commands.add_parser(
        "import", help="import catalog data: backstage | port | csv"
    ).add_subparsers(dest="source", required=True)
    backstage = sources.add_parser(
        "backstage", help="Backstage catalog-info.yaml files (or directories of them)"
    )
    backstage.add_argument("paths", nargs="+", metavar="DIR|FILE")
    port = sources.add_parser("port", help='a Port export: {"blueprints": [...], "entities": [...]}')
    port.add_argument("export", metavar="EXPORT.json")
    for parser in (backstage, port):
        parser.add_argument("--prefix", default="", help="prefix of the imported blueprints (e.g. bs_)")
    csv_parser = sources.add_parser("csv", help="rows of a CSV file as entities of one blueprint")
    csv_parser.add_argument("file", metavar="FILE")
    csv_parser.add_argument("--blueprint", required=True)
    csv_parser.add_argument("--identifier-column", default="identifier")
    csv_parser.add_argument("--title-column", default="title")
    csv_parser.add_argument("--dry-run", action="store_true", help="check and count the rows, write nothing")
    for parser in (backstage, port, csv_parser):
        parser.add_argument("--json", action="store_true", help="print the summary as JSON")
        parser.set_defaults(run=cmd_import)
