"""events and timers

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import catalog.db

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("at", catalog.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=True),
        sa.Column("blueprint", sa.String(length=100), nullable=True),
        sa.Column("entity", sa.String(length=256), nullable=True),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column(
            "diff",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("delivered_at", catalog.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_entity", ["blueprint", "entity"], unique=False)
        batch_op.create_index("ix_events_type", ["type"], unique=False)
        batch_op.create_index("ix_events_undelivered", ["delivered_at", "id"], unique=False)

    op.create_table(
        "timers",
        sa.Column("id", sa.String(length=700), nullable=False),
        sa.Column("blueprint", sa.String(length=100), nullable=False),
        sa.Column("entity", sa.String(length=256), nullable=False),
        sa.Column("property", sa.String(length=100), nullable=False),
        sa.Column("deadline", catalog.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("armed_at", catalog.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("original_deadline", catalog.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "extensions",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "reminders",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("next_reminder", catalog.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("expired_at", catalog.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("on_expiry_run", sa.String(length=64), nullable=True),
        sa.Column("teardown", sa.String(length=20), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_at", catalog.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timers")),
    )
    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.create_index("ix_timers_entity", ["blueprint", "entity"], unique=False)
        batch_op.create_index("ix_timers_state_deadline", ["state", "deadline"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.drop_index("ix_timers_state_deadline")
        batch_op.drop_index("ix_timers_entity")

    op.drop_table("timers")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_undelivered")
        batch_op.drop_index("ix_events_type")
        batch_op.drop_index("ix_events_entity")

    op.drop_table("events")
