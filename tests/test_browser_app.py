"""End to end in a real browser: `streamlit run` headless + Debian's chromium driven by Playwright.

Signs in, reviews three components with the keyboard (reject, unsure, approve with a label), publishes the
approved one, moves its slider on Generate, saves the look and reopens it from Looks. A screenshot of every page
goes to test-artifacts/screenshots/ (or $ATELIER_SCREENSHOTS); with ATELIER_UPDATE_DOCS_SCREENSHOTS=1 the Review
and Generate shots are also written to docs/screenshots/ for the README.

The model is the reference tiny 32 px generator converted to safetensors (fast on CPU), unless ATELIER_BROWSER_MODEL
names another file (e.g. the demo model, for the README screenshots). The Training page shows a tiny run trained
for the test, unless ATELIER_BROWSER_RUN names a real run folder (linked, only read; its shot then goes to the
docs too).
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import REFERENCE, REPO, require_service

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(420)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage"]
LABEL = "longer <b>sleeves</b> **bold**"
SLIDER_NAME = "longer sleeves"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float = 90) -> None:
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


@pytest.fixture(scope="module")
def screenshots() -> Path:
    folder = Path(os.environ.get("ATELIER_SCREENSHOTS", REPO / "test-artifacts" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_service(CHROMIUM.exists(), f"{CHROMIUM} is missing (install it with .ci/browser.sh)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        require_service(False, "playwright is not installed (pip install -e '.[test]')")
    home = tmp_path_factory.mktemp("browser-home")
    model = os.environ.get("ATELIER_BROWSER_MODEL")
    if not model:
        model = str(home / "tiny32.safetensors")
        from model.checkpoint import convert

        convert(REFERENCE / "sg2ada_tiny32.pkl", model)
    port = _free_port()
    runs = home / ".cache" / "atelier" / "runs"  # where runs live by default, under the app's own home folder
    env = dict(os.environ, HOME=str(home), ATELIER_HOME=str(home), ATELIER_MODEL=model, ATELIER_SCORE_ON_START="0",
               ATELIER_RUNS=str(runs), PYTHONUNBUFFERED="1")
    env.pop("ATELIER_DATABASE_URL", None)
    from test_runs import tiny_run

    if os.environ.get("ATELIER_BROWSER_RUN"):  # README screenshots: show a real run (linked, only read)
        real_run = Path(os.environ["ATELIER_BROWSER_RUN"]).expanduser().resolve()
        runs.mkdir(parents=True)
        (runs / real_run.name).symlink_to(real_run, target_is_directory=True)
    else:
        tiny_run(runs / "spring-looks", quality_samples=16)  # the Training page draws charts and samples
    if os.environ.get("ATELIER_UPDATE_DOCS_SCREENSHOTS") == "1":
        _score_before_start(env)
    log = home / "streamlit.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(REPO / "annotator" / "app.py"),
             "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
             "--client.toolbarMode", "minimal"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, log)
        yield url, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def _score_before_start(env: dict[str, str]) -> None:
    """For the README's screenshots only: set up the database and score every component before the app starts, so
    the Review page shows the automatic scores as a team sees them once the first start's scoring has finished."""
    from unittest import mock

    from annotator import services

    with mock.patch.dict(os.environ, env):  # the app's settings, for this process too, and back afterwards
        ctx = services.bootstrap(score_in_background=False)
        assert services.score_components(ctx.component_set.id, ctx.model) > 0


def _settle(page, timeout: float = 60_000) -> None:
    """Wait until Streamlit has finished the current run: no running indicator and no stale (greyed) element
    left from the previous run, so keys and clicks reach the new widgets."""
    page.wait_for_timeout(200)
    page.wait_for_function(
        """() => !document.querySelector('[data-testid="stStatusWidgetRunningIcon"]')
                 && !document.querySelector('[data-stale="true"]')""", timeout=timeout)
    page.wait_for_timeout(200)


def _heading(page) -> str:
    return page.locator("h1").first.inner_text(timeout=60_000)


def _wait_heading_change(page, before: str, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = _heading(page)
        if now != before and now.startswith("Component"):
            return now
        page.wait_for_timeout(100)
    raise AssertionError(f"the Review page stayed on {before!r}")


def _nav(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title).click()
    page.get_by_role("heading", name=title, level=1).wait_for(timeout=60_000)
    _settle(page)


def _shot(page, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _watch_browser_errors(page) -> list[str]:
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


def _assert_page_clean(page, browser_errors: list[str], step: str, expected_errors: tuple[str, ...] = ()) -> None:
    """After a page visit or an interaction: no JavaScript/console error so far, no Python exception box
    (stException, what Streamlit shows for an uncaught exception) and no st.error box the step did not provoke on
    purpose (each one in the app reports a failed AtelierError). `expected_errors` lists substrings of st.error
    messages a step triggers deliberately, e.g. a friendly message for a bad input."""
    _settle(page)
    assert not browser_errors, f"after {step}: errors in the browser:\n" + "\n".join(browser_errors)
    exceptions = page.locator('[data-testid="stException"]').all_inner_texts()
    assert not exceptions, f"after {step}: Streamlit shows an exception on {page.url}:\n" + "\n---\n".join(exceptions)
    alerts = page.locator('[data-testid="stAlertContentError"]').all_inner_texts()
    unexpected = [text for text in alerts if not any(wanted in text for wanted in expected_errors)]
    assert not unexpected, f"after {step}: unexpected st.error on {page.url}:\n" + "\n---\n".join(unexpected)


def _reviews_by(database: Path, reviewer: str) -> list[tuple[int, str, str]]:
    """(component index, decision, label) of a reviewer's reviews, oldest first, read from the app's database."""
    from sqlalchemy import select

    from db.engine import read_session
    from db.schema import Component, Review, Reviewer

    query = (select(Component.index, Review.decision, Review.label)
             .join(Review, Review.component_id == Component.id).join(Reviewer, Reviewer.id == Review.reviewer_id)
             .where(Reviewer.name == reviewer).order_by(Review.id))
    with read_session(f"sqlite:///{database}") as session:
        return [tuple(row) for row in session.execute(query).all()]


def test_review_publish_generate_save_reopen(server, screenshots):
    from playwright.sync_api import expect, sync_playwright

    url, log = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        browser_errors: list[str] = []
        try:
            context = browser.new_context(viewport={"width": 1500, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(60_000)
            browser_errors = _watch_browser_errors(page)
            page.goto(url)
            _assert_page_clean(page, browser_errors, "opening the app")

            # Sign in (once per browser session).
            sidebar = page.locator('[data-testid="stSidebar"]')
            sidebar.get_by_label("Your name", exact=True).fill("Ana")
            sidebar.get_by_role("button", name="Sign in").click()
            page.get_by_role("heading", name=re.compile(r"^Component \d+$")).wait_for()
            _settle(page)
            page.get_by_role("img").first.wait_for()
            _assert_page_clean(page, browser_errors, "signing in (Review)")
            _shot(page, screenshots, "review")

            # Three components with the keyboard: reject, unsure, then approve with a label.
            first = _heading(page)
            page.locator("h1").first.click()
            page.keyboard.press("x")
            second = _wait_heading_change(page, first)
            _assert_page_clean(page, browser_errors, "rejecting with x (Review)")
            page.locator("h1").first.click()
            page.keyboard.press("u")
            third = _wait_heading_change(page, second)
            _assert_page_clean(page, browser_errors, "marking unsure with u (Review)")
            page.get_by_label("Label", exact=True).fill(LABEL)
            page.locator("h1").first.click()  # leave the text box: shortcuts never fire while typing
            page.keyboard.press("a")
            _wait_heading_change(page, third)
            _assert_page_clean(page, browser_errors, "approving with a label (Review)")
            approved_index = int(third.split()[-1])
            # Each key recorded its own decision, on the component it was pressed on (not just "moved on").
            indices = [int(heading.split()[-1]) for heading in (first, second, third)]
            assert _reviews_by(log.parent / "atelier.db", "Ana") == [
                (indices[0], "reject", ""), (indices[1], "unsure", ""), (indices[2], "approve", LABEL)]

            # Publish the approved component under a clean name.
            _nav(page, "Directions & export")
            _assert_page_clean(page, browser_errors, "opening Directions & export")
            form = page.locator('[data-testid="stVerticalBlock"]').filter(
                has=page.get_by_text(f"Component {approved_index}", exact=True)).last
            expect(page.get_by_text(f"Component {approved_index}", exact=False).first).to_be_visible()
            # The label from the review arrives as the default name, literally (no HTML, no Markdown).
            expect(form.get_by_label("Name", exact=True)).to_have_value(LABEL)
            form.get_by_label("Name", exact=True).fill(SLIDER_NAME)
            form.get_by_role("button", name="Publish").click()
            _settle(page)
            expect(page.get_by_text("Nothing published yet.")).to_have_count(0)
            _assert_page_clean(page, browser_errors, "publishing (Directions & export)")
            _shot(page, screenshots, "directions")

            # Generate: the direction is a slider; move it and watch the URL follow.
            _nav(page, "Generate")
            _assert_page_clean(page, browser_errors, "opening Generate")
            slider = page.locator('[data-testid="stSlider"]').filter(has_text=SLIDER_NAME).get_by_role("slider")
            slider.wait_for()
            slider.focus()
            for _ in range(8):
                page.keyboard.press("ArrowRight")
            page.wait_for_function("() => /d\\.\\d+=0\\.8/.test(window.location.search)", timeout=30_000)
            _settle(page)
            shared = page.url
            assert "seed=" in shared
            _assert_page_clean(page, browser_errors, "moving the slider (Generate)")
            page.get_by_label("Look name", exact=True).fill("first look")
            page.get_by_role("button", name="Save look").click()
            expect(page.get_by_text("Saved look")).to_be_visible()
            _assert_page_clean(page, browser_errors, "saving the look (Generate)")
            _shot(page, screenshots, "generate")

            # Looks: reopen the look in Generate, slider value and all.
            _nav(page, "Looks")
            expect(page.get_by_text("first look")).to_be_visible()
            _assert_page_clean(page, browser_errors, "opening Looks")
            _shot(page, screenshots, "looks")
            page.get_by_role("button", name="Open in Generate").first.click()
            page.get_by_role("heading", name="Generate", level=1).wait_for()
            page.wait_for_function("() => /d\\.\\d+=0\\.8/.test(window.location.search)", timeout=30_000)
            _settle(page)
            reopened = page.locator('[data-testid="stSlider"]').filter(has_text=SLIDER_NAME)
            expect(reopened.get_by_test_id("stSliderThumbValue")).to_have_text("+0.8 σ")
            _assert_page_clean(page, browser_errors, "reopening the look (Generate)")

            for title, name in (("Overview", "overview"), ("Components", "components"), ("Map", "map"),
                                ("Models", "models"), ("Training", "training")):
                _nav(page, title)
                _assert_page_clean(page, browser_errors, f"opening {title}")
                if name == "training":  # the command that continues the run, home folder as `~`
                    resume = page.locator("code").filter(has_text="--resume auto --outdir ~/.cache/atelier/runs/")
                    expect(resume).to_be_visible()
                _shot(page, screenshots, name)
            assert "Traceback" not in log.read_text()
        except BaseException:
            _shot(page, screenshots, "failure")
            print(log.read_text()[-3000:])
            print("browser errors:", *browser_errors, sep="\n")
            raise
        finally:
            browser.close()

    if os.environ.get("ATELIER_UPDATE_DOCS_SCREENSHOTS") == "1":
        docs = REPO / "docs" / "screenshots"
        docs.mkdir(parents=True, exist_ok=True)
        for name in ("review", "generate") + (("training",) if os.environ.get("ATELIER_BROWSER_RUN") else ()):
            shutil.copyfile(screenshots / f"{name}.png", docs / f"{name}.png")
