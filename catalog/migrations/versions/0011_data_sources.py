"""data sources: definitions, sync records, applied pages, seen entities, webhook deliveries,
and the source that wrote each entity

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import catalog.db

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _at(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, catalog.db.UTCDateTime(timezone=True), nullable=nullable)


def _count(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.Integer(), nullable=False, server_default=sa.text("0"))


def upgrade() -> None:
    op.create_table(
        "data_sources",
        sa.Column("identifier", sa.String(100), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("definition", _json(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _at("created_at"),
        _at("updated_at"),
        sa.Column("created_by", sa.String(256)),
        sa.Column("updated_by", sa.String(256)),
    )
    op.create_table(
        "data_source_syncs",
        sa.Column(
            "data_source",
            sa.String(100),
            sa.ForeignKey("data_sources.identifier", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        *(_count(n) for n in ("seen", "created", "updated", "unchanged", "deleted", "failed")),
        sa.Column("errors", _json(), nullable=False),
        sa.Column("warnings", _json(), nullable=False),
        _at("started_at"),
        _at("ended_at", nullable=True),
        sa.Column("created_by", sa.String(256)),
    )
    op.create_index("ix_data_source_syncs_started", "data_source_syncs", ["data_source", "started_at", "id"])
    op.create_table(
        "data_source_sync_pages",
        sa.Column("data_source", sa.String(100), primary_key=True),
        sa.Column("sync_id", sa.String(200), primary_key=True),
        sa.Column("resource", sa.Integer(), primary_key=True),
        sa.Column("page", sa.String(64), primary_key=True),
        sa.Column("result", _json(), nullable=False),
    )
    op.create_table(
        "data_source_seen",
        sa.Column("data_source", sa.String(100), primary_key=True),
        sa.Column("sync_id", sa.String(200), primary_key=True),
        sa.Column("blueprint", sa.String(100), primary_key=True),
        sa.Column("identifier", sa.String(256), primary_key=True),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column(
            "data_source",
            sa.String(100),
            sa.ForeignKey("data_sources.identifier", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("delivery_id", sa.String(200), nullable=False),
        _at("received_at"),
        sa.Column("envelope", _json(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outcome", _json()),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        _at("processed_at", nullable=True),
        sa.UniqueConstraint("data_source", "delivery_id", name="uq_webhook_deliveries_delivery"),
    )
    op.create_index("ix_webhook_deliveries_pending", "webhook_deliveries", ["status", "id"])
    op.create_index("ix_webhook_deliveries_source", "webhook_deliveries", ["data_source", "id"])
    with op.batch_alter_table("entities", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_data_source", sa.String(100), nullable=True))
        batch_op.add_column(sa.Column("source_resource", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("source_properties", _json(), nullable=True))
        batch_op.create_index("ix_entities_source_data_source", ["source_data_source"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("entities", schema=None) as batch_op:
        batch_op.drop_index("ix_entities_source_data_source")
        batch_op.drop_column("source_properties")
        batch_op.drop_column("source_resource")
        batch_op.drop_column("source_data_source")
    op.drop_table("webhook_deliveries")
    op.drop_table("data_source_seen")
    op.drop_table("data_source_sync_pages")
    op.drop_table("data_source_syncs")
    op.drop_table("data_sources")
