"""Pydantic models of the catalog's API bodies (what clients send) — responses are plain dicts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from catalog.base import Strict
from catalog.errors import Invalid
from catalog.identity.permissions import BlueprintPermissions, Moderators
from catalog.sources import port

SLUG = r"^[a-z][a-z0-9_-]{0,99}$"
# Port's identifier rule for blueprints, properties and relations (Ocean's blueprints are camelCase
# like ``ec2Instance``). None of these characters means anything in a URL path segment, a SQL JSON
# path once quoted (catalog/query/compiler.py), a jq string or a Jinja subscript.
BLUEPRINT_ID = r"^[A-Za-z0-9@_=-]{1,100}$"
PROPERTY_NAME = BLUEPRINT_ID
# Entity (and user) identifiers travel in URL paths, where a "." or ".." segment would climb out
# of them (``../../users/alice``): no segment between slashes may be one. ENTITY_ID is the
# character rule alone (pydantic's regex engine has no look-ahead: EntityId adds the segment
# rule); ENTITY_ID_PATTERN is the whole rule for Python's ``re``.
ENTITY_ID = r"^[A-Za-z0-9@_.+:/=-]{1,256}$"
ENTITY_ID_PATTERN = r"^(?!\.\.?(?:/|$))(?!.*/\.\.?(?:/|$))[A-Za-z0-9@_.+:/=-]{1,256}$"
DOT_SEGMENT_MESSAGE = "may not contain a '.' or '..' path segment"


def no_dot_segment(identifier: str) -> str:
    """``identifier`` unchanged, or a ValueError when a segment between slashes is ``.`` or ``..``."""
    if any(part in (".", "..") for part in identifier.split("/")):
        raise ValueError(DOT_SEGMENT_MESSAGE)
    return identifier


EntityId = Annotated[str, Field(pattern=ENTITY_ID), AfterValidator(no_dot_segment)]

# Fields the catalog computes: a client that sends one gets a 422 naming it.
COMPUTED_ENTITY_FIELDS = ("scorecards", "created_at", "updated_at", "created_by", "updated_by")


class RelationDef(Strict):
    target: str = Field(pattern=BLUEPRINT_ID)
    title: str | None = None
    description: str | None = None
    many: bool = False
    required: bool = False


class BlueprintSchema(Strict):
    properties: dict[str, dict[str, Any]] = Field(default_factory=dict)
    required: list[str] = Field(default_factory=list)


class MirrorPropertyDef(Strict):
    """A property read through a relation: ``path`` is ``relation.property`` (or ``relation.$title``)."""

    title: str | None = None
    description: str | None = None
    path: str = Field(min_length=3, max_length=201)


class AggregationPropertyDef(Strict):
    """A function of the ``target`` entities whose ``relation`` points at this blueprint's entity."""

    title: str | None = None
    description: str | None = None
    target: str = Field(pattern=BLUEPRINT_ID)
    relation: str | None = None
    function: str
    property: str | None = None
    window: str | None = None
    time_property: str | None = None
    query: dict[str, Any] | None = None
    match: dict[str, Any] | None = None


class BlueprintIn(Strict):
    identifier: str = Field(pattern=BLUEPRINT_ID)
    title: str = Field(min_length=1, max_length=256)
    description: str = ""
    icon: str | None = Field(None, max_length=100)
    schema_: BlueprintSchema = Field(default_factory=BlueprintSchema, alias="schema")
    relations: dict[str, RelationDef] = Field(default_factory=dict)
    timers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    mirror_properties: dict[str, MirrorPropertyDef] = Field(default_factory=dict)
    aggregation_properties: dict[str, AggregationPropertyDef] = Field(default_factory=dict)
    # Who administers the blueprint's entities, and who may read and write them (Port's shape).
    moderators: Moderators = Field(default_factory=Moderators)
    permissions: BlueprintPermissions = Field(default_factory=BlueprintPermissions)

    @model_validator(mode="before")
    @classmethod
    def _from_port(cls, data: Any) -> Any:
        """Port's blueprint JSON (``mirrorProperties``, ``aggregationProperties``…) is accepted as
        is; what Gantry cannot express is a 422 naming it (``Invalid`` passes through pydantic to
        the API's handler with its pointers), never dropped."""
        if not port.is_port_blueprint(data):
            return data
        converted = port.blueprint_from_port(data)
        if converted.unsupported:
            raise Invalid("the Port blueprint uses what Gantry cannot express", converted.unsupported)
        return converted.body


class BlueprintPatch(Strict):
    title: str | None = Field(None, min_length=1, max_length=256)
    description: str | None = None
    icon: str | None = Field(None, max_length=100)
    schema_: BlueprintSchema | None = Field(None, alias="schema")
    relations: dict[str, RelationDef] | None = None
    timers: dict[str, dict[str, Any]] | None = None
    mirror_properties: dict[str, MirrorPropertyDef] | None = None
    aggregation_properties: dict[str, AggregationPropertyDef] | None = None
    moderators: Moderators | None = None
    permissions: BlueprintPermissions | None = None


class EntityIn(BaseModel):
    """An entity as a client writes it. Computed fields are refused by the service with a 422."""

    model_config = ConfigDict(extra="allow")

    identifier: EntityId
    title: str | None = Field(None, max_length=512)
    team: list[str] | str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    relations: dict[str, str | list[str] | None] = Field(default_factory=dict)


class EntityPatch(BaseModel):
    model_config = ConfigDict(extra="allow")

    title: str | None = Field(None, max_length=512)
    team: list[str] | str | None = None
    properties: dict[str, Any] | None = None
    relations: dict[str, str | list[str] | None] | None = None


class BulkEntities(Strict):
    entities: list[dict[str, Any]] = Field(max_length=1000)


class SortKey(Strict):
    property: str
    order: Literal["asc", "desc"] = "asc"


class SearchRequest(Strict):
    query: dict[str, Any] | None = None
    limit: int = Field(100, ge=1, le=1000)
    cursor: str | None = None
    sort: list[SortKey] = Field(default_factory=list)


class TeamIn(Strict):
    identifier: str = Field(pattern=SLUG)
    title: str = Field(min_length=1, max_length=256)
    description: str = ""


class TeamPatch(Strict):
    title: str | None = Field(None, min_length=1, max_length=256)
    description: str | None = None


# `service` (the worker) is made by GANTRY_SERVICE_TOKEN only, never through the API.
Role = Literal["admin", "member", "viewer"]


class UserIn(Strict):
    identifier: EntityId
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)
    name: str = ""
    role: Role = "member"
    teams: list[str] = Field(default_factory=list)


class UserPatch(Strict):
    email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)
    name: str | None = None
    role: Role | None = None
    teams: list[str] | None = None


class TokenIn(Strict):
    """A user's token, or (``kind: agent``) an agent's: the owner's permissions narrowed to
    ``allowed_actions``, ``runs_per_hour`` launches and, with ``read_only``, no writes."""

    user: EntityId
    expires_at: datetime | None = None
    description: str = ""
    kind: Literal["user", "agent"] = "user"
    name: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    allowed_actions: list[EntityId] | None = None
    runs_per_hour: int | None = Field(None, ge=1, le=100_000)
    read_only: bool = False
