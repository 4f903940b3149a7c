"""Alembic environment for the review database.

Run through ``db.migrate`` (``atelier db upgrade``), which passes the URL in ``config.attributes``; a developer
running plain ``alembic -c db/alembic.ini ...`` gets the configured database (ATELIER_DATABASE_URL or the file).
"""
from __future__ import annotations

from alembic import context
from sqlalchemy import text

from db.engine import is_sqlite, make_engine, normalise_url, writer
from db.schema import Base

# Any constant will do; it only has to be the same for every Atelier process migrating the same server.
POSTGRES_MIGRATION_LOCK = 0x41_54_45_4C  # "ATEL"

config = context.config
url = normalise_url(config.attributes.get("atelier_url"))


def run_migrations_offline() -> None:
    """``alembic upgrade --sql``: print the SQL for a DBA instead of running it."""
    context.configure(
        url=url,
        target_metadata=Base.metadata,
        literal_binds=True,
        render_as_batch=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    sqlite = is_sqlite(url)
    # Foreign keys off on SQLite: batch mode rebuilds a table by copy, drop and rename, and dropping a table
    # that others reference would otherwise fail (or cascade). The check at the end puts the guarantee back.
    engine = make_engine(url, foreign_keys=not sqlite)
    try:
        # writer(): on SQLite the whole migration runs in one BEGIN IMMEDIATE transaction, so two processes
        # upgrading a fresh file at once queue up, and the second finds the work done.
        with writer(engine).connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=True,
                # SQLite DDL is transactional too; Alembic only assumes otherwise. One transaction per upgrade
                # means a failed migration leaves the file exactly as it was.
                transactional_ddl=True,
            )
            with context.begin_transaction():
                if not sqlite:
                    # The PostgreSQL counterpart of BEGIN IMMEDIATE: one migrator at a time per server.
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": POSTGRES_MIGRATION_LOCK})
                context.run_migrations()
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"migration left rows with dangling foreign keys: {broken[:5]}")
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
