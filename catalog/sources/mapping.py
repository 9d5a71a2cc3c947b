"""Raw vendor items → entities, with Port Ocean's mapping semantics.

A resource's ``selector.query`` keeps the items whose first output is ``true``; ``itemsToParse``
turns one item into one entity per element of the array it yields, each seen as ``.item``
beside the item's own keys; then every mapping expression runs on the item. Only the first
output of an expression counts and ``null`` leaves the field unset. A relation is an identifier,
a list of them, or a search query (Ocean's shape, every string leaf a jq expression) resolved in
the catalog to the identifiers it matches.

Programs run in the jq sandbox (a CPU-limited process pool), three round trips per page
(selectors, itemsToParse, mappings) whatever its size. A resource's mapping expressions are
combined into one program per item (one jq evaluation instead of one per expression, the
dominant cost); an item whose combined program fails runs again expression by expression, so
its errors still name the failing field. An item whose mapping fails in any
field is reported field by field (``/resources/0/port/entity/mappings/properties/url: ...``)
and not written; the other items still land.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.errors import CatalogError, pointer
from catalog.models import Blueprint, Entity
from catalog.query.compiler import compile_query
from catalog.sandbox.jq import JqError, run_jq_batch
from catalog.sources.definitions import Resource
from catalog.sources.descriptors import DescriptorError, descriptor_to_entity

# The fields of a mapped entity, in the order the API shows an entity's.
ENTITY_ORDER = ("identifier", "title", "team", "properties", "relations")
# A search relation matches at most this many entities (a many relation keeps them all).
MAX_SEARCH_MATCHES = 1000


@dataclass
class ItemError:
    """One failing field of one item: ``key`` is the entity's identifier when the mapping
    produced one, else the item's index in the page."""

    resource: int
    key: str | int
    pointer: str
    message: str
    # The failing item's index in the page it came in (not shown): a batch of webhook
    # deliveries, mapped as one page, gives each delivery its own errors back.
    item: int | None = field(default=None, compare=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"resource": self.resource, "key": self.key, "pointer": self.pointer, "message": self.message}


@dataclass
class MappedEntity:
    """An entity a raw item maps to: ``entity`` is the body the entity service writes."""

    index: int
    blueprint: str
    entity: dict[str, Any]
    # relation name -> search query (already evaluated), resolved by :func:`resolve_searches`
    searches: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Mapping:
    """What a page maps to: ``seen`` counts the items the selector kept."""

    seen: int = 0
    entities: list[MappedEntity] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)
    # Items with an error (by index in the page): counted ``failed`` once each.
    failed: set[int] = field(default_factory=set)
    # The items the selector kept (by index in the page).
    kept: list[int] = field(default_factory=list)

    def fail(self, error: ItemError, index: int) -> None:
        if error.item is None:
            error.item = index
        self.errors.append(error)
        self.failed.add(index)


def _first(outputs: list[Any]) -> Any:
    return outputs[0] if outputs else None


def map_items(resource: Resource, resource_index: int, items: Sequence[Any]) -> Mapping:
    """Map a page of raw items with ``resource`` (pure apart from the jq sandbox)."""
    base = f"/resources/{resource_index}"
    result = Mapping()
    kept = _select(resource, resource_index, items, result, base)
    result.seen = len(kept)
    result.kept = [index for index, _item in kept]
    if resource.port is None:  # kind files: catalog files through the descriptor converter
        _map_descriptors(kept, resource_index, result)
        return result
    subjects = _parse_items(resource, resource_index, kept, result, base)
    _map_subjects(resource, resource_index, subjects, result, base)
    return result


def _select(
    resource: Resource, resource_index: int, items: Sequence[Any], result: Mapping, base: str
) -> list[tuple[int, Any]]:
    query = resource.selector.query.strip()
    if query == "true":
        return list(enumerate(items))
    kept = []
    for index, outcome in enumerate(run_jq_batch([(query, item) for item in items])):
        if isinstance(outcome, JqError):
            result.fail(ItemError(resource_index, index, f"{base}/selector/query", f"jq: {outcome}"), index)
        elif _first(outcome) is True:
            kept.append((index, items[index]))
    return kept


def _parse_items(
    resource: Resource, resource_index: int, kept: list[tuple[int, Any]], result: Mapping, base: str
) -> list[tuple[int, Any]]:
    """(item index, what the mappings see): the item itself, or one per ``itemsToParse`` element."""
    assert resource.port is not None
    program = resource.port.items_to_parse
    if program is None:
        return kept
    subjects: list[tuple[int, Any]] = []
    outcomes = run_jq_batch([(program, item) for _, item in kept])
    for (index, item), outcome in zip(kept, outcomes, strict=True):
        where = f"{base}/port/itemsToParse"
        if isinstance(outcome, JqError):
            result.fail(ItemError(resource_index, index, where, f"jq: {outcome}"), index)
            continue
        elements = _first(outcome)
        if elements is None:
            continue
        if not isinstance(elements, list):
            result.fail(ItemError(resource_index, index, where, "must yield an array"), index)
            continue
        own = item if isinstance(item, dict) else {}
        subjects += [(index, {**own, "item": element}) for element in elements]
    return subjects


def _programs(resource: Resource, base: str) -> list[tuple[str, str, str]]:
    """(field, JSON pointer, program) of every mapping expression: ``field`` is ``identifier``,
    ``properties/<name>``, ``relations/<name>`` or ``search/<name>/<pointer into the query>``."""
    assert resource.port is not None
    mappings = resource.port.entity.mappings
    at = f"{base}/port/entity/mappings"
    found = [
        (name, f"{at}/{name}", program)
        for name in ("identifier", "title", "blueprint", "team")
        if (program := getattr(mappings, name)) is not None
    ]
    found += [(f"properties/{n}", f"{at}/properties" + pointer(n), p) for n, p in mappings.properties.items()]
    for name, relation in mappings.relations.items():
        where = f"{at}/relations" + pointer(name)
        if isinstance(relation, str):
            found.append((f"relations/{name}", where, relation))
        else:
            found += [
                (f"search/{name}/{leaf}", where + leaf, program) for leaf, program in _leaves(relation, "")
            ]
    return found


def _leaves(value: Any, where: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(where, value)]
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, where + pointer(k))]
    if isinstance(value, list):
        return [leaf for n, v in enumerate(value) for leaf in _leaves(v, f"{where}/{n}")]
    return []


def _map_subjects(
    resource: Resource, resource_index: int, subjects: list[tuple[int, Any]], result: Mapping, base: str
) -> None:
    """Every subject through the resource's combined program, one job per subject in a single
    round trip; a subject whose combined program fails is evaluated again field by field, so
    its errors name the failing expression."""
    assert resource.port is not None
    programs = _programs(resource, base)
    if not programs:
        for index, _subject in subjects:
            _assemble(resource, resource_index, index, [], result)
        return
    program = combined_program([p for _, _, p in programs])
    # A combined program out of CPU time is retried field by field, each with its own limit.
    outcomes = run_jq_batch([(program, subject) for _, subject in subjects])
    evaluated: list[list[list[Any] | JqError] | None] = [
        _split(outcome, len(programs)) for outcome in outcomes
    ]
    retry = [n for n, values in enumerate(evaluated) if values is None]
    if retry:
        jobs = [(p, subjects[n][1]) for n in retry for _, _, p in programs]
        singles = run_jq_batch(jobs)
        for k, n in enumerate(retry):
            evaluated[n] = singles[k * len(programs) : (k + 1) * len(programs)]
    for (index, _subject), values in zip(subjects, evaluated, strict=True):
        assert values is not None
        _assemble(resource, resource_index, index, list(zip(programs, values, strict=True)), result)


def combined_program(programs: Sequence[str]) -> str:
    """One jq program yielding, for an input, the array of each program's outputs, in order: the
    same as running each alone (the caller keeps the first). Each program sits on its own lines,
    so a trailing ``#`` comment in one cannot swallow what follows it. (Slicing to the first
    output inside jq would cost more than the whole evaluation.)"""
    parts = ",\n".join(f"[(\n{program}\n)]" for program in programs)
    return f"[\n{parts}\n]"


def _split(outcome: list[Any] | JqError, size: int) -> list[list[Any] | JqError] | None:
    """Each program's outputs from the combined program's outcome (only the first counts); None
    when the combined program failed and the fields must be run one by one."""
    if isinstance(outcome, JqError) or len(outcome) != 1:
        return None
    values = outcome[0]
    if not isinstance(values, list) or len(values) != size:
        return None
    return list(values)


def _assemble(
    resource: Resource,
    resource_index: int,
    index: int,
    evaluated: list[tuple[tuple[str, str, str], list[Any] | JqError]],
    result: Mapping,
) -> None:
    """One entity from its evaluated expressions, or its errors (field by field)."""
    entity: dict[str, Any] = {"properties": {}, "relations": {}}
    searches: dict[str, dict[str, Any]] = {}
    problems: list[tuple[str, str]] = []
    blueprint: Any = None
    for (name, where, _program), outcome in evaluated:
        if isinstance(outcome, JqError):
            problems.append((where, f"jq: {outcome}"))
            continue
        value = _first(outcome)
        problem = _place(entity, searches, name, value)
        if problem:
            problems.append((where, problem))
        if name == "blueprint":
            blueprint = value
    identifier = entity.get("identifier")
    key: str | int = identifier if isinstance(identifier, str) and identifier else index
    for where, message in problems:
        result.fail(ItemError(resource_index, key, where, message), index)
    if not problems:
        assert resource.port is not None
        relations = resource.port.entity.mappings.relations
        queries = {name: _substitute(relations[name], leaves, "") for name, leaves in searches.items()}
        ordered = {k: entity[k] for k in ENTITY_ORDER if k in entity}
        result.entities.append(MappedEntity(index, blueprint, ordered, queries))


def _place(entity: dict[str, Any], searches: dict[str, Any], name: str, value: Any) -> str | None:
    """Put one expression's value where it belongs; a problem with it, or None."""
    if name == "identifier":
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value:
            return "must yield a non-empty string (the entity's identifier)"
        entity["identifier"] = value
    elif name == "blueprint":
        if not isinstance(value, str) or not value:
            return "must yield a blueprint identifier"
    elif name == "title":
        if value is not None and not isinstance(value, str):
            return "must yield a string or null"
        if value is not None:
            entity["title"] = value
    elif name == "team":
        teams = [value] if isinstance(value, str) else value
        if teams is not None and not (isinstance(teams, list) and all(isinstance(t, str) for t in teams)):
            return "must yield a team identifier, a list of them, or null"
        if teams:
            entity["team"] = teams
    elif name.startswith("properties/"):
        if value is not None:
            entity["properties"][name.split("/", 1)[1]] = value
    elif name.startswith("relations/"):
        if value is not None and not (
            isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        ):
            return "must yield an identifier, a list of identifiers, or null"
        if value is not None:
            entity["relations"][name.split("/", 1)[1]] = value
    else:  # search/<relation>/<pointer>
        _, relation, leaf = name.split("/", 2)
        searches.setdefault(relation, {})[leaf] = value
    return None


def _substitute(template: Any, values: dict[str, Any], where: str) -> Any:
    """The search query ``template`` with each string leaf replaced by its evaluated value."""
    if isinstance(template, str):
        return values.get(where)
    if isinstance(template, dict):
        return {k: _substitute(v, values, where + pointer(k)) for k, v in template.items()}
    if isinstance(template, list):
        return [_substitute(v, values, f"{where}/{n}") for n, v in enumerate(template)]
    return template


def _map_descriptors(kept: list[tuple[int, Any]], resource_index: int, result: Mapping) -> None:
    """Kind ``files``: each item is ``{repository, path, url, document}``. A file the worker could
    not read as YAML (too big, not UTF-8, not YAML) arrives with ``document: null`` and the
    worker's ``error``, which is what the sync records, keyed by the file (repository/path)."""
    for index, item in kept:
        if not isinstance(item, dict) or "document" not in item:
            result.fail(
                ItemError(resource_index, index, "/document", "a catalog file item needs a document"), index
            )
            continue
        if item["document"] is None and isinstance(item.get("error"), str) and item["error"]:
            result.fail(ItemError(resource_index, file_key(item, index), "/document", item["error"]), index)
            continue
        location = str(item.get("url") or f"{item.get('repository')}/{item.get('path')}")
        converted = descriptor_to_entity(item["document"], location=location)
        if isinstance(converted, DescriptorError):
            result.fail(ItemError(resource_index, index, converted.field or "/", converted.message), index)
            continue
        result.entities.append(MappedEntity(index, converted.blueprint, dict(converted.entity)))


def file_key(item: dict[str, Any], index: int) -> str | int:
    """A catalog file's name in errors: ``owner/repo/path`` (the item's index without them)."""
    repository, path = item.get("repository"), item.get("path")
    if isinstance(repository, str) and repository and isinstance(path, str) and path:
        return f"{repository}/{path}"
    return index


# ---- relations given as search queries --------------------------------------------------------


def resolve_searches(
    session: Session, mapped: MappedEntity, resource_index: int, base: str, now: datetime
) -> list[ItemError]:
    """Turn the entity's search relations into identifiers (errors name the relation)."""
    if not mapped.searches:
        return []
    key = mapped.entity.get("identifier", mapped.index)
    bp = session.get(Blueprint, mapped.blueprint)
    errors: list[ItemError] = []
    for relation, query in mapped.searches.items():
        where = f"{base}/port/entity/mappings/relations" + pointer(relation)
        definition = (bp.relations if bp is not None else {}).get(relation)
        if definition is None:
            errors.append(
                ItemError(
                    resource_index,
                    key,
                    where,
                    f"'{relation}' is not a relation of blueprint '{mapped.blueprint}'",
                )
            )
            continue
        try:
            condition = compile_query(query, dialect=session.get_bind().dialect.name, now=now, pointer=where)
        except CatalogError as exc:
            errors += [ItemError(resource_index, key, d.pointer, d.message) for d in exc.details] or [
                ItemError(resource_index, key, where, exc.message)
            ]
            continue
        stmt = (
            select(Entity.identifier)
            .where(Entity.blueprint == definition["target"], condition)
            .order_by(Entity.identifier)
            .limit(MAX_SEARCH_MATCHES)
        )
        found = list(session.scalars(stmt))
        if definition.get("many"):
            mapped.entity["relations"][relation] = found
        elif len(found) > 1:
            errors.append(
                ItemError(
                    resource_index, key, where, f"matches {len(found)} entities; a single relation needs one"
                )
            )
        elif found:
            mapped.entity["relations"][relation] = found[0]
    return errors
