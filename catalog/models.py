"""ORM models of the catalog: blueprints, entities and their relations, identity and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from catalog.db import Base, JSONType, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer(), "sqlite")


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(256))
    updated_by: Mapped[str | None] = mapped_column(String(256))


class Blueprint(Timestamped, Base):
    __tablename__ = "blueprints"

    identifier: Mapped[str] = mapped_column(String(100), primary_key=True)
    title: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    icon: Mapped[str | None] = mapped_column(String(100))
    schema: Mapped[dict[str, Any]] = mapped_column("schema", JSONType, default=dict)
    relations: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    timers: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Bumped on every change: the validator cache is keyed by (identifier, version).
    version: Mapped[int] = mapped_column(Integer, default=1)


class Entity(Timestamped, Base):
    __tablename__ = "entities"
    __table_args__ = (
        UniqueConstraint("blueprint", "identifier", name="uq_entities_blueprint_identifier"),
        Index("ix_entities_identifier", "identifier"),
        Index("ix_entities_updated_at", "updated_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    blueprint: Mapped[str] = mapped_column(ForeignKey("blueprints.identifier", ondelete="CASCADE"))
    identifier: Mapped[str] = mapped_column(String(256))
    title: Mapped[str | None] = mapped_column(String(512))
    team: Mapped[list[str]] = mapped_column(JSONType, default=list)
    properties: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    relations: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class EntityRelation(Base):
    """One edge of the catalog graph, kept beside ``Entity.relations`` so relations are indexable."""

    __tablename__ = "entity_relations"
    __table_args__ = (
        Index("ix_entity_relations_source", "source_id", "relation"),
        Index("ix_entity_relations_target", "target_blueprint", "target_identifier"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("entities.id", ondelete="CASCADE"))
    source_blueprint: Mapped[str] = mapped_column(String(100))
    relation: Mapped[str] = mapped_column(String(100))
    target_blueprint: Mapped[str] = mapped_column(String(100))
    target_identifier: Mapped[str] = mapped_column(String(256))
    required: Mapped[bool] = mapped_column(default=False)


class Team(Base):
    __tablename__ = "teams"

    identifier: Mapped[str] = mapped_column(String(100), primary_key=True)
    title: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(Base):
    __tablename__ = "users"

    identifier: Mapped[str] = mapped_column(String(256), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(256), default="")
    role: Mapped[str] = mapped_column(String(20), default="member")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TeamMembership(Base):
    __tablename__ = "team_memberships"

    user: Mapped[str] = mapped_column(ForeignKey("users.identifier", ondelete="CASCADE"), primary_key=True)
    team: Mapped[str] = mapped_column(
        ForeignKey("teams.identifier", ondelete="CASCADE"), primary_key=True, index=True
    )


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user: Mapped[str] = mapped_column(ForeignKey("users.identifier", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(256))


class AuditRecord(Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_resource", "resource_type", "identifier"),
        Index("ix_audit_log_blueprint", "blueprint"),
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_actor", "actor"),
        Index("ix_audit_log_run_id", "run_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(256))
    operation: Mapped[str] = mapped_column(String(20))
    resource_type: Mapped[str] = mapped_column(String(40))
    identifier: Mapped[str] = mapped_column(String(256))
    blueprint: Mapped[str | None] = mapped_column(String(100))
    run_id: Mapped[str | None] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
