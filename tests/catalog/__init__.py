"""Catalog tests; the helpers below write catalog rows directly, without the entity service."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from catalog.models import Blueprint, Entity, EntityRelation, EntityTeam

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def add_blueprints(session: Session, *identifiers: str) -> None:
    session.add_all(Blueprint(identifier=bp, title=bp.title()) for bp in identifiers)
    session.flush()


def add_entity(
    session: Session,
    blueprint: str,
    identifier: str,
    *,
    properties: dict[str, Any] | None = None,
    title: str | None = None,
    team: list[str] | None = None,
    relations: dict[str, tuple[str, str | list[str]]] | None = None,
    required: Collection[str] = (),
    created_at: datetime = T0,
) -> Entity:
    """An entity; ``relations`` maps relation name to (target blueprint, identifier or list)."""
    entity = Entity(
        blueprint=blueprint,
        identifier=identifier,
        title=title,
        team=team or [],
        properties=properties or {},
        relations={name: target for name, (_, target) in (relations or {}).items()},
        created_at=created_at,
        updated_at=created_at,
    )
    session.add(entity)
    session.flush()
    # The write pipeline keeps entity_teams beside Entity.team; so does this helper.
    session.add_all(EntityTeam(entity_id=entity.id, team=t) for t in dict.fromkeys(team or []))
    for name, (target_blueprint, targets) in (relations or {}).items():
        for target in targets if isinstance(targets, list) else [targets]:
            session.add(
                EntityRelation(
                    source_id=entity.id,
                    source_blueprint=blueprint,
                    relation=name,
                    target_blueprint=target_blueprint,
                    target_identifier=target,
                    required=name in required,
                )
            )
    session.flush()
    return entity
