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
from pathlib import Path

import pytest

from browser_harness import (app_env, assert_page_clean, heading, launch_browser, nav, new_page, require_browser,
                             screenshots_folder, serve_app, settle, shot, wait_heading_change)
from conftest import REFERENCE, REPO

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(420)]

LABEL = "longer <b>sleeves</b> **bold**"
SLIDER_NAME = "longer sleeves"


@pytest.fixture(scope="module")
def screenshots() -> Path:
    return screenshots_folder()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    home = tmp_path_factory.mktemp("browser-home")
    model = os.environ.get("ATELIER_BROWSER_MODEL")
    if not model:
        model = str(home / "tiny32.safetensors")
        from model.network.checkpoint import convert

        convert(REFERENCE / "sg2ada_tiny32.pkl", model)
    runs = home / ".cache" / "atelier" / "runs"  # where runs live by default, under the app's own home folder
    env = app_env(home, model, runs)
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
    with serve_app(env, log) as url:
        yield url, log


def _score_before_start(env: dict[str, str]) -> None:
    """For the README's screenshots only: set up the database and score every component before the app starts, so
    the Review page shows the automatic scores as a team sees them once the first start's scoring has finished."""
    from unittest import mock

    from annotator import services

    with mock.patch.dict(os.environ, env):  # the app's settings, for this process too, and back afterwards
        ctx = services.bootstrap(score_in_background=False)
        assert services.score_components(ctx.component_set.id, ctx.model) > 0


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
        browser = launch_browser(p)
        browser_errors: list[str] = []
        try:
            page, browser_errors = new_page(browser, 1500, 1000)
            page.goto(url)
            assert_page_clean(page, browser_errors, "opening the app")

            # Sign in (once per browser session).
            sidebar = page.locator('[data-testid="stSidebar"]')
            sidebar.get_by_label("Your name", exact=True).fill("Ana")
            sidebar.get_by_role("button", name="Sign in").click()
            page.get_by_role("heading", name=re.compile(r"^Component \d+$")).wait_for()
            settle(page)
            page.get_by_role("img").first.wait_for()
            assert_page_clean(page, browser_errors, "signing in (Review)")
            shot(page, screenshots, "review")

            # Three components with the keyboard: reject, unsure, then approve with a label.
            first = heading(page)
            page.locator("h1").first.click()
            page.keyboard.press("x")
            second = wait_heading_change(page, first)
            assert_page_clean(page, browser_errors, "rejecting with x (Review)")
            page.locator("h1").first.click()
            page.keyboard.press("u")
            third = wait_heading_change(page, second)
            assert_page_clean(page, browser_errors, "marking unsure with u (Review)")
            page.get_by_label("Label", exact=True).fill(LABEL)
            page.locator("h1").first.click()  # leave the text box: shortcuts never fire while typing
            page.keyboard.press("a")
            wait_heading_change(page, third)
            assert_page_clean(page, browser_errors, "approving with a label (Review)")
            approved_index = int(third.split()[-1])
            # Each key recorded its own decision, on the component it was pressed on (not just "moved on").
            indices = [int(shown.split()[-1]) for shown in (first, second, third)]
            assert _reviews_by(log.parent / "atelier.db", "Ana") == [
                (indices[0], "reject", ""), (indices[1], "unsure", ""), (indices[2], "approve", LABEL)]

            # Publish the approved component under a clean name.
            nav(page, "Directions & export")
            assert_page_clean(page, browser_errors, "opening Directions & export")
            form = page.locator('[data-testid="stVerticalBlock"]').filter(
                has=page.get_by_text(f"Component {approved_index}", exact=True)).last
            expect(page.get_by_text(f"Component {approved_index}", exact=False).first).to_be_visible()
            # The label from the review arrives as the default name, literally (no HTML, no Markdown).
            expect(form.get_by_label("Name", exact=True)).to_have_value(LABEL)
            form.get_by_label("Name", exact=True).fill(SLIDER_NAME)
            form.get_by_role("button", name="Publish").click()
            settle(page)
            expect(page.get_by_text("Nothing published yet.")).to_have_count(0)
            assert_page_clean(page, browser_errors, "publishing (Directions & export)")
            shot(page, screenshots, "directions")

            # Generate: the direction is a slider; move it and watch the URL follow.
            nav(page, "Generate")
            assert_page_clean(page, browser_errors, "opening Generate")
            slider = page.locator('[data-testid="stSlider"]').filter(has_text=SLIDER_NAME).get_by_role("slider")
            slider.wait_for()
            slider.focus()
            for _ in range(8):
                page.keyboard.press("ArrowRight")
            page.wait_for_function("() => /d\\.\\d+=0\\.8/.test(window.location.search)", timeout=30_000)
            settle(page)
            shared = page.url
            assert "seed=" in shared
            assert_page_clean(page, browser_errors, "moving the slider (Generate)")
            page.get_by_label("Look name", exact=True).fill("first look")
            page.get_by_role("button", name="Save look").click()
            expect(page.get_by_text("Saved look")).to_be_visible()
            assert_page_clean(page, browser_errors, "saving the look (Generate)")
            shot(page, screenshots, "generate")

            # Looks: reopen the look in Generate, slider value and all.
            nav(page, "Looks")
            expect(page.get_by_text("first look")).to_be_visible()
            assert_page_clean(page, browser_errors, "opening Looks")
            shot(page, screenshots, "looks")
            page.get_by_role("button", name="Open in Generate").first.click()
            page.get_by_role("heading", name="Generate", level=1).wait_for()
            page.wait_for_function("() => /d\\.\\d+=0\\.8/.test(window.location.search)", timeout=30_000)
            settle(page)
            reopened = page.locator('[data-testid="stSlider"]').filter(has_text=SLIDER_NAME)
            expect(reopened.get_by_test_id("stSliderThumbValue")).to_have_text("+0.8 σ")
            assert_page_clean(page, browser_errors, "reopening the look (Generate)")

            for title, name in (("Overview", "overview"), ("Components", "components"), ("Map", "map"),
                                ("Models", "models"), ("Training", "training")):
                nav(page, title)
                assert_page_clean(page, browser_errors, f"opening {title}")
                if name == "training":  # the command that continues the run, home folder as `~`
                    resume = page.locator("code").filter(has_text="--resume auto --outdir ~/.cache/atelier/runs/")
                    expect(resume).to_be_visible()
                shot(page, screenshots, name)
            assert "Traceback" not in log.read_text()
        except BaseException:
            shot(page, screenshots, "failure")
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
