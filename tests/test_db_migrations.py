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
from sqlalchemy.exc import IntegrityError
from typer.testing import CliRunner

from conftest import assert_clean_user_error
from db import migrate, queries as q, review_queue
from db.records import LookEdit
from core.errors import InvalidInput
from cli.db_commands import register
from db.engine import DatabaseError, make_engine, normalise_url, read_session, write_session
from db.schema import Base, vector_to_bytes
from db_fixtures import backend, empty_url  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
CORE_TABLES = {"models", "component_sets", "components", "reviewers", "categories", "reviews"}
LATER_TABLES = {"published_directions", "looks"}
HEAD = "0006"


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def insert_old_model(connection) -> None:
    """Model 1 ('old', w_dim 4, 3 ws rows), written with plain SQL as an older revision's code would have."""
    connection.execute(text("INSERT INTO models (id, name, path, fingerprint, architecture, added_at) VALUES "
                            "(1, 'old', '/old.pkl', :fp, :arch, CURRENT_TIMESTAMP)"),
                       {"fp": "0f" * 32, "arch": '{"w_dim": 4, "num_ws": 3, "c_dim": 0}'})


def run_sql(url: str, *statements: str) -> None:
    """Plain SQL in one transaction, as an older Atelier (or a hand edit) would have left the database."""
    engine = make_engine(url)
    try:
        with engine.begin() as c:
            for statement in statements:
                c.execute(text(statement))
    finally:
        engine.dispose()


def columns(url: str, table: str) -> set[str]:
    engine = make_engine(url)
    try:
        return {column["name"] for column in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def test_upgrade_from_empty_then_down_and_up_again(empty_url: str) -> None:
    assert migrate.current(empty_url) is None
    assert migrate.upgrade(empty_url) == migrate.head_revision() == HEAD
    assert tables(empty_url) == CORE_TABLES | LATER_TABLES
    assert "sigma" in columns(empty_url, "published_directions")
    assert migrate.upgrade(empty_url) == HEAD  # running it twice is harmless

    assert migrate.downgrade(empty_url, "0002") == "0002"
    assert tables(empty_url) == CORE_TABLES | LATER_TABLES
    assert "sigma" not in columns(empty_url, "published_directions")
    assert migrate.downgrade(empty_url, "0001") == "0001"
    assert tables(empty_url) == CORE_TABLES
    assert migrate.downgrade(empty_url, "base") is None
    assert tables(empty_url) == set()

    assert migrate.upgrade(empty_url) == HEAD
    assert tables(empty_url) == CORE_TABLES | LATER_TABLES
    with read_session(empty_url) as session:
        assert len(q.list_categories(session)) == 9  # seeded once, not twice (0001: eight; 0006: background)


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
            insert_old_model(c)
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

    assert migrate.upgrade(url) == HEAD

    def check() -> None:
        with read_session(url) as session:
            statuses = review_queue.component_statuses(session, 1)
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
    assert migrate.upgrade(url) == HEAD
    check()


def test_database_at_0002_upgrades_to_0003_with_data_intact(empty_url: str) -> None:
    """Directions published before 0003 keep everything; those from a component get its σ, supervised ones NULL."""
    url = empty_url
    assert migrate.upgrade(url, "0002") == "0002"
    vector = np.linspace(-1, 1, 4)
    engine = make_engine(url)
    try:
        # Plain SQL, as the code of revision 0002's time would have written it.
        with engine.begin() as c:
            insert_old_model(c)
            c.execute(text("INSERT INTO component_sets (id, model_id, method, params, sample_count, review_seeds, "
                           "created_at) VALUES (1, 1, 'sefa', '{}', 0, '[5]', CURRENT_TIMESTAMP)"))
            c.execute(text("INSERT INTO components (id, set_id, component_index, w_dim, vector, sigma, dead) "
                           "VALUES (1, 1, 0, 4, :v, 2.5, :dead)"), {"v": vector_to_bytes(vector), "dead": True})
            c.execute(text("INSERT INTO reviewers (id, name, created_at) VALUES (1, 'ana', CURRENT_TIMESTAMP)"))
            c.execute(text("INSERT INTO looks (model_id, name, seed, psi, edits, reviewer_id, created_at) VALUES "
                           "(1, 'gown', 7, 0.7, :edits, 1, CURRENT_TIMESTAMP)"),
                      {"edits": '[{"direction_id": 1, "name": "Sleeves", "value": 1.5}]'})
            # Ids 1, 2, 3 in order (left to the database, so PostgreSQL's sequence knows them): "Sleeves" was
            # withdrawn and published again, "Shine" is supervised.
            rows = [(1, "Sleeves", "component", 1, True), (2, "Sleeves", "component", 1, False),
                    (3, "Shine", "supervised", None, False)]
            for did, name, source, component, unpublished in rows:
                c.execute(text("INSERT INTO published_directions (model_id, name, category_id, w_dim, vector, "
                               "layer_start, layer_end, strength_min, strength_max, source, component_id, "
                               "published_by, published_at, unpublished_at, unpublished_by) VALUES (1, :name, "
                               "(SELECT id FROM categories WHERE name = 'sleeve'), 4, :v, 0, 2, -2.0, 2.0, :source, "
                               ":component, 1, '2025-01-31 12:00:00+00:00', :gone, :by)"),
                          {"name": name, "v": vector_to_bytes(vector * did), "source": source,
                           "component": component, "gone": "2025-02-01 12:00:00+00:00" if unpublished else None,
                           "by": 1 if unpublished else None})
    finally:
        engine.dispose()

    assert migrate.upgrade(url) == HEAD

    def check(supervised_sigma: float | None) -> None:
        with read_session(url) as session:
            history = q.direction_history(session, 1)
            assert [(d.id, d.name, d.source, d.active, d.sigma) for d in history] == [
                (1, "Sleeves", "component", False, 2.5), (2, "Sleeves", "component", True, 2.5),
                (3, "Shine", "supervised", True, supervised_sigma)]
            assert [(d.category, d.layer_range, d.strength_range, d.published_by) for d in history] == [
                ("sleeve", (0, 2), (-2.0, 2.0), "ana")] * 3
            assert history[2].published_at.isoformat() == "2025-01-31T12:00:00+00:00"
            np.testing.assert_allclose(history[2].vector, vector * 3, rtol=1e-6)
            assert [c.dead for c in q.list_components(session, 1)] == [True]
            assert q.list_looks(session, 1)[0].edits == (LookEdit("Sleeves", 1.5, 1),)

    check(None)
    with write_session(url) as session:  # the new column is written, and the active-name index still holds
        with pytest.raises(InvalidInput, match="already published"):
            q.publish_direction(session, 1, "Sleeves", "ana", vector=vector)
        q.unpublish_direction(session, 3, "ana")
        assert q.publish_direction(session, 1, "Shine", "ana", vector=vector, sigma=0.25).sigma == 0.25

    # Down to 0002 rebuilds `published_directions` on SQLite (batch mode); its σ goes, its rows and index stay.
    assert migrate.downgrade(url, "0002") == "0002"
    assert "sigma" not in columns(url, "published_directions")
    engine = make_engine(url)
    try:
        with engine.begin() as c:
            assert c.execute(text("SELECT count(*) FROM published_directions")).scalar() == 4
        with pytest.raises(IntegrityError), engine.begin() as c:
            c.execute(text("UPDATE published_directions SET unpublished_at = NULL WHERE id = 1"))
    finally:
        engine.dispose()
    assert migrate.upgrade(url) == HEAD
    with read_session(url) as session:
        assert [(d.id, d.active, d.sigma) for d in q.direction_history(session, 1)] == [
            (1, False, 2.5), (2, True, 2.5), (3, False, None), (4, True, None)]


def test_database_at_0004_upgrades_to_0005_reviewers_stay_names_without_accounts(empty_url: str) -> None:
    """Reviewers from before accounts keep their reviews, cannot sign in, and become accounts when given a password."""
    from db import accounts

    url = empty_url
    assert migrate.upgrade(url, "0004") == "0004"
    run_sql(url, "INSERT INTO reviewers (id, name, created_at) VALUES (1, 'ana', CURRENT_TIMESTAMP)")
    assert migrate.upgrade(url) == HEAD
    with read_session(url) as session:
        assert accounts.list_accounts(session) == [] and not accounts.accounts_exist(session)
        assert [r.name for r in q.list_reviewers(session)] == ["ana"]
        with pytest.raises(accounts.AccountError, match="Wrong name or password"):
            accounts.authenticate(session, "ana", "")
    with write_session(url) as session:
        account = accounts.add_account(session, "ana", "correct horse battery", admin=True)
    assert (account.name, account.role, account.has_password) == ("ana", "admin", True)
    engine = make_engine(url)
    try:  # the role check constraint is in place on both backends
        with pytest.raises(IntegrityError), engine.begin() as c:
            c.execute(text("UPDATE reviewers SET role = 'owner' WHERE id = 1"))
    finally:
        engine.dispose()
    assert migrate.downgrade(url, "0004") == "0004"
    assert "password_hash" not in columns(url, "reviewers") and "provenance" not in columns(url, "reviews")
    assert migrate.upgrade(url) == HEAD
    with read_session(url) as session:  # the name survived the round trip; the password went with its column
        assert [r.name for r in q.list_reviewers(session)] == ["ana"] and not accounts.accounts_exist(session)


def test_database_at_0005_upgrades_to_0006_scores_keep_their_priority_and_background_is_offered(empty_url: str) -> None:
    """Components scored before 0006 keep their priority (no details yet); the form gains "background" once, also
    where a team had already added (and retired) a category of that name."""
    url = empty_url
    assert migrate.upgrade(url, "0005") == "0005"
    with write_session(url) as session:
        model = q.register_model(session, "m", "/m.safetensors", "a" * 64, {"w_dim": 2, "num_ws": 4})
        info = q.add_component_set(session, model.id, "sefa", {}, 0, np.eye(2, dtype=np.float32), [1.0, 1.0],
                                   [2.0, 1.0], [1, 2])
    run_sql(url, "UPDATE components SET priority = 0.7 WHERE component_index = 1",
            "DELETE FROM categories WHERE name = 'background'")  # (0001 never had it)
    assert migrate.upgrade(url) == HEAD
    with read_session(url) as session:
        components = q.list_components(session, info.id)
        assert [(c.index, c.priority, c.score_details) for c in components] == [(0, None, None), (1, 0.7, None)]
        assert "priority 0.70 (scored before reasons were kept" in review_queue.score_reason(components[1])
        names = [c.name for c in q.list_categories(session)]
        assert names.count("background") == 1 and names[-1] == "background"
    assert migrate.downgrade(url, "0005") == "0005"
    assert "score_details" not in columns(url, "components")
    with write_session(url) as session:  # a team that retired its own "background" keeps exactly that one row
        q.retire_category(session, "background")
    assert migrate.upgrade(url) == HEAD
    with read_session(url) as session:
        every = q.list_categories(session, include_retired=True)
        assert [(c.name, c.retired) for c in every if c.name == "background"] == [("background", True)]


def test_ensure_current_upgrades_fresh_and_refuses_newer(empty_url: str) -> None:
    assert migrate.ensure_current(empty_url) == HEAD
    assert migrate.ensure_current(empty_url) == HEAD
    run_sql(empty_url, "UPDATE alembic_version SET version_num = '0099'")
    with pytest.raises(DatabaseError, match="newer than this Atelier knows"):
        migrate.ensure_current(empty_url)


def test_simultaneous_upgrades_of_a_fresh_database(empty_url: str) -> None:
    """Several app processes starting at once on a fresh database: one migrates, the others wait and find it done."""
    code = "import sys; from db import migrate; print(migrate.ensure_current(sys.argv[1]))"
    procs = [subprocess.Popen([sys.executable, "-c", code, empty_url], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in results]
    assert [out.strip() for out, _ in results] == [HEAD] * 3
    with read_session(empty_url) as session:
        assert len(q.list_categories(session)) == 9


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
    assert f"at revision 0001; the latest is {HEAD}: run `atelier db upgrade`" in result.stdout
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    assert f"{HEAD} (latest)" in runner.invoke(cli, ["db", "current"]).stdout

    result = runner.invoke(cli, ["db", "downgrade", "base"], input="n\n")
    assert result.exit_code != 0 and migrate.current() == HEAD  # declined
    result = runner.invoke(cli, ["db", "downgrade", "base", "--yes"])
    assert result.exit_code == 0 and "base (no tables)" in result.stdout


def test_cli_errors_are_one_clear_line(cli: typer.Typer, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.setenv("ATELIER_DATABASE_URL", "postgresql+psycopg://nobody:secret@127.0.0.1:1/none")
    result = runner.invoke(cli, ["db", "upgrade"])
    assert_clean_user_error(result)
    assert "Cannot use the database" in result.stderr and "ATELIER_DATABASE_URL" in result.stderr
    assert "secret" not in result.stderr

    monkeypatch.setenv("ATELIER_DATABASE_URL", "mysql://x@y/z")
    result = runner.invoke(cli, ["db", "current"])
    assert result.exit_code == 1 and "Unsupported database" in result.stderr


def test_database_at_0003_upgrades_to_0004_and_back_with_data_intact(empty_url: str) -> None:
    """0004 adds what publish checks measured and overrode, and the model a look was made on: older rows read as
    'not recorded', new rows keep them, and a downgrade drops only those columns."""
    url = empty_url
    assert migrate.upgrade(url, "0003") == "0003"
    engine = make_engine(url)
    try:
        with engine.begin() as c:
            insert_old_model(c)
            c.execute(text("INSERT INTO reviewers (id, name, created_at) VALUES (1, 'ana', CURRENT_TIMESTAMP)"))
            c.execute(text("INSERT INTO looks (model_id, name, seed, psi, edits, reviewer_id, created_at) VALUES "
                           "(1, 'gown', 7, 0.7, :edits, 1, CURRENT_TIMESTAMP)"),
                      {"edits": '[{"direction_id": 1, "name": "Sleeves", "value": 1.5}]'})
            c.execute(text("INSERT INTO published_directions (model_id, name, w_dim, vector, layer_start, layer_end, "
                           "strength_min, strength_max, source, published_by, published_at) VALUES (1, 'Sleeves', "
                           "4, :v, 0, 2, -2.0, 2.0, 'supervised', 1, CURRENT_TIMESTAMP)"),
                      {"v": vector_to_bytes(np.ones(4))})
    finally:
        engine.dispose()
    assert migrate.upgrade(url) == HEAD
    with write_session(url) as session:
        [old] = q.active_directions(session, 1)
        assert (old.measured_effect, old.override_reasons) == (None, ())
        [look] = q.list_looks(session, 1)
        assert look.model_fingerprint is None and not look.edits[0].frozen
        q.unpublish_direction(session, old.id, "ana")
        new = q.publish_direction(session, 1, "Sleeves", "ana", vector=np.ones(4), measured_effect=0.002,
                                  override_reasons=["The slider changes nothing visible."])
        edit = LookEdit("Sleeves", 1.5, new.id, vector=np.arange(4) / 3, layer_range=(1, 3), sigma=0.5)
        saved = q.save_look(session, 1, "ana", "gown 2", 7, 0.7, [edit])
    with read_session(url) as session:
        again = q.get_look(session, saved.id)
        [active] = q.active_directions(session, 1)
    assert again.model_fingerprint == "0f" * 32 and again.edits[0].frozen
    np.testing.assert_array_equal(again.edits[0].vector, (np.arange(4) / 3).astype(np.float32))  # bit for bit
    assert (again.edits[0].layer_range, again.edits[0].sigma) == ((1, 3), 0.5)
    assert active.override_reasons == ("The slider changes nothing visible.",) and active.measured_effect == 0.002

    assert migrate.downgrade(url, "0003") == "0003"
    assert {"measured_effect", "override_reasons"}.isdisjoint(columns(url, "published_directions"))
    assert "model_fingerprint" not in columns(url, "looks")
    assert migrate.upgrade(url) == HEAD
    with read_session(url) as session:
        assert len(q.direction_history(session, 1)) == 2 and len(q.list_looks(session, 1)) == 2
