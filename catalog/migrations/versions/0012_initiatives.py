"""initiatives, and the level history indexed by time (trends, burn-downs)

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import catalog.db

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _at(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, catalog.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "initiatives",
        sa.Column("identifier", sa.String(100), primary_key=True),
        sa.Column("title", sa.String(256), nullable=False),
        sa.Column("definition", _json(), nullable=False),
        _at("deadline"),
        sa.Column("reminders", _json(), nullable=False),
        sa.Column("report", _json()),
        _at("reported_at", nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        _at("created_at"),
        _at("updated_at"),
        sa.Column("created_by", sa.String(256)),
        sa.Column("updated_by", sa.String(256)),
    )
    op.create_index(
        "ix_scorecard_level_changes_trend",
        "scorecard_level_changes",
        ["blueprint", "scorecard", "entity", "at"],
    )


def downgrade() -> None:
    op.drop_index("ix_scorecard_level_changes_trend", table_name="scorecard_level_changes")
    op.drop_table("initiatives")
