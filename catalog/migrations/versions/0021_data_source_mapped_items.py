"""data sources: what each raw item mapped to, so a re-sync maps only what changed

Revision ID: 0021
Revises: 0020

``data_source_mapped_items(data_source, resource, item_hash)``: a raw item's mapping outcome
(the entities it maps to, or null when the selector dropped it) under a hash of the item's JSON
and of its resource's definition, with the last sync that used it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "data_source_mapped_items",
        sa.Column(
            "data_source",
            sa.String(100),
            sa.ForeignKey("data_sources.identifier", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("resource", sa.Integer(), primary_key=True),
        sa.Column("item_hash", sa.String(64), primary_key=True),
        sa.Column("entities", sa.JSON(), nullable=True),
        sa.Column("sync_id", sa.String(200), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("data_source_mapped_items")
