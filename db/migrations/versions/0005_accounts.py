"""Accounts and roles on reviewers; provenance of imported reviews and directions.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

- ``reviewers.password_hash`` (nullable): a scrypt hash (db/accounts.py); a reviewer with one is an account that
  signs in. Reviewers from before stay names without a password until an admin gives them one.
- ``reviewers.role`` ('reviewer' or 'admin', default 'reviewer'), ``reviewers.disabled_at`` (nullable) and
  ``reviewers.session_epoch`` (default 0, moved on to end every session of an account).
- ``reviews.provenance`` and ``published_directions.provenance`` (nullable JSON): for rows imported in team mode,
  who made them originally and when; the rows themselves belong to the importing account and the import's time.

Batch mode, as in 0002–0004, so SQLite rebuilds the tables to add the check constraint and to drop on downgrade.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reviewers") as batch:
        batch.add_column(sa.Column("password_hash", sa.String(200), nullable=True))
        batch.add_column(sa.Column("role", sa.String(20), nullable=False, server_default="reviewer"))
        batch.add_column(sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("session_epoch", sa.Integer(), nullable=False, server_default="0"))
        batch.create_check_constraint("role_known", "role IN ('reviewer', 'admin')")
    with op.batch_alter_table("reviews") as batch:
        batch.add_column(sa.Column("provenance", sa.JSON(), nullable=True))
    with op.batch_alter_table("published_directions") as batch:
        batch.add_column(sa.Column("provenance", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("published_directions") as batch:
        batch.drop_column("provenance")
    with op.batch_alter_table("reviews") as batch:
        batch.drop_column("provenance")
    with op.batch_alter_table("reviewers") as batch:
        batch.drop_constraint("role_known", type_="check")
        batch.drop_column("session_epoch")
        batch.drop_column("disabled_at")
        batch.drop_column("role")
        batch.drop_column("password_hash")
