"""web portal sessions and one-time sign-in codes

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

import catalog.db

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def _at(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, catalog.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    # A session lives only as long as the API token it was opened with: deleting the token
    # (or its user) ends every browser session opened with it.
    op.create_table(
        "web_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column(
            "token_id", sa.String(40), sa.ForeignKey("api_tokens.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("user", sa.String(256), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        _at("created_at"),
        _at("expires_at"),
        _at("revoked_at", nullable=True),
    )
    op.create_index("ix_web_sessions_token_id", "web_sessions", ["token_id"])
    op.create_table(
        "web_sign_in_codes",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column(
            "token_id", sa.String(40), sa.ForeignKey("api_tokens.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("user", sa.String(256), nullable=False),
        _at("created_at"),
        _at("expires_at"),
        _at("used_at", nullable=True),
    )
    op.create_index("ix_web_sign_in_codes_token_id", "web_sign_in_codes", ["token_id"])


def downgrade() -> None:
    op.drop_table("web_sign_in_codes")
    op.drop_table("web_sessions")
