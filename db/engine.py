"""Engines and sessions: SQLite by default, PostgreSQL when ``ATELIER_DATABASE_URL`` names one.

SQLite is tuned for a team writing at once from one server:
- WAL, so readers never block the writer and the writer never blocks readers;
- foreign keys on (SQLite leaves them off per connection unless asked);
- a busy timeout, so a writer waits for the lock instead of failing;
- writes start with ``BEGIN IMMEDIATE``. A plain ``BEGIN`` takes the write lock only at the first write, and a
  reader that then wants to write can fail at once with "database is locked" however long the busy timeout is.
  Taking the lock up front makes every writer queue on the busy timeout instead.

Use :func:`write_session` for anything that writes and :func:`read_session` for pages that only read.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session

from core.errors import AtelierError
from core.settings import database_url

# How long a SQLite writer waits for another writer before giving up. Generous: a waiting reviewer is fine,
# a lost label is not.
SQLITE_BUSY_TIMEOUT_S = 60.0

_BEGIN_OPTION = "atelier_sqlite_begin"

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


class DatabaseError(AtelierError):
    """The database cannot be reached or used; the message says how to fix the setup."""


def normalise_url(url: str | URL | None = None) -> URL:
    """Parse a database URL, defaulting to the configured one, and pick the driver Atelier ships.

    ``postgresql://`` would make SQLAlchemy look for psycopg2, which is not installed; teams copy URLs from
    their hosting provider in that form, so it is mapped to psycopg 3 here rather than failing.
    """
    raw = url if url is not None else database_url()
    try:
        parsed = make_url(raw)
    except ArgumentError as exc:
        raise DatabaseError(
            f"Cannot read the database URL {str(raw)!r}. Set ATELIER_DATABASE_URL to e.g. "
            "postgresql+psycopg://user:password@host/dbname, or unset it to use the local SQLite file."
        ) from exc
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername == "sqlite":
        parsed = parsed.set(drivername="sqlite+pysqlite")
    if parsed.drivername not in ("sqlite+pysqlite", "postgresql+psycopg"):
        raise DatabaseError(
            f"Unsupported database {parsed.drivername!r} in {safe_url(parsed)}. Atelier supports SQLite "
            "(sqlite:///path/to/file.db) and PostgreSQL (postgresql+psycopg://user:password@host/dbname)."
        )
    return parsed


def safe_url(url: str | URL) -> str:
    """The URL with its password masked, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


def is_sqlite(url: str | URL) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str | URL) -> Path | None:
    """The file behind a SQLite URL, or None for in-memory databases."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def _install_sqlite_hooks(engine: Engine, *, foreign_keys: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy (the "begin" hook below); pysqlite's own implicit BEGIN
        # is always DEFERRED and would defeat BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first: switching to WAL needs a lock and must wait for it like everything else.
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            # synchronous stays at SQLite's default FULL: every commit is fsynced, so a committed review
            # survives even a power cut, not just a crashed process.
            cursor.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str | URL | None = None, *, foreign_keys: bool = True) -> Engine:
    """A new engine (not cached). ``foreign_keys=False`` is only for migrations that rebuild SQLite tables."""
    parsed = normalise_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(parsed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        # The pool hands a connection to whichever thread asks next (Streamlit runs each browser session in
        # its own thread), which pysqlite refuses unless told it is safe; it is, a connection is only ever
        # used by one thread at a time.
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
    else:
        # Servers drop idle connections; check before use instead of failing the reviewer's click.
        kwargs["pool_pre_ping"] = True
    engine = create_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        _install_sqlite_hooks(engine, foreign_keys=foreign_keys)
    return engine


def get_engine(url: str | URL | None = None) -> Engine:
    """The shared engine for a URL (default: the configured database), created on first use."""
    key = normalise_url(url).render_as_string(hide_password=False)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = make_engine(key)
            _engines[key] = engine
        return engine


def dispose_engines() -> None:
    """Close every pooled connection; for tests and for processes about to fork."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def writer(engine: Engine) -> Engine:
    """The same engine (same pool) with SQLite transactions starting as BEGIN IMMEDIATE."""
    return engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})


@contextmanager
def write_session(url: str | URL | None = None) -> Iterator[Session]:
    """A session whose work is committed as one transaction on success and rolled back on any error."""
    with Session(writer(get_engine(url)), expire_on_commit=False) as session:
        with session.begin():
            yield session


@contextmanager
def read_session(url: str | URL | None = None) -> Iterator[Session]:
    """A session for reads; it never takes the write lock, so it never makes a writer wait."""
    with Session(get_engine(url), expire_on_commit=False) as session:
        try:
            yield session
        finally:
            session.rollback()
