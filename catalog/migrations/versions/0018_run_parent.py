"""runs launched by another run (sub-actions) name their parent

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No foreign key: a run's record outlives nothing it points at, and the parent's children
    # are read through this index.
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_run_id", sa.String(64), nullable=True))
        batch_op.create_index("ix_runs_parent", ["parent_run_id"])


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_parent")
        batch_op.drop_column("parent_run_id")
