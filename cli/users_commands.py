"""`atelier users …`: the accounts of a team server (db/accounts.py). Registered by cli/main.py.

Passwords are never arguments (they would land in the shell history and in `ps`): they are typed at a hidden
prompt, twice, or read from the first line of stdin with ``--password-stdin`` for scripts.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Optional, TypeVar

import typer
from sqlalchemy.orm import Session

T = TypeVar("T")

URL_HELP = "Database URL; default ATELIER_DATABASE_URL, else the SQLite file in ATELIER_HOME."


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


def _write(url: Optional[str], action: Callable[[Session], T]) -> T:
    """Run ``action(session)`` in one write transaction on a database brought up to date first."""
    from db.engine import write_session
    from db.migrate import ensure_current

    # An AtelierError raised here becomes its message and exit code 1 in cli.main's one handler (guard_commands).
    ensure_current(url)
    with write_session(url) as session:
        return action(session)


def _disabling_command(disabled: bool, outcome: str) -> Callable[..., None]:
    """`users disable` and `users enable`: one command, setting the account's disabled flag one way or the other."""

    def command(
        name: str = typer.Argument(..., help="The account."),
        url: Optional[str] = typer.Option(None, "--url", help=URL_HELP),
    ) -> None:
        from db import accounts

        account = _write(url, lambda s: accounts.set_disabled(s, name, disabled))
        typer.echo(f"{account.name!r} is {outcome}.")

    return command


def register(app: typer.Typer) -> None:
    users = typer.Typer(name="users", no_args_is_help=True,
                        help="Accounts for a team server: who signs in, and who is admin (publishes, manages models).")

    @users.command("add")
    def add_command(
        name: str = typer.Argument(..., help="The name the person signs in with (and their reviews carry)."),
        admin: bool = typer.Option(False, "--admin", help="May also publish, import and manage models."),
        password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
        url: Optional[str] = typer.Option(None, "--url", help=URL_HELP),
    ) -> None:
        """Create an account (a name that already has reviews from single-user use becomes the account)."""
        from db import accounts

        password = _password(password_stdin)
        account = _write(url, lambda s: accounts.add_account(s, name, password, admin=admin))
        typer.echo(f"Account {account.name!r} created ({account.role}). Team mode is on: everyone signs in now.")

    @users.command("list")
    def list_command(url: Optional[str] = typer.Option(None, "--url", help=URL_HELP)) -> None:
        """Every account with its role and whether it is disabled."""
        from db import accounts

        rows = _write(url, accounts.list_accounts)
        if not rows:
            typer.echo("No accounts: the app runs in single-user mode on this machine (no sign-in). "
                       "`atelier users add NAME --admin` creates the first one.")
            return
        for row in rows:
            typer.echo("\t".join([row.name, row.role] + (["disabled"] if row.disabled else [])))

    @users.command("passwd")
    def passwd_command(
        name: str = typer.Argument(..., help="The account."),
        password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
        url: Optional[str] = typer.Option(None, "--url", help=URL_HELP),
    ) -> None:
        """Set a new password; the account's open sessions end."""
        from db import accounts

        password = _password(password_stdin)
        account = _write(url, lambda s: accounts.set_password(s, name, password))
        typer.echo(f"New password for {account.name!r}; they sign in again everywhere.")

    @users.command("role")
    def role_command(
        name: str = typer.Argument(..., help="The account."),
        role: str = typer.Argument(..., help="reviewer or admin."),
        url: Optional[str] = typer.Option(None, "--url", help=URL_HELP),
    ) -> None:
        """Make an account admin or reviewer (the last admin stays admin)."""
        from db import accounts

        account = _write(url, lambda s: accounts.set_role(s, name, role))
        typer.echo(f"{account.name!r} is now {account.role}.")

    users.command("disable", help="Stop an account from signing in (its reviews stay; its open sessions end).")(
        _disabling_command(True, "disabled"))
    users.command("enable", help="Let a disabled account sign in again.")(_disabling_command(False, "enabled again"))

    app.add_typer(users, name="users")
