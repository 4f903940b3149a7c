"""Published directions keep their own σ (``sigma``, nullable).

Revision ID: 0003
Revises: 0002
Create Date: 2025-11-25

Until now a direction's σ was its component's, and supervised directions had none (sliders counted in vector
units), so an import lost a supervised direction's σ. Rows published from a component get that component's σ,
the value readers used for them anyway; supervised rows stay NULL, which readers take as 1.0.

Batch mode, as in 0002: PostgreSQL alters the table in place; SQLite adds the column in place and rebuilds the
table to drop it (the rebuild keeps the named constraints and the partial unique index on active names).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("published_directions") as batch:
        batch.add_column(sa.Column("sigma", sa.Float(), nullable=True))
    op.execute(
        sa.text(
            "UPDATE published_directions SET sigma = "
            "(SELECT components.sigma FROM components WHERE components.id = published_directions.component_id) "
            "WHERE component_id IS NOT NULL"
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("published_directions") as batch:
        batch.drop_column("sigma")
