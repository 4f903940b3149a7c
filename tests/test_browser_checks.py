"""In a real browser (headless chromium + Playwright), on the demo model: the failures issue 22 found, each driven
the way a person meets it.

- every component opens on its own layer range, the strip says the range A records, and A records exactly it;
- A/X/U/S work again after typing a label and pressing Esc or Tab; /review is a URL of its own;
- a dead slider is refused on Directions & export with the reason; forcing records the override; re-approving on
  other layers marks the direction out of date with a one-click update; a conflict shows there and on Generate;
- a saved look shows as saved after its direction is re-published on other layers, and says what differs;
- the Map page draws its points in colours and a click shows the look.

The database is prepared in this process before the app starts (the app and the test share the SQLite file), so
each test starts from a known state without clicking through the parts other tests cover.
"""
from __future__ import annotations

import os
import re
from unittest import mock
from urllib.parse import urlparse

import pytest

from browser_harness import (app_env, assert_page_clean, drop_base_path_probes, heading, launch_browser, nav,
                             new_page, require_browser, screenshots_folder, serve_app, settle, shot)
from conftest import REPO

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

DEMO = REPO / "model" / "assets" / "demo.safetensors"
SEEDS = [11, 22, 33, 44]


def _measure(renderer, vectors, sigmas, presets) -> tuple[int, tuple[int, int], tuple[int, int]]:
    """(component, layers where it changes nothing visible, layers where it clearly acts), measured like the
    publish check does, so the test does not depend on which component that happens to be."""
    from model.directions import publishing

    for index in range(8):
        measured = {name: publishing.measure_effect(renderer, vectors[index], float(sigmas[index]), span,
                                                    (-3.0, 3.0), SEEDS).measured
                    for name, span in presets.items() if name != "all"}
        weakest, strongest = min(measured, key=measured.get), max(measured, key=measured.get)
        if measured[weakest] < publishing.VISIBLE_CHANGE / 2 and measured[strongest] > 2 * publishing.VISIBLE_CHANGE:
            return index, presets[weakest], presets[strongest]
    pytest.fail("no demo component is dead on one layer group and alive on another")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app on the demo model with a prepared database, a map, and the component the checks need."""
    require_browser()
    home = tmp_path_factory.mktemp("checks-home")
    env = app_env(home, DEMO, home / "runs")
    with mock.patch.dict(os.environ, env):
        facts = _prepare()
    log = home / "streamlit.log"
    with serve_app(env, log) as url:
        yield url, log, facts


def _prepare() -> dict:
    """Bootstrap the database as the app would, give the first components a suggested layer group, and measure
    which component is dead on one group and alive on another."""
    from annotator import maps, services
    from workflows import registry
    from db import queries as q
    from db.engine import read_session, write_session
    from db.records import ComponentScores

    ctx = services.bootstrap(score_in_background=False)
    renderer = registry.renderer_for(ctx.model)
    presets = services.layer_presets(renderer)
    with read_session(ctx.url) as session:
        components = q.list_components(session, ctx.component_set.id)[:8]
        vectors = [q.component_vector(session, c.id) for c in components]
    index, dead, alive = _measure(renderer, vectors, [c.sigma for c in components], presets)
    with write_session(ctx.url) as session:
        q.set_review_seeds(session, ctx.component_set.id, SEEDS)
        # The queue is in index order while nothing is scored; 0 and 1 get a suggested group, 2 none.
        q.update_scores(session, ctx.component_set.id, [ComponentScores(index=0, layer_sensitivity="coarse"),
                                                        ComponentScores(index=1, layer_sensitivity="fine")])
        for name in ("Ana", "Eve", "Setup"):
            q.ensure_reviewer(session, name)
    maps.compute(renderer, 200)
    return {"url": ctx.url, "model_id": ctx.model.id, "ids": [c.id for c in components], "presets": presets,
            "index": index, "dead": dead, "alive": alive}


def _page(browser, url: str, path: str = ""):
    page, errors = new_page(browser, 1500, 1100)
    page.goto(f"{url}/{path}")
    settle(page)
    drop_base_path_probes(errors)
    return page, errors


def _reload(page, errors: list[str], reviewer: str) -> None:
    page.reload()
    settle(page)
    drop_base_path_probes(errors)
    _sign_in(page, reviewer)


def _sign_in(page, name: str) -> None:
    """Sign in unless this browser session already is (the sidebar shows one or the other once it has drawn)."""
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text(re.compile(r"^(Your name|Signed in as)$")).first.wait_for()
    field = sidebar.get_by_label("Your name", exact=True)
    if field.count():
        field.fill(name)
        sidebar.get_by_role("button", name="Sign in").click()
    settle(page)


def _layers_caption(page) -> str:
    return page.get_by_text(re.compile(r"approving records these")).inner_text()


def _review(url: str, reviewer: str, component_id: int):
    from db import queries as q
    from db.engine import read_session

    with read_session(url) as session:
        return q.latest_review(session, reviewer, component_id)


def _press_after_focus_leaves(page, key: str, before: str) -> str:
    """Press a key with no click in between and wait for the next component."""
    page.keyboard.press(key)
    deadline_ms = 60_000
    page.wait_for_function("(before) => { const h = document.querySelector('h1'); "
                           "return h && h.innerText !== before && h.innerText.startsWith('Component'); }",
                           arg=before, timeout=deadline_ms)
    settle(page)
    return heading(page)


def test_each_component_opens_on_its_own_layers_and_keys_come_back_after_typing(app, tmp_path):
    from playwright.sync_api import sync_playwright

    url, log, facts = app
    presets, ids, db = facts["presets"], facts["ids"], facts["url"]
    with sync_playwright() as p:
        browser = launch_browser(p)
        try:
            page, errors = _page(browser, url, "review")  # a URL of its own, not "Page not found"
            assert "Page not found" not in page.content()
            _sign_in(page, "Ana")
            page.get_by_role("heading", name="Component 0", level=1).wait_for()
            assert_page_clean(page, errors, "opening /review")
            coarse, middle, fine, every = (presets[k] for k in ("coarse", "middle", "fine", "all"))
            assert f"layers {coarse[0]}–{coarse[1] - 1} of" in _layers_caption(page)  # its suggested group

            # Choose another group for component 0: the strip's caption follows, and A records what it says.
            page.get_by_text("middle", exact=True).first.click()
            settle(page)
            assert f"layers {middle[0]}–{middle[1] - 1} of" in _layers_caption(page)
            page.get_by_label("Label", exact=True).fill("waist")
            page.keyboard.press("Escape")  # gives the keys back, no click
            second = _press_after_focus_leaves(page, "a", "Component 0")
            assert second == "Component 1"
            review = _review(db, "Ana", ids[0])
            assert review.decision == "approve" and review.label == "waist" and review.layer_range == middle

            # Component 1 opens on its own suggestion (fine), not on component 0's "middle".
            assert f"layers {fine[0]}–{fine[1] - 1} of" in _layers_caption(page)
            page.get_by_label("Label", exact=True).fill("hem colour")
            page.keyboard.press("Tab")  # leaving the label box with Tab gives the keys back too
            third = _press_after_focus_leaves(page, "a", second)
            review = _review(db, "Ana", ids[1])
            assert review.label == "hem colour" and review.layer_range == fine
            # Component 2 has no suggestion: every layer.
            assert third == "Component 2" and f"layers {every[0]}–{every[1] - 1} of" in _layers_caption(page)
            assert_page_clean(page, errors, "reviewing with the keyboard")

            # Back on component 0 it opens on what Ana approved it on.
            page.get_by_label("Go to #").fill("0")
            page.get_by_label("Go to #").press("Enter")
            page.get_by_role("heading", name="Component 0", level=1).wait_for()
            settle(page)
            assert f"layers {middle[0]}–{middle[1] - 1} of" in _layers_caption(page)

            # A reload keeps the page's URL working.
            _reload(page, errors, "Ana")
            assert urlparse(page.url).path == "/review" and "Page not found" not in page.content()
            page.get_by_role("heading", name=re.compile(r"^Component \d+$"), level=1).wait_for()
            assert_page_clean(page, errors, "reloading /review")
        except BaseException:
            shot(page, screenshots_folder(), "failure-layers")
            print(log.read_text()[-3000:])
            raise
        finally:
            browser.close()


def _approve(db: str, who: str, component_id: int, layers: tuple[int, int], label: str = "colour") -> None:
    from db import queries as q
    from db.engine import write_session

    with write_session(db) as session:
        q.record_review(session, who, component_id, "approve", label=label, category="colour", layer_range=layers)


def _active(db: str, model_id: int):
    from db import queries as q
    from db.engine import read_session

    with read_session(db) as session:
        return q.active_directions(session, model_id)


def test_dead_slider_refused_stale_direction_updated_and_conflict_marked(app, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=60_000)  # the publish form renders and measures; two busy cores take a while

    url, log, facts = app
    db, model_id, index = facts["url"], facts["model_id"], facts["index"]
    component_id, dead, alive = facts["ids"][index], facts["dead"], facts["alive"]
    _approve(db, "Ana", component_id, dead)  # on the layers where it does nothing (her latest approval of it)
    with sync_playwright() as p:
        browser = launch_browser(p)
        try:
            page, errors = _page(browser, url, "directions")
            _sign_in(page, "Ana")
            page.get_by_role("heading", name="Directions & export", level=1).wait_for()
            settle(page)
            choice = page.get_by_label(re.compile(r"^Component to publish"))
            if choice.count():  # several waiting: the form shows one at a time
                choice.click()
                page.get_by_role("option", name=re.compile(rf"^Component {index} · ")).click()
                settle(page)
            card = page.locator('[data-testid="stVerticalBlock"]').filter(
                has=page.get_by_text(f"Component {index}", exact=True)).last
            expect(card.get_by_text("The slider changes nothing visible")).to_be_visible()
            expect(card.get_by_role("img").first).to_be_visible()  # the effect strip
            expect(card.get_by_text("Measured change at the ends")).to_be_visible()
            card.get_by_role("button", name="Publish").click()
            settle(page)
            expect(page.get_by_text("Not published:").first).to_be_visible()
            assert _active(db, model_id) == []
            assert_page_clean(page, errors, "a refused publish", expected_errors=("Not published:",))

            card.get_by_text(re.compile(r"^Publish anyway")).click()
            settle(page)
            card.get_by_role("button", name="Publish").click()
            settle(page)
            [direction] = _active(db, model_id)
            assert direction.layer_range == dead and "changes nothing visible" in direction.override_reasons[0]
            # The "overridden" column of the Published table (a canvas grid: its cells are read from the DOM).
            expect(page.locator('[data-testid="stDataFrame"]').get_by_text(re.compile("changes nothing visible"))
                   ).not_to_have_count(0)

            # Ana looks again and approves it on the layers where it acts: the direction is out of date.
            _approve(db, "Ana", component_id, alive)
            _reload(page, errors, "Ana")
            expect(page.get_by_text("is out of date").first).to_be_visible()
            page.get_by_role("button", name="Update to the approved layers").click()
            settle(page)
            [updated] = _active(db, model_id)
            assert updated.layer_range == alive and updated.id != direction.id and updated.override_reasons == ()
            expect(page.get_by_text("is out of date")).to_have_count(0)
            assert_page_clean(page, errors, "updating an out-of-date direction")

            # Eve rejects it: a conflict, shown on this page and as a mark on Generate's slider.
            from db import queries as q
            from db.engine import write_session

            with write_session(db) as session:
                q.record_review(session, "Eve", component_id, "reject")
            _reload(page, errors, "Ana")
            expect(page.locator('[data-testid="stAlertContentError"]').filter(has_text="Eve rejects")).to_be_visible()
            assert_page_clean(page, errors, "a conflict on Directions", expected_errors=("conflict",))
            nav(page, "Generate")
            slider = page.locator('[data-testid="stSlider"]').filter(has_text=updated.name)
            expect(slider).to_be_visible()
            expect(page.get_by_text(re.compile(r"In conflict: component \d+ is in conflict"))).to_be_visible()
            assert_page_clean(page, errors, "the conflict mark on Generate")
        except BaseException:
            shot(page, screenshots_folder(), "failure-publish")
            print(log.read_text()[-3000:])
            raise
        finally:
            browser.close()
            from db import queries as q
            from db.engine import write_session

            with write_session(db) as session:  # leave no active direction to the next test
                for d in q.active_directions(session, model_id):
                    q.unpublish_direction(session, d.id, "Setup")


def test_saved_look_stays_as_saved_and_the_map_answers_a_click(app, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=60_000)  # the publish form renders and measures; two busy cores take a while

    from db import queries as q
    from db.engine import write_session

    url, log, facts = app
    db, model_id, index = facts["url"], facts["model_id"], facts["index"]
    component_id, dead, alive = facts["ids"][index], facts["dead"], facts["alive"]
    with write_session(db) as session:
        first = q.publish_direction(session, model_id, "coat tint", "Setup", component_id=component_id,
                                    category="colour", layer_range=alive, strength_range=(-3.0, 3.0))
    with sync_playwright() as p:
        browser = launch_browser(p)
        try:
            page, errors = _page(browser, url, f"generate?seed=7&psi=0.7&d.{first.id}=2.5")
            _sign_in(page, "Ana")
            page.get_by_role("heading", name="Generate", level=1).wait_for()
            settle(page)
            page.get_by_label("Look name", exact=True).fill("coat with stripes")
            page.get_by_role("button", name="Save look").click()
            expect(page.get_by_text("Saved look")).to_be_visible()

            nav(page, "Looks")
            card = page.locator('[data-testid="stVerticalBlock"]').filter(
                has=page.get_by_text("coat with stripes", exact=True)).last
            before = card.get_by_role("img").first.screenshot()
            expect(card.get_by_role("button", name="Open in Generate")).to_be_visible()  # today's sliders match

            # The direction is re-published under the same name on other layers.
            with write_session(db) as session:
                q.unpublish_direction(session, first.id, "Setup")
                q.publish_direction(session, model_id, "coat tint", "Setup", component_id=component_id,
                                    category="colour", layer_range=dead, strength_range=(-3.0, 3.0))
            _reload(page, errors, "Ana")
            card = page.locator('[data-testid="stVerticalBlock"]').filter(
                has=page.get_by_text("coat with stripes", exact=True)).last
            expect(card.get_by_text("Today's sliders differ")).to_be_visible()
            expect(card.get_by_text("now moves layers")).to_be_visible()
            assert card.get_by_role("img").first.screenshot() == before  # as saved, not with today's slider
            expect(card.get_by_role("button", name="Re-apply today's sliders")).to_be_visible()
            assert_page_clean(page, errors, "a look whose direction changed")

            # Map: coloured points (no fill="0"), and a click shows a look.
            nav(page, "Map")
            chart = page.locator('[data-testid="stVegaLiteChart"]')
            chart.locator("path").first.wait_for()
            fills = chart.locator(".mark-symbol path").evaluate_all("(ps) => ps.map(p => p.getAttribute('fill'))")
            assert fills and all(re.match(r"^(#|rgb)", f or "") for f in fills), fills[:10]
            box = chart.locator(".mark-symbol path").nth(5).bounding_box()
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            expect(page.get_by_text(re.compile(r"^seed \d+$"))).to_be_visible()
            expect(page.get_by_role("button", name="Open in Generate")).to_be_visible()
            assert_page_clean(page, errors, "clicking a point on the Map")
        except BaseException:
            shot(page, screenshots_folder(), "failure-looks")
            print(log.read_text()[-3000:])
            raise
        finally:
            browser.close()
