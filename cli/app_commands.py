"""Sub-commands of `atelier` that belong to the `annotator` package: `atelier app` and `atelier bench app`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import webbrowser
from pathlib import Path
from typing import Optional

import typer

from cli.model_commands import device_option, precision_option
from core.errors import AtelierError, exit_on_user_error

APP_FILE = Path(__file__).resolve().parents[1] / "annotator" / "app.py"


def streamlit_command(port: int, host: str) -> list[str]:
    """The `streamlit run` command line for the app (what `atelier app` executes).

    Always headless: otherwise Streamlit asks for an e-mail address on a machine's first run, which blocks or, with
    no terminal, fails. Atelier opens the browser itself when asked to (see `app`).
    """
    return [sys.executable, "-m", "streamlit", "run", str(APP_FILE),
            "--server.port", str(port), "--server.address", host, "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
            # served to a team (beyond this machine, or behind a proxy with ATELIER_TEAM=1): an uncaught error
            # shows a generic message, never a traceback with the server's paths
            "--client.showErrorDetails", "full" if is_loopback(host) and not _team_env() else "none"]


def _team_env() -> bool:
    return os.environ.get("ATELIER_TEAM", "").strip() == "1"  # as db.accounts.team_mode reads it


def _wait_until_serving(url: str, process: subprocess.Popen, seconds: float = 60.0) -> bool:
    """Poll Streamlit's health endpoint until it answers, the server exits, or time runs out."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    return False


def is_loopback(host: str) -> bool:
    import ipaddress

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may well be reachable from the network


def require_team_accounts(host: str) -> None:
    """Serving beyond this machine needs accounts: refuse to start without an admin, and turn team mode on."""
    if is_loopback(host):
        return
    from db import accounts
    from db.engine import read_session
    from db.migrate import ensure_current

    ensure_current()
    with read_session() as session:
        admins = [a for a in accounts.list_accounts(session) if a.admin and not a.disabled]
    if not admins:
        raise AtelierError(
            f"--host {host} lets anyone who reaches this machine in, so the app needs accounts: create an admin first "
            "with `atelier users add NAME --admin` (then one account per teammate), or serve on 127.0.0.1.")
    os.environ[accounts.TEAM_ENV] = "1"  # inherited by the Streamlit process


@exit_on_user_error
def app(
    port: int = typer.Option(8501, help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 to serve the team's network)."),
    headless: bool = typer.Option(False, "--headless", help="Do not open a browser (for servers)."),
    device: str = device_option(),
    precision: str = precision_option(),
) -> None:
    """Start the annotator in the browser: review, label, publish directions, design looks."""
    from model.network.render import DEVICE_ENV, PRECISION_ENV, check_precision, pick_device

    if not 1 <= port <= 65535:
        raise AtelierError(f"--port must be 1 … 65535, got {port}")
    pick_device(device)  # a GPU asked for and missing is said here, not on the first page
    os.environ[DEVICE_ENV], os.environ[PRECISION_ENV] = device, check_precision(precision)  # the app's renderers
    require_team_accounts(host)
    command = streamlit_command(port, host)
    url = f"http://{'localhost' if host in ('0.0.0.0', '::') else host}:{port}"
    typer.echo(f"Atelier on {url}  (Ctrl+C stops it)")
    sys.stdout.flush()
    if headless:
        os.execv(sys.executable, command)
    process = subprocess.Popen(command)
    try:
        if _wait_until_serving(url, process):
            webbrowser.open(url)
        code = process.wait()
    except KeyboardInterrupt:
        process.terminate()
        code = process.wait()
    raise typer.Exit(code)


@exit_on_user_error
def bench_app_command(
    network: Optional[Path] = typer.Option(None, "--network", "-n", help="Generator file (default: the demo model)."),
    reviews: int = typer.Option(8, help="Approvals to time."),
    moves: int = typer.Option(20, help="Slider moves to time."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Approve → next strip and slider → image latency of the app's code paths (no browser)."""
    from annotator.bench import bench_app, format_app_table
    from model.network.render import configure_threads

    if reviews < 1 or moves < 1:
        raise AtelierError(f"--reviews {reviews} --moves {moves}: time at least one of each (8 and 20 by default)")
    configure_threads()
    result = bench_app(network, reviews=reviews, moves=moves)
    typer.echo(json.dumps(result) if as_json else format_app_table(result))


@exit_on_user_error
def bench_review_command(
    network: Optional[Path] = typer.Option(None, "--network", "-n", help="Generator file (default: the demo model), "
                                                                        "or random:RESxCH (e.g. random:256x512)."),
    components: int = typer.Option(0, help="Score only the first N components and extrapolate the rest (0: all)."),
    device: str = device_option(),
    precision: str = precision_option(),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """What a reviewer waits for: queue ready (first 32 components scored), all scored, a strip cold and cached
    (and its low-resolution first view), a Generate image, peak memory."""
    from annotator.bench import bench_review, format_review_table
    from model.network.render import configure_threads

    if components < 0:
        raise AtelierError(f"--components must be 0 (all) or a positive number, not {components}")
    configure_threads()
    result = bench_review(network, device=device, precision=precision, components=components or None)
    typer.echo(json.dumps(result) if as_json else format_review_table(result))


def register(app_root: typer.Typer) -> None:
    """Add this package's sub-commands to the root `atelier` app."""
    from cli.model_commands import bench_app

    app_root.command("app")(app)
    bench_app.command("app")(bench_app_command)
    bench_app.command("review")(bench_review_command)
