"""Schema migrations, run programmatically with the scripts shipped inside the package.

``atelier db upgrade`` / ``current`` / ``downgrade`` call these; the app calls :func:`ensure_current` at start so
a fresh SQLite file is usable without anyone typing a command.
"""
from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from db.engine import DatabaseError, is_sqlite, make_engine, normalise_url, safe_url, sqlite_path

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Streamlit serves every browser from threads of one process; one of them migrating is enough.
_ensure_lock = threading.Lock()


def alembic_config(url: str | URL | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    # Passed as an object, not through set_main_option: the ini parser would treat '%' in passwords specially.
    config.attributes["atelier_url"] = normalise_url(url)
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None, "db/migrations/versions is empty"
    return head


def revisions() -> list[str]:
    """All revision ids, oldest first."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def _explain(exc: Exception, url: URL) -> DatabaseError:
    if isinstance(exc, OperationalError):
        return DatabaseError(
            f"Cannot use the database {safe_url(url)}: {str(exc.orig).strip() or exc}. "
            "Check that the server is running and that ATELIER_DATABASE_URL (user, password, host, database "
            "name) is right, or unset ATELIER_DATABASE_URL to use the local SQLite file."
        )
    if isinstance(exc, CommandError):
        return DatabaseError(
            f"Migration of {safe_url(url)} failed: {exc}. Known revisions are {', '.join(revisions())}; "
            "if the database was upgraded by a newer Atelier, upgrade Atelier too."
        )
    return DatabaseError(f"Migration of {safe_url(url)} failed: {exc}")


def current(url: str | URL | None = None) -> str | None:
    """The database's revision, or None when it has no schema yet (a missing SQLite file is not created)."""
    parsed = normalise_url(url)
    if is_sqlite(parsed):
        path = sqlite_path(parsed)
        if path is not None and not path.exists():
            return None
    engine = make_engine(parsed)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as exc:
        raise _explain(exc, parsed) from exc
    finally:
        engine.dispose()


def _check_revision(revision: str) -> None:
    # alembic answers an empty revision with a bare AssertionError
    if not str(revision).strip():
        raise DatabaseError(f"the revision is empty: give head, base or one of {', '.join(revisions())}")


def upgrade(url: str | URL | None = None, revision: str = "head") -> str | None:
    """Upgrade to ``revision`` (default: the latest) and return the revision the database is now at."""
    parsed = normalise_url(url)
    _check_revision(revision)
    try:
        command.upgrade(alembic_config(parsed), revision)
    except (SQLAlchemyError, CommandError) as exc:
        raise _explain(exc, parsed) from exc
    return current(parsed)


def downgrade(url: str | URL | None, revision: str) -> str | None:
    """Downgrade to ``revision`` (``base`` removes every table, data included)."""
    parsed = normalise_url(url)
    _check_revision(revision)
    try:
        command.downgrade(alembic_config(parsed), revision)
    except (SQLAlchemyError, CommandError) as exc:
        raise _explain(exc, parsed) from exc
    return current(parsed)


def ensure_current(url: str | URL | None = None) -> str:
    """Bring the database to the latest revision if it is behind; for the app at start-up.

    Refuses a database that is *ahead* of this code (a teammate ran a newer Atelier against the shared server):
    silently using it could write rows the newer schema does not expect.
    """
    parsed = normalise_url(url)
    head = head_revision()
    with _ensure_lock:
        now = current(parsed)
        if now == head:
            return head
        if now is not None and now not in revisions():
            raise DatabaseError(
                f"The database {safe_url(parsed)} is at revision {now}, newer than this Atelier knows "
                f"(latest {head}). Upgrade Atelier (pip install -U atelier) before using this database."
            )
        upgraded = upgrade(parsed)
        assert upgraded == head, f"upgrade stopped at {upgraded}, expected {head}"
        return head
