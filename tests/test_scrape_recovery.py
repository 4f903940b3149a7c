"""The scraper never loses part of a crawl silently: outages, lazy images, deep pagination, refresh, reports.

Every test runs a real crawl against the loopback fixture site (fixture_site.py) and reads the real state file.
"""
from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from conftest import assert_clean_user_error
from fixture_site import (
    Archive,
    FixtureServer,
    Route,
    _page,
    add_index_page,
    build_archive,
    build_deep_archive,
    build_lazy_archive,
    draw_look,
    jpeg_bytes,
    write_profile,
)
from core.errors import AtelierError
from cli.scrape_commands import register
from scrape.profile import load_profile
from scrape.scraper import METADATA_FILE, STATE_FILE, scrape

EXAMPLE = Path(__file__).resolve().parents[1] / "scrape" / "profiles" / "example-runway.toml"
KEPT = 19  # good looks of build_archive() (see test_scrape_crawl.py)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")


def cli(*args: str):
    app = typer.Typer()
    register(app)
    return CliRunner().invoke(app, ["scrape", *args])


def rows(out: Path, where: str = "1") -> dict[str, tuple[str, str, str | None]]:
    with sqlite3.connect(out / STATE_FILE) as conn:
        return {url: (kind, status, reason) for url, kind, status, reason in
                conn.execute(f"SELECT url, kind, status, reason FROM urls WHERE {where}")}


def kept_urls(out: Path) -> set[str]:
    return {json.loads(line)["url"] for line in (out / METADATA_FILE).read_text().splitlines()}


# ---------------------------------------------------------------------------------------------------- outages

def test_robots_unreachable_stops_with_an_error_and_the_crawl_continues_when_the_site_is_back(tmp_path):
    with FixtureServer(build_archive()) as server:
        profile_path = write_profile(tmp_path / "site.toml", server.base_url, max_attempts=2)
        server.down = True
        result = cli("--profile", str(profile_path), "--out", str(tmp_path / "out"), "--quiet")
        assert_clean_user_error(result, "robots.txt could not be fetched (HTTP 503",
                                "RFC 9309", "The queue is kept; run the same command again")
        assert "crawl complete" not in result.output
        # Nothing was marked skipped or failed: the start URL waits in the queue.
        assert set(rows(tmp_path / "out").values()) == {("listing", "queued", None)}
        assert server.paths() == ["/robots.txt"] * 2  # max_attempts, and not one page while robots.txt is unknown

        server.down = False
        summary = scrape(load_profile(profile_path), tmp_path / "out", progress=False)
    assert summary.error is None and summary.images_kept == KEPT and summary.queued_left == 0


def test_a_site_going_down_mid_crawl_keeps_the_queue_and_a_rerun_finishes_it(tmp_path):
    with FixtureServer(build_archive()) as server:
        profile = load_profile(write_profile(tmp_path / "site.toml", server.base_url, max_consecutive_failures=3))
        server.down_after = 15
        first = scrape(profile, tmp_path / "out", progress=False)
        assert first.error and "requests in a row failed" in first.error and first.queued_left > 0
        assert not [reason for _, status, reason in rows(tmp_path / "out").values()
                    if status == "failed" and reason and "503" in reason]  # the outage left no failure behind
        server.down = False
        second = scrape(profile, tmp_path / "out", progress=False)
    assert second.error is None and second.images_kept == KEPT and second.queued_left == 0


def test_an_unreachable_host_is_an_error_not_a_disallowed_archive(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    profile_path = write_profile(tmp_path / "site.toml", f"http://127.0.0.1:{port}", max_attempts=1)
    result = cli("--profile", str(profile_path), "--out", str(tmp_path / "out"), "--quiet")
    assert_clean_user_error(result, "connection failed", "run the same command again")
    assert set(rows(tmp_path / "out").values()) == {("listing", "queued", None)}


# ---------------------------------------------------------------------------------------------------- lazy images

def test_lazy_images_are_read_from_their_data_attributes_and_the_stand_in_is_reported(tmp_path):
    # The example profile's image_attr ("srcset") on a site that keeps the real file in data-src / data-srcset /
    # data-original and a shared GIF in src.
    with FixtureServer(build_lazy_archive(looks=9)) as server:
        profile = load_profile(write_profile(tmp_path / "site.toml", server.base_url, image_attr="srcset"))
        summary = scrape(profile, tmp_path / "out", progress=False)
        base = server.base_url
    assert summary.images_kept == 9
    assert kept_urls(tmp_path / "out") == {f"{base}/media/{n}.jpg" for n in range(1, 10)}  # srcset: the largest
    # The three looks with only the stand-in are reported, the stand-in is recognised as one.
    assert summary.placeholders == [(f"{base}/static/blank.gif", 3)]
    assert summary.looks_without_image == {"placeholder": 3}
    text = "\n".join(summary.lines())
    assert "look pages without a usable image: 3 (placeholder: 3)" in text
    assert f"placeholder, not kept: {base}/static/blank.gif is the image of 3 pages" in text


@pytest.mark.parametrize("stand_in", ["gif", "jpeg"])
def test_a_placeholder_shared_by_every_look_is_detected_and_never_kept(tmp_path, stand_in):
    # The real file sits in an attribute nobody could guess: every look resolves to the stand-in. A JPEG stand-in
    # passes every image check, so only its being on many pages gives it away.
    placeholder = jpeg_bytes(draw_look(77)) if stand_in == "jpeg" else None
    with FixtureServer(build_lazy_archive(looks=6, real_attr="data-full", placeholder=placeholder)) as server:
        profile_path = write_profile(tmp_path / "site.toml", server.base_url)
        summary = scrape(load_profile(profile_path), tmp_path / "out", progress=False)
        assert summary.images_kept == 0 and (tmp_path / "out" / METADATA_FILE).read_text() == ""
        assert summary.placeholders == [(f"{server.base_url}/static/blank.gif", 9)]
        assert summary.looks_without_image == {"placeholder": 9}
        assert any("hint: a placeholder usually means lazy loading" in line for line in summary.lines())
        # The fix the hint points at: the profile names the attribute, and every look is found.
        fixed = write_profile(tmp_path / "fixed.toml", server.base_url, image_attr="data-full")
        again = scrape(load_profile(fixed), tmp_path / "out2", progress=False)
    assert again.images_kept == 6 and again.looks_without_image == {"placeholder": 3}


def test_placeholder_detection_can_be_turned_off(tmp_path):
    # A site that really shows one photo on many pages (a campaign image) keeps it with placeholder_pages = 0.
    with FixtureServer(build_lazy_archive(looks=3, real_attr="data-full", placeholder=jpeg_bytes(draw_look(78)))) as s:
        profile = load_profile(write_profile(tmp_path / "site.toml", s.base_url, placeholder_pages=0))
        summary = scrape(profile, tmp_path / "out", progress=False)
    assert summary.images_kept == 1 and summary.placeholders == [] and summary.looks_without_image == {}


def test_report_lists_failed_urls_and_look_pages_without_an_image(tmp_path):
    archive = build_archive()
    with FixtureServer(archive) as server:
        profile = load_profile(write_profile(tmp_path / "site.toml", server.base_url))
        summary = scrape(profile, tmp_path / "out", progress=False)
        base = server.base_url
    assert any(f"failed URLs and reasons: atelier scrape --report --out {tmp_path / 'out'}" in line
               for line in summary.lines())
    result = cli("--report", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    failed = rows(tmp_path / "out", "status IN ('failed', 'skipped')")
    assert len(failed) == 7  # five image traps, the 404 and the robots.txt-disallowed house
    for url, (kind, status, reason) in failed.items():
        assert f"  {url}  [{kind}, {status}] {reason}" in result.output
    # Each look whose image failed is listed with why.
    assert f"{base}/designers/atelier-nord/fall-2021/look-3/  image failed: decompression bomb" in result.output
    assert result.output.count("image failed:") == 5
    assert "look pages without a usable image (5)" in result.output


def test_report_of_a_folder_without_a_crawl_is_a_clean_error(tmp_path):
    assert_clean_user_error(cli("--report", "--out", str(tmp_path / "nothing")), "holds no crawl")


# ---------------------------------------------------------------------------------------------------- depth

def test_pagination_does_not_consume_depth(tmp_path):
    with FixtureServer(build_deep_archive(index_pages=12)) as server:
        profile = load_profile(write_profile(tmp_path / "site.toml", server.base_url, max_depth=2))
        summary = scrape(profile, tmp_path / "out", progress=False)
    # listing (0, on every index page) -> collection (1) -> look (2) -> image: all 24 looks within max_depth 2.
    assert summary.images_kept == 24 and summary.depth_cut == 0


def test_links_cut_by_max_depth_are_counted_reported_and_followed_when_it_is_raised(tmp_path):
    with FixtureServer(build_deep_archive(index_pages=5)) as server:
        shallow = load_profile(write_profile(tmp_path / "site.toml", server.base_url, max_depth=1))
        summary = scrape(shallow, tmp_path / "out", progress=False)
        assert summary.images_kept == 0 and summary.depth_cut == 10
        text = "\n".join(summary.lines())
        assert "links not followed (beyond max_depth 1): 10; raise [crawl] max_depth" in text
        assert "crawl complete up to max_depth 1: nothing left" in text and "hint: no page had an image" not in text
        assert not [p for p in server.paths() if "look-" in p]
        report = cli("--report", "--out", str(tmp_path / "out")).output
        assert "beyond max_depth (10):" in report and f"{server.base_url}/c5/look-2/  [look, skipped]" in report
        deeper = load_profile(write_profile(tmp_path / "site.toml", server.base_url, max_depth=2))
        again = scrape(deeper, tmp_path / "out", progress=False)
    assert again.images_kept == 10 and again.depth_cut == 0 and again.queued_left == 0


# ---------------------------------------------------------------------------------------------------- refresh

def test_refresh_finds_new_pages_with_conditional_requests_and_downloads_only_them(tmp_path):
    archive = build_deep_archive(index_pages=3, last_modified="Tue, 01 Dec 2026 10:00:00 GMT")
    with FixtureServer(archive) as server:
        profile = load_profile(write_profile(tmp_path / "site.toml", server.base_url))
        first = scrape(profile, tmp_path / "out", progress=False)
        assert first.images_kept == 6 and first.notes.refreshed is None
        server.reset()
        assert scrape(profile, tmp_path / "out", progress=False).requests_made == 0  # a plain rerun: nothing to do

        # The site publishes a fourth collection: page 3 gains a next link to a new page 4.
        add_index_page(archive.routes, 3, 4, "Wed, 02 Dec 2026 10:00:00 GMT")
        new = build_deep_archive(index_pages=4).routes
        archive.routes.update({path: route for path, route in new.items() if path.startswith(("/c4/", "/media/4-"))})
        add_index_page(archive.routes, 4, 4)
        server.reset()
        refreshed = scrape(profile, tmp_path / "out", refresh=True, progress=False)
        paths = server.paths()
        assert refreshed.images_kept == 8 and refreshed.queued_left == 0
        # Unchanged index pages cost a 304; only the new collection's pages and images were downloaded.
        assert sorted(server.not_modified) == ["/runway/", "/runway/?page=2"]
        assert sorted(p for p in paths if p not in server.not_modified) == sorted([
            "/robots.txt", "/runway/?page=3", "/runway/?page=4", "/c4/", "/c4/look-1/", "/c4/look-2/",
            "/media/4-1.jpg", "/media/4-2.jpg"])
        assert all(r.conditional for r in server.requests if r.path in ("/runway/", "/runway/?page=2"))
        assert (refreshed.notes.refreshed, refreshed.notes.unchanged, refreshed.notes.new_urls) == (3, 2, 6)
        assert "  refresh: 3 listing pages read again, 2 unchanged (304), 6 new URLs found" in refreshed.lines()

        server.reset()  # nothing new since: every listing page answers 304, nothing else is requested
        quiet = scrape(profile, tmp_path / "out", refresh=True, progress=False)
        assert sorted(server.paths()) == sorted(["/robots.txt", *server.not_modified]) and len(server.not_modified) == 4
        assert quiet.notes.new_urls == 0 and quiet.images_kept == 8


# ---------------------------------------------------------------------------------------------------- retry-failed

def test_retry_failed_does_not_download_files_refused_for_their_content(tmp_path):
    archive = build_archive()
    with FixtureServer(archive) as server:
        profile = load_profile(write_profile(tmp_path / "site.toml", server.base_url))
        scrape(profile, tmp_path / "out", progress=False)
        server.reset()
        archive.routes["/designers/gone/"] = _page("Back", "<h1>back</h1>")  # the 404 is fixed
        again = scrape(profile, tmp_path / "out", retry_failed=True, progress=False)
        paths = server.paths()
    # Broken, not an image, bomb, too large: the same bytes would be refused again, so they are not fetched.
    # Only the slow one (a timeout, nothing to do with its bytes) is tried again.
    assert {p for p in paths if p.startswith("/media/")} == {"/media/casa-verde/spring-2021/1.jpg"}
    assert "/designers/gone/" in paths and (again.notes.requeued, again.notes.still_refused) == (3, 4)
    assert any("4 refused for their content stay refused" in line for line in again.lines())


def test_retry_failed_fetches_a_refused_file_again_once_the_profile_accepts_it(tmp_path):
    with FixtureServer(build_lazy_archive(looks=3)) as server:
        profile = load_profile(write_profile(tmp_path / "site.toml", server.base_url))
        first = scrape(profile, tmp_path / "out", progress=False)
        assert first.failures == {"format not accepted": 1}
        server.reset()
        scrape(profile, tmp_path / "out", retry_failed=True, progress=False)
        assert "/static/blank.gif" not in server.paths()  # the same profile would refuse the same GIF again
        gif_ok = load_profile(write_profile(tmp_path / "site.toml", server.base_url,
                                            formats=("JPEG", "PNG", "WEBP", "GIF")))
        again = scrape(gif_ok, tmp_path / "out", retry_failed=True, progress=False)
        assert "/static/blank.gif" in server.paths()
    # Accepted now, but still the stand-in of three pages: a placeholder, not a look.
    assert again.failures == {} and again.images_kept == 3 and again.placeholders[0][1] == 3


# ---------------------------------------------------------------------------------------------------- state file

def test_an_archive_from_before_the_schema_change_is_migrated_in_place_and_resumes(tmp_path):
    with FixtureServer(build_archive()) as server:
        profile = load_profile(write_profile(tmp_path / "site.toml", server.base_url))
        scrape(profile, tmp_path / "out", max_images=3, progress=False)
        # Make it a version-1 state file, as the scraper wrote before: no page_images, placeholders, validators.
        with sqlite3.connect(tmp_path / "out" / STATE_FILE) as conn:
            conn.executescript("DROP TABLE page_images; DROP TABLE placeholders; "
                               "ALTER TABLE urls DROP COLUMN etag; ALTER TABLE urls DROP COLUMN last_modified; "
                               "ALTER TABLE urls DROP COLUMN refused_under; PRAGMA user_version = 0;")
        summary = scrape(profile, tmp_path / "out", progress=False)
    assert summary.images_kept == KEPT and summary.queued_left == 0
    with sqlite3.connect(tmp_path / "out" / STATE_FILE) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        columns = {row[1] for row in conn.execute("PRAGMA table_info(urls)")}
        assert {"etag", "last_modified", "refused_under"} <= columns
        # Images downloaded before the migration are linked to their look page again (from their parent).
        linked = conn.execute("SELECT COUNT(*) FROM page_images").fetchone()[0]
        images = conn.execute("SELECT COUNT(*) FROM urls WHERE kind = 'image'").fetchone()[0]
    assert linked == images


# ---------------------------------------------------------------------------------------------------- small things

def test_the_progress_bar_counts_towards_the_images_found_not_max_images(tmp_path):
    stream = io.StringIO()
    with FixtureServer(build_deep_archive(index_pages=2)) as server:
        profile = load_profile(write_profile(tmp_path / "site.toml", server.base_url, max_images=50000))
        scrape(profile, tmp_path / "out", progress=True, progress_file=stream)
    output = stream.getvalue()
    assert "50000" not in output and "4/4" in output


def test_the_example_profiles_placeholder_contact_is_refused_before_anything_is_written(tmp_path):
    result = cli("--profile", str(EXAMPLE), "--out", str(tmp_path / "out"), "--quiet")
    assert_clean_user_error(result, "[site] contact 'mailto:data-team@your-company.example' is a placeholder",
                            "Fix: put an address")
    assert not (tmp_path / "out").exists()
    with pytest.raises(AtelierError, match="placeholder"):
        text = EXAMPLE.read_text().replace("data-team@your-company.example", "team@example.org")
        (tmp_path / "p.toml").write_text(text)
        scrape(load_profile(tmp_path / "p.toml"), tmp_path / "out", progress=False)


def test_max_pixels_above_pillows_limit_is_honoured_in_a_crawl(tmp_path, monkeypatch):
    from PIL import Image

    # A stand-in for Pillow's ~89-megapixel built-in limit, small enough for the fixture's 160x240 looks.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    with FixtureServer(build_deep_archive(index_pages=1)) as server:
        generous = load_profile(write_profile(tmp_path / "a.toml", server.base_url, max_pixels=50_000))
        assert scrape(generous, tmp_path / "a", progress=False).images_kept == 2
        strict = load_profile(write_profile(tmp_path / "b.toml", server.base_url, max_pixels=20_000))
        refused = scrape(strict, tmp_path / "b", progress=False)
    assert refused.images_kept == 0 and refused.failures == {"decompression bomb": 2}
    reasons = {reason for _, status, reason in rows(tmp_path / "b").values() if status == "failed"}
    assert reasons == {"decompression bomb: declares 160x240 = 38,400 pixels, limit 20,000 (server said image/jpeg)"}
    assert Image.MAX_IMAGE_PIXELS == 10_000  # put back after each decode


def test_refresh_reads_a_changed_listing_page_and_fetches_only_its_new_links(tmp_path):
    routes = {"/robots.txt": Route(b"", "text/plain"), "/runway/": Route(b"<a class='look' href='/l1/'>1</a>"),
              "/l1/": Route(b"<img class='look-image' src='/m/1.jpg'>"),
              "/m/1.jpg": Route(jpeg_bytes(draw_look(1)), "image/jpeg")}
    with FixtureServer(Archive(routes=routes, traps={})) as server:
        profile = load_profile(write_profile(tmp_path / "site.toml", server.base_url))
        assert scrape(profile, tmp_path / "out", progress=False).images_kept == 1
        routes["/runway/"] = Route(b"<a class='look' href='/l1/'>1</a><a class='look' href='/l2/'>2</a>")
        routes["/l2/"] = Route(b"<img class='look-image' src='/m/2.jpg'>")
        routes["/m/2.jpg"] = Route(jpeg_bytes(draw_look(2)), "image/jpeg")
        server.reset()
        summary = scrape(profile, tmp_path / "out", refresh=True, progress=False)
        assert server.paths() == ["/robots.txt", "/runway/", "/l2/", "/m/2.jpg"]
    assert summary.images_kept == 2 and summary.notes.unchanged == 0


def test_cli_refresh_prints_what_it_did_and_a_missing_profile_is_a_clean_error(tmp_path):
    with FixtureServer(build_deep_archive(index_pages=2)) as server:
        profile_path = str(write_profile(tmp_path / "site.toml", server.base_url))
        assert cli("--profile", profile_path, "--out", str(tmp_path / "out"), "--quiet").exit_code == 0
        result = cli("--profile", profile_path, "--out", str(tmp_path / "out"), "--refresh", "--quiet")
    assert result.exit_code == 0, result.output
    assert "refresh: 2 listing pages read again, 2 unchanged (304), 0 new URLs found" in result.output
    assert "crawl complete" in result.output
    assert_clean_user_error(cli("--out", str(tmp_path / "out")), "--profile is missing")
