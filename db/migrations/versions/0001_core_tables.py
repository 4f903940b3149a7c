"""Core review tables: models, component sets, components, reviewers, categories, reviews.

Revision ID: 0001
Revises:
Create Date: 2025-11-24

Written by hand with every constraint named, and independent of ``db.schema``: this file must go on creating
exactly these tables however the models change later.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

DEFAULT_CATEGORIES = ("sleeve", "colour", "layers", "length", "neckline", "pattern", "silhouette", "other")


def _timestamp(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("architecture", sa.JSON(), nullable=False),
        _timestamp("added_at"),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
        sa.UniqueConstraint("name", name="uq_models_name"),
        sa.UniqueConstraint("fingerprint", name="uq_models_fingerprint"),
    )
    op.create_table(
        "component_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(40), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("sample_count", sa.Integer(), nullable=False),
        sa.Column("review_seeds", sa.JSON(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_component_sets"),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name="fk_component_sets_model_id_models"),
        sa.CheckConstraint("sample_count >= 0", name="ck_component_sets_sample_count_nonnegative"),
    )
    op.create_index("ix_component_sets_model_id", "component_sets", ["model_id"])
    op.create_table(
        "components",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("set_id", sa.Integer(), nullable=False),
        sa.Column("component_index", sa.Integer(), nullable=False),
        sa.Column("w_dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("sigma", sa.Float(), nullable=False),
        sa.Column("eigenvalue", sa.Float(), nullable=True),
        sa.Column("effect", sa.Float(), nullable=True),
        sa.Column("consistency", sa.Float(), nullable=True),
        sa.Column("locality", sa.Float(), nullable=True),
        sa.Column("locality_where", sa.Text(), nullable=True),
        sa.Column("colour_share", sa.Float(), nullable=True),
        sa.Column("layer_sensitivity", sa.String(20), nullable=True),
        sa.Column("suggested_category", sa.String(60), nullable=True),
        sa.Column("priority", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_components"),
        sa.ForeignKeyConstraint(["set_id"], ["component_sets.id"], name="fk_components_set_id_component_sets"),
        sa.UniqueConstraint("set_id", "component_index", name="uq_components_set_id_index"),
    )
    op.create_table(
        "reviewers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_reviewers"),
        sa.UniqueConstraint("name", name="uq_reviewers_name"),
    )
    categories = op.create_table(
        "categories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(60), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        _timestamp("retired_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_categories"),
        sa.UniqueConstraint("name", name="uq_categories_name"),
    )
    op.bulk_insert(categories, [{"name": name, "position": i} for i, name in enumerate(DEFAULT_CATEGORIES)])
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=False),
        sa.Column("component_id", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(12), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("category_id", sa.Integer(), nullable=True),
        sa.Column("consistency", sa.Integer(), nullable=True),
        sa.Column("layer_start", sa.Integer(), nullable=True),
        sa.Column("layer_end", sa.Integer(), nullable=True),
        sa.Column("strength_min", sa.Float(), nullable=True),
        sa.Column("strength_max", sa.Float(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        _timestamp("created_at"),
        sa.Column("seconds_spent", sa.Float(), nullable=True),
        sa.Column("undoes_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_reviews"),
        sa.ForeignKeyConstraint(["reviewer_id"], ["reviewers.id"], name="fk_reviews_reviewer_id_reviewers"),
        sa.ForeignKeyConstraint(["component_id"], ["components.id"], name="fk_reviews_component_id_components"),
        sa.ForeignKeyConstraint(["category_id"], ["categories.id"], name="fk_reviews_category_id_categories"),
        sa.ForeignKeyConstraint(["undoes_id"], ["reviews.id"], name="fk_reviews_undoes_id_reviews"),
        sa.CheckConstraint(
            "decision IN ('approve', 'reject', 'unsure', 'skip', 'withdrawn')", name="ck_reviews_decision_known"
        ),
        sa.CheckConstraint(
            "consistency IS NULL OR (consistency BETWEEN 1 AND 5)", name="ck_reviews_consistency_1_to_5"
        ),
        sa.CheckConstraint(
            "(layer_start IS NULL AND layer_end IS NULL) OR (layer_start >= 0 AND layer_end > layer_start)",
            name="ck_reviews_layer_range_valid",
        ),
        sa.CheckConstraint(
            "(strength_min IS NULL AND strength_max IS NULL) OR (strength_max >= strength_min)",
            name="ck_reviews_strength_range_valid",
        ),
        sa.CheckConstraint("seconds_spent IS NULL OR seconds_spent >= 0", name="ck_reviews_seconds_nonnegative"),
        # Ids only grow ("latest" = highest id), even if a row were ever deleted.
        sqlite_autoincrement=True,
    )
    op.create_index("ix_reviews_component_reviewer", "reviews", ["component_id", "reviewer_id", "id"])
    op.create_index("ix_reviews_reviewer_id", "reviews", ["reviewer_id"])


def downgrade() -> None:
    op.drop_index("ix_reviews_reviewer_id", table_name="reviews")
    op.drop_index("ix_reviews_component_reviewer", table_name="reviews")
    op.drop_table("reviews")
    op.drop_table("categories")
    op.drop_table("reviewers")
    op.drop_table("components")
    op.drop_index("ix_component_sets_model_id", table_name="component_sets")
    op.drop_table("component_sets")
    op.drop_table("models")
