"""data sources: the relations a source set (its own, like its properties), and the
repositories a scoped (push webhook) sync read

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("entities") as batch:
        batch.add_column(sa.Column("source_relations", _json(), nullable=True))
    with op.batch_alter_table("data_source_syncs") as batch:
        batch.add_column(sa.Column("repositories", _json(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("data_source_syncs") as batch:
        batch.drop_column("repositories")
    with op.batch_alter_table("entities") as batch:
        batch.drop_column("source_relations")
