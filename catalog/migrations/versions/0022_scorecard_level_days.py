"""the level history summed per day (burn-downs and trends read a row per day and level)

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import catalog.db

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Filled as it is read (catalog.scorecards.daily): nothing to copy here.
    op.create_table(
        "scorecard_level_days",
        sa.Column("blueprint", sa.String(100), primary_key=True),
        sa.Column("scorecard", sa.String(100), primary_key=True),
        sa.Column("day", sa.Integer(), primary_key=True),
        sa.Column("level", sa.String(100), primary_key=True),
        sa.Column("entities", sa.Integer(), nullable=False),
    )
    op.create_table(
        "scorecard_level_days_marks",
        sa.Column("blueprint", sa.String(100), primary_key=True),
        sa.Column("scorecard", sa.String(100), primary_key=True),
        sa.Column("through", catalog.db.UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_scorecard_level_changes_time", "scorecard_level_changes", ["blueprint", "scorecard", "at"]
    )


def downgrade() -> None:
    op.drop_index("ix_scorecard_level_changes_time", table_name="scorecard_level_changes")
    op.drop_table("scorecard_level_days_marks")
    op.drop_table("scorecard_level_days")
