"""Blueprint service: the schemas of the catalog, with their relations and timer policies."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from catalog import audit
from catalog.audit import Actor
from catalog.blueprints.properties import (
    PROPERTY_NAME,
    PROPERTY_NAME_RULE,
    PropertyValidator,
    check_blueprint_schema,
    validator_for,
)
from catalog.changes import pipeline as changes
from catalog.computed import service as computed
from catalog.db import utcnow
from catalog.errors import Conflict, FieldError, Invalid, NotFound, pointer
from catalog.identity.permissions import BlueprintPermissions, Moderators
from catalog.models import Blueprint, Entity, EntityRelation
from catalog.schemas import BlueprintIn, BlueprintPatch
from catalog.timefmt import format_instant
from catalog.timers.service import check_policies


def blueprint_to_dict(bp: Blueprint) -> dict[str, Any]:
    return {
        "identifier": bp.identifier,
        "title": bp.title,
        "description": bp.description,
        "icon": bp.icon,
        "schema": bp.schema,
        "relations": bp.relations,
        "timers": bp.timers,
        "mirror_properties": bp.mirror_properties or {},
        "aggregation_properties": bp.aggregation_properties or {},
        "moderators": Moderators.model_validate(bp.moderators or {}).model_dump(),
        "permissions": _permissions_view(bp.permissions or {}),
        "created_at": format_instant(bp.created_at),
        "updated_at": format_instant(bp.updated_at),
        "created_by": bp.created_by,
        "updated_by": bp.updated_by,
    }


def _permissions_view(stored: dict[str, Any]) -> dict[str, Any]:
    """Every operation, its policy or None (the default applies)."""
    return BlueprintPermissions.model_validate(stored).model_dump()


def _permissions_stored(body: BlueprintIn) -> dict[str, Any]:
    return body.permissions.model_dump(exclude_none=True)


def _check_permissions(body: BlueprintIn, properties: dict[str, Any]) -> list[FieldError]:
    """``update_properties``/``update_relations`` name fields the blueprint has."""
    where = "/permissions"
    errors = [
        FieldError(where + pointer("update_properties", name), "is not a property of the blueprint")
        for name in body.permissions.update_properties
        if name not in properties
    ]
    errors += [
        FieldError(where + pointer("update_relations", name), "is not a relation of the blueprint")
        for name in body.permissions.update_relations
        if name not in body.relations
    ]
    return errors


def get_blueprint(session: Session, identifier: str) -> Blueprint:
    bp = session.get(Blueprint, identifier)
    if bp is None:
        raise NotFound(f"blueprint '{identifier}' not found")
    return bp


def list_blueprints(session: Session) -> list[Blueprint]:
    return list(session.scalars(select(Blueprint).order_by(Blueprint.identifier)))


def property_validator(bp: Blueprint) -> PropertyValidator:
    return validator_for(bp.identifier, bp.version, bp.schema)


def _check_definition(session: Session, body: BlueprintIn) -> tuple[dict[str, Any], dict[str, Any]]:
    """Raise 422 naming every problem; return the stored forms of the computed properties."""
    schema = body.schema_.model_dump()
    errors = check_blueprint_schema(schema)
    for name, relation in body.relations.items():
        where = pointer("relations", name)
        if not PROPERTY_NAME.match(name):
            errors.append(FieldError(where, f"relation names must match {PROPERTY_NAME_RULE}"))
        if name in schema["properties"]:
            errors.append(FieldError(where, "a relation cannot share a name with a property"))
        if relation.many and relation.required:
            errors.append(FieldError(where, "a relation cannot be both many and required"))
        if relation.target != body.identifier and session.get(Blueprint, relation.target) is None:
            errors.append(FieldError(f"{where}/target", f"blueprint '{relation.target}' does not exist"))
    errors += check_policies(body.timers, schema["properties"])
    errors += _check_permissions(body, schema["properties"])
    problems, mirrors, aggregations = computed.check(session, body)
    errors += problems
    if errors:
        raise Invalid("invalid blueprint", errors)
    return mirrors, aggregations


def create_blueprint(session: Session, body: BlueprintIn, actor: Actor) -> Blueprint:
    if session.get(Blueprint, body.identifier) is not None:
        raise Conflict(f"blueprint '{body.identifier}' already exists")
    mirrors, aggregations = _check_definition(session, body)
    now = utcnow()
    bp = Blueprint(
        identifier=body.identifier,
        title=body.title,
        description=body.description,
        icon=body.icon,
        schema=body.schema_.model_dump(),
        relations={k: v.model_dump(exclude_none=True) for k, v in body.relations.items()},
        timers=body.timers,
        mirror_properties=mirrors,
        aggregation_properties=aggregations,
        moderators=body.moderators.model_dump(),
        permissions=_permissions_stored(body),
        version=1,
        created_at=now,
        updated_at=now,
        created_by=actor.user,
        updated_by=actor.user,
    )
    session.add(bp)
    session.flush()
    audit.record(session, actor, "CREATE", "blueprint", bp.identifier, after=blueprint_to_dict(bp))
    return bp


def replace_blueprint(session: Session, identifier: str, body: BlueprintIn, actor: Actor) -> Blueprint:
    if body.identifier != identifier:
        raise Invalid(
            "identifier mismatch", [FieldError("/identifier", "must equal the blueprint in the path")]
        )
    bp = get_blueprint(session, identifier)
    mirrors, aggregations = _check_definition(session, body)
    before = blueprint_to_dict(bp)
    new_schema = body.schema_.model_dump()
    new_relations = {k: v.model_dump(exclude_none=True) for k, v in body.relations.items()}
    _check_compatible(session, bp, new_schema, new_relations)
    used = computed.dependents_problems(
        session, identifier, new_schema, new_relations, set(mirrors) | set(aggregations)
    )
    if used:
        raise Conflict("other blueprints' computed properties read what this change removes", used)
    _drop_removed(session, bp, new_schema, new_relations)
    old_computed = (bp.mirror_properties or {}, bp.aggregation_properties or {})
    removed = computed.names(bp) - set(mirrors) - set(aggregations)
    bp.title, bp.description, bp.icon = body.title, body.description, body.icon
    bp.schema, bp.relations, bp.timers = new_schema, new_relations, body.timers
    bp.mirror_properties, bp.aggregation_properties = mirrors, aggregations
    bp.moderators, bp.permissions = body.moderators.model_dump(), _permissions_stored(body)
    bp.version += 1
    bp.updated_at, bp.updated_by = utcnow(), actor.user
    session.flush()
    if old_computed != (mirrors, aggregations):
        changes.refresh_blueprint(session, bp, actor, removed)
    audit.record(
        session, actor, "UPDATE", "blueprint", identifier, before=before, after=blueprint_to_dict(bp)
    )
    return bp


def patch_blueprint(session: Session, identifier: str, body: BlueprintPatch, actor: Actor) -> Blueprint:
    bp = get_blueprint(session, identifier)
    merged = BlueprintIn.model_validate(
        {
            "identifier": identifier,
            "title": body.title if body.title is not None else bp.title,
            "description": body.description if body.description is not None else bp.description,
            "icon": body.icon if "icon" in body.model_fields_set else bp.icon,
            "schema": body.schema_.model_dump() if body.schema_ is not None else bp.schema,
            "relations": (
                {k: v.model_dump() for k, v in body.relations.items()}
                if body.relations is not None
                else bp.relations
            ),
            "timers": body.timers if body.timers is not None else bp.timers,
            "mirror_properties": (
                {k: v.model_dump(exclude_none=True) for k, v in body.mirror_properties.items()}
                if body.mirror_properties is not None
                else bp.mirror_properties
            ),
            "aggregation_properties": (
                {k: v.model_dump(exclude_none=True) for k, v in body.aggregation_properties.items()}
                if body.aggregation_properties is not None
                else bp.aggregation_properties
            ),
            "moderators": (
                body.moderators.model_dump() if body.moderators is not None else bp.moderators or {}
            ),
            "permissions": (
                body.permissions.model_dump(exclude_none=True)
                if body.permissions is not None
                else bp.permissions or {}
            ),
        }
    )
    return replace_blueprint(session, identifier, merged, actor)


def _entity_count(session: Session, identifier: str) -> int:
    return session.scalar(select(func.count()).select_from(Entity).where(Entity.blueprint == identifier)) or 0


def _check_compatible(
    session: Session, bp: Blueprint, schema: dict[str, Any], relations: dict[str, Any]
) -> None:
    """Refuse changes that would make stored entities invalid (409)."""
    count = _entity_count(session, bp.identifier)
    if count == 0:
        return
    old_props = bp.schema.get("properties", {})
    errors = [
        FieldError(
            pointer("schema", "properties", name, "type"),
            f"cannot change type from {old_props[name].get('type')!r} while {count} entities exist",
        )
        for name, definition in schema["properties"].items()
        if name in old_props and old_props[name].get("type") != definition.get("type")
    ]
    newly_required = set(schema.get("required", [])) - set(bp.schema.get("required", []))
    errors += [
        FieldError(
            pointer("schema", "required"), f"cannot make '{name}' required while {count} entities exist"
        )
        for name in sorted(newly_required)
    ]
    for name, relation in relations.items():
        old = bp.relations.get(name)
        if old and old.get("target") != relation.get("target"):
            errors.append(
                FieldError(pointer("relations", name, "target"), "cannot change target while entities exist")
            )
        if old and old.get("many") != relation.get("many"):
            errors.append(
                FieldError(pointer("relations", name, "many"), "cannot change many while entities exist")
            )
        if relation.get("required") and not (old or {}).get("required"):
            errors.append(
                FieldError(
                    pointer("relations", name, "required"), "cannot make required while entities exist"
                )
            )
    if errors:
        raise Conflict("the change is incompatible with existing entities", errors)


def _drop_removed(session: Session, bp: Blueprint, schema: dict[str, Any], relations: dict[str, Any]) -> None:
    """Remove the data of properties and relations the blueprint no longer has."""
    removed_props = set(bp.schema.get("properties", {})) - set(schema["properties"])
    removed_rels = set(bp.relations) - set(relations)
    if not removed_props and not removed_rels:
        return
    if removed_rels:
        session.execute(
            delete(EntityRelation).where(
                EntityRelation.source_blueprint == bp.identifier, EntityRelation.relation.in_(removed_rels)
            )
        )
    for entity in session.scalars(select(Entity).where(Entity.blueprint == bp.identifier)):
        entity.properties = {k: v for k, v in entity.properties.items() if k not in removed_props}
        entity.relations = {k: v for k, v in entity.relations.items() if k not in removed_rels}


def delete_blueprint(session: Session, identifier: str, actor: Actor, *, delete_entities: bool) -> None:
    bp = get_blueprint(session, identifier)
    count = _entity_count(session, identifier)
    referrers = [
        (other, name)
        for other in list_blueprints(session)
        if other.identifier != identifier
        for name, rel in other.relations.items()
        if rel.get("target") == identifier
    ]
    aggregators = computed.blueprints_depending_on(session, identifier)
    if not delete_entities and (count or referrers or aggregators):
        reasons = [FieldError("/entities", f"{count} entities exist")] if count else []
        reasons += [
            FieldError(pointer("relations", name), f"blueprint '{other.identifier}' relates to it")
            for other, name in referrers
        ]
        reasons += [
            FieldError(
                pointer("aggregation_properties", name), f"blueprint '{other.identifier}' aggregates it"
            )
            for other, name in aggregators
        ]
        raise Conflict(
            f"blueprint '{identifier}' is in use; pass delete_entities=true to delete it anyway", reasons
        )
    changes.forget_blueprint(session, identifier, actor)
    for other, name in referrers:
        before = blueprint_to_dict(other)
        other.relations = {k: v for k, v in other.relations.items() if k != name}
        other.version += 1
        other.updated_at, other.updated_by = utcnow(), actor.user
        session.execute(
            delete(EntityRelation).where(
                EntityRelation.source_blueprint == other.identifier, EntityRelation.relation == name
            )
        )
        for entity in session.scalars(select(Entity).where(Entity.blueprint == other.identifier)):
            if name in entity.relations:
                entity.relations = {k: v for k, v in entity.relations.items() if k != name}
        audit.record(
            session,
            actor,
            "UPDATE",
            "blueprint",
            other.identifier,
            before=before,
            after=blueprint_to_dict(other),
        )
    before = blueprint_to_dict(bp)
    if count:
        changes.delete_blueprint_entities(session, identifier, actor)
    session.delete(bp)
    audit.record(session, actor, "DELETE", "blueprint", identifier, before=before)
