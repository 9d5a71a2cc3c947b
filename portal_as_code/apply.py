"""``gantry apply DIR``: make the portal match DIR, in dependency order.

Teams, users, blueprints without their relations, then the relations (and the computed
properties that read through them), entities, scorecards, actions, automations and data
sources; deletes in the reverse order. Updates carry the ETag read when planning, so a change
made meanwhile (another pipeline, a person in the API) is a 412, never silently overwritten.
The first failure stops the apply with the object and the API's reason: what was applied
stays, and running apply again continues from there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cli import BULK_LIMIT, ApiError, Gantry
from portal_as_code.live import write
from portal_as_code.model import ENTITY, KINDS, LINKED_BLUEPRINT_FIELDS, Spec
from portal_as_code.plan import Change, Plan, update_body


class ApplyError(Exception):
    """An object the API refused; what came before it was applied."""

    def __init__(self, change: Change, reason: Exception) -> None:
        where = f" ({change.document.where})" if change.document else ""
        super().__init__(f"{change.kind} {change.key}{where}: {reason}")
        self.change = change


def apply_plan(api: Gantry, plan: Plan, echo: Callable[[str], Any] = print) -> None:
    """Carry out ``plan``; raise :class:`ApplyError` at the first object the API refuses."""
    pending = plan.pending
    depths = _sub_action_depths(pending)
    writes = sorted(
        (c for c in pending if c.op != "delete" and c.kind != ENTITY),
        key=lambda c: (_rank(c)[0], depths.get(c.key, 0) if c.kind == "Action" else 0, c.key),
    )
    deletes = sorted((c for c in pending if c.op == "delete"), key=_rank, reverse=True)

    def run(change: Change, step: Callable[..., str], **options: bool) -> None:
        try:
            how = step(api, change, **options)
        except Exception as exc:  # the API's refusal, a 412, or the API being unreachable
            raise ApplyError(change, exc) from exc
        echo(f"{change.kind} {change.key}: {how}")

    blueprints = [c for c in writes if c.kind == "Blueprint"]
    for change in (c for c in writes if KINDS[c.kind].rank < KINDS["Blueprint"].rank):
        run(change, _write)
    # Pass one creates new blueprints without what reads through relations; pass two writes
    # every blueprint whole, those with computed properties last.
    for change in (c for c in blueprints if c.op == "create"):
        run(change, _create_bare_blueprint)
    for change in sorted(blueprints, key=_computed_last):
        if change.op == "update" or _linked(change):
            run(change, _write, after_bare=change.op == "create")
    _apply_entities(api, plan, echo)
    for change in (c for c in writes if KINDS[c.kind].rank > KINDS["Blueprint"].rank):
        run(change, _write)
    for change in deletes:
        run(change, _delete)


def _rank(change: Change) -> tuple[float, str]:
    # Entities are deleted after the configuration that uses them and before their blueprints.
    rank = KINDS[change.kind].rank if change.kind != ENTITY else KINDS["Blueprint"].rank + 0.5
    return rank, change.key


def _sub_action_depths(changes: list[Change]) -> dict[str, int]:
    """How many actions of the plan each action runs through its sub-action steps (``uses:
    action``), one inside the other: an action is written after those it runs, as saving one
    checks that they exist."""
    runs = {
        c.key: {
            (step.get("with") or {}).get("action")
            for step in c.document.spec.get("steps") or []
            if step.get("uses") == "action"
        }
        for c in changes
        if c.kind == "Action" and c.document is not None
    }
    depths: dict[str, int] = {}

    def depth(name: str, path: tuple[str, ...]) -> int:
        if name not in depths:
            inner = [depth(n, (*path, name)) for n in runs[name] if n in runs and n not in path]
            depths[name] = 1 + max(inner, default=0)
        return depths[name]

    for name in runs:
        depth(name, ())
    return depths


def _linked(change: Change) -> bool:
    spec = change.document.spec if change.document else {}
    return any(spec.get(name) for name in LINKED_BLUEPRINT_FIELDS)


def _computed_last(change: Change) -> bool:
    spec = change.document.spec if change.document else {}
    return bool(spec.get("mirror_properties") or spec.get("aggregation_properties"))


def _spec(change: Change) -> Spec:
    assert change.document is not None, "only deletes come without a document"
    return change.document.spec


def _create_bare_blueprint(api: Gantry, change: Change) -> str:
    spec = _spec(change)
    bare = {**spec, **{name: {} for name in LINKED_BLUEPRINT_FIELDS}}
    write(api, "POST", "/v1/blueprints", bare)
    return "created" if not _linked(change) else "created (relations next)"


def _write(api: Gantry, change: Change, *, after_bare: bool = False) -> str:
    kind, spec = KINDS[change.kind], _spec(change)
    if change.op == "create" and not after_bare:
        write(api, "POST", kind.collection_of(spec), kind.body(spec))
        return "created"
    method = "PATCH" if kind.patch else "PUT"
    # A blueprint created bare a moment ago has no ETag from the plan: this apply made it.
    write(api, method, kind.path_of(spec), update_body(change.kind, spec), if_match=change.etag)
    return "relations applied" if after_bare else "updated"


def _delete(api: Gantry, change: Change) -> str:
    if change.kind == ENTITY:
        blueprint, _, identifier = change.key.partition("/")
        api.request("DELETE", f"/v1/blueprints/{blueprint}/entities/{identifier}")
        return "deleted"
    kind = KINDS[change.kind]
    spec = change.before or {}
    if kind.scoped_by:
        spec = {**spec, kind.scoped_by: change.key.partition("/")[0]}
    api.request("DELETE", kind.path_of(spec))
    return "deleted"


def _apply_entities(api: Gantry, plan: Plan, echo: Callable[[str], Any]) -> None:
    """Entities created or changed, upserted in bulk as ``gantry apply`` always did: blueprints
    whose relations others point at first, relations within a batch resolved by retrying."""
    entities: dict[str, list[Spec]] = {}
    for change in plan.pending:
        if change.kind == ENTITY and change.op != "delete" and change.document is not None:
            spec = change.document.spec
            entities.setdefault(spec["blueprint"], []).append(
                {k: v for k, v in spec.items() if k != "blueprint"}
            )
    blueprints = [c.document.spec for c in plan.changes if c.kind == "Blueprint" and c.document]
    for blueprint in _targets_first(blueprints, entities):
        try:
            count = _upsert_entities(api, blueprint, entities[blueprint])
        except Exception as exc:
            raise ApplyError(Change(ENTITY, blueprint, "update"), exc) from exc
        echo(f"Entity {blueprint}: {count} upserted")


def _targets_first(blueprints: list[dict[str, Any]], entities: dict[str, Any]) -> list[str]:
    """Blueprints with entities, each after the blueprints its relations point at."""
    targets = {
        bp["identifier"]: {r["target"] for r in (bp.get("relations") or {}).values()} for bp in blueprints
    }
    ordered: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in ordered or name in path:
            return
        for target in sorted(targets.get(name, ())):
            visit(target, (*path, name))
        ordered.append(name)

    for name in sorted(entities):
        visit(name, ())
    return [name for name in ordered if name in entities]


def _upsert_entities(api: Gantry, blueprint: str, entities: list[dict[str, Any]]) -> int:
    """Bulk upsert; items whose relations point at entities of the same batch are retried
    after the batch, until a round makes no progress."""
    pending = entities
    errors: list[tuple[dict[str, Any], dict[str, Any]]] = []
    while pending:
        errors = []
        for start in range(0, len(pending), BULK_LIMIT):
            chunk = pending[start : start + BULK_LIMIT]
            answer = api.request(
                "POST",
                f"/v1/blueprints/{blueprint}/entities/bulk",
                params={"upsert": "true"},
                json={"entities": chunk},
            )
            failed = {r["identifier"]: r for r in answer["results"] if r.get("error")}
            errors += [(e, failed[e["identifier"]]) for e in chunk if e["identifier"] in failed]
        if len(errors) == len(pending):
            break
        pending = [entity for entity, _ in errors]
    if errors:
        details = []
        for entity, result in errors:
            error = result["error"] if isinstance(result["error"], dict) else {"message": result["error"]}
            details.append({"field": entity["identifier"], "message": error.get("message")})
            details += [
                {"field": f"{entity['identifier']} {d.get('pointer', '')}", "message": d.get("message")}
                for d in error.get("details") or []
                if isinstance(d, dict)
            ]
        raise ApiError(422, f"{len(errors)} {blueprint} entities were not applied", details)
    return len(entities)
