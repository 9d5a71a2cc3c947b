"""``gantry plan DIR``: what apply would create, update (field by field) and delete.

Every object is validated by the server before anything changes: a dry-run write
(``?dry_run=true``) runs the real checks and answers what would be stored, which is also what
the live object is compared with, so server defaults never show as changes. An object that
needs another object this plan creates or changes (a relation to a new blueprint, an action
on it) cannot be checked that way yet; it is compared as written and checked when applied.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml

from catalog.timefmt import format_instant
from cli import ApiError, Gantry
from portal_as_code.live import computed_properties, entity_spec, fetch, live_objects, write
from portal_as_code.model import ENTITY, KINDS, Document, Spec, load

Op = Literal["create", "update", "delete", "none"]
SYMBOL = {"create": "+", "update": "~", "delete": "-", "none": " "}


class PlanError(Exception):
    """The directory or an object in it is invalid; every problem is listed."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class FieldChange:
    path: str
    op: Literal["+", "-", "~"]
    before: Any = None
    after: Any = None

    def line(self) -> str:
        if self.op == "+":
            return f"+ {self.path}: {show(self.after)}"
        if self.op == "-":
            return f"- {self.path}: {show(self.before)}"
        return f"~ {self.path}: {show(self.before)} -> {show(self.after)}"


@dataclass
class Change:
    """One object: what apply does to it, and the field-level difference."""

    kind: str
    key: str
    op: Op
    document: Document | None = None
    before: Spec | None = None  # the live object, normalised
    after: Spec | None = None  # what DIR asks for, normalised
    etag: str | None = None
    deferred: bool = False
    fields: list[FieldChange] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "action": self.op,
            "file": str(self.document.file) if self.document else None,
            "document": self.document.index if self.document else None,
            "checked_when_applied": self.deferred,
            "changes": [
                {"path": f.path, "op": f.op, "before": f.before, "after": f.after} for f in self.fields
            ],
        }


@dataclass
class Plan:
    changes: list[Change]

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.op != "none"]

    def count(self, op: Op) -> int:
        return sum(1 for c in self.changes if c.op == op)

    def render(self) -> str:
        if not self.pending:
            return "No changes. The portal matches the configuration."
        lines: list[str] = []
        for change in self.pending:
            note = " (checked when applied: it needs objects this plan creates)" if change.deferred else ""
            lines.append(f"{SYMBOL[change.op]} {change.kind} {change.key}: {change.op}{note}")
            lines += [f"    {f.line()}" for f in change.fields]
        lines.append(
            f"\nPlan: {self.count('create')} to create, {self.count('update')} to update, "
            f"{self.count('delete')} to delete."
        )
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "changes": [c.as_json() for c in self.pending],
            "summary": {op: self.count(op) for op in ("create", "update", "delete")},
        }


class _Flow(yaml.SafeDumper):
    """YAML without anchors: a value shared in the file is shown in full where it is used."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def show(value: Any) -> str:
    """A value as a diff shows it: lists and mappings in YAML's flow style, scalars as JSON."""
    if isinstance(value, (list, dict)):
        dumped = yaml.dump(value, Dumper=_Flow, default_flow_style=True, width=10**6, sort_keys=False)
        return dumped.strip()
    return json.dumps(value, ensure_ascii=False)


def _step(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    text = str(key)
    return f"{path}.{text}" if text.replace("_", "").replace("-", "").isalnum() else f"{path}[{text!r}]"


def diff(before: Any, after: Any, path: str = "spec") -> list[FieldChange]:
    """Field-level differences: mappings key by key, lists of mappings of the same length item
    by item, anything else whole."""
    if before == after:
        return []
    if isinstance(before, dict) and isinstance(after, dict):
        changes: list[FieldChange] = []
        for key in [*before, *(k for k in after if k not in before)]:
            if key not in after:
                changes.append(FieldChange(_step(path, key), "-", before=before[key]))
            elif key not in before:
                changes.append(FieldChange(_step(path, key), "+", after=after[key]))
            else:
                changes += diff(before[key], after[key], _step(path, key))
        return changes
    if (
        isinstance(before, list)
        and isinstance(after, list)
        and len(before) == len(after)
        and all(isinstance(x, dict) for x in before + after)
    ):
        return [
            c for i, (b, a) in enumerate(zip(before, after, strict=True)) for c in diff(b, a, _step(path, i))
        ]
    return [FieldChange(path, "~", before=before, after=after)]


def make_plan(api: Gantry, directory: Path, *, prune: bool = False, prune_entities: bool = False) -> Plan:
    """Compare ``directory`` with the live portal; raise :class:`PlanError` listing every
    invalid object (file, document, object and the API's reasons)."""
    documents = load(directory)
    live = live_objects(api)
    config = [d for d in documents if d.kind != ENTITY]
    changes: list[Change] = []
    problems: list[str] = []
    creating = {(d.kind, d.key) for d in config if (d.kind, d.key) not in live}
    changing = creating | {
        (d.kind, d.key)
        for d in config
        if (d.kind, d.key) in live
        and KINDS[d.kind].normalize(d.spec) != KINDS[d.kind].normalize(live[(d.kind, d.key)])
    }
    for document in sorted(config, key=lambda d: (KINDS[d.kind].rank, d.key)):
        try:
            changes.append(_compare(api, document, live.get((document.kind, document.key)), changing))
        except ApiError as exc:
            problems.append(f"{document.where}: {document.kind} {document.key}: {exc}")
    if problems:
        raise PlanError(problems)
    if prune:
        wanted = {(d.kind, d.key) for d in config}
        for (kind, key), item in sorted(live.items(), key=lambda kv: (-KINDS[kv[0][0]].rank, kv[0][1])):
            if (kind, key) not in wanted:
                before = KINDS[kind].normalize(item)
                changes.append(Change(kind, key, "delete", before=before, fields=diff(before, {})))
    changes += _entity_changes(api, [d for d in documents if d.kind == ENTITY], live, prune_entities)
    return Plan(changes)


def _compare(api: Gantry, document: Document, current: Spec | None, changing: set[tuple[str, str]]) -> Change:
    kind = KINDS[document.kind]
    pending_needs = kind.needs(document.spec) & changing
    if current is None:
        change = Change(document.kind, document.key, "create", document)
        try:
            answer = write(
                api, "POST", kind.collection_of(document.spec), kind.body(document.spec), dry_run=True
            )
            change.after = kind.normalize({**answer, **_scope(kind.scoped_by, document.spec)})
        except ApiError:
            if not pending_needs:
                raise
            change.deferred, change.after = True, kind.normalize(document.spec)
        change.fields = diff({}, change.after)
        return change
    stored, etag = fetch(api, kind.path_of(document.spec))
    before = kind.normalize({**(stored or current), **_scope(kind.scoped_by, document.spec)})
    try:
        answer = write(
            api,
            "PATCH" if kind.patch else "PUT",
            kind.path_of(document.spec),
            update_body(document.kind, document.spec),
            dry_run=True,
        )
        after = kind.normalize({**answer, **_scope(kind.scoped_by, document.spec)})
        deferred = False
    except ApiError:
        if not pending_needs:
            raise
        after, deferred = kind.normalize(document.spec), True
    op: Op = "update" if after != before else "none"
    return Change(
        document.kind, document.key, op, document, before, after, etag, deferred, diff(before, after)
    )


def _scope(scoped_by: str | None, spec: Spec) -> Spec:
    return {scoped_by: spec[scoped_by]} if scoped_by else {}


def update_body(kind_name: str, spec: Spec) -> Spec:
    """The body of an update: the whole spec; for PATCH kinds (teams, users) every field the
    spec leaves out is sent as its default, so removing a line from the file resets it."""
    kind = KINDS[kind_name]
    if not kind.patch:
        return kind.body(spec)
    return {**PATCH_DEFAULTS[kind_name], **{k: v for k, v in spec.items() if k != "identifier"}}


PATCH_DEFAULTS: dict[str, Spec] = {
    "Team": {"description": ""},
    "User": {"name": "", "role": "member", "teams": []},
}


def _entity_changes(
    api: Gantry, documents: list[Document], live: dict[tuple[str, str], Spec], prune: bool
) -> list[Change]:
    """Entities of DIR: created, updated (the fields the document sets) or unchanged; with
    ``prune``, entities of the same blueprints that DIR does not list are deleted."""
    changes: list[Change] = []
    by_blueprint: dict[str, list[Document]] = {}
    for document in documents:
        by_blueprint.setdefault(str(document.spec["blueprint"]), []).append(document)
    for blueprint, docs in sorted(by_blueprint.items()):
        bp = live.get(("Blueprint", blueprint))
        computed = computed_properties(bp) if bp else set()
        existing: dict[str, Spec] = {}
        if bp is not None:
            existing = {
                e["identifier"]: entity_spec(e, computed)
                for e in api.pages("GET", f"/v1/blueprints/{blueprint}/entities")
            }
        for document in docs:
            wanted = _entity_wanted(document.spec)
            current = existing.get(str(document.spec["identifier"]))
            if current is None:
                changes.append(
                    Change(ENTITY, document.key, "create", document, None, wanted, fields=diff({}, wanted))
                )
                continue
            seen = _entity_view_of(current, wanted)
            op: Op = "update" if seen != wanted else "none"
            changes.append(
                Change(ENTITY, document.key, op, document, seen, wanted, fields=diff(seen, wanted))
            )
        if prune:
            listed = {str(d.spec["identifier"]) for d in docs}
            for identifier, current in sorted(existing.items()):
                if identifier not in listed:
                    key = f"{blueprint}/{identifier}"
                    changes.append(Change(ENTITY, key, "delete", before=current, fields=diff(current, {})))
    return changes


def _entity_wanted(spec: Spec) -> Spec:
    wanted = dict(spec)
    if isinstance(wanted.get("team"), str):
        wanted["team"] = [wanted["team"]]
    if "relations" in wanted:  # no relation and an empty one are the same
        wanted["relations"] = {k: v for k, v in (wanted["relations"] or {}).items() if v not in (None, [])}
    return _instants(wanted)


def _instants(value: Any) -> Any:
    """Date-times as the catalog stores them (``...00Z`` and ``...00.000Z`` are one instant)."""
    if isinstance(value, dict):
        return {k: _instants(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_instants(v) for v in value]
    if isinstance(value, str) and len(value) >= 20 and value[4] == "-" and "T" in value:
        try:
            return format_instant(datetime.fromisoformat(value))
        except ValueError:
            return value
    return value


def _entity_view_of(current: Spec, wanted: Spec) -> Spec:
    """The live entity restricted to what the document sets (an upsert leaves the rest)."""
    seen: Spec = {}
    for name, value in wanted.items():
        if name in ("properties", "relations"):
            stored = current.get(name) or {}
            seen[name] = {k: stored.get(k) for k in value or {}}
        else:
            seen[name] = current.get(name, [] if name == "team" else None)
    return _instants(seen)
