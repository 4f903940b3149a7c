"""Team mode in a real browser (`streamlit run` + Debian's chromium through Playwright).

The server runs with accounts (an admin and a reviewer made with db/accounts.py before it starts). The test signs
in with a wrong and then the right password, moves on in the queue, reloads (the reviewer and the place stay),
checks that a reviewer cannot publish, opens a crafted Generate link and a direction and category whose names are
Markdown (no link or picture may come of them: they show as text), signs out, and reloads to the sign-in form.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from unittest import mock

import pytest

from browser_harness import (app_env, assert_page_clean, drop_base_path_probes, heading, launch_browser, new_page,
                             require_browser, serve_app, settle, wait_heading_change)
from conftest import REFERENCE

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(420)]

PASSWORD = "correct horse battery"
CRAFTED_CATEGORY = "[evil](https://evil.example) ![x](https://evil.example/c)"
CRAFTED_DIRECTION = "**loud** [tap](javascript:alert(1)) ![i](https:evil.example)"
CRAFTED_LINK = "?seed=[click](https://evil.example/s)&psi=![p](https://evil.example/p.png)"


def _prepare(env: dict[str, str]) -> None:
    """Before the server starts: the database with the model and its set, two accounts and a crafted direction."""
    from annotator import services
    from db import accounts
    from db import queries as q
    from db.engine import write_session

    with mock.patch.dict(os.environ, env):
        ctx = services.bootstrap(score_in_background=False)
        with write_session(ctx.url) as session:
            accounts.add_account(session, "ana", PASSWORD, admin=True)
            accounts.add_account(session, "ben", PASSWORD)
            q.add_category(session, CRAFTED_CATEGORY)
            first = q.list_components(session, ctx.component_set.id)[0].id
            q.publish_direction(session, ctx.model.id, CRAFTED_DIRECTION, "ana", component_id=first,
                                category=CRAFTED_CATEGORY)
        from db.engine import dispose_engines

        dispose_engines()


@pytest.fixture(scope="module")
def team_server(tmp_path_factory):
    require_browser()
    home = tmp_path_factory.mktemp("team-home")
    model = home / "tiny32.safetensors"
    from model.network.checkpoint import convert

    convert(REFERENCE / "sg2ada_tiny32.pkl", model)
    # Team mode comes from the accounts in the database, not from ATELIER_TEAM.
    env = app_env(home, model, home / "runs", unset=("ATELIER_TEAM",))
    _prepare(env)
    with serve_app(env, home / "streamlit.log", minimal_toolbar=False) as url:
        yield url, home


def _as_text(crafted: str) -> re.Pattern[str]:
    """The crafted string as the page shows it: the same characters, with invisible word joiners (U+2060) allowed
    between them (the app puts them where a bare URL would otherwise turn into a link)."""
    return re.compile(r"\u2060?".join(re.escape(ch) for ch in crafted))


def _sign_in(page, name: str, password: str) -> None:
    page.get_by_label("Your name", exact=True).fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    settle(page)


def _no_crafted_markup(page, step: str) -> None:
    main = page.locator('[data-testid="stMain"], [data-testid="stSidebar"]')
    html = "\n".join(main.evaluate_all("(nodes) => nodes.map((n) => n.innerHTML)"))
    assert "evil.example" in html or "javascript:" in html, f"{step}: the crafted text is not on the page at all"
    links = page.locator('a[href*="evil.example"], a[href^="javascript"], img[src*="evil.example"]')
    found = links.evaluate_all("(nodes) => nodes.map((n) => (n.closest('[data-testid]') || n).getAttribute("
                               "'data-testid') + ': ' + n.outerHTML)")
    assert not found, f"{step}: crafted Markdown became a link or picture:\n" + "\n".join(found)
    assert page.locator("strong", has_text="loud").count() == 0, f"{step}: a direction name rendered bold"


def test_team_sign_in_reload_roles_and_text_only(team_server, tmp_path: Path):
    from playwright.sync_api import expect, sync_playwright

    url, home = team_server
    with sync_playwright() as p:
        browser = launch_browser(p)
        try:
            page, errors = new_page(browser, 1400, 1000)
            page.goto(url)
            page.get_by_role("heading", name="Sign in", level=1).wait_for()
            settle(page)
            assert page.locator("h1", has_text="Component").count() == 0  # nothing but the form before sign-in

            _sign_in(page, "ben", "not the password")
            expect(page.get_by_text("Wrong name or password")).to_be_visible(timeout=60_000)
            _sign_in(page, "ben", PASSWORD)
            page.get_by_role("heading", name=re.compile(r"^Component \d+$")).wait_for()
            settle(page)
            assert_page_clean(page, errors, "signing in")
            first = heading(page)
            page.locator("h1").first.click()
            page.keyboard.press("n")  # next in the queue
            place = wait_heading_change(page, first)
            settle(page)
            assert place != first and re.search(r"[?&]c=\d+", page.url), page.url

            page.reload()  # a new Streamlit session: the cookie and the URL bring back the reviewer and the place
            page.get_by_role("heading", name=re.compile(r"^Component \d+$")).wait_for()
            settle(page)
            assert heading(page) == place
            expect(page.locator('[data-testid="stSidebar"]').get_by_text("ben", exact=True)).to_be_visible()
            drop_base_path_probes(errors)
            assert_page_clean(page, errors, "reloading")

            page.goto(f"{url}/directions")  # a reviewer sees directions but may not publish
            page.get_by_role("heading", name="Directions & export", level=1).wait_for()
            settle(page)
            expect(page.get_by_text("Only an admin may publish")).to_be_visible()
            _no_crafted_markup(page, "Directions & export")

            page.goto(f"{url}/generate{CRAFTED_LINK}")
            page.get_by_role("heading", name="Generate", level=1).wait_for()
            settle(page)
            expect(page.get_by_text(_as_text("[click](https://evil.example/s)")).first).to_be_visible()
            expect(page.get_by_text(_as_text(CRAFTED_DIRECTION)).first).to_be_visible()
            headings = [t.replace("\u2060", "") for t in page.locator("h1, h2, h3").all_inner_texts()]
            assert CRAFTED_CATEGORY.capitalize() in headings, headings  # the category heads its sliders, as text
            _no_crafted_markup(page, "Generate with a crafted link")
            drop_base_path_probes(errors)
            assert_page_clean(page, errors, "a crafted Generate link")

            page.goto(f"{url}/models")
            page.get_by_role("heading", name="Models", level=1).wait_for()
            settle(page)
            expect(page.get_by_text("Only an admin may switch the active model")).to_be_visible()

            page.locator('[data-testid="stSidebar"]').get_by_role("button", name="Sign out").click()
            page.get_by_role("heading", name="Sign in", level=1).wait_for()
            settle(page)
            page.reload()  # the cookie went with the sign-out
            page.get_by_role("heading", name="Sign in", level=1).wait_for()
            settle(page)
            drop_base_path_probes(errors)
            assert not errors, errors
        finally:
            browser.close()
