"""Port's blueprint and entity JSON, as Gantry's (pure; no database).

Port's blueprint shape is Gantry's for ``identifier``, ``title``, ``icon``, ``description``,
``schema`` (properties with their formats, ``required``) and ``relations`` (``title``, ``target``,
``many``, ``required``). The rest is camelCase in Port: ``mirrorProperties`` read a property
through one relation as Gantry's mirrors do; ``aggregationProperties`` map onto Gantry's
aggregations when their ``calculationSpec`` counts entities or takes the sum, min, max or
average of a property. What Gantry cannot express (calculation properties, inherited ownership,
team inheritance, a changelog destination, medians and per-period averages, multi-hop path
filters) is returned as a list of problems by pointer: the API answers them as a 422, and
``gantry import port`` lists them and imports the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from catalog.errors import FieldError, pointer

# Keys only Port's form has (a body with any of them is read as Port's).
PORT_ONLY_KEYS = (
    "mirrorProperties",
    "aggregationProperties",
    "calculationProperties",
    "ownership",
    "teamInheritance",
    "changelogDestination",
)
# Read-only stamps of Port exports: dropped without a word, Gantry stamps its own.
PORT_STAMPS = ("id", "createdAt", "updatedAt", "createdBy", "updatedBy")
_META = {"$createdAt": "$created_at", "$updatedAt": "$updated_at"}
_META_BACK = {v: k for k, v in _META.items()}
PROPERTY_FUNCTIONS = ("sum", "min", "max", "average")


@dataclass
class Converted:
    """A Gantry blueprint body and what of the Port blueprint it could not express."""

    body: dict[str, Any]
    unsupported: list[FieldError] = field(default_factory=list)


def is_port_blueprint(body: Any) -> bool:
    return isinstance(body, dict) and any(key in body for key in PORT_ONLY_KEYS)


def blueprint_from_port(body: dict[str, Any]) -> Converted:
    """Port's blueprint JSON as a ``POST /v1/blueprints`` body; Gantry's own keys pass through."""
    unsupported: list[FieldError] = []
    out = {k: v for k, v in body.items() if k not in PORT_ONLY_KEYS and k not in PORT_STAMPS}
    for port_key, gantry_key in (
        ("mirrorProperties", "mirror_properties"),
        ("aggregationProperties", "aggregation_properties"),
    ):
        if port_key in body and gantry_key in body:
            unsupported.append(FieldError(f"/{port_key}", f"give either {port_key} or {gantry_key}"))
    mirrors = body.get("mirrorProperties") or {}
    if isinstance(mirrors, dict) and mirrors:
        out["mirror_properties"] = {name: _mirror(definition) for name, definition in mirrors.items()}
    aggregations = body.get("aggregationProperties") or {}
    if isinstance(aggregations, dict) and aggregations:
        converted = {}
        for name, definition in aggregations.items():
            result = _aggregation(definition, pointer("aggregationProperties", name))
            if isinstance(result, FieldError):
                unsupported.append(result)
            else:
                converted[name] = result
        out["aggregation_properties"] = converted
    for name in body.get("calculationProperties") or {}:
        unsupported.append(
            FieldError(
                pointer("calculationProperties", name),
                "calculation properties have no equivalent in Gantry (use a mirror or aggregation property)",
            )
        )
    ownership = body.get("ownership")
    if ownership is not None and not (isinstance(ownership, dict) and ownership.get("type") == "Direct"):
        unsupported.append(
            FieldError("/ownership", "only Direct ownership is supported: an entity's team owns it")
        )
    for key, why in (
        ("teamInheritance", "team inheritance has no equivalent in Gantry: set team on each entity"),
        ("changelogDestination", "Gantry's changes go to its event log and automations, not a destination"),
    ):
        if body.get(key) is not None:
            unsupported.append(FieldError(f"/{key}", why))
    return Converted(out, unsupported)


def _mirror(definition: Any) -> Any:
    if not isinstance(definition, dict):
        return definition  # the blueprint's own validation names it
    path = definition.get("path")
    if isinstance(path, str):
        relation, dot, rest = path.partition(".")
        definition = {**definition, "path": f"{relation}{dot}{_META.get(rest, rest)}"}
    return definition


def _aggregation(definition: Any, where: str) -> dict[str, Any] | FieldError:
    if not isinstance(definition, dict):
        return FieldError(where, "must be an object")
    spec = definition.get("calculationSpec")
    if not isinstance(spec, dict):
        return FieldError(f"{where}/calculationSpec", "is required (calculationBy and func)")
    by, func = spec.get("calculationBy"), spec.get("func")
    out: dict[str, Any] = {
        k: definition[k] for k in ("title", "description", "target") if definition.get(k) is not None
    }
    if by == "entities" and func == "count":
        out["function"] = "count"
    elif by == "property" and func in PROPERTY_FUNCTIONS:
        if spec.get("averageOf", "total") != "total":
            return FieldError(
                f"{where}/calculationSpec/averageOf", "only 'total' averages are supported, not per period"
            )
        out["function"], out["property"] = func, spec.get("property")
    else:
        return FieldError(
            f"{where}/calculationSpec",
            f"{by!r} {func!r} has no equivalent: Gantry counts entities, or sums, mins, maxes and "
            "averages a number property",
        )
    path_filter = definition.get("pathFilter")
    if path_filter:
        paths = [p.get("path") for p in path_filter if isinstance(p, dict)]
        if len(paths) != 1 or not isinstance(paths[0], list) or len(paths[0]) != 1:
            return FieldError(f"{where}/pathFilter", "only a path of one relation is supported")
        out["relation"] = paths[0][0]
    if definition.get("query") is not None:
        out["query"] = _renamed_meta(definition["query"], _META)
    return out


def _renamed_meta(query: Any, names: dict[str, str]) -> Any:
    """``query`` with Port's camelCase meta-properties as Gantry's (or back)."""
    if isinstance(query, dict):
        renamed = {k: _renamed_meta(v, names) for k, v in query.items()}
        if isinstance(renamed.get("property"), str):
            renamed["property"] = names.get(renamed["property"], renamed["property"])
        return renamed
    if isinstance(query, list):
        return [_renamed_meta(v, names) for v in query]
    return query


def blueprint_as_port(view: dict[str, Any]) -> dict[str, Any]:
    """A Gantry blueprint (as the API shows it) in Port's form: what Port cannot hold (timers,
    permissions, moderators, ratio and windowed aggregations) is left out."""
    aggregations = {}
    for name, agg in (view.get("aggregation_properties") or {}).items():
        port = _aggregation_as_port(agg)
        if port is not None:
            aggregations[name] = port
    mirrors = {}
    for name, mirror in (view.get("mirror_properties") or {}).items():
        relation, dot, rest = mirror["path"].partition(".")
        mirrors[name] = {**mirror, "path": f"{relation}{dot}{_META_BACK.get(rest, rest)}"}
    return {
        "identifier": view["identifier"],
        "title": view["title"],
        "icon": view.get("icon"),
        "description": view.get("description", ""),
        "schema": view.get("schema") or {"properties": {}, "required": []},
        "relations": view.get("relations") or {},
        "mirrorProperties": mirrors,
        "calculationProperties": {},
        "aggregationProperties": aggregations,
    }


def _aggregation_as_port(agg: dict[str, Any]) -> dict[str, Any] | None:
    if agg.get("window") or agg.get("match") or agg["function"] not in ("count", *PROPERTY_FUNCTIONS):
        return None
    if agg["function"] == "count":
        spec: dict[str, Any] = {"calculationBy": "entities", "func": "count"}
    else:
        spec = {"calculationBy": "property", "func": agg["function"], "property": agg.get("property")}
    out: dict[str, Any] = {k: agg[k] for k in ("title", "description") if agg.get(k) is not None}
    out["target"] = agg["target"]
    out["calculationSpec"] = spec
    if agg.get("relation"):
        out["pathFilter"] = [{"path": [agg["relation"]], "fromBlueprint": agg["target"]}]
    if agg.get("query") is not None:
        out["query"] = _renamed_meta(agg["query"], _META_BACK)
    return out


# -- entities -------------------------------------------------------------------------------

ENTITY_KEYS = ("identifier", "title", "team", "properties", "relations", "icon")


def entity_from_port(entity: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A Port entity as Gantry's entity body, and the keys it had no place for."""
    out: dict[str, Any] = {
        k: entity[k] for k in ("identifier", "title", "team", "properties", "relations") if k in entity
    }
    if out.get("team") in ([], None):
        out.pop("team", None)
    relations = out.get("relations")
    if isinstance(relations, dict):
        out["relations"] = {k: v for k, v in relations.items() if v not in (None, [])}
    dropped = sorted(k for k in entity if k not in ENTITY_KEYS and k not in (*PORT_STAMPS, "blueprint"))
    if entity.get("icon") is not None:
        dropped.append("icon")
    return out, dropped
