"""Sub-commands of `atelier` that belong to the `annotator` package: `atelier app` and `atelier bench app`."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from model.errors import AtelierError, exit_on_user_error

APP_FILE = Path(__file__).resolve().parent / "app.py"


def streamlit_command(port: int, host: str, headless: bool) -> list[str]:
    """The `streamlit run` command line for the app (what `atelier app` executes)."""
    return [sys.executable, "-m", "streamlit", "run", str(APP_FILE),
            "--server.port", str(port), "--server.address", host,
            "--server.headless", "true" if headless else "false",
            "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal"]


@exit_on_user_error
def app(
    port: int = typer.Option(8501, help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 to serve the team's network)."),
    headless: bool = typer.Option(False, "--headless", help="Do not open a browser (for servers)."),
) -> None:
    """Start the annotator in the browser: review, label, publish directions, design looks."""
    if not 1 <= port <= 65535:
        raise AtelierError(f"--port must be 1 … 65535, got {port}")
    command = streamlit_command(port, host, headless)
    typer.echo(f"Atelier on http://{host}:{port}  (Ctrl+C stops it)")
    sys.stdout.flush()
    os.execv(sys.executable, command)


@exit_on_user_error
def bench_app_command(
    network: Optional[Path] = typer.Option(None, "--network", "-n", help="Generator file (default: the demo model)."),
    reviews: int = typer.Option(8, help="Approvals to time."),
    moves: int = typer.Option(20, help="Slider moves to time."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Approve → next strip and slider → image latency of the app's code paths (no browser)."""
    from annotator.bench import bench_app, format_app_table
    from model.render import configure_threads

    configure_threads()
    result = bench_app(network, reviews=reviews, moves=moves)
    typer.echo(json.dumps(result) if as_json else format_app_table(result))


def register(app_root: typer.Typer) -> None:
    """Add this package's sub-commands to the root `atelier` app."""
    from model.commands import bench_app

    app_root.command("app")(app)
    bench_app.command("app")(bench_app_command)
