"""run approvers

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_approvers",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("user", sa.String(length=256), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_run_approvers_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "user", name=op.f("pk_run_approvers")),
    )
    with op.batch_alter_table("run_approvers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_run_approvers_user"), ["user"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("run_approvers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_run_approvers_user"))

    op.drop_table("run_approvers")
