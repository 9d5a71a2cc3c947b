"""entity_teams and the search's sort indexes

Revision ID: 0019
Revises: 0018

- ``entity_teams(entity_id, team)``: one row per owning team of an entity, kept by the write
  pipeline, indexed by ``(team, entity_id)``: the read filter of an ``owned_by_team`` blueprint and
  ``$team`` rules find a team's entities by index instead of reading every entity's ``team``
  array. Backfilled from ``entities.team``.
- Sorting a blueprint's entities by title (either order) or by identifier walks an index in the
  sort's order (``catalog.entities.search`` builds exactly these expressions), so a page is read
  from the index instead of sorting every match. On SQLite the unique ``(blueprint,
  identifier)`` index already serves the identifier order; PostgreSQL compares identifiers by
  code point (``COLLATE "C"``), which the default collation's index does not serve.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TITLE_MISSING = "(CASE WHEN title IS NULL THEN 1 ELSE 0 END)"


def _sort_indexes(dialect: str) -> dict[str, list[str]]:
    collate = ' COLLATE "C"' if dialect == "postgresql" else ""
    title = f"(coalesce(title, ''){collate})"
    indexes = {
        "ix_entities_title_asc": ["blueprint", TITLE_MISSING, title, "id"],
        "ix_entities_title_desc": ["blueprint", TITLE_MISSING, f"{title} DESC", "id"],
    }
    if dialect == "postgresql":
        # Walked backwards for the descending order: identifiers are unique per blueprint, so
        # the id tie-breaker (ascending in both orders) costs an incremental sort of one row each.
        indexes["ix_entities_identifier_sort"] = ["blueprint", '(identifier COLLATE "C")', "id"]
    return indexes


def upgrade() -> None:
    op.create_table(
        "entity_teams",
        sa.Column(
            "entity_id",
            BigId,
            sa.ForeignKey("entities.id", ondelete="CASCADE", name="fk_entity_teams_entity_id_entities"),
            nullable=False,
        ),
        sa.Column("team", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("entity_id", "team", name="pk_entity_teams"),
    )
    op.create_index("ix_entity_teams_team", "entity_teams", ["team", "entity_id"])
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(
            "INSERT INTO entity_teams (entity_id, team)"
            " SELECT DISTINCT e.id, t.team FROM entities e, jsonb_array_elements_text(e.team) AS t(team)"
            " WHERE jsonb_typeof(e.team) = 'array'"
        )
    else:
        op.execute(
            "INSERT INTO entity_teams (entity_id, team)"
            " SELECT DISTINCT e.id, t.value FROM entities e, json_each(e.team) AS t"
            " WHERE json_valid(e.team) AND json_type(e.team) = 'array' AND t.type = 'text'"
        )
    for name, columns in _sort_indexes(dialect).items():
        op.create_index(name, "entities", [sa.text(c) for c in columns])


def downgrade() -> None:
    for name in _sort_indexes(op.get_bind().dialect.name):
        op.drop_index(name, table_name="entities")
    op.drop_index("ix_entity_teams_team", table_name="entity_teams")
    op.drop_table("entity_teams")
