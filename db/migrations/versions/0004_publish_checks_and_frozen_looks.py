"""Publishing records its checks; looks record the model they were made on.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

- ``published_directions.measured_effect`` (nullable float): the mean image change the publish check measured at
  the slider's ends, so a later reader can see what the slider did when it went out. NULL for older rows.
- ``published_directions.override_reasons`` (nullable JSON list of text): the refusals someone overrode to publish
  anyway (a dead slider, a component in conflict, approvals that disagree on the layers). NULL when none were.
- ``looks.model_fingerprint`` (nullable, 64 hex): the weights a look was designed on. Looks saved from now on also
  keep each edit's exact vector, layers and σ inside ``edits``; older looks have neither and keep re-applying
  today's sliders by name, as they always did.

Batch mode, as in 0002 and 0003, so SQLite rebuilds the tables to drop the columns on downgrade.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("published_directions") as batch:
        batch.add_column(sa.Column("measured_effect", sa.Float(), nullable=True))
        batch.add_column(sa.Column("override_reasons", sa.JSON(), nullable=True))
    with op.batch_alter_table("looks") as batch:
        batch.add_column(sa.Column("model_fingerprint", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("looks") as batch:
        batch.drop_column("model_fingerprint")
    with op.batch_alter_table("published_directions") as batch:
        batch.drop_column("override_reasons")
        batch.drop_column("measured_effect")
