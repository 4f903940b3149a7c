"""Team mode in a real browser (`streamlit run` + Debian's chromium through Playwright).

The server runs with accounts (an admin and a reviewer made with db/accounts.py before it starts). The test signs
in with a wrong and then the right password, moves on in the queue, reloads (the reviewer and the place stay),
checks that a reviewer cannot publish, opens a crafted Generate link and a direction and category whose names are
Markdown (no link or picture may come of them: they show as text), signs out, and reloads to the sign-in form.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from conftest import REFERENCE, REPO
from test_browser_app import (
    CHROMIUM,
    CHROMIUM_ARGS,
    _assert_page_clean,
    _free_port,
    _heading,
    _settle,
    _wait_heading_change,
    _wait_healthy,
    _watch_browser_errors,
)

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
    from conftest import require_service

    require_service(CHROMIUM.exists(), f"{CHROMIUM} is missing (install it with .ci/browser.sh)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        require_service(False, "playwright is not installed (pip install -e '.[test]')")
    home = tmp_path_factory.mktemp("team-home")
    model = home / "tiny32.safetensors"
    from model.checkpoint import convert

    convert(REFERENCE / "sg2ada_tiny32.pkl", model)
    env = dict(os.environ, HOME=str(home), ATELIER_HOME=str(home), ATELIER_MODEL=str(model),
               ATELIER_SCORE_ON_START="0", ATELIER_RUNS=str(home / "runs"), PYTHONUNBUFFERED="1")
    env.pop("ATELIER_DATABASE_URL", None)
    env.pop("ATELIER_TEAM", None)  # team mode comes from the accounts in the database
    _prepare(env)
    port = _free_port()
    log = home / "streamlit.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(REPO / "annotator" / "app.py"),
             "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, log)
        yield url, home
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def _forget_base_path_probes(errors: list[str]) -> None:
    """Loading a page's own URL (/review) makes Streamlit's client first look for its server under that path
    (/review/_stcore/health, …/host-config) and then at the root; those two 404s are the probe, not a fault."""
    errors[:] = [e for e in errors if not re.search(r"404 .*/_stcore/(health|host-config)\)$", e)]


def _as_text(crafted: str) -> re.Pattern[str]:
    """The crafted string as the page shows it: the same characters, with invisible word joiners (U+2060) allowed
    between them (the app puts them where a bare URL would otherwise turn into a link)."""
    return re.compile(r"\u2060?".join(re.escape(ch) for ch in crafted))


def _sign_in(page, name: str, password: str) -> None:
    page.get_by_label("Your name", exact=True).fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    _settle(page)


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
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(60_000)
            errors = _watch_browser_errors(page)
            page.goto(url)
            page.get_by_role("heading", name="Sign in", level=1).wait_for()
            _settle(page)
            assert page.locator("h1", has_text="Component").count() == 0  # nothing but the form before sign-in

            _sign_in(page, "ben", "not the password")
            expect(page.get_by_text("Wrong name or password")).to_be_visible(timeout=60_000)
            _sign_in(page, "ben", PASSWORD)
            page.get_by_role("heading", name=re.compile(r"^Component \d+$")).wait_for()
            _settle(page)
            _assert_page_clean(page, errors, "signing in")
            first = _heading(page)
            page.locator("h1").first.click()
            page.keyboard.press("n")  # next in the queue
            place = _wait_heading_change(page, first)
            _settle(page)
            assert place != first and re.search(r"[?&]c=\d+", page.url), page.url

            page.reload()  # a new Streamlit session: the cookie and the URL bring back the reviewer and the place
            page.get_by_role("heading", name=re.compile(r"^Component \d+$")).wait_for()
            _settle(page)
            assert _heading(page) == place
            expect(page.locator('[data-testid="stSidebar"]').get_by_text("ben", exact=True)).to_be_visible()
            _forget_base_path_probes(errors)
            _assert_page_clean(page, errors, "reloading")

            page.goto(f"{url}/directions")  # a reviewer sees directions but may not publish
            page.get_by_role("heading", name="Directions & export", level=1).wait_for()
            _settle(page)
            expect(page.get_by_text("Only an admin may publish")).to_be_visible()
            _no_crafted_markup(page, "Directions & export")

            page.goto(f"{url}/generate{CRAFTED_LINK}")
            page.get_by_role("heading", name="Generate", level=1).wait_for()
            _settle(page)
            expect(page.get_by_text(_as_text("[click](https://evil.example/s)")).first).to_be_visible()
            expect(page.get_by_text(_as_text(CRAFTED_DIRECTION)).first).to_be_visible()
            headings = [t.replace("\u2060", "") for t in page.locator("h1, h2, h3").all_inner_texts()]
            assert CRAFTED_CATEGORY.capitalize() in headings, headings  # the category heads its sliders, as text
            _no_crafted_markup(page, "Generate with a crafted link")
            _forget_base_path_probes(errors)
            _assert_page_clean(page, errors, "a crafted Generate link")

            page.goto(f"{url}/models")
            page.get_by_role("heading", name="Models", level=1).wait_for()
            _settle(page)
            expect(page.get_by_text("Only an admin may switch the active model")).to_be_visible()

            page.locator('[data-testid="stSidebar"]').get_by_role("button", name="Sign out").click()
            page.get_by_role("heading", name="Sign in", level=1).wait_for()
            _settle(page)
            page.reload()  # the cookie went with the sign-out
            page.get_by_role("heading", name="Sign in", level=1).wait_for()
            _settle(page)
            _forget_base_path_probes(errors)
            assert not errors, errors
        finally:
            browser.close()
