"""scorecards and automations

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import catalog.db

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "automations",
        sa.Column("identifier", sa.String(length=100), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column(
            "definition",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", catalog.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", catalog.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=True),
        sa.Column("updated_by", sa.String(length=256), nullable=True),
        sa.PrimaryKeyConstraint("identifier", name=op.f("pk_automations")),
    )
    with op.batch_alter_table("automations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_automations_event_type"), ["event_type"], unique=False)

    op.create_table(
        "scorecard_level_changes",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("blueprint", sa.String(length=100), nullable=False),
        sa.Column("entity", sa.String(length=256), nullable=False),
        sa.Column("scorecard", sa.String(length=100), nullable=False),
        sa.Column("from_level", sa.String(length=100), nullable=True),
        sa.Column("to_level", sa.String(length=100), nullable=False),
        sa.Column("at", catalog.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scorecard_level_changes")),
    )
    with op.batch_alter_table("scorecard_level_changes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_scorecard_level_changes_entity", ["blueprint", "entity", "scorecard"], unique=False
        )

    op.create_table(
        "scorecards",
        sa.Column("blueprint", sa.String(length=100), nullable=False),
        sa.Column("identifier", sa.String(length=100), nullable=False),
        sa.Column("title", sa.String(length=256), nullable=False),
        sa.Column(
            "definition",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", catalog.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", catalog.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=True),
        sa.Column("updated_by", sa.String(length=256), nullable=True),
        sa.ForeignKeyConstraint(
            ["blueprint"],
            ["blueprints.identifier"],
            name=op.f("fk_scorecards_blueprint_blueprints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("blueprint", "identifier", name=op.f("pk_scorecards")),
    )
    op.create_table(
        "scorecard_results",
        sa.Column("entity_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("blueprint", sa.String(length=100), nullable=False),
        sa.Column("scorecard", sa.String(length=100), nullable=False),
        sa.Column("level", sa.String(length=100), nullable=False),
        sa.Column("level_index", sa.Integer(), nullable=False),
        sa.Column(
            "rules",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("updated_at", catalog.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["entity_id"],
            ["entities.id"],
            name=op.f("fk_scorecard_results_entity_id_entities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("entity_id", "blueprint", "scorecard", name=op.f("pk_scorecard_results")),
    )
    with op.batch_alter_table("scorecard_results", schema=None) as batch_op:
        batch_op.create_index(
            "ix_scorecard_results_level", ["blueprint", "scorecard", "level_index"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("scorecard_results", schema=None) as batch_op:
        batch_op.drop_index("ix_scorecard_results_level")

    op.drop_table("scorecard_results")
    op.drop_table("scorecards")
    with op.batch_alter_table("scorecard_level_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_scorecard_level_changes_entity")

    op.drop_table("scorecard_level_changes")
    with op.batch_alter_table("automations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_automations_event_type"))

    op.drop_table("automations")
