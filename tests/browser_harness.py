"""What the browser tests share: the app under `streamlit run` on a free loopback port with its own ATELIER_HOME,
Debian's chromium through Playwright, and the waits and checks every page visit needs.

Test modules import what they use (``from browser_harness import ...``); pytest puts ``tests/`` on sys.path.
Each test module keeps its own specifics (which model, which runs folder, which variables it clears, what it
prepares in the database before the server starts) and passes them in.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import REPO, require_service

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage"]
PAGE_TIMEOUT_MS = 60_000  # a page run renders images on two busy cores: generous, so slowness is no failure


def require_browser() -> None:
    """Skip locally without chromium or Playwright; under CI=true fail instead (conftest.require_service)."""
    require_service(CHROMIUM.exists(), f"{CHROMIUM} is missing (install it with .ci/browser.sh)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        require_service(False, "playwright is not installed (pip install -e '.[test]')")


def app_env(home: Path, model: str | Path, runs: Path, unset: Iterable[str] = ()) -> dict[str, str]:
    """The server's environment: this process's, with its own home folder, model and runs folder, no scoring on
    start, and the SQLite file in `home` (ATELIER_DATABASE_URL and the names in `unset` are removed)."""
    env = dict(os.environ, HOME=str(home), ATELIER_HOME=str(home), ATELIER_MODEL=str(model),
               ATELIER_SCORE_ON_START="0", ATELIER_RUNS=str(runs), PYTHONUNBUFFERED="1")
    for name in ("ATELIER_DATABASE_URL", *unset):
        env.pop(name, None)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"streamlit exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"streamlit did not become healthy in {timeout} s:\n{log.read_text()[-4000:]}")


@contextmanager
def serve_app(env: dict[str, str], log: Path, minimal_toolbar: bool = True) -> Iterator[str]:
    """Run annotator/app.py headless on a free 127.0.0.1 port, its output in `log`; yield its URL once healthy and
    stop it afterwards (killed if it does not end within 15 s)."""
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(REPO / "annotator" / "app.py"),
               "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
               "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    if minimal_toolbar:
        command += ["--client.toolbarMode", "minimal"]
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def screenshots_folder() -> Path:
    """Where screenshots go: $ATELIER_SCREENSHOTS, else test-artifacts/screenshots/ in the checkout."""
    folder = Path(os.environ.get("ATELIER_SCREENSHOTS", REPO / "test-artifacts" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def launch_browser(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)


def new_page(browser, width: int, height: int):
    """A fresh page (its own context, so its own cookies) and the list its browser errors are collected in."""
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    return page, watch_browser_errors(page)


def settle(page, timeout: float = 60_000) -> None:
    """Wait until Streamlit has finished the current run: no running indicator and no stale (greyed) element
    left from the previous run, so keys and clicks reach the new widgets."""
    page.wait_for_timeout(200)
    page.wait_for_function(
        """() => !document.querySelector('[data-testid="stStatusWidgetRunningIcon"]')
                 && !document.querySelector('[data-stale="true"]')""", timeout=timeout)
    page.wait_for_timeout(200)


def heading(page) -> str:
    return page.locator("h1").first.inner_text(timeout=60_000)


def wait_heading_change(page, before: str, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = heading(page)
        if now != before and now.startswith("Component"):
            return now
        page.wait_for_timeout(100)
    raise AssertionError(f"the Review page stayed on {before!r}")


def nav(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title).click()
    page.get_by_role("heading", name=title, level=1).wait_for(timeout=60_000)
    settle(page)


def shot(page, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def watch_browser_errors(page) -> list[str]:
    """Collect uncaught JavaScript exceptions and console errors into a list the test asserts on: a broken
    frontend (or a Streamlit client error) must fail the test, not just scroll past in its output. Nothing is
    filtered: a full run logs no console error at all (favicon and the rest load fine), so any new one is news."""
    errors: list[str] = []

    def on_page_error(exc) -> None:
        errors.append(f"uncaught JavaScript error: {exc}")

    def on_console(message) -> None:
        if message.type != "error":
            return
        text = message.text
        where = message.location.get("url", "") if message.location else ""
        errors.append(f"console error: {text}" + (f" (at {where})" if where else ""))

    page.on("pageerror", on_page_error)
    page.on("console", on_console)
    return errors


def drop_base_path_probes(errors: list[str]) -> None:
    """Opened at /<page>, Streamlit's frontend first looks for its server under that path (404s in the console for
    /<page>/_stcore/health and …/host-config) before it finds it at the root: its own way of supporting a base
    URL, not an error of the app. A 404 for the root's own /_stcore/… stays an error."""
    errors[:] = [e for e in errors if not re.search(r"404 .*/[a-z]+/_stcore/(health|host-config)", e)]


def assert_page_clean(page, browser_errors: list[str], step: str, expected_errors: tuple[str, ...] = ()) -> None:
    """After a page visit or an interaction: no JavaScript/console error so far, no Python exception box
    (stException, what Streamlit shows for an uncaught exception) and no st.error box the step did not provoke on
    purpose (each one in the app reports a failed AtelierError). `expected_errors` lists substrings of st.error
    messages a step triggers deliberately, e.g. a friendly message for a bad input."""
    settle(page)
    assert not browser_errors, f"after {step}: errors in the browser:\n" + "\n".join(browser_errors)
    exceptions = page.locator('[data-testid="stException"]').all_inner_texts()
    assert not exceptions, f"after {step}: Streamlit shows an exception on {page.url}:\n" + "\n---\n".join(exceptions)
    alerts = page.locator('[data-testid="stAlertContentError"]').all_inner_texts()
    unexpected = [text for text in alerts if not any(wanted in text for wanted in expected_errors)]
    assert not unexpected, f"after {step}: unexpected st.error on {page.url}:\n" + "\n---\n".join(unexpected)
