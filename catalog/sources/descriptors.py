"""Catalog descriptor files as Gantry entities: Backstage ``catalog-info.yaml`` and ``gantry.yaml``.

Pure (no database): the ``files`` data source maps each YAML document of a repository through
:func:`descriptor_to_entity`, and ``gantry import backstage`` through :func:`convert_document`,
so a file means the same thing whichever way it arrives.

Backstage kinds Component, API, System, Domain and Resource become entities of the built-in
blueprints of the same names (:func:`builtin_blueprints`, created if missing); Group becomes a
team and User a user (identity objects, not entities). Entity references follow Backstage's
``[kind:][namespace/]name``; an entity of the ``default`` namespace keeps its bare name as its
identifier, any other is ``namespace/name``, so references resolve the same way. Team
identifiers are lower-cased (Gantry's team identifiers are lower-case slugs). What has no place
in Gantry is listed in ``warnings``, never dropped silently.

``gantry.yaml`` holds Gantry's own entity shape, one entity per document (``blueprint``,
``identifier``, ``title``, ``team``, ``properties``, ``relations``), or many under ``entities``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from catalog.schemas import BLUEPRINT_ID, ENTITY_ID_PATTERN

ENTITY_KINDS = ("Component", "API", "System", "Domain", "Resource")
IDENTITY_KINDS = ("Group", "User")
DEFAULT_NAMESPACE = "default"
_BLUEPRINT_ID = re.compile(BLUEPRINT_ID)
_ENTITY_ID = re.compile(ENTITY_ID_PATTERN)
_TEAM_ID = re.compile(r"^[a-z][a-z0-9_-]{0,99}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class DescriptorError:
    """Why a document cannot be imported: ``field`` is a JSON pointer into the document."""

    location: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.field or '/'}: {self.message}"


@dataclass(frozen=True)
class DescriptorEntity:
    """An entity to write: ``entity`` is the body of ``POST /v1/blueprints/{blueprint}/entities``."""

    blueprint: str
    entity: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DescriptorTeam:
    """A Backstage Group: Gantry's teams are flat, so ``parent``/``children`` are only reported."""

    identifier: str
    title: str
    description: str
    parent: str | None = None
    children: list[str] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DescriptorUser:
    identifier: str
    email: str
    name: str
    teams: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


Converted = DescriptorEntity | DescriptorTeam | DescriptorUser | DescriptorError


# -- the built-in blueprints ----------------------------------------------------------------

_COMMON_PROPERTIES: dict[str, dict[str, Any]] = {
    "description": {"type": "string", "format": "markdown", "title": "Description"},
    "namespace": {"type": "string", "title": "Namespace"},
    "owner": {"type": "string", "title": "Owner reference"},
    "annotations": {"type": "object", "title": "Annotations"},
    "labels": {"type": "object", "title": "Labels"},
    "tags": {"type": "array", "items": {"type": "string"}, "title": "Tags"},
    "links": {"type": "array", "items": {"type": "object"}, "title": "Links"},
    "location": {"type": "string", "title": "Catalog file"},
}
_TYPED = {
    "type": {"type": "string", "title": "Type"},
}
_LIFECYCLE = {"lifecycle": {"type": "string", "title": "Lifecycle"}}

# blueprint -> (title, icon, extra properties, relations {name: (target, many)}), in creation order.
_BUILTINS: dict[str, tuple[str, str, dict[str, Any], dict[str, tuple[str, bool]]]] = {
    "domain": ("Domain", "Domain", {}, {"subdomain_of": ("domain", False)}),
    "system": ("System", "System", {**_TYPED}, {"domain": ("domain", False)}),
    "resource": (
        "Resource",
        "Resource",
        {**_TYPED},
        {"system": ("system", False), "depends_on": ("resource", True)},
    ),
    "api": (
        "API",
        "API",
        {**_TYPED, **_LIFECYCLE, "definition": {"type": "string"}},
        {"system": ("system", False)},
    ),
    "component": (
        "Component",
        "Component",
        {**_TYPED, **_LIFECYCLE},
        {
            "system": ("system", False),
            "subcomponent_of": ("component", False),
            "depends_on": ("component", True),
            "depends_on_resources": ("resource", True),
            "provides_apis": ("api", True),
            "consumes_apis": ("api", True),
        },
    ),
}
BUILTIN_BLUEPRINTS = tuple(_BUILTINS)


def builtin_blueprints(prefix: str = "") -> list[dict[str, Any]]:
    """The built-in blueprints as ``POST /v1/blueprints`` bodies, each after its targets."""
    bodies = []
    for name, (title, icon, extra, relations) in _BUILTINS.items():
        bodies.append(
            {
                "identifier": prefix + name,
                "title": title,
                "icon": icon,
                "description": f"Backstage {title} entities (catalog-info.yaml)",
                "schema": {"properties": {**_COMMON_PROPERTIES, **extra}, "required": []},
                "relations": {
                    rel: {
                        "title": rel.replace("_", " ").capitalize(),
                        "target": prefix + target,
                        "many": many,
                    }
                    for rel, (target, many) in relations.items()
                },
            }
        )
    return bodies


# -- entity references ----------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    kind: str  # lower-case, "" when the reference names none
    namespace: str
    name: str


def parse_ref(value: Any, namespace: str = DEFAULT_NAMESPACE) -> Ref | None:
    """``[kind:][namespace/]name`` (or Backstage's ``{kind, namespace, name}`` object), or None."""
    if isinstance(value, dict):
        kind, ns, name = value.get("kind", ""), value.get("namespace", namespace), value.get("name")
    elif isinstance(value, str):
        kind, _, rest = value.partition(":") if ":" in value else ("", "", value)
        ns, _, name = rest.partition("/") if "/" in rest else (namespace, "", rest)
    else:
        return None
    if not (isinstance(kind, str) and isinstance(ns, str) and isinstance(name, str)):
        return None
    if not _NAME.match(name) or not (kind == "" or kind.isalpha()):
        return None
    return Ref(kind.lower(), ns or namespace, name)


def entity_identifier(ref: Ref) -> str:
    return ref.name if ref.namespace == DEFAULT_NAMESPACE else f"{ref.namespace}/{ref.name}"


def team_identifier(name: str) -> str | None:
    """A Group's name as a team identifier (lower-cased, dots as dashes), or None if impossible."""
    candidate = name.lower().replace(".", "-")
    return candidate if _TEAM_ID.match(candidate) else None


# -- conversion -----------------------------------------------------------------------------


def descriptor_to_entity(
    document: Any, *, location: str, prefix: str = ""
) -> DescriptorEntity | DescriptorError:
    """One YAML document as an entity, or why not (Groups and Users are not entities)."""
    converted = convert_document(document, location=location, prefix=prefix)
    if isinstance(converted, DescriptorTeam | DescriptorUser):
        kind = "Group" if isinstance(converted, DescriptorTeam) else "User"
        return DescriptorError(
            location, "/kind", f"a {kind} is a {'team' if kind == 'Group' else 'user'}, not an entity"
        )
    return converted


def descriptor_entities(document: Any, *, location: str, prefix: str = "") -> list[Converted]:
    """Every object of one YAML document: a ``gantry.yaml`` document may hold ``entities: [...]``."""
    if isinstance(document, dict) and "entities" in document and "kind" not in document:
        items = document["entities"]
        if not isinstance(items, list):
            return [DescriptorError(location, "/entities", "must be a list of entities")]
        return [_gantry_entity(item, location, f"/entities/{i}", prefix) for i, item in enumerate(items)]
    return [convert_document(document, location=location, prefix=prefix)]


def convert_document(document: Any, *, location: str, prefix: str = "") -> Converted:
    """A Backstage or ``gantry.yaml`` document as an entity, team or user, or the error naming
    the field that stops it."""
    if not isinstance(document, dict):
        return DescriptorError(location, "", "a catalog document must be a mapping")
    if "apiVersion" in document or ("kind" in document and "metadata" in document):
        return _backstage(document, location, prefix)
    if document.get("kind") == "Entity" and isinstance(document.get("spec"), dict):
        return _gantry_entity(document["spec"], location, "/spec", prefix)
    if "blueprint" in document:
        return _gantry_entity(document, location, "", prefix)
    return DescriptorError(
        location,
        "",
        "neither a Backstage descriptor (apiVersion, kind, metadata) nor a Gantry entity (blueprint)",
    )


def _gantry_entity(doc: Any, location: str, base: str, prefix: str) -> DescriptorEntity | DescriptorError:
    if not isinstance(doc, dict):
        return DescriptorError(location, base, "an entity must be a mapping")
    allowed = {"blueprint", "identifier", "title", "team", "properties", "relations"}
    unknown = sorted(set(doc) - allowed)
    if unknown:
        return DescriptorError(
            location, f"{base}/{unknown[0]}", f"unknown field (allowed: {', '.join(sorted(allowed))})"
        )
    blueprint = doc.get("blueprint")
    if not isinstance(blueprint, str) or not _BLUEPRINT_ID.match(prefix + blueprint):
        return DescriptorError(location, f"{base}/blueprint", "must be a blueprint identifier")
    checks: list[tuple[str, Callable[[Any], bool], str]] = [
        (
            "identifier",
            lambda v: isinstance(v, str) and bool(_ENTITY_ID.match(v)),
            "must be an entity identifier",
        ),
        ("title", lambda v: v is None or isinstance(v, str), "must be a string"),
        ("team", _is_teams, "must be a team or a list of teams"),
        ("properties", lambda v: v is None or isinstance(v, dict), "must be a mapping"),
        ("relations", _is_relations, "must map relation names to identifiers or lists of them"),
    ]
    for name, ok, message in checks:
        if not ok(doc.get(name)):
            return DescriptorError(location, f"{base}/{name}", message)
    entity: dict[str, Any] = {"identifier": doc["identifier"]}
    for name in ("title", "team", "properties", "relations"):
        if doc.get(name) is not None:
            entity[name] = doc[name]
    return DescriptorEntity(prefix + blueprint, entity)


def _is_teams(value: Any) -> bool:
    if value is None or isinstance(value, str):
        return True
    return isinstance(value, list) and all(isinstance(t, str) for t in value)


def _is_relations(value: Any) -> bool:
    if value is None:
        return True
    if not isinstance(value, dict):
        return False
    return all(
        v is None or isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
        for v in value.values()
    )


# -- Backstage ------------------------------------------------------------------------------


class _Problem(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _backstage(doc: dict[str, Any], location: str, prefix: str) -> Converted:
    try:
        return _backstage_checked(doc, location, prefix)
    except _Problem as problem:
        return DescriptorError(location, problem.field, problem.message)


def _backstage_checked(doc: dict[str, Any], location: str, prefix: str) -> Converted:
    api_version = doc.get("apiVersion")
    if not isinstance(api_version, str) or not api_version.startswith("backstage.io/"):
        raise _Problem("/apiVersion", "must be a backstage.io API version (backstage.io/v1alpha1)")
    kind = doc.get("kind")
    if kind not in ENTITY_KINDS + IDENTITY_KINDS:
        raise _Problem("/kind", f"must be one of {', '.join(ENTITY_KINDS + IDENTITY_KINDS)}, not {kind!r}")
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict):
        raise _Problem("/metadata", "is required (a mapping with a name)")
    name = metadata.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _Problem(
            "/metadata/name",
            "must be 1 to 63 letters, digits, '-', '_' or '.', starting with a letter or digit",
        )
    namespace = metadata.get("namespace", DEFAULT_NAMESPACE)
    if not isinstance(namespace, str) or not _NAME.match(namespace):
        raise _Problem("/metadata/namespace", "must be a Backstage namespace name")
    spec = doc.get("spec", {})
    if not isinstance(spec, dict):
        raise _Problem("/spec", "must be a mapping")
    reader = _Reader(metadata, spec, namespace)
    if kind == "Group":
        return _group(reader, name)
    if kind == "User":
        return _user(reader, name)
    return _entity(reader, str(kind), name, namespace, location, prefix)


@dataclass
class _Reader:
    """Typed reads of one descriptor, raising ``_Problem`` naming the field."""

    metadata: dict[str, Any]
    spec: dict[str, Any]
    namespace: str
    warnings: list[str] = field(default_factory=list)

    def meta_string(self, key: str) -> str | None:
        return _string(self.metadata.get(key), f"/metadata/{key}")

    def string(self, key: str) -> str | None:
        return _string(self.spec.get(key), f"/spec/{key}")

    def mapping(self, key: str) -> dict[str, str] | None:
        value = self.metadata.get(key)
        if value is None:
            return None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise _Problem(f"/metadata/{key}", "must map names to strings")
        return {str(k): v for k, v in value.items()}

    def ref(self, key: str, default_kind: str) -> Ref | None:
        value = self.spec.get(key)
        if value is None:
            return None
        ref = parse_ref(value, self.namespace)
        if ref is None:
            raise _Problem(f"/spec/{key}", "must be an entity reference [kind:][namespace/]name")
        return Ref(ref.kind or default_kind, ref.namespace, ref.name)

    def refs(self, key: str, default_kind: str) -> list[Ref]:
        value = self.spec.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise _Problem(f"/spec/{key}", "must be a list of entity references")
        found = []
        for i, item in enumerate(value):
            ref = parse_ref(item, self.namespace)
            if ref is None:
                raise _Problem(f"/spec/{key}/{i}", "must be an entity reference [kind:][namespace/]name")
            found.append(Ref(ref.kind or default_kind, ref.namespace, ref.name))
        return found


def _string(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Problem(where, "must be a string")
    return value


def _team_of(ref: Ref, where: str) -> str:
    team = team_identifier(ref.name)
    if team is None:
        raise _Problem(
            where,
            f"'{ref.name}' cannot be a team identifier (a letter first, then letters, digits, '-', '_')",
        )
    return team


def _group(reader: _Reader, name: str) -> DescriptorTeam:
    identifier = _team_of(Ref("group", reader.namespace, name), "/metadata/name")
    profile = reader.spec.get("profile") or {}
    if not isinstance(profile, dict):
        raise _Problem("/spec/profile", "must be a mapping")
    title = (
        _string(profile.get("displayName"), "/spec/profile/displayName")
        or reader.meta_string("title")
        or name
    )
    parent = reader.ref("parent", "group")
    children = reader.refs("children", "group")
    members = reader.refs("members", "user")
    warnings = []
    if parent or children:
        warnings.append("team hierarchy (spec.parent, spec.children) is not kept: Gantry's teams are flat")
    return DescriptorTeam(
        identifier=identifier,
        title=title,
        description=reader.meta_string("description") or "",
        parent=_team_of(parent, "/spec/parent") if parent else None,
        children=[_team_of(c, f"/spec/children/{i}") for i, c in enumerate(children)],
        members=[entity_identifier(m) for m in members],
        warnings=warnings,
    )


def _user(reader: _Reader, name: str) -> DescriptorUser:
    profile = reader.spec.get("profile") or {}
    if not isinstance(profile, dict):
        raise _Problem("/spec/profile", "must be a mapping")
    email = _string(profile.get("email"), "/spec/profile/email")
    if not email or not re.match(r"^[^@\s]+@[^@\s]+$", email):
        raise _Problem("/spec/profile/email", "is required: Gantry's users have an email address")
    teams = [_team_of(g, f"/spec/memberOf/{i}") for i, g in enumerate(reader.refs("memberOf", "group"))]
    display = _string(profile.get("displayName"), "/spec/profile/displayName")
    identifier = entity_identifier(Ref("user", reader.namespace, name))
    return DescriptorUser(identifier, email, display or reader.meta_string("title") or name, teams)


# Relation name -> (spec key, default kind of its references, kinds it accepts)
_RELATION_FIELDS: dict[str, dict[str, tuple[str, str, tuple[str, ...]]]] = {
    "Component": {
        "system": ("system", "system", ("system",)),
        "subcomponent_of": ("subcomponentOf", "component", ("component",)),
        "depends_on": ("dependsOn", "component", ("component",)),
        "depends_on_resources": ("dependsOn", "component", ("resource",)),
        "provides_apis": ("providesApis", "api", ("api",)),
        "consumes_apis": ("consumesApis", "api", ("api",)),
    },
    "API": {"system": ("system", "system", ("system",))},
    "System": {"domain": ("domain", "domain", ("domain",))},
    "Domain": {"subdomain_of": ("subdomainOf", "domain", ("domain",))},
    "Resource": {
        "system": ("system", "system", ("system",)),
        "depends_on": ("dependsOn", "resource", ("resource",)),
    },
}
_SINGLE = {"system", "domain", "subcomponent_of", "subdomain_of"}
# Spec keys read into properties or relations; any other spec key is reported in the warnings.
_SPEC_KEYS = {
    "type",
    "lifecycle",
    "owner",
    "definition",
    "system",
    "domain",
    "subcomponentOf",
    "subdomainOf",
    "dependsOn",
    "providesApis",
    "consumesApis",
}


def _entity(
    reader: _Reader, kind: str, name: str, namespace: str, location: str, prefix: str
) -> DescriptorEntity:
    blueprint = prefix + kind.lower()
    properties: dict[str, Any] = {"location": location}
    if namespace != DEFAULT_NAMESPACE:
        properties["namespace"] = namespace
    description = reader.meta_string("description")
    if description is not None:
        properties["description"] = description
    for key in ("annotations", "labels"):
        value = reader.mapping(key)
        if value:
            properties[key] = value
    tags = reader.metadata.get("tags")
    if tags is not None:
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise _Problem("/metadata/tags", "must be a list of strings")
        properties["tags"] = tags
    links = reader.metadata.get("links")
    if links is not None:
        if not isinstance(links, list):
            raise _Problem("/metadata/links", "must be a list of links")
        for i, link in enumerate(links):
            if not isinstance(link, dict) or not isinstance(link.get("url"), str):
                raise _Problem(f"/metadata/links/{i}/url", "is required (a string)")
        properties["links"] = links
    for key in ("type", "lifecycle"):
        text = reader.string(key)
        if text is not None:
            if kind == "Domain" or (key == "lifecycle" and kind not in ("Component", "API")):
                reader.warnings.append(f"spec.{key} is not a property of {kind}")
            else:
                properties[key] = text
    if kind == "API":
        definition = reader.spec.get("definition")
        if definition is not None:
            if not isinstance(definition, str):
                raise _Problem("/spec/definition", "must be a string (the API's definition)")
            properties["definition"] = definition
    entity: dict[str, Any] = {
        "identifier": entity_identifier(Ref(kind.lower(), namespace, name)),
        "title": reader.meta_string("title") or name,
        "properties": properties,
    }
    owner = reader.ref("owner", "group")
    if owner is not None:
        properties["owner"] = f"{owner.kind}:{owner.namespace}/{owner.name}"
        if owner.kind == "group":
            entity["team"] = [_team_of(owner, "/spec/owner")]
        else:
            reader.warnings.append(f"spec.owner {owner.kind}:{owner.name} is kept in the owner property only")
    relations = _relations(reader, kind)
    if relations:
        entity["relations"] = relations
    reader.warnings.extend(
        f"spec.{key} has no place in Gantry and was not imported"
        for key in sorted(set(reader.spec) - _SPEC_KEYS)
    )
    return DescriptorEntity(blueprint, entity, reader.warnings)


def _relations(reader: _Reader, kind: str) -> dict[str, Any]:
    relations: dict[str, Any] = {}
    fields = _RELATION_FIELDS[kind]
    used: dict[str, set[int]] = {}  # spec key -> indexes of the references a relation took
    for relation, (key, default_kind, kinds) in fields.items():
        if relation in _SINGLE:
            ref = reader.ref(key, default_kind)
            if ref is not None:
                if ref.kind not in kinds:
                    raise _Problem(f"/spec/{key}", f"must refer to a {' or '.join(kinds)}, not a {ref.kind}")
                relations[relation] = entity_identifier(ref)
            continue
        refs = reader.refs(key, default_kind)
        chosen = [i for i, ref in enumerate(refs) if ref.kind in kinds]
        used.setdefault(key, set()).update(chosen)
        if chosen:
            relations[relation] = [entity_identifier(refs[i]) for i in chosen]
    for key, indexes in used.items():
        default_kind = next(d for k, d, _ in fields.values() if k == key)
        for i, ref in enumerate(reader.refs(key, default_kind)):
            if i not in indexes:
                reader.warnings.append(
                    f"spec.{key}[{i}] {ref.kind}:{ref.name} cannot be related from a {kind}"
                )
    return relations
