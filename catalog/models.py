"""ORM models of the catalog: blueprints, entities and their relations, identity and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

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
    # Computed properties (catalog/computed/service.py), stored in the entities' ``properties``.
    mirror_properties: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    aggregation_properties: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Access control (catalog/identity/permissions.py): {"users": [], "teams": []} and Port-shaped policies.
    moderators: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    permissions: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Bumped on every change: the validator cache is keyed by (identifier, version).
    version: Mapped[int] = mapped_column(Integer, default=1)


class Entity(Timestamped, Base):
    __tablename__ = "entities"
    __table_args__ = (
        UniqueConstraint("blueprint", "identifier", name="uq_entities_blueprint_identifier"),
        Index("ix_entities_identifier", "identifier"),
        Index("ix_entities_updated_at", "updated_at"),
        Index("ix_entities_blueprint_id", "blueprint", "id"),
        # PostgreSQL also has GIN (jsonb_path_ops) indexes on properties and team (migration 0002);
        # both dialects have expression indexes for the search's title and identifier sorts
        # (migration 0019).
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    blueprint: Mapped[str] = mapped_column(ForeignKey("blueprints.identifier", ondelete="CASCADE"))
    identifier: Mapped[str] = mapped_column(String(256))
    title: Mapped[str | None] = mapped_column(String(512))
    team: Mapped[list[str]] = mapped_column(JSONType, default=list)
    properties: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    relations: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # The data source that wrote the entity (None: made by hand), the index of its resource,
    # and the properties and relations it set (users may not change those:
    # catalog/entities/permissions.py).
    source_data_source: Mapped[str | None] = mapped_column(String(100), index=True)
    source_resource: Mapped[int | None] = mapped_column(Integer)
    source_properties: Mapped[list[str] | None] = mapped_column(JSONType)
    source_relations: Mapped[list[str] | None] = mapped_column(JSONType)


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


class EntityTeam(Base):
    """One owning team of an entity, kept beside ``Entity.team`` by the write pipeline
    (``catalog.changes.pipeline``) so the read filter and ``$team`` rules find an owner's
    entities by index instead of reading every entity's JSON array."""

    __tablename__ = "entity_teams"
    __table_args__ = (Index("ix_entity_teams_team", "team", "entity_id"),)

    entity_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("entities.id", ondelete="CASCADE"), primary_key=True
    )
    team: Mapped[str] = mapped_column(String(100), primary_key=True)


class Team(Base):
    __tablename__ = "teams"

    identifier: Mapped[str] = mapped_column(String(100), primary_key=True)
    title: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RateLimitBucket(Base):
    """A fixed-window request counter per token and kind, shared by every API process."""

    __tablename__ = "rate_limit_buckets"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(Integer)


class User(Base):
    __tablename__ = "users"

    identifier: Mapped[str] = mapped_column(String(256), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(256), default="")
    # admin | member | viewer | service (the worker; never a human, never an approver)
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


class AgentToken(Base):
    """What narrows an API token of ``kind: agent``: its name, the actions it may launch, its
    budget of runs per hour and whether it only reads. Its ``api_tokens`` row holds the owner."""

    __tablename__ = "agent_tokens"

    token_id: Mapped[str] = mapped_column(ForeignKey("api_tokens.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    allowed_actions: Mapped[list[str]] = mapped_column(JSONType, default=list)
    runs_per_hour: Mapped[int | None] = mapped_column(Integer)
    read_only: Mapped[bool] = mapped_column(Boolean, default=False)


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
    # The owner of the agent token that wrote (``actor`` is then ``agent:{name}``).
    on_behalf_of: Mapped[str | None] = mapped_column(String(256))
    operation: Mapped[str] = mapped_column(String(20))
    resource_type: Mapped[str] = mapped_column(String(40))
    identifier: Mapped[str] = mapped_column(String(256))
    blueprint: Mapped[str | None] = mapped_column(String(100))
    run_id: Mapped[str | None] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class Action(Timestamped, Base):
    """A self-service action definition (README: Self-service actions), validated when saved."""

    __tablename__ = "actions"

    identifier: Mapped[str] = mapped_column(String(100), primary_key=True)
    title: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    blueprint: Mapped[str | None] = mapped_column(String(100), index=True)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    version: Mapped[int] = mapped_column(Integer, default=1)


class Run(Base):
    """One launch of an action; its workflow is ``action:{action}:{id}``."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_action_status", "action", "status"),
        Index("ix_runs_entity", "blueprint", "entity"),
        Index("ix_runs_status", "status"),
        Index("ix_runs_created", "created_at", "id"),
        Index("ix_runs_parent", "parent_run_id"),
        UniqueConstraint("idempotency_scope", name="uq_runs_idempotency_scope"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    action: Mapped[str] = mapped_column(String(100))
    action_title: Mapped[str] = mapped_column(String(256), default="")
    blueprint: Mapped[str | None] = mapped_column(String(100))
    entity: Mapped[str | None] = mapped_column(String(256))
    inputs: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Secret inputs, encrypted with GANTRY_SECRET_KEY; never returned by the API.
    secret_inputs: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32))
    status_label: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16), default="API")
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    approval: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    links: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    affected_entities: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    error: Mapped[str | None] = mapped_column(Text)
    workflow_id: Mapped[str] = mapped_column(String(256))
    idempotency_scope: Mapped[str | None] = mapped_column(String(600))
    # For AUTOMATION runs: {"automation", "event_id", "depth"}; links the run to its event.
    trigger: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # The action as the run started it (its version and definition): edits and deletes of the
    # action never change a run, and a retry resumes with the same steps. None before 0016.
    action_version: Mapped[int | None] = mapped_column(Integer)
    definition: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # The newest workflow report applied (its ``report_seq``): an older one, retried late, does
    # not move the run back. None until a worker that numbers its reports reports.
    report_seq: Mapped[int | None] = mapped_column(Integer)
    # A sub-action's run: the run whose step launched it (``trigger`` names the step).
    parent_run_id: Mapped[str | None] = mapped_column(String(64))
    # The runs this run's sub-action steps launched, oldest first (read through ix_runs_parent).
    child_runs: Mapped[list[Run]] = relationship(
        "Run", primaryjoin="Run.id == foreign(Run.parent_run_id)", viewonly=True, order_by="Run.created_at"
    )


class RunLog(Base):
    """A run's log line. The workflow numbers its lines (``seq``) so a retried report never
    doubles one; lines the API writes itself have no seq."""

    __tablename__ = "run_logs"
    __table_args__ = (UniqueConstraint("run_id", "seq", name="uq_run_logs_run_seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    seq: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    level: Mapped[str] = mapped_column(String(10), default="INFO")
    step_id: Mapped[str | None] = mapped_column(String(100))
    message: Mapped[str] = mapped_column(Text)


class RunApprover(Base):
    """Who may decide a run's approvals: ``GET /v1/runs?approver=me`` reads this."""

    __tablename__ = "run_approvers"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    user: Mapped[str] = mapped_column(String(256), primary_key=True, index=True)


class Event(Base):
    """The outbox: every change worth reacting to, written in the same transaction as the
    change and relayed to Temporal afterwards (at least once; deliveries are idempotent)."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_undelivered", "delivered_at", "id"),
        Index("ix_events_entity", "blueprint", "entity"),
        Index("ix_events_type", "type"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str | None] = mapped_column(String(256))
    blueprint: Mapped[str | None] = mapped_column(String(100))
    entity: Mapped[str | None] = mapped_column(String(256))
    run_id: Mapped[str | None] = mapped_column(String(64))
    diff: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # How many automation-caused hops led here (loop guard).
    depth: Mapped[int] = mapped_column(Integer, default=0)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class Timer(Base):
    """A ``format: timer`` property that is set: its durable workflow is ``id``."""

    __tablename__ = "timers"
    __table_args__ = (
        Index("ix_timers_state_deadline", "state", "deadline"),
        Index("ix_timers_entity", "blueprint", "entity"),
    )

    id: Mapped[str] = mapped_column(String(700), primary_key=True)
    blueprint: Mapped[str] = mapped_column(String(100))
    entity: Mapped[str] = mapped_column(String(256))
    property: Mapped[str] = mapped_column(String(100))
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # active | expired | cleared
    state: Mapped[str] = mapped_column(String(20), default="active")
    armed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    original_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    extensions: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    reminders: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    next_reminder: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    on_expiry_run: Mapped[str | None] = mapped_column(String(64))
    # what happened after expiry: pending | running | done | failed | none
    teardown: Mapped[str | None] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Scorecard(Timestamped, Base):
    """Levels and rules that grade a blueprint's entities (README: Scorecards)."""

    __tablename__ = "scorecards"

    blueprint: Mapped[str] = mapped_column(
        ForeignKey("blueprints.identifier", ondelete="CASCADE"), primary_key=True
    )
    identifier: Mapped[str] = mapped_column(String(100), primary_key=True)
    title: Mapped[str] = mapped_column(String(256))
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    version: Mapped[int] = mapped_column(Integer, default=1)


class ScorecardResult(Base):
    """An entity's grade on a scorecard: its level (title and position) and each rule's outcome."""

    __tablename__ = "scorecard_results"
    __table_args__ = (Index("ix_scorecard_results_level", "blueprint", "scorecard", "level_index"),)

    entity_id: Mapped[int] = mapped_column(ForeignKey("entities.id", ondelete="CASCADE"), primary_key=True)
    blueprint: Mapped[str] = mapped_column(String(100), primary_key=True)
    scorecard: Mapped[str] = mapped_column(String(100), primary_key=True)
    level: Mapped[str] = mapped_column(String(100))
    level_index: Mapped[int] = mapped_column(Integer)
    # rule identifier -> passed (an exempted rule counts as passed)
    rules: Mapped[dict[str, bool]] = mapped_column(JSONType, default=dict)
    # rule identifier -> {"id", "reason", "expires_at"}: the failing rules an approved exemption
    # excuses (None: none)
    exempt: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ScorecardLevelChange(Base):
    """Level history, one row per change, per entity and scorecard."""

    __tablename__ = "scorecard_level_changes"
    __table_args__ = (Index("ix_scorecard_level_changes_entity", "blueprint", "entity", "scorecard"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    blueprint: Mapped[str] = mapped_column(String(100))
    entity: Mapped[str] = mapped_column(String(256))
    scorecard: Mapped[str] = mapped_column(String(100))
    from_level: Mapped[str | None] = mapped_column(String(100))
    to_level: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The rules exempted when the level changed (None: none), as in ``ScorecardResult.exempt``.
    exempt: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class Automation(Timestamped, Base):
    """When an event matches (type, blueprint, jq condition), invoke an action (README: Automations)."""

    __tablename__ = "automations"

    identifier: Mapped[str] = mapped_column(String(100), primary_key=True)
    enabled: Mapped[bool] = mapped_column(default=True)
    event_type: Mapped[str] = mapped_column(String(40), index=True)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)


class DataSource(Timestamped, Base):
    """A data source (README: Data sources): where entities come from and how they are mapped.
    ``definition`` is the saved body, Port Ocean's resource shape as is."""

    __tablename__ = "data_sources"

    identifier: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    version: Mapped[int] = mapped_column(Integer, default=1)


class DataSourceSync(Base):
    """One sync of a data source: its status, counts, errors and timings."""

    __tablename__ = "data_source_syncs"
    __table_args__ = (Index("ix_data_source_syncs_started", "data_source", "started_at", "id"),)

    data_source: Mapped[str] = mapped_column(
        ForeignKey("data_sources.identifier", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    trigger: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    seen: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    deleted: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    # Item errors ({key, resource, pointer, message}, the first MAX_ERRORS) and sync errors.
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    warnings: Mapped[list[str]] = mapped_column(JSONType, default=list)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str | None] = mapped_column(String(256))
    # A push webhook's sync reads only these repositories (``owner/name``) of a files source,
    # and deletes only stale entities located in them. None: the whole source.
    repositories: Mapped[list[str] | None] = mapped_column(JSONType)


class DataSourceSyncPage(Base):
    """A page of raw items a sync applied, with its answer: a page sent again answers this."""

    __tablename__ = "data_source_sync_pages"

    data_source: Mapped[str] = mapped_column(String(100), primary_key=True)
    sync_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    resource: Mapped[int] = mapped_column(Integer, primary_key=True)
    # sha256 of the page's cursor: cursors can be long
    page: Mapped[str] = mapped_column(String(64), primary_key=True)
    result: Mapped[dict[str, Any]] = mapped_column(JSONType)


class DataSourceSeen(Base):
    """An entity a running sync saw: stale deletion removes the source's entities not seen."""

    __tablename__ = "data_source_seen"

    data_source: Mapped[str] = mapped_column(String(100), primary_key=True)
    sync_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    blueprint: Mapped[str] = mapped_column(String(100), primary_key=True)
    identifier: Mapped[str] = mapped_column(String(256), primary_key=True)


class WebhookDelivery(Base):
    """A delivery to a webhook source, stored before its 202 and applied by the processor."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("data_source", "delivery_id", name="uq_webhook_deliveries_delivery"),
        Index("ix_webhook_deliveries_pending", "status", "id"),
        Index("ix_webhook_deliveries_source", "data_source", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    data_source: Mapped[str] = mapped_column(ForeignKey("data_sources.identifier", ondelete="CASCADE"))
    delivery_id: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # {"body", "headers" (lower-cased), "query"}: what the mappings see
    envelope: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # PENDING | APPLIED | IGNORED | FAILED
    status: Mapped[str] = mapped_column(String(16), default="PENDING")
    outcome: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Initiative(Timestamped, Base):
    """Scorecard targets to reach by a deadline (README: Initiatives); its durable workflow is
    ``initiative:{identifier}``. ``definition`` is the saved body; ``report`` the progress the
    workflow stored at the deadline; ``reminders`` the reminders sent (one entry each)."""

    __tablename__ = "initiatives"

    identifier: Mapped[str] = mapped_column(String(100), primary_key=True)
    title: Mapped[str] = mapped_column(String(256))
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    deadline: Mapped[datetime] = mapped_column(UTCDateTime)
    reminders: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)


# Trends and initiative burn-downs read a scorecard's level history entity by entity, in time order.
Index(
    "ix_scorecard_level_changes_trend",
    ScorecardLevelChange.blueprint,
    ScorecardLevelChange.scorecard,
    ScorecardLevelChange.entity,
    ScorecardLevelChange.at,
)


class ScorecardExemption(Base):
    """One entity excused from one scorecard rule until ``expires_at`` (README: Exemptions).

    PENDING while its approval run (``run_id``) waits; APPROVED, the rule counts as passed while
    ``expires_at`` is ahead; DECLINED, REVOKED and EXPIRED are final."""

    __tablename__ = "scorecard_exemptions"
    __table_args__ = (
        Index("ix_scorecard_exemptions_grading", "blueprint", "scorecard", "status", "entity_id"),
        Index("ix_scorecard_exemptions_created", "blueprint", "scorecard", "created_at", "id"),
        UniqueConstraint("run_id", name="uq_scorecard_exemptions_run"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    blueprint: Mapped[str] = mapped_column(String(100))
    scorecard: Mapped[str] = mapped_column(String(100))
    entity_id: Mapped[int] = mapped_column(ForeignKey("entities.id", ondelete="CASCADE"), index=True)
    entity: Mapped[str] = mapped_column(String(256))
    rule: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[str] = mapped_column(String(64))
    requested_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Who approved or declined (the approval run's decision), or revoked it.
    decided_by: Mapped[str | None] = mapped_column(String(256))
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ScorecardLevelDay(Base):
    """The level history summed per day (``catalog.scorecards.daily``): on ``day`` (days since
    1970-01-01, UTC) the number of entities whose latest level on the scorecard is ``level``
    moved by ``entities`` (+1 for each change to it, -1 for each change away from it)."""

    __tablename__ = "scorecard_level_days"

    blueprint: Mapped[str] = mapped_column(String(100), primary_key=True)
    scorecard: Mapped[str] = mapped_column(String(100), primary_key=True)
    day: Mapped[int] = mapped_column(Integer, primary_key=True)
    level: Mapped[str] = mapped_column(String(100), primary_key=True)
    entities: Mapped[int] = mapped_column(Integer)


class ScorecardLevelDaysMark(Base):
    """How far a scorecard's daily summary reaches: every level change before ``through`` is
    summed into its ``scorecard_level_days`` rows, none after."""

    __tablename__ = "scorecard_level_days_marks"

    blueprint: Mapped[str] = mapped_column(String(100), primary_key=True)
    scorecard: Mapped[str] = mapped_column(String(100), primary_key=True)
    through: Mapped[datetime] = mapped_column(UTCDateTime)


# The daily summary reads a scorecard's level changes of a span of time (those not summed yet).
Index(
    "ix_scorecard_level_changes_time",
    ScorecardLevelChange.blueprint,
    ScorecardLevelChange.scorecard,
    ScorecardLevelChange.at,
)
