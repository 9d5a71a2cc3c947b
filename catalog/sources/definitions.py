"""Data-source definitions: what a source pulls (or receives) and how its items become entities.

Resources use Port Ocean's shape as is (``kind``, ``selector.query``, ``port.itemsToParse``,
``port.entity.mappings``), so an existing ``port-app-config.yml`` works unchanged. Every jq
program is compiled when the definition is saved, so a typo is a 422 at its JSON pointer, not a
failed sync later. Credentials never live in a definition: they come from settings (a webhook's
HMAC secret from the environment variable ``security.secret_env`` names).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from catalog import audit
from catalog.audit import Actor
from catalog.base import Strict
from catalog.db import utcnow
from catalog.durations import parse_duration
from catalog.errors import Conflict, FieldError, Forbidden, Invalid, NotFound, pointer
from catalog.identity.permissions import Principal, is_moderator
from catalog.models import Blueprint, DataSource, Entity
from catalog.sandbox.jq import JqCompileError, check_jq
from catalog.schemas import SLUG
from catalog.timefmt import format_instant

KINDS = ("github", "gitlab", "aws", "jira", "kubernetes", "pagerduty", "webhook", "files")
PULL_KINDS = tuple(k for k in KINDS if k != "webhook")
# Config keys that would hold a credential: credentials come from settings, never a definition.
CREDENTIAL_WORDS = ("token", "password", "passwd", "secret", "credential", "apikey", "api_key", "private_key")
MIN_SCHEDULE_SECONDS = 60
# A webhook secret may not be one of Gantry's own settings (a signature check would then make
# the admin token or the encryption key an HMAC key anybody can probe).
WEBHOOK_SECRETS = "GANTRY_WEBHOOK_"
_STRING_LITERAL = re.compile(r'^\s*("(?:[^"\\]|\\.)*")\s*$')


class Selector(BaseModel):
    """Ocean's selector: ``query`` (jq, keeps items whose first output is true) and whatever
    keys the vendor's client reads (kept as given)."""

    model_config = ConfigDict(extra="allow")

    query: str = Field("true", max_length=4000)


class Mappings(Strict):
    identifier: str = Field(max_length=4000)
    title: str | None = Field(None, max_length=4000)
    blueprint: str = Field(max_length=4000)
    team: str | None = Field(None, max_length=4000)
    icon: str | None = Field(None, max_length=4000)
    properties: dict[str, str] = Field(default_factory=dict)
    # A jq program, or a search query object (Ocean's shape) whose string leaves are jq.
    relations: dict[str, str | dict[str, Any]] = Field(default_factory=dict)


class EntitySpec(Strict):
    mappings: Mappings


class PortSpec(Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    entity: EntitySpec
    items_to_parse: str | None = Field(None, alias="itemsToParse", max_length=4000)


class Resource(Strict):
    kind: str = Field(min_length=1, max_length=100)
    selector: Selector = Field(default_factory=Selector)
    # Kind ``files`` may omit it: catalog files are mapped by the descriptor converter.
    port: PortSpec | None = None
    # Webhook sources: jq over the envelope {body, headers, query}; ``create`` upserts.
    filter: str | None = Field(None, max_length=4000)
    operation: Literal["create", "delete"] = "create"


class Security(Strict):
    secret_env: str = Field(pattern=r"^[A-Z_][A-Z0-9_]{0,127}$")
    header: str = Field("X-Hub-Signature-256", max_length=100)
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    prefix: str = Field("sha256=", max_length=40)


class DataSourceIn(Strict):
    identifier: str = Field(pattern=SLUG)
    title: str = Field("", max_length=256)
    description: str = Field("", max_length=4000)
    kind: Literal["github", "gitlab", "aws", "jira", "kubernetes", "pagerduty", "webhook", "files"]
    config: dict[str, Any] = Field(default_factory=dict)
    schedule: str | None = None
    resources: list[Resource] = Field(min_length=1, max_length=100)
    delete_stale: bool = False
    deletion_threshold: float = Field(0.9, ge=0, le=1)
    create_missing_related_entities: bool = False
    security: Security | None = None


# ---- checks ---------------------------------------------------------------------------------


def check(session: Session, body: DataSourceIn) -> None:
    """Every problem of the definition at once, each at its JSON pointer (a 422)."""
    errors = _credential_keys(body.config, "/config")
    errors += _schedule_problems(body)
    errors += _security_problems(body)
    for index, resource in enumerate(body.resources):
        errors += _resource_problems(session, body, index, resource)
    if errors:
        raise Invalid("invalid data source", errors)


def _credential_keys(value: Any, where: str) -> list[FieldError]:
    found: list[FieldError] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            at = where + pointer(key)
            squashed = str(key).lower().replace("-", "_")
            if any(word in squashed or word in squashed.replace("_", "") for word in CREDENTIAL_WORDS):
                found.append(FieldError(at, "credentials come from settings, never from the config"))
            else:
                found += _credential_keys(inner, at)
    elif isinstance(value, list):
        for n, inner in enumerate(value):
            found += _credential_keys(inner, f"{where}/{n}")
    return found


def _schedule_problems(body: DataSourceIn) -> list[FieldError]:
    if body.schedule is None:
        return []
    if body.kind == "webhook":
        return [FieldError("/schedule", "a webhook source is not scheduled: its vendor calls it")]
    try:
        every = parse_duration(body.schedule)
    except ValueError as exc:
        return [FieldError("/schedule", str(exc))]
    if every.total_seconds() < MIN_SCHEDULE_SECONDS:
        return [FieldError("/schedule", f"must be at least {MIN_SCHEDULE_SECONDS} seconds (PT1M)")]
    return []


def _security_problems(body: DataSourceIn) -> list[FieldError]:
    """Webhook sources need a signature check; files sources may have one (GitHub push events
    then re-read the pushed repository at once); no other kind receives deliveries."""
    if body.kind not in ("webhook", "files"):
        if body.security is not None:
            return [FieldError("/security", "only webhook and files sources check signatures")]
        return []
    if body.security is None:
        if body.kind == "files":
            return []
        return [FieldError("/security", "a webhook source needs a signature check (secret_env, header...)")]
    name = body.security.secret_env
    # Only variables the platform team set aside for webhooks: a definition must not be able to
    # point the signature check at any other secret of the API's environment.
    if not name.startswith(WEBHOOK_SECRETS) or name == WEBHOOK_SECRETS:
        return [FieldError("/security/secret_env", f"must name a {WEBHOOK_SECRETS}* environment variable")]
    return []


def _resource_problems(
    session: Session, body: DataSourceIn, index: int, resource: Resource
) -> list[FieldError]:
    base = f"/resources/{index}"
    if resource.port is None:
        if body.kind == "files":
            return _jq_problems(programs_of(resource, base))
        return [FieldError(f"{base}/port", "is required: port.entity.mappings say how items become entities")]
    errors = _jq_problems(programs_of(resource, base))
    literal = literal_string(resource.port.entity.mappings.blueprint)
    if literal is not None and session.get(Blueprint, literal) is None:
        errors.append(
            FieldError(f"{base}/port/entity/mappings/blueprint", f"blueprint '{literal}' does not exist")
        )
    return errors


def programs_of(resource: Resource, base: str) -> Iterator[tuple[str, str]]:
    """(JSON pointer, jq program) for every program of a resource."""
    yield f"{base}/selector/query", resource.selector.query
    if resource.filter is not None:
        yield f"{base}/filter", resource.filter
    if resource.port is None:
        return
    if resource.port.items_to_parse is not None:
        yield f"{base}/port/itemsToParse", resource.port.items_to_parse
    mappings = resource.port.entity.mappings
    at = f"{base}/port/entity/mappings"
    for name in ("identifier", "title", "blueprint", "team", "icon"):
        program = getattr(mappings, name)
        if program is not None:
            yield f"{at}/{name}", program
    for name, program in mappings.properties.items():
        yield f"{at}/properties" + pointer(name), program
    for name, relation in mappings.relations.items():
        yield from _leaves(relation, f"{at}/relations" + pointer(name))


def _leaves(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """The jq programs of a relation: a string, or the string leaves of a search query."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield from _leaves(inner, where + pointer(key))
    elif isinstance(value, list):
        for n, inner in enumerate(value):
            yield from _leaves(inner, f"{where}/{n}")


def _jq_problems(programs: Iterator[tuple[str, str]]) -> list[FieldError]:
    errors = []
    for where, program in programs:
        try:
            check_jq(program)
        except JqCompileError as exc:
            message = str(exc)
            errors.append(FieldError(where, message if message.startswith("jq") else f"jq: {message}"))
    return errors


def literal_string(program: str) -> str | None:
    """The string a jq program is a literal of (``'"service"'`` → ``service``), else None."""
    match = _STRING_LITERAL.match(program)
    if match is None:
        return None
    value = json.loads(match.group(1))
    return value if isinstance(value, str) else None


def blueprints_named(definition: dict[str, Any]) -> list[str] | None:
    """The blueprints the source writes, when every mapping names a literal one; None when
    one is computed (or comes from catalog files), which only admins may define."""
    named: list[str] = []
    for resource in definition.get("resources", []):
        mappings = ((resource.get("port") or {}).get("entity") or {}).get("mappings")
        literal = literal_string(mappings["blueprint"]) if mappings else None
        if literal is None:
            return None
        named.append(literal)
    return sorted(set(named))


# ---- who may do what ------------------------------------------------------------------------


def may_administer(session: Session, definition: dict[str, Any], who: Principal) -> bool:
    """Admins, and moderators of every blueprint the source writes (literal blueprints only;
    with ``create_missing_related_entities``, also of the blueprints its relations point to,
    where it creates bare entities)."""
    if who.role == "admin":
        return True
    if who.is_service or not who.may_write:
        return False
    named = blueprints_named(definition)
    if not named:
        return False
    blueprints = [session.get(Blueprint, identifier) for identifier in named]
    if definition.get("create_missing_related_entities"):
        targets = {
            bp.relations[name]["target"]
            for bp, name in _relations_named(definition, blueprints)
            if name in bp.relations
        }
        blueprints += [session.get(Blueprint, t) for t in sorted(targets - set(named))]
    return all(bp is not None and is_moderator(bp, who) for bp in blueprints)


def _relations_named(
    definition: dict[str, Any], blueprints: list[Blueprint | None]
) -> list[tuple[Blueprint, str]]:
    """(blueprint, relation name) for every relation a resource's mappings set."""
    by_id = {bp.identifier: bp for bp in blueprints if bp is not None}
    found = []
    for resource in definition.get("resources", []):
        mappings = ((resource.get("port") or {}).get("entity") or {}).get("mappings") or {}
        bp = by_id.get(literal_string(mappings.get("blueprint", "")) or "")
        if bp is not None:
            found += [(bp, name) for name in mappings.get("relations", {})]
    return found


def may_read(session: Session, source: DataSource, who: Principal) -> bool:
    """The worker reads every source; people read what they may administer."""
    return who.is_service or may_administer(session, source.definition, who)


def get_readable(session: Session, identifier: str, who: Principal) -> DataSource:
    source = session.get(DataSource, identifier)
    if source is None or not may_read(session, source, who):
        raise NotFound(f"data source '{identifier}' not found")
    return source


def get_administrable(session: Session, identifier: str, who: Principal) -> DataSource:
    source = get_readable(session, identifier, who)
    if not may_administer(session, source.definition, who):
        raise Forbidden(
            f"only admins and the moderators of its blueprints may change data source '{identifier}'"
        )
    return source


def get(session: Session, identifier: str) -> DataSource:
    source = session.get(DataSource, identifier)
    if source is None:
        raise NotFound(f"data source '{identifier}' not found")
    return source


def list_readable(session: Session, who: Principal) -> list[DataSource]:
    sources = session.scalars(select(DataSource).order_by(DataSource.identifier))
    return [s for s in sources if may_read(session, s, who)]


def parsed(source: DataSource) -> DataSourceIn:
    return DataSourceIn.model_validate(source.definition)


# ---- writing --------------------------------------------------------------------------------


def save(
    session: Session, body: DataSourceIn, actor: Actor, who: Principal, *, create_only: bool = False
) -> tuple[DataSource, DataSource | None]:
    """Check, authorize and store a definition; the saved source and its previous definition
    (as a detached copy; None when created). The caller commits (after the schedule is set)."""
    definition = body.model_dump(mode="json", exclude_none=True, by_alias=True)
    source = session.get(DataSource, body.identifier)
    if source is not None and not may_read(session, source, who):
        raise NotFound(f"data source '{body.identifier}' not found")
    if source is not None and create_only:
        raise Conflict(f"data source '{body.identifier}' already exists")
    if source is not None and not may_administer(session, source.definition, who):
        raise Forbidden(
            f"only admins and the moderators of its blueprints may change data source '{body.identifier}'"
        )
    check(session, body)
    if not may_administer(session, definition, who):
        raise Forbidden(
            "only admins may define this source: moderators may define sources whose mappings name "
            "only blueprints they moderate (as string literals such as '\"service\"')"
        )
    now = utcnow()
    if source is None:
        source = DataSource(
            identifier=body.identifier,
            kind=body.kind,
            definition=definition,
            created_at=now,
            updated_at=now,
            created_by=actor.user,
            updated_by=actor.user,
        )
        session.add(source)
        audit.record(session, actor, "CREATE", "data_source", body.identifier, after=definition)
        session.flush()
        return source, None
    previous = DataSource(identifier=source.identifier, kind=source.kind, definition=dict(source.definition))
    audit.record(
        session, actor, "UPDATE", "data_source", body.identifier, before=previous.definition, after=definition
    )
    source.kind, source.definition = body.kind, definition
    source.updated_at, source.updated_by = now, actor.user
    source.version = (source.version or 1) + 1
    session.flush()
    return source, previous


def delete(session: Session, source: DataSource, actor: Actor) -> None:
    """Forget the definition, its syncs and deliveries; the entities it wrote stay (no longer
    owned by a source)."""
    audit.record(session, actor, "DELETE", "data_source", source.identifier, before=dict(source.definition))
    session.execute(
        update(Entity)
        .where(Entity.source_data_source == source.identifier)
        .values(source_data_source=None, source_resource=None, source_properties=None, source_relations=None)
    )
    session.delete(source)
    session.flush()


def view(source: DataSource) -> dict[str, Any]:
    return {
        **source.definition,
        "created_at": format_instant(source.created_at),
        "updated_at": format_instant(source.updated_at),
        "created_by": source.created_by,
        "updated_by": source.updated_by,
    }
