"""access control: blueprint moderators and permissions, shared rate-limit buckets, service role

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("blueprints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("moderators", _json(), nullable=False, server_default=sa.text("'{}'")))
        batch_op.add_column(sa.Column("permissions", _json(), nullable=False, server_default=sa.text("'{}'")))
    # Per-token request counters shared by every API process (fixed windows).
    op.create_table(
        "rate_limit_buckets",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
    )
    # The worker's bootstrap user was an admin; it is now the `service` principal.
    op.execute("UPDATE users SET role = 'service' WHERE identifier = 'gantry-worker'")
    # Emails are unique case-insensitively: store them lower-cased.
    op.execute("UPDATE users SET email = lower(email)")


def downgrade() -> None:
    op.drop_table("rate_limit_buckets")
    op.execute("UPDATE users SET role = 'admin' WHERE role = 'service'")
    with op.batch_alter_table("blueprints", schema=None) as batch_op:
        batch_op.drop_column("permissions")
        batch_op.drop_column("moderators")
