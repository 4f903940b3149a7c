"""Published directions and saved looks; components gain a ``dead`` flag.

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-24

The ``dead`` column goes through batch mode so SQLite, which cannot alter most things in place, rebuilds the
table when it has to (the downgrade drops the column that way) while PostgreSQL just alters it.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("components") as batch:
        batch.add_column(sa.Column("dead", sa.Boolean(), nullable=False, server_default=sa.false()))

    op.create_table(
        "published_directions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("category_id", sa.Integer(), nullable=True),
        sa.Column("w_dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("layer_start", sa.Integer(), nullable=False),
        sa.Column("layer_end", sa.Integer(), nullable=False),
        sa.Column("strength_min", sa.Float(), nullable=False),
        sa.Column("strength_max", sa.Float(), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("component_id", sa.Integer(), nullable=True),
        sa.Column("published_by", sa.Integer(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unpublished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unpublished_by", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_published_directions"),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name="fk_published_directions_model_id_models"),
        sa.ForeignKeyConstraint(
            ["category_id"], ["categories.id"], name="fk_published_directions_category_id_categories"
        ),
        sa.ForeignKeyConstraint(
            ["component_id"], ["components.id"], name="fk_published_directions_component_id_components"
        ),
        sa.ForeignKeyConstraint(
            ["published_by"], ["reviewers.id"], name="fk_published_directions_published_by_reviewers"
        ),
        sa.ForeignKeyConstraint(
            ["unpublished_by"], ["reviewers.id"], name="fk_published_directions_unpublished_by_reviewers"
        ),
        sa.CheckConstraint("source IN ('component', 'supervised')", name="ck_published_directions_source_known"),
        sa.CheckConstraint(
            "layer_start >= 0 AND layer_end > layer_start", name="ck_published_directions_layer_range_valid"
        ),
        sa.CheckConstraint("strength_max >= strength_min", name="ck_published_directions_strength_range_valid"),
    )
    # One active direction per (model, name); unpublished history rows are exempt.
    op.create_index(
        "uq_published_directions_active_name",
        "published_directions",
        ["model_id", "name"],
        unique=True,
        sqlite_where=sa.text("unpublished_at IS NULL"),
        postgresql_where=sa.text("unpublished_at IS NULL"),
    )

    op.create_table(
        "looks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("psi", sa.Float(), nullable=False),
        sa.Column("class_index", sa.Integer(), nullable=True),
        sa.Column("edits", sa.JSON(), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_looks"),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name="fk_looks_model_id_models"),
        sa.ForeignKeyConstraint(["reviewer_id"], ["reviewers.id"], name="fk_looks_reviewer_id_reviewers"),
        sa.CheckConstraint("seed >= 0 AND seed <= 4294967295", name="ck_looks_seed_uint32"),
    )
    op.create_index("ix_looks_model_id", "looks", ["model_id"])


def downgrade() -> None:
    op.drop_index("ix_looks_model_id", table_name="looks")
    op.drop_table("looks")
    op.drop_index("uq_published_directions_active_name", table_name="published_directions")
    op.drop_table("published_directions")
    with op.batch_alter_table("components") as batch:
        batch.drop_column("dead")
