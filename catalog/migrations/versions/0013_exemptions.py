"""scorecard exemptions, and the exempted rules on results and in the level history

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import catalog.db

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _at(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, catalog.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "scorecard_exemptions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("blueprint", sa.String(100), nullable=False),
        sa.Column("scorecard", sa.String(100), nullable=False),
        sa.Column(
            "entity_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("entities.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("entity", sa.String(256), nullable=False),
        sa.Column("rule", sa.String(100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        _at("expires_at"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("requested_by", sa.String(256), nullable=False),
        _at("created_at"),
        _at("updated_at"),
        sa.Column("decided_by", sa.String(256)),
        _at("ended_at", nullable=True),
        sa.UniqueConstraint("run_id", name="uq_scorecard_exemptions_run"),
    )
    op.create_index(
        "ix_scorecard_exemptions_grading",
        "scorecard_exemptions",
        ["blueprint", "scorecard", "status", "entity_id"],
    )
    op.create_index(
        "ix_scorecard_exemptions_created",
        "scorecard_exemptions",
        ["blueprint", "scorecard", "created_at", "id"],
    )
    op.create_index("ix_scorecard_exemptions_entity_id", "scorecard_exemptions", ["entity_id"])
    op.add_column("scorecard_results", sa.Column("exempt", _json(), nullable=True))
    op.add_column("scorecard_level_changes", sa.Column("exempt", _json(), nullable=True))


def downgrade() -> None:
    op.drop_column("scorecard_level_changes", "exempt")
    op.drop_column("scorecard_results", "exempt")
    op.drop_index("ix_scorecard_exemptions_entity_id", table_name="scorecard_exemptions")
    op.drop_index("ix_scorecard_exemptions_created", table_name="scorecard_exemptions")
    op.drop_index("ix_scorecard_exemptions_grading", table_name="scorecard_exemptions")
    op.drop_table("scorecard_exemptions")
