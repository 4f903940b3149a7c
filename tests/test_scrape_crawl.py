"""The scraper end to end, against the generated archive served on 127.0.0.1 (see fixture_site.py)."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import typer
from typer.testing import CliRunner

from conftest import assert_clean_user_error
from fixture_site import Archive, FixtureServer, Route, build_archive, draw_look, jpeg_bytes, write_profile
from cli.scrape_commands import register
from scrape.profile import load_profile
from scrape.scraper import METADATA_FILE, STATE_FILE, scrape

REPO = Path(__file__).resolve().parents[1]
USER_AGENT = "AtelierScraper/0.1 (+tests@atelier.invalid)"
LOOKS = 26
# Images that fail for good, and images that are downloaded but not kept.
FAILED_IMAGE_TRAPS = {"broken image", "not an image", "decompression bomb", "slow", "too large"}
DUPLICATE_TRAPS = {"exact duplicate", "near duplicate"}
KEPT = LOOKS - len(FAILED_IMAGE_TRAPS) - len(DUPLICATE_TRAPS)
RETRIED_TRAPS = {"503 once", "slow"}  # the only image URLs legitimately requested more than once


@pytest.fixture(scope="module")
def archive():
    return build_archive()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")


@pytest.fixture(scope="module")
def crawled(archive, tmp_path_factory):
    """One uninterrupted crawl of the whole archive, shared by the assertions below."""
    tmp = tmp_path_factory.mktemp("crawl")
    with FixtureServer(archive) as server:
        profile = load_profile(write_profile(tmp / "site.toml", server.base_url))
        summary = scrape(profile, tmp / "out", progress=False)
        requests = list(server.requests)
        base = server.base_url
    return summary, tmp / "out", requests, base


def media_path(look_path: str) -> str:
    house, season, look = look_path.strip("/").split("/")[1:4]
    return f"/media/{house}/{season}/{look.removeprefix('look-')}.jpg"


def trap_media(archive, name: str) -> str:
    return next(media_path(look) for look, trap in archive.traps.items() if trap == name)


def url_rows(out: Path) -> dict[str, tuple[str, str, str | None]]:
    with sqlite3.connect(out / STATE_FILE) as conn:
        return {url: (kind, status, reason) for url, kind, status, reason in
                conn.execute("SELECT url, kind, status, reason FROM urls")}


def image_rows(out: Path) -> dict[str, tuple[str, str | None, int | None]]:
    with sqlite3.connect(out / STATE_FILE) as conn:
        return {url: (sha, dup, dist) for url, sha, dup, dist in
                conn.execute("SELECT url, sha256, duplicate_of, distance FROM images")}


def metadata(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / METADATA_FILE).read_text().splitlines()]


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


# ---------------------------------------------------------------------------------------------------- one crawl

def test_crawl_keeps_every_good_look_once_with_its_metadata(crawled, archive):
    summary, out, _, base = crawled
    assert summary.images_kept == KEPT and summary.queued_left == 0 and summary.stopped_by is None
    assert (summary.exact_duplicates, summary.near_duplicates) == (1, 1)
    lines = metadata(out)
    assert len(lines) == KEPT
    for line in lines:
        data = (out / line["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == line["sha256"]
        assert line["path"] == f"images/{line['sha256'][:2]}/{line['sha256']}.jpg"
    # Pagination at both levels was followed: index page 3 and the looks on a collection's second page.
    kept_urls = {line["url"] for line in lines}
    assert f"{base}/media/casa-verde/fall-2021/2.jpg" in kept_urls
    assert f"{base}/media/maison-aurore/spring-2021/5.jpg" in kept_urls
    # Fields come from the look page, except the city, which only the collection page shows.
    look = next(line for line in lines if line["url"].endswith("/media/studio-bleu/fall-2021/1.jpg"))
    assert look["fields"] == {"designer": "Studio Bleu", "season": "Fall 2021", "year": "2021", "city": "Milan",
                              "category": "Couture", "look": "1"}
    assert look["page_url"] == f"{base}/designers/studio-bleu/fall-2021/look-1/"
    # The designer reached through a 301 from its old URL was crawled like the others.
    assert any("/media/atelier-nord/spring-2021/" in url for url in kept_urls)


def test_crawl_is_polite_and_stays_on_the_site(crawled, archive):
    _, out, requests, base = crawled
    paths = [r.path for r in requests]
    assert {r.user_agent for r in requests} == {USER_AGENT}
    assert paths.count("/robots.txt") == 1
    assert not [p for p in paths if p.startswith("/private/")]
    rows = url_rows(out)
    assert rows[f"{base}/private/hidden-house/"] == ("listing", "skipped", "disallowed by robots.txt")
    assert all(urlsplit(url).netloc == urlsplit(base).netloc for url in rows)  # off-site links never queued
    assert rows[f"{base}/designers/gone/"][1:] == ("failed", "HTTP 404")
    # Every page and image was requested once, except the ones that had to be retried.
    retried = {trap_media(archive, name) for name in RETRIED_TRAPS}
    counts = Counter(paths)
    assert {p for p, n in counts.items() if n > 1} == retried
    assert counts[trap_media(archive, "503 once")] == 2
    assert counts[trap_media(archive, "slow")] == 3  # max_attempts in the test profile


def test_every_trap_ends_with_the_right_reason(crawled, archive):
    _, out, _, base = crawled
    rows = url_rows(out)
    expected = {"broken image": "broken image: image file is truncated", "not an image": "not an image",
                "decompression bomb": "decompression bomb", "slow": "timed out (gave up after 3 attempts)",
                "too large": "too large: body exceeds limit 200,000 bytes"}
    for trap, reason in expected.items():
        kind, status, stored = rows[base + trap_media(archive, trap)]
        assert (kind, status) == ("image", "failed"), trap
        assert stored.startswith(reason), (trap, stored)
    assert "server said image/jpeg" in rows[base + trap_media(archive, "not an image")][2]
    images = image_rows(out)
    original = images[f"{base}/media/maison-aurore/spring-2021/1.jpg"]
    exact = images[base + trap_media(archive, "exact duplicate")]
    assert exact == (original[0], original[0], None)
    near = images[base + trap_media(archive, "near duplicate")]
    near_original = images[f"{base}/media/maison-aurore/spring-2021/2.jpg"]
    assert near[0] != near_original[0] and near[1] == near_original[0] and near[2] <= 6
    assert rows[base + trap_media(archive, "503 once")][1] == "visited"


def test_a_finished_crawl_run_again_fetches_nothing_new(archive, tmp_path):
    with FixtureServer(archive) as server:
        profile = load_profile(write_profile(tmp_path / "site.toml", server.base_url))
        scrape(profile, tmp_path / "out", max_images=3, progress=False)
        assert len(metadata(tmp_path / "out")) == 3
        server.reset()
        summary = scrape(profile, tmp_path / "out", max_images=3, progress=False)
        assert summary.stopped_by == "max_images (3) reached"
        assert server.paths() == []  # the limit is already met: not even robots.txt


def test_max_pages_stops_reading_pages(archive, tmp_path):
    with FixtureServer(archive) as server:
        profile = load_profile(write_profile(tmp_path / "site.toml", server.base_url))
        summary = scrape(profile, tmp_path / "out", max_pages=2, progress=False)
        assert summary.pages_visited == 2 and summary.stopped_by == "max_pages (2) reached"
        assert server.paths() == ["/robots.txt", "/runway/", "/runway/?page=2"]


def test_another_profile_cannot_reuse_the_output_folder(archive, tmp_path):
    with FixtureServer(archive) as server:
        path = write_profile(tmp_path / "site.toml", server.base_url)
        scrape(load_profile(path), tmp_path / "out", max_pages=1, progress=False)
        path.write_text(path.read_text().replace('name = "fixture-runway"', 'name = "other-site"'))
        from core.errors import AtelierError
        with pytest.raises(AtelierError, match="holds a crawl made with profile 'fixture-runway'"):
            scrape(load_profile(path), tmp_path / "out", progress=False)


# ---------------------------------------------------------------------------------------------------- kill, resume

CLI = "import typer; from cli.scrape_commands import register; app = typer.Typer(); register(app); app()"


def count_downloads(state: Path) -> int:
    try:
        with sqlite3.connect(state, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_killed_crawl_resumes_to_the_same_result_without_downloading_twice(archive, crawled, tmp_path):
    _, reference, _, _ = crawled
    with FixtureServer(archive) as server:
        assert server.base_url != crawled[3]  # a fresh server: the 503 fails once again, on its own port
        profile_path = write_profile(tmp_path / "site.toml", server.base_url)
        out = tmp_path / "out"
        env = {**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1",
               "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        # A small delay so the crawl is still going when we kill it.
        process = subprocess.Popen([sys.executable, "-c", CLI, "scrape", "--profile", str(profile_path), "--out",
                                    str(out), "--delay", "0.03", "--quiet"], cwd=REPO, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while count_downloads(out / STATE_FILE) < 5:
            assert process.poll() is None, f"scraper ended before it could be killed: {process.stderr.read()}"
            assert time.monotonic() < deadline, "scraper made no progress"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stderr.close()

        before_kill = url_rows(out)
        done = {url for url, (_, status, _) in before_kill.items() if status != "queued"}
        assert any(status == "queued" for _, status, _ in before_kill.values()), "killed too late to test resuming"
        requests_before = len(server.requests)

        summary = scrape(load_profile(profile_path), out, progress=False)
        after = server.paths()[requests_before:]

    # Nothing finished before the kill was fetched again (robots.txt is read once per run, by design).
    assert not {path_of(url) for url in done} & set(after) - {"/robots.txt"}
    # Over both runs, at most the one URL in flight at the kill was fetched twice, besides the retried traps.
    repeated = {p for p, n in Counter(server.paths()).items() if n > 1} - {"/robots.txt"}
    assert len(repeated - {trap_media(archive, name) for name in RETRIED_TRAPS}) <= 1
    # Same end result as the uninterrupted crawl: images, metadata, and what failed why.
    assert summary.images_kept == KEPT and summary.queued_left == 0
    strip = crawled[3]

    def comparable(out_dir: Path, base: str) -> tuple:
        lines = sorted((json.dumps({**line, "url": path_of(line["url"]), "page_url": path_of(line["page_url"])},
                                   sort_keys=True) for line in metadata(out_dir)))
        files = sorted(p.relative_to(out_dir).as_posix() for p in (out_dir / "images").rglob("*") if p.is_file())
        states = sorted((path_of(url), kind, status, (reason or "").replace(base, ""))
                        for url, (kind, status, reason) in url_rows(out_dir).items())
        return lines, files, states

    assert comparable(out, server.base_url) == comparable(reference, strip)


# ---------------------------------------------------------------------------------------------------- CLI

def cli_app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_cli_scrape_prints_a_summary(archive, tmp_path):
    with FixtureServer(archive) as server:
        profile = write_profile(tmp_path / "site.toml", server.base_url)
        result = CliRunner().invoke(cli_app(), ["scrape", "--profile", str(profile), "--out", str(tmp_path / "out"),
                                                "--max-images", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "2 images kept" in result.output and "max_images (2) reached" in result.output


def test_cli_scrape_reports_a_bad_profile_without_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[site]\nstart_urls = ["http://127.0.0.1:9/"]\n[selectors]\nimage = "img"\n')
    result = CliRunner().invoke(cli_app(), ["scrape", "--profile", str(bad), "--out", str(tmp_path / "out")])
    assert_clean_user_error(result, "missing key '[site] contact'")


def test_retry_failed_queues_earlier_failures_again(tmp_path):
    look = "<span class='season'>Spring 2022</span><img class='look-image' src='/media/1.jpg'>"
    routes = {"/robots.txt": Route(b"", "text/plain"),
              "/runway/": Route(b"<a class='look' href='/look-1/'>1</a>"),
              "/look-1/": Route(look.encode())}
    with FixtureServer(Archive(routes=routes, traps={})) as server:
        profile = load_profile(write_profile(tmp_path / "site.toml", server.base_url))
        first = scrape(profile, tmp_path / "out", progress=False)
        assert first.images_kept == 0 and first.failures == {"HTTP 404": 1}
        assert not any("hint" in line for line in first.lines())
        routes["/media/1.jpg"] = Route(jpeg_bytes(draw_look(5)), "image/jpeg")  # the site fixed its image
        assert scrape(profile, tmp_path / "out", progress=False).images_kept == 0  # failures stay failed...
        again = scrape(profile, tmp_path / "out", retry_failed=True, progress=False)  # ...unless asked
        assert again.images_kept == 1 and again.failures == {}
        assert metadata(tmp_path / "out")[0]["fields"] == {"season": "Spring 2022", "year": "2022"}


def test_a_profile_whose_selectors_match_nothing_gets_a_hint(tmp_path):
    routes = {"/runway/": Route(b"<a class='look' href='/look-1/'>1</a>"), "/look-1/": Route(b"<img src='/a.jpg'>")}
    with FixtureServer(Archive(routes=routes, traps={})) as server:
        profile = load_profile(write_profile(tmp_path / "site.toml", server.base_url))
        summary = scrape(profile, tmp_path / "out", progress=False)
    assert summary.pages_visited == 2 and summary.images_kept == 0
    assert any("hint: no page had an image matching" in line for line in summary.lines())


def test_a_site_that_keeps_failing_stops_the_crawl(tmp_path):
    links = "".join(f"<img class='look-image' src='/media/{n}.jpg'>" for n in range(5))
    routes = {"/runway/": Route(b"<a class='look' href='/look/'>x</a>"), "/look/": Route(links.encode()),
              **{f"/media/{n}.jpg": Route(b"", status=503) for n in range(5)}}
    with FixtureServer(Archive(routes=routes, traps={})) as server:
        profile = load_profile(write_profile(tmp_path / "site.toml", server.base_url, max_attempts=2,
                                             max_consecutive_failures=3))
        summary = scrape(profile, tmp_path / "out", progress=False)
        assert summary.error.startswith("3 requests in a row failed after retries, the last with 'HTTP 503")
        assert summary.stopped_by is None and "crawl complete" not in "\n".join(summary.lines())
        # The three failed because of the site, not of themselves: they are back in the queue, nothing failed.
        assert summary.queued_left == 5 and summary.failures == {}
        assert len([p for p in server.paths() if p.startswith("/media/")]) == 3 * 2
        for n in range(5):  # the site recovers: a plain rerun gets everything
            routes[f"/media/{n}.jpg"] = Route(jpeg_bytes(draw_look(40 + n)), "image/jpeg")
        again = scrape(profile, tmp_path / "out", progress=False)
        assert again.error is None and again.images_kept == 5 and again.queued_left == 0
