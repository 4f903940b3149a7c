"""Accounts for team mode without a browser: the password KDF, roles, session tokens and the server-path rule."""
from __future__ import annotations

import hashlib
import html
import os
import stat
from pathlib import Path

import pytest

from annotator.access import PathRefused, server_path
from db import accounts as a
from core.errors import AtelierError
from db.rules import NotFound
from db.engine import read_session, write_session
from db_fixtures import Seeded, backend, db_url, empty_url, seeded  # noqa: F401

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def no_team_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(a.TEAM_ENV, raising=False)
    monkeypatch.setenv("ATELIER_HOME", str(tmp_path / "home"))


def test_password_hash_is_salted_scrypt_and_verifies() -> None:
    first, second = a.hash_password(PASSWORD), a.hash_password(PASSWORD)
    assert first != second  # a fresh salt each time
    scheme, n, r, p, salt, key = first.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", a.SCRYPT_N, a.SCRYPT_R, a.SCRYPT_P)
    # It is standard scrypt: recomputing with the stored salt gives the stored key.
    raw_salt = a._unb64(salt)
    assert len(raw_salt) == a.SALT_BYTES
    assert hashlib.scrypt(PASSWORD.encode(), salt=raw_salt, n=int(n), r=int(r), p=int(p), dklen=32) == a._unb64(key)
    assert a.verify_password(PASSWORD, first) and a.verify_password(PASSWORD, second)
    assert not a.verify_password(PASSWORD + " ", first)
    assert not a.verify_password("", first)
    for broken in (None, "", "scrypt$1$2", "md5$16384$8$1$AAAA$AAAA", first.replace("scrypt$16384", "scrypt$x")):
        assert not a.verify_password(PASSWORD, broken)


def test_password_rules() -> None:
    with pytest.raises(a.AccountError, match="at least 10"):
        a.check_password_rules("short")
    with pytest.raises(a.AccountError, match="must be text"):
        a.check_password_rules(None)
    assert a.check_password_rules("ten chars!") == "ten chars!"


def test_accounts_roles_and_sign_in(seeded: Seeded) -> None:
    s = seeded  # ana, ben and cleo are names from single-user mode: no accounts yet
    with read_session(s.url) as session:
        assert not a.team_mode(session) and a.is_admin(session, None)  # one person on their machine may do all
    with write_session(s.url) as session:
        admin = a.add_account(session, "ana", PASSWORD, admin=True)  # the existing name becomes the account
        a.add_account(session, "dora", PASSWORD + "2")
    assert admin.admin and admin.has_password
    with write_session(s.url) as session:
        with pytest.raises(a.AccountError, match="already has an account"):
            a.add_account(session, "ana", PASSWORD)
        with pytest.raises(a.AccountError, match="at least 10"):
            a.add_account(session, "eve", "123")
    with read_session(s.url) as session:
        assert a.team_mode(session)
        assert [(x.name, x.role) for x in a.list_accounts(session)] == [("ana", "admin"), ("dora", "reviewer")]
        assert a.authenticate(session, "ana", PASSWORD).admin
        assert a.authenticate(session, " dora ", PASSWORD + "2").role == "reviewer"
        messages = set()
        for name, password in (("ana", "wrong password"), ("nobody", PASSWORD), ("ben", "")):
            with pytest.raises(a.AccountError) as caught:
                a.authenticate(session, name, password)
            messages.add(str(caught.value))
        assert len(messages) == 1  # unknown name, wrong password, name without account: one answer
        assert a.is_admin(session, "ana") and not a.is_admin(session, "dora") and not a.is_admin(session, None)
        with pytest.raises(a.AccountError, match="Only an admin may publish"):
            a.require_admin(session, "dora", "publish")
    with write_session(s.url) as session:
        with pytest.raises(a.AccountError, match="last admin"):
            a.set_role(session, "ana", "reviewer")
        with pytest.raises(a.AccountError, match="last admin"):
            a.set_disabled(session, "ana", True)
        with pytest.raises(a.AccountError, match="Unknown role"):
            a.set_role(session, "dora", "owner")
        a.set_role(session, "dora", "admin")
        a.set_role(session, "ana", "reviewer")  # now allowed: dora is an admin
        a.set_disabled(session, "ana", True)
        with pytest.raises(NotFound, match="no account 'ben'"):
            a.set_password(session, "ben", PASSWORD)
    with read_session(s.url) as session:
        with pytest.raises(a.AccountError, match="Wrong name or password"):
            a.authenticate(session, "ana", PASSWORD)  # disabled
        assert not a.is_admin(session, "ana") and a.is_admin(session, "dora")


def test_team_mode_from_the_environment(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(a.TEAM_ENV, "1")
    with read_session(seeded.url) as session:
        assert a.team_mode(session)
        assert not a.is_admin(session, "ana")  # a name without an account is nobody in team mode


def test_session_tokens(seeded: Seeded, tmp_path: Path) -> None:
    s = seeded
    home = tmp_path / "home"
    home.mkdir()
    with read_session(s.url) as session:  # single-user mode: a token for a name, no password
        before_accounts = a.issue_token(session, "ana", home=home, now=1_000_000)
        assert a.verify_token(session, before_accounts, home=home, now=1_000_060) == "ana"
    with write_session(s.url) as session:
        a.add_account(session, "ana", PASSWORD)
    with read_session(s.url) as session:
        assert a.verify_token(session, before_accounts, home=home, now=1_000_060) is None  # not the account's
        token = a.issue_token(session, "ana", home=home, now=1_000_000)
        assert a.verify_token(session, token, home=home, now=1_000_060) == "ana"
        secret = home / a.SECRET_FILE
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        payload, mac = token.split(".")
        forged = a._b64(b'{"n":"ben","e":0,"t":1000000}')
        for bad in (f"{forged}.{mac}", f"{payload}.{mac[:-2]}xx", "", "garbage", None, f"{payload}"):
            assert a.verify_token(session, bad, home=home, now=1_000_060) is None
        assert a.verify_token(session, token, home=home, now=1_000_000 + a.TOKEN_LIFETIME_S + 1) is None
        other_home = tmp_path / "other"
        other_home.mkdir()
        assert a.verify_token(session, token, home=other_home, now=1_000_060) is None  # another server's secret
    with write_session(s.url) as session:
        a.set_password(session, "ana", PASSWORD + "!")  # ends every session signed in before
    with read_session(s.url) as session:
        assert a.verify_token(session, token, home=home, now=1_000_060) is None
        fresh = a.issue_token(session, "ana", home=home, now=1_000_100)
        assert a.verify_token(session, fresh, home=home, now=1_000_160) == "ana"
    with write_session(s.url) as session:
        a.set_disabled(session, "ana", True)
    with read_session(s.url) as session:
        assert a.verify_token(session, fresh, home=home, now=1_000_160) is None


def test_server_paths_are_limited_to_configured_folders(tmp_path: Path) -> None:
    allowed = tmp_path / "models"
    allowed.mkdir()
    model = allowed / "g.safetensors"
    model.write_bytes(b"x")
    outside = tmp_path / "secret.txt"
    outside.write_text("s")
    (allowed / "link").symlink_to(outside)
    folders = [allowed]
    assert server_path(str(model), team=True, folders=folders) == model.resolve()
    assert server_path(str(allowed), team=True, kind="folder", folders=folders) == allowed.resolve()
    refusals = []
    for typed in (str(outside), str(allowed / ".." / "secret.txt"), str(allowed / "link"), "/etc/shadow",
                  str(allowed / "missing.pkl"), "/no/such/file"):
        with pytest.raises(PathRefused) as caught:
            server_path(typed, team=True, folders=folders)
        refusals.append(str(caught.value).replace(repr(typed), "PATH"))
    assert len(set(refusals)) == 1  # forbidden and missing read alike
    with pytest.raises(PathRefused, match="No file"):
        server_path(str(allowed), team=True, folders=folders)  # a folder where a file is needed
    # Without team mode (one person on their own machine) any path is theirs to open.
    assert server_path(str(outside), team=False) == outside
    with pytest.raises(PathRefused, match="Type the path"):
        server_path("  ", team=False)


def test_default_folders_are_the_home_and_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from annotator.access import allowed_folders

    monkeypatch.setenv("ATELIER_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("ATELIER_FOLDERS", raising=False)
    assert allowed_folders() == [(tmp_path / "home").resolve(), (tmp_path / "runs").resolve()]
    monkeypatch.setenv("ATELIER_FOLDERS", os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    assert allowed_folders() == [(tmp_path / "a").resolve(), (tmp_path / "b").resolve()]


def test_users_commands(db_url: str) -> None:
    import typer
    from typer.testing import CliRunner

    from conftest import assert_clean_user_error
    from cli.users_commands import register
    from core.errors import guard_commands

    app = typer.Typer()
    register(app)

    @app.command("noop")
    def noop() -> None:  # a second command keeps `users` a sub-command group, as in the real CLI
        pass

    guard_commands(app)  # the real CLI's one error handler (cli.main applies it to every command)
    runner = CliRunner()

    def run(*args: str, stdin: str | None = None):  # noqa: ANN202
        return runner.invoke(app, ["users", *args, "--url", db_url], input=stdin)

    assert "No accounts" in run("list").output
    assert_clean_user_error(run("add", "ana", "--admin", "--password-stdin", stdin="short\n"), "at least 10")
    result = run("add", "ana", "--admin", "--password-stdin", stdin=PASSWORD + "\n")
    assert result.exit_code == 0 and "created (admin)" in result.output
    result = run("add", "ben", stdin=f"{PASSWORD}x\n{PASSWORD}x\n")  # the hidden prompt, typed twice
    assert result.exit_code == 0, result.output
    assert run("list").output.splitlines() == ["ana\tadmin", "ben\treviewer"]
    assert_clean_user_error(run("role", "ana", "reviewer"), "last admin")
    assert_clean_user_error(run("disable", "zed"), "no account 'zed'")
    assert run("disable", "ben").exit_code == 0
    assert run("list").output.splitlines()[1] == "ben\treviewer\tdisabled"
    assert run("passwd", "ana", "--password-stdin", stdin="another long one\n").exit_code == 0
    with read_session(db_url) as session:
        assert a.authenticate(session, "ana", "another long one").admin


def test_app_on_the_network_needs_an_admin(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.app_commands import is_loopback, require_team_accounts

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("127.8.0.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20") and not is_loopback("atelier.example")
    monkeypatch.setenv("ATELIER_DATABASE_URL", db_url)
    # require_team_accounts turns team mode on for the process; monkeypatch takes it back after the test
    monkeypatch.setenv(a.TEAM_ENV, "0")
    monkeypatch.delenv(a.TEAM_ENV)
    require_team_accounts("127.0.0.1")  # one person on their machine: no accounts needed
    with pytest.raises(AtelierError, match="atelier users add NAME --admin"):
        require_team_accounts("0.0.0.0")
    with write_session(db_url) as session:
        a.add_account(session, "ana", PASSWORD)  # a reviewer account is not enough
    with pytest.raises(AtelierError, match="create an admin first"):
        require_team_accounts("0.0.0.0")
    with write_session(db_url) as session:
        a.set_role(session, "ana", "admin")
    require_team_accounts("0.0.0.0")
    assert os.environ[a.TEAM_ENV] == "1"


@pytest.fixture
def team_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The app's pages (AppTest) on a team database of their own: an admin signed in with a real token."""
    from conftest import REFERENCE
    from db.engine import dispose_engines
    from db.migrate import ensure_current
    from model.network.checkpoint import convert

    home = tmp_path / "team-app"
    home.mkdir()
    model = home / "tiny32.safetensors"
    convert(REFERENCE / "sg2ada_tiny32.pkl", model)
    for key, value in {"ATELIER_HOME": str(home), "ATELIER_MODEL": str(model), "ATELIER_SCORE_ON_START": "0",
                       "ATELIER_RUNS": str(home / "runs")}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ATELIER_DATABASE_URL", raising=False)
    monkeypatch.delenv("ATELIER_FOLDERS", raising=False)
    url = f"sqlite:///{home / 'atelier.db'}"
    ensure_current(url)
    with write_session(url) as session:
        a.add_account(session, "ana", PASSWORD, admin=True)
        token = a.issue_token(session, "ana")
    yield token, home
    dispose_engines()


def test_team_pages_open_only_configured_folders(team_app, tmp_path: Path) -> None:
    """Models and Training answer a forbidden path exactly as a missing one; a path inside the folders works."""
    from streamlit.testing.v1 import AppTest

    from conftest import REPO

    token, home = team_app
    at = AppTest.from_file(str(REPO / "annotator" / "app.py"), default_timeout=120)
    at.session_state["reviewer"] = "ana"
    at.session_state["session_token"] = token
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    secret = tmp_path / "secret-run"
    secret.mkdir()  # exists, outside the folders
    at.switch_page("views/training.py").run()
    answers = []
    for typed in (str(secret), str(tmp_path / "missing-run"), "/etc"):
        at.text_input(key="tr.folder").input(typed).run()
        answers.append([html.unescape(e.value).replace(typed, "PATH") for e in at.error])
    assert answers[0] and answers[0] == answers[1] == answers[2], answers
    (home / "runs" / "inside").mkdir(parents=True)
    at.text_input(key="tr.folder").input(str(home / "runs" / "inside")).run()
    assert not any("in the folders this server opens" in e.value for e in at.error)  # allowed: read as a run
    at.switch_page("views/models.py").run()
    answers = []
    for typed in ("/etc/shadow", "/etc/no-such-file", str(home / "nope.safetensors")):
        at.text_input(key="models.path").input(typed)
        at.button[[b.label for b in at.button].index("Register")].click().run()
        answers.append([html.unescape(e.value).replace(typed, "PATH") for e in at.error])
    assert answers[0] and answers[0] == answers[1] == answers[2], answers
