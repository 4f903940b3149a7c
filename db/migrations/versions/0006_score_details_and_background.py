"""Components keep the ingredients of their review priority; "background" becomes a category.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

- ``components.score_details`` (nullable JSON text): what the scorer measured for each side of the edit and each
  layer group (visible share, consistency, how much the figure fades), which side and layers the priority was
  taken from, and the one-line reason the Review page and ``atelier queue`` show ("why is this here?"). NULL for
  components scored before this revision; their priority still orders the queue.
- A ``background`` category, because the scorer suggests it and a suggestion must be something the review form
  can pre-fill. Added at the end of the list unless the team already has a category of that name (retired or not).

Batch mode, as in 0002–0005, so SQLite rebuilds the table to drop the column on downgrade. The downgrade keeps the
category: reviews may already name it.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("components") as batch:
        batch.add_column(sa.Column("score_details", sa.Text(), nullable=True))
    categories = sa.table("categories", sa.column("name", sa.String), sa.column("position", sa.Integer))
    connection = op.get_bind()
    exists = connection.execute(sa.select(sa.func.count()).select_from(categories)
                                .where(categories.c.name == "background")).scalar()
    if not exists:
        last = connection.execute(sa.select(sa.func.max(categories.c.position))).scalar() or 0
        connection.execute(categories.insert().values(name="background", position=last + 1))


def downgrade() -> None:
    with op.batch_alter_table("components") as batch:
        batch.drop_column("score_details")
