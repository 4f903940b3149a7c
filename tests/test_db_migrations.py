"""Migrations: from empty, down and up again, from the first revision with data, and the CLI around them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from typer.testing import CliRunner

from db import migrate, queries as q
from db.commands import register
from db.engine import DatabaseError, make_engine, normalise_url, read_session, write_session
from db.schema import Base, vector_to_bytes
from db_fixtures import backend, empty_url  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
CORE_TABLES = {"models", "component_sets", "components", "reviewers", "categories", "reviews"}
LATER_TABLES = {"published_directions", "looks"}


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_from_empty_then_down_and_up_again(empty_url: str) -> None:
    assert migrate.current(empty_url) is None
    assert migrate.upgrade(empty_url) == migrate.head_revision() == "0002"
    assert tables(empty_url) == CORE_TABLES | LATER_TABLES
    assert migrate.upgrade(empty_url) == "0002"  # running it twice is harmless

    assert migrate.downgrade(empty_url, "0001") == "0001"
    assert tables(empty_url) == CORE_TABLES
    assert migrate.downgrade(empty_url, "base") is None
    assert tables(empty_url) == set()

    assert migrate.upgrade(empty_url) == "0002"
    assert tables(empty_url) == CORE_TABLES | LATER_TABLES
    with read_session(empty_url) as session:
        assert len(q.list_categories(session)) == 8  # seeded once, not twice


def test_migrations_build_exactly_the_models_schema(empty_url: str) -> None:
    """The hand-written migrations and db/schema.py describe the same tables, columns, types and indexes."""
    migrate.upgrade(empty_url)
    engine = make_engine(empty_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_database_made_by_first_revision_upgrades_with_data_intact(empty_url: str) -> None:
    url = empty_url
    assert migrate.upgrade(url, "0001") == "0001"
    vector = np.linspace(-1, 1, 4)
    label = "<b>wide</b> *sleeves*"
    engine = make_engine(url)
    try:
        # Plain SQL, as the code of revision 0001's time would have written it (the ORM now knows newer columns).
        with engine.begin() as c:
            c.execute(text("INSERT INTO models (id, name, path, fingerprint, architecture, added_at) VALUES "
                           "(1, 'old', '/old.pkl', :fp, :arch, CURRENT_TIMESTAMP)"),
                      {"fp": "0f" * 32, "arch": '{"w_dim": 4, "num_ws": 3, "c_dim": 0}'})
            c.execute(text("INSERT INTO component_sets (id, model_id, method, params, sample_count, review_seeds, "
                           "created_at) VALUES (1, 1, 'sefa', '{}', 0, '[5, 6]', CURRENT_TIMESTAMP)"))
            for i in range(2):
                c.execute(text("INSERT INTO components (id, set_id, component_index, w_dim, vector, sigma) "
                               "VALUES (:id, 1, :i, 4, :v, 1.5)"),
                          {"id": i + 1, "i": i, "v": vector_to_bytes(vector * (i + 1))})
            c.execute(text("INSERT INTO reviewers (id, name, created_at) VALUES (1, 'ana', CURRENT_TIMESTAMP)"))
            c.execute(text("INSERT INTO reviews (reviewer_id, component_id, decision, label, category_id, consistency, "
                           "layer_start, layer_end, note, created_at) VALUES (1, 1, 'approve', :label, "
                           "(SELECT id FROM categories WHERE name = 'sleeve'), 5, 0, 2, '', CURRENT_TIMESTAMP)"),
                      {"label": label})
            c.execute(text("INSERT INTO reviews (reviewer_id, component_id, decision, label, note, created_at) "
                           "VALUES (1, 2, 'reject', '', '', CURRENT_TIMESTAMP)"))
    finally:
        engine.dispose()

    assert migrate.upgrade(url) == "0002"

    def check() -> None:
        with read_session(url) as session:
            statuses = q.component_statuses(session, 1)
            assert [(s.status, s.latest_label, s.latest_category, s.mean_consistency) for s in statuses] == [
                ("approved", label, "sleeve", 5.0), ("rejected", None, None, None)]
            assert [c.dead for c in q.list_components(session, 1)] == [False, False]  # new column's default
            np.testing.assert_allclose(q.component_vector(session, 2), vector * 2, rtol=1e-6)
            assert q.get_component_set(session, 1).review_seeds == [5, 6]
            assert q.review_history(session, 1)[0].layer_range == (0, 2)

    check()
    with write_session(url) as session:  # and the new tables work on the old data
        q.publish_direction(session, 1, "Sleeves", "ana", component_id=1)

    # Down to 0001 rebuilds `components` on SQLite (batch mode) under rows that reference it; up again.
    assert migrate.downgrade(url, "0001") == "0001"
    assert migrate.upgrade(url) == "0002"
    check()


def test_ensure_current_upgrades_fresh_and_refuses_newer(empty_url: str) -> None:
    assert migrate.ensure_current(empty_url) == "0002"
    assert migrate.ensure_current(empty_url) == "0002"
    engine = make_engine(empty_url)
    try:
        with engine.begin() as c:
            c.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    finally:
        engine.dispose()
    with pytest.raises(DatabaseError, match="newer than this Atelier knows"):
        migrate.ensure_current(empty_url)


def test_simultaneous_upgrades_of_a_fresh_database(empty_url: str) -> None:
    """Several app processes starting at once on a fresh database: one migrates, the others wait and find it done."""
    code = "import sys; from db import migrate; print(migrate.ensure_current(sys.argv[1]))"
    procs = [subprocess.Popen([sys.executable, "-c", code, empty_url], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in results]
    assert [out.strip() for out, _ in results] == ["0002"] * 3
    with read_session(empty_url) as session:
        assert len(q.list_categories(session)) == 8


def test_url_handling(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert normalise_url("postgresql://u:p@h/d").drivername == "postgresql+psycopg"
    assert normalise_url("postgres://u:p@h/d").drivername == "postgresql+psycopg"
    with pytest.raises(DatabaseError, match="Unsupported database 'mysql'.*PostgreSQL"):
        normalise_url("mysql://u:secret@h/d")
    with pytest.raises(DatabaseError, match="Cannot read the database URL"):
        normalise_url("not a url")
    monkeypatch.delenv("ATELIER_DATABASE_URL", raising=False)
    monkeypatch.setenv("ATELIER_HOME", str(tmp_path))
    assert normalise_url().database == str(tmp_path / "atelier.db")
    monkeypatch.setenv("ATELIER_DATABASE_URL", f"sqlite:///{tmp_path / 'other.db'}")
    assert normalise_url().database == str(tmp_path / "other.db")


# ---------------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def cli() -> typer.Typer:
    # Only the db commands: these tests must not depend on the other packages' commands importing cleanly.
    app = typer.Typer()
    register(app)

    @app.command("noop")
    def noop() -> None:  # a second command keeps `db` a sub-command group, as in the real CLI
        pass

    return app


def test_cli_upgrade_current_downgrade(cli: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATELIER_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    runner = CliRunner()
    result = runner.invoke(cli, ["db", "current"])
    assert result.exit_code == 0 and "no tables yet: run `atelier db upgrade`" in result.stdout
    assert not (tmp_path / "cli.db").exists()  # asking does not create the file

    result = runner.invoke(cli, ["db", "upgrade", "0001"])
    assert result.exit_code == 0 and "at revision 0001" in result.stdout
    result = runner.invoke(cli, ["db", "current"])
    assert "at revision 0001; the latest is 0002: run `atelier db upgrade`" in result.stdout
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    assert "0002 (latest)" in runner.invoke(cli, ["db", "current"]).stdout

    result = runner.invoke(cli, ["db", "downgrade", "base"], input="n\n")
    assert result.exit_code != 0 and migrate.current() == "0002"  # declined
    result = runner.invoke(cli, ["db", "downgrade", "base", "--yes"])
    assert result.exit_code == 0 and "base (no tables)" in result.stdout


def test_cli_errors_are_one_clear_line(cli: typer.Typer, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.setenv("ATELIER_DATABASE_URL", "postgresql+psycopg://nobody:secret@127.0.0.1:1/none")
    result = runner.invoke(cli, ["db", "upgrade"])
    assert result.exit_code == 1
    assert "Cannot use the database" in result.stderr and "ATELIER_DATABASE_URL" in result.stderr
    assert "secret" not in result.stderr and "Traceback" not in result.output

    monkeypatch.setenv("ATELIER_DATABASE_URL", "mysql://x@y/z")
    result = runner.invoke(cli, ["db", "current"])
    assert result.exit_code == 1 and "Unsupported database" in result.stderr
