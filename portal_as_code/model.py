"""One configuration model: every kind of object the portal is configured with, as YAML.

A document is ``kind:`` + ``spec:``; a directory holds them in any file layout. Each
:class:`Kind` knows where its objects live in the API, what identifies one, which fields a spec
may have, how to turn the live object back into the spec a person writes (server fields such
as write stamps and computed views dropped), and which other objects it needs first. ``plan``,
``apply``, ``export`` and ``revert`` all work from this one table, so a kind added here is
planned, applied, exported and reverted alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from catalog.automations.service import AutomationIn
from catalog.identity.service import ADMIN_USER, SERVICE_USER
from catalog.initiatives.service import InitiativeIn
from catalog.runs.actions import ActionIn
from catalog.schemas import BlueprintIn, TeamIn, UserIn
from catalog.scorecards.service import ScorecardIn
from catalog.sources.definitions import DataSourceIn

# What the API adds to a stored object; never part of a spec.
SERVER_FIELDS = frozenset({"created_at", "updated_at", "created_by", "updated_by", "warnings", "version"})
# The bootstrap admin and the worker's service principal come from settings, not from git.
BUILTIN_USERS = frozenset({ADMIN_USER, SERVICE_USER})
# Blueprint fields that read through relations: applied in a second pass, once every blueprint
# (so every relation target) exists.
LINKED_BLUEPRINT_FIELDS = ("relations", "mirror_properties", "aggregation_properties")

Spec = dict[str, Any]


class ConfigError(ValueError):
    """A document that is not a valid configuration object, named by file and index."""


def _fields(model: Any, *extra: str) -> tuple[str, ...]:
    return (*(f.alias or name for name, f in model.model_fields.items()), *extra)


def _q(part: str) -> str:
    return quote(part, safe="")


def _empty(value: Any) -> bool:
    return value is None or value == {} or value == [] or value == ""


def _prune_top(spec: Spec) -> Spec:
    """Drop what a spec may leave out: unset (null) and empty values, which the API defaults."""
    return {k: v for k, v in spec.items() if k not in SERVER_FIELDS and not _empty(v)}


def _blueprint_spec(live: Spec) -> Spec:
    spec = _prune_top(live)
    permissions = {k: v for k, v in (spec.get("permissions") or {}).items() if not _empty(v)}
    moderators = {k: v for k, v in (spec.get("moderators") or {}).items() if not _empty(v)}
    schema = {k: v for k, v in (spec.get("schema") or {}).items() if not _empty(v)}
    spec.update(permissions=permissions, moderators=moderators, schema=schema)
    return _prune_top(spec)


def _initiative_spec(live: Spec) -> Spec:
    """An initiative without what its run produced: workflow, reminders sent, final report."""
    produced = ("workflow_id", "reminders", "final_report", "reported_at")
    return _prune_top({k: v for k, v in live.items() if k not in produced})


def _initiative_needs(spec: Spec) -> set[tuple[str, str]]:
    needs = {("Team", str(t)) for t in (spec.get("owner") or {}).get("teams") or []}
    for target in spec.get("targets") or []:
        if isinstance(target, dict) and target.get("blueprint"):
            needs.add(("Blueprint", str(target["blueprint"])))
            needs.add(("Scorecard", f"{target['blueprint']}/{target.get('scorecard')}"))
    return needs


def _automation_spec(live: Spec) -> Spec:
    spec = _prune_top(live)
    spec.setdefault("enabled", bool(live.get("enabled", True)))
    return spec


@dataclass(frozen=True)
class Kind:
    """How one kind of configuration object is read, written and ordered."""

    name: str
    folder: str
    resource_type: str  # the audit log's ``resource_type``
    collection: str  # the API's collection path (scorecards: per blueprint, ``{blueprint}``)
    fields: tuple[str, ...]
    rank: int  # apply order; deletes go in reverse
    patch: bool = False  # teams and users are changed with PATCH (no PUT)
    to_spec: Callable[[Spec], Spec] = _prune_top
    needs: Callable[[Spec], set[tuple[str, str]]] = field(default=lambda spec: set())
    scoped_by: str | None = None  # the spec field the collection path is scoped by

    def key(self, spec: Spec) -> str:
        """What identifies an object of this kind (scorecards: ``blueprint/identifier``)."""
        ident = str(spec.get("identifier", ""))
        return f"{spec.get(self.scoped_by, '')}/{ident}" if self.scoped_by else ident

    def collection_of(self, spec: Spec) -> str:
        return self.collection.format(blueprint=_q(str(spec.get("blueprint", ""))))

    def path_of(self, spec: Spec) -> str:
        return f"{self.collection_of(spec)}/{_q(str(spec['identifier']))}"

    def body(self, spec: Spec) -> Spec:
        """The request body of a write (a scorecard's blueprint is in its path)."""
        return {k: v for k, v in spec.items() if k != self.scoped_by}

    def normalize(self, live: Spec) -> Spec:
        """The live object (or a dry run's answer) as the spec a person would write, keys in
        the order of the kind's fields."""
        spec = self.to_spec(live)
        ordered = {name: spec[name] for name in self.fields if name in spec}
        return ordered | {k: v for k, v in spec.items() if k not in ordered}


def _blueprint_needs(spec: Spec) -> set[tuple[str, str]]:
    targets = {r.get("target") for r in (spec.get("relations") or {}).values() if isinstance(r, dict)}
    targets |= {
        a.get("target") for a in (spec.get("aggregation_properties") or {}).values() if isinstance(a, dict)
    }
    moderators = spec.get("moderators") or {}
    needs = {("Blueprint", str(t)) for t in targets if t and t != spec.get("identifier")}
    needs |= {("Team", str(t)) for t in moderators.get("teams") or []}
    return needs


def _on_blueprint(spec: Spec) -> set[tuple[str, str]]:
    return {("Blueprint", str(spec["blueprint"]))} if spec.get("blueprint") else set()


def _automation_needs(spec: Spec) -> set[tuple[str, str]]:
    action = (spec.get("invoke") or {}).get("action")
    blueprint = (spec.get("trigger") or {}).get("blueprint")
    needs: set[tuple[str, str]] = set()
    if action:
        needs.add(("Action", str(action)))
    if blueprint:
        needs.add(("Blueprint", str(blueprint)))
    return needs


def _data_source_needs(spec: Spec) -> set[tuple[str, str]]:
    blueprints = set()
    for resource in spec.get("resources") or []:
        entity = ((resource or {}).get("port") or {}).get("entity") or {}
        mappings = entity.get("mappings") or {}
        for mapping in mappings if isinstance(mappings, list) else [mappings]:
            # A jq program; a constant one ('"service"') names the blueprint it writes.
            blueprint = str((mapping or {}).get("blueprint") or "").strip().strip('"')
            if blueprint.replace("-", "_").isidentifier():
                blueprints.add(("Blueprint", blueprint))
    return blueprints


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("Team", "teams", "team", "/v1/teams", _fields(TeamIn), 0, patch=True),
        Kind(
            "User",
            "users",
            "user",
            "/v1/users",
            _fields(UserIn),
            1,
            patch=True,
            needs=lambda spec: {("Team", str(t)) for t in spec.get("teams") or []},
        ),
        Kind(
            "Blueprint",
            "blueprints",
            "blueprint",
            "/v1/blueprints",
            _fields(BlueprintIn),
            2,
            to_spec=_blueprint_spec,
            needs=_blueprint_needs,
        ),
        Kind(
            "Scorecard",
            "scorecards",
            "scorecard",
            "/v1/blueprints/{blueprint}/scorecards",
            _fields(ScorecardIn, "blueprint"),
            4,
            needs=_on_blueprint,
            scoped_by="blueprint",
        ),
        Kind("Action", "actions", "action", "/v1/actions", _fields(ActionIn), 5, needs=_on_blueprint),
        Kind(
            "Automation",
            "automations",
            "automation",
            "/v1/automations",
            _fields(AutomationIn),
            6,
            to_spec=_automation_spec,
            needs=_automation_needs,
        ),
        Kind(
            "DataSource",
            "data-sources",
            "data_source",
            "/v1/data-sources",
            _fields(DataSourceIn),
            7,
            needs=_data_source_needs,
        ),
        Kind(
            "Initiative",
            "initiatives",
            "initiative",
            "/v1/initiatives",
            _fields(InitiativeIn),
            8,
            to_spec=_initiative_spec,
            needs=_initiative_needs,
        ),
    )
}
# Entities are data, not configuration: applied (upserted) as they always were, after the
# blueprints, and pruned only when asked.
ENTITY = "Entity"
ENTITY_FIELDS = ("blueprint", "identifier", "title", "team", "properties", "relations")
DOCUMENT_KINDS = (*KINDS, ENTITY)


@dataclass(frozen=True)
class Document:
    """One object of a directory, and where it was written."""

    kind: str
    spec: Spec
    file: Path
    index: int

    @property
    def where(self) -> str:
        return f"{self.file} (document {self.index})"

    @property
    def key(self) -> str:
        if self.kind == ENTITY:
            return f"{self.spec.get('blueprint')}/{self.spec.get('identifier')}"
        return KINDS[self.kind].key(self.spec)


def yaml_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ConfigError(f"{path}: no such file or directory")
    return sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def load(path: Path) -> list[Document]:
    """Every document under ``path``; a bad one is a :class:`ConfigError` naming the file, the
    document's index in it (from 0) and the field."""
    documents: list[Document] = []
    seen: dict[tuple[str, str], Document] = {}
    for file in yaml_files(path):
        try:
            loaded = list(yaml.safe_load_all(file.read_text()))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
        items = [item for doc in loaded for item in (doc if isinstance(doc, list) else [doc])]
        for index, item in enumerate(i for i in items if i is not None):
            document = _document(item, file, index)
            other = seen.get((document.kind, document.key))
            if other is not None:
                raise ConfigError(
                    f"{document.where}: {document.kind} {document.key} is also defined in {other.where}"
                )
            seen[(document.kind, document.key)] = document
            documents.append(document)
    return documents


def _document(item: Any, file: Path, index: int) -> Document:
    where = f"{file} (document {index})"
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: a document is a mapping with kind and spec")
    unknown = sorted(set(item) - {"kind", "spec"})
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r} (a document has kind and spec)")
    kind = item.get("kind")
    if kind is None:
        raise ConfigError(f"{where}: kind: each document needs kind ({'|'.join(DOCUMENT_KINDS)}) and spec")
    if kind not in DOCUMENT_KINDS:
        raise ConfigError(f"{where}: kind: unknown kind {kind!r}; use one of {', '.join(DOCUMENT_KINDS)}")
    spec = item.get("spec")
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: spec: a {kind} needs a spec mapping")
    allowed = ENTITY_FIELDS if kind == ENTITY else KINDS[kind].fields
    for name in spec:
        if name not in allowed:
            raise ConfigError(f"{where}: spec.{name}: unknown field of {kind}; known: {', '.join(allowed)}")
    required = ("blueprint", "identifier") if kind == ENTITY or KINDS[kind].scoped_by else ("identifier",)
    for name in required:
        if not isinstance(spec.get(name), str) or not spec[name]:
            raise ConfigError(f"{where}: spec.{name}: a {kind} needs a {name}")
    return Document(kind, spec, file, index)
