"""search indexes

Revision ID: 0002
Revises: 0001

- ``ix_entities_blueprint_id`` (both dialects): ``GET /v1/blueprints/{bp}/entities`` pages by
  ``WHERE blueprint = ? AND id > ? ORDER BY id``.
- PostgreSQL only: GIN ``jsonb_path_ops`` indexes on ``entities.properties`` and ``entities.team``,
  which serve the ``@>`` containment the query compiler emits for ``= in contains containsAny``.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_entities_blueprint_id", "entities", ["blueprint", "id"])
    if op.get_bind().dialect.name == "postgresql":
        for column in ("properties", "team"):
            op.create_index(
                f"ix_entities_{column}_gin",
                "entities",
                [column],
                postgresql_using="gin",
                postgresql_ops={column: "jsonb_path_ops"},
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for column in ("properties", "team"):
            op.drop_index(f"ix_entities_{column}_gin", table_name="entities")
    op.drop_index("ix_entities_blueprint_id", table_name="entities")
