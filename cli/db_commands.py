"""Sub-commands of `atelier` that belong to the `db` package: `atelier db upgrade | current | downgrade`."""
from __future__ import annotations

from collections.abc import Callable
from typing import Optional, TypeVar

import typer

from core.errors import AtelierError

T = TypeVar("T")

URL_HELP = "Database URL; default ATELIER_DATABASE_URL, else the SQLite file in ATELIER_HOME."


def _run(action: Callable[[], T]) -> T:
    """Run a command body; an AtelierError becomes its message on stderr and exit code 1, no traceback."""
    try:
        return action()
    except AtelierError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(code=1) from None


def _where(url: Optional[str]) -> str:
    from db.engine import normalise_url, safe_url

    return safe_url(normalise_url(url))


def register(app: typer.Typer) -> None:
    """Add this package's sub-commands to the root `atelier` app."""
    db_app = typer.Typer(
        name="db",
        help="The review database: create or upgrade its tables, show its schema revision.",
        no_args_is_help=True,
    )

    @db_app.command("upgrade")
    def upgrade_command(
        revision: str = typer.Argument("head", help="Revision to upgrade to (default: the latest)."),
        url: Optional[str] = typer.Option(None, "--url", help=URL_HELP),
    ) -> None:
        """Create the tables in a new database, or bring an existing one up to date. Safe to run twice."""
        from db import migrate

        now = _run(lambda: migrate.upgrade(url, revision))
        typer.echo(f"{_where(url)} is at revision {now}.")

    @db_app.command("current")
    def current_command(url: Optional[str] = typer.Option(None, "--url", help=URL_HELP)) -> None:
        """Show which schema revision the database is at, and whether it is the latest."""
        from db import migrate

        now = _run(lambda: migrate.current(url))
        head = migrate.head_revision()
        if now is None:
            typer.echo(f"{_where(url)} has no tables yet: run `atelier db upgrade`.")
        elif now == head:
            typer.echo(f"{_where(url)} is at revision {now} (latest).")
        else:
            typer.echo(f"{_where(url)} is at revision {now}; the latest is {head}: run `atelier db upgrade`.")

    @db_app.command("downgrade")
    def downgrade_command(
        revision: str = typer.Argument(..., help="Revision to go back to, or 'base' to remove every table."),
        url: Optional[str] = typer.Option(None, "--url", help=URL_HELP),
        yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    ) -> None:
        """Go back to an older schema. Tables added after that revision are dropped, with their rows."""
        from db import migrate

        if not yes:
            typer.confirm(
                f"Downgrade {_where(url)} to {revision}? Data in tables newer than that revision is deleted.",
                abort=True,
            )
        now = _run(lambda: migrate.downgrade(url, revision))
        typer.echo(f"{_where(url)} is at revision {now or 'base (no tables)'}.")

    app.add_typer(db_app, name="db")
