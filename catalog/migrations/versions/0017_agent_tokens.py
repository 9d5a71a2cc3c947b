"""agent tokens and the audit log's on_behalf_of

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import catalog.db

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # An agent token is an API token plus what narrows it; deleting the token (or its owner)
    # deletes the narrowing with it.
    op.create_table(
        "agent_tokens",
        sa.Column(
            "token_id", sa.String(40), sa.ForeignKey("api_tokens.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("allowed_actions", catalog.db.JSONType, nullable=False),
        sa.Column("runs_per_hour", sa.Integer(), nullable=True),
        sa.Column("read_only", sa.Boolean(), nullable=False),
    )
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("on_behalf_of", sa.String(256), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("on_behalf_of")
    op.drop_table("agent_tokens")
