"""The polite fetcher against a real HTTP server on 127.0.0.1: delay, Retry-After, backoff, limits, robots.txt."""
from __future__ import annotations

import socket

import pytest

from fixture_site import Archive, FixtureServer, Route, write_profile
from scrape.fetch import Fetcher, FetchError, SiteUnreachable, parse_retry_after
from scrape.profile import load_profile

ROBOTS = Route(b"User-agent: *\nDisallow: /private/\n", content_type="text/plain")


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    # requests honours proxy variables; the test server must be reached directly.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")


def serve(routes: dict[str, Route]) -> FixtureServer:
    return FixtureServer(Archive(routes=routes, traps={}))


def fetcher_for(server: FixtureServer, tmp_path, sleep=None, **crawl) -> Fetcher:
    profile = load_profile(write_profile(tmp_path / "site.toml", server.base_url, **crawl))
    return Fetcher(profile) if sleep is None else Fetcher(profile, sleep=sleep)


def request_times(server: FixtureServer, path: str) -> list[float]:
    return [r.at for r in server.requests if r.path == path]


def test_retry_after_is_honoured_and_the_user_agent_is_sent(tmp_path):
    routes = {"/robots.txt": ROBOTS, "/busy": Route(b"ok", "text/plain", behaviour="fail_once", retry_after="1")}
    with serve(routes) as server:
        fetched = fetcher_for(server, tmp_path).get(f"{server.base_url}/busy", 1000)
        assert (fetched.body, fetched.attempts) == (b"ok", 2)
        first, second = request_times(server, "/busy")
        assert second - first >= 0.95  # waited as asked, not the profile's 0.01 s backoff
        assert {r.user_agent for r in server.requests} == {"AtelierScraper/0.1 (+tests@atelier.invalid)"}


def test_a_retry_after_beyond_max_wait_gives_up_instead_of_retrying_early(tmp_path):
    routes = {"/busy": Route(b"ok", "text/plain", behaviour="fail_once", retry_after="3600")}
    with serve(routes) as server:
        with pytest.raises(FetchError, match="retry after 3600s, more than max_wait"):
            fetcher_for(server, tmp_path).get(f"{server.base_url}/busy", 1000)
        assert len(request_times(server, "/busy")) == 1


def test_backoff_doubles_and_is_capped(tmp_path):
    routes = {"/down": Route(b"", status=503)}
    waits: list[float] = []
    with serve(routes) as server:
        fetcher = fetcher_for(server, tmp_path, sleep=waits.append, max_attempts=5, backoff=0.1, max_wait=0.3)
        with pytest.raises(FetchError, match=r"HTTP 503 \(gave up after 5 attempts\)"):
            fetcher.get(f"{server.base_url}/down", 1000)
        assert waits == pytest.approx([0.1, 0.2, 0.3, 0.3])
        assert len(request_times(server, "/down")) == 5


def test_client_errors_are_not_retried(tmp_path):
    with serve({}) as server:
        with pytest.raises(FetchError) as info:
            fetcher_for(server, tmp_path).get(f"{server.base_url}/missing", 1000)
        assert (info.value.reason, info.value.attempts) == ("HTTP 404", 1)


def test_requests_to_one_host_are_spaced_by_the_delay(tmp_path):
    routes = {"/a": Route(b"a", "text/plain")}
    with serve(routes) as server:
        fetcher = fetcher_for(server, tmp_path, delay=0.2)
        for _ in range(3):
            fetcher.get(f"{server.base_url}/a", 1000)
        times = request_times(server, "/a")
        assert all(later - earlier >= 0.19 for earlier, later in zip(times, times[1:]))


def test_bodies_over_the_limit_are_cut_off_with_or_without_content_length(tmp_path):
    big = b"x" * 50_000
    routes = {"/declared": Route(big, "image/jpeg"), "/streamed": Route(big, "image/jpeg", send_length=False)}
    with serve(routes) as server:
        fetcher = fetcher_for(server, tmp_path)
        with pytest.raises(FetchError, match="too large: Content-Length 50,000 bytes"):
            fetcher.get(f"{server.base_url}/declared", 10_000)
        with pytest.raises(FetchError, match="too large: body exceeds limit 10,000 bytes"):
            fetcher.get(f"{server.base_url}/streamed", 10_000)
        assert fetcher.get(f"{server.base_url}/streamed", 60_000).body == big


def test_read_timeouts_are_retried_then_reported(tmp_path):
    routes = {"/slow": Route(b"late", "text/plain", behaviour="slow")}
    with serve(routes) as server:
        server.slow_seconds = 0.6
        fetcher = fetcher_for(server, tmp_path, timeout=[2, 0.2], max_attempts=2)
        with pytest.raises(FetchError, match=r"timed out \(gave up after 2 attempts\)"):
            fetcher.get(f"{server.base_url}/slow", 1000)
        assert len(request_times(server, "/slow")) == 2


def test_refused_connections_are_retried_then_reported(tmp_path):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    profile = load_profile(write_profile(tmp_path / "site.toml", f"http://127.0.0.1:{port}", max_attempts=2))
    with pytest.raises(FetchError, match="connection failed"):
        Fetcher(profile).get(f"http://127.0.0.1:{port}/x", 1000)


def test_robots_rules_off_site_links_and_unreachable_robots(tmp_path):
    routes = {"/robots.txt": ROBOTS}
    with serve(routes) as server:
        fetcher = fetcher_for(server, tmp_path)
        assert fetcher.refusal(f"{server.base_url}/designers/") is None
        assert fetcher.refusal(f"{server.base_url}/private/x/") == "disallowed by robots.txt"
        assert fetcher.refusal("http://example.invalid/designers/").startswith("off-site")
        assert server.paths() == ["/robots.txt"]  # read once, never for the off-site host
    # No robots.txt (404): everything may be fetched.
    with serve({}) as server:
        assert fetcher_for(server, tmp_path).refusal(f"{server.base_url}/a") is None


@pytest.mark.parametrize("status", [500, 503, 429])
def test_unreachable_robots_stops_instead_of_disallowing_and_is_asked_again(tmp_path, status):
    # RFC 9309: a robots.txt that cannot be read means "do not crawl now", which is not "this URL is disallowed".
    routes = {"/robots.txt": Route(b"", status=status)}
    with serve(routes) as server:
        fetcher = fetcher_for(server, tmp_path, max_attempts=2)
        with pytest.raises(SiteUnreachable, match=f"robots.txt could not be fetched \\(HTTP {status}"):
            fetcher.refusal(f"{server.base_url}/a")
        routes["/robots.txt"] = ROBOTS  # the site is back: the same fetcher asks again (nothing was cached)
        assert fetcher.refusal(f"{server.base_url}/a") is None
        assert fetcher.refusal(f"{server.base_url}/private/a") == "disallowed by robots.txt"
        assert server.paths() == ["/robots.txt"] * 3


def test_unreachable_host_robots_raises_site_unreachable(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    profile = load_profile(write_profile(tmp_path / "site.toml", f"http://127.0.0.1:{port}", max_attempts=1))
    with pytest.raises(SiteUnreachable, match="connection failed"):
        Fetcher(profile).refusal(f"http://127.0.0.1:{port}/a")


def test_conditional_requests_get_304_for_an_unchanged_page(tmp_path):
    routes = {"/robots.txt": ROBOTS, "/index": Route(b"<p>one</p>", last_modified="Tue, 01 Dec 2026 10:00:00 GMT")}
    with serve(routes) as server:
        fetcher = fetcher_for(server, tmp_path)
        first = fetcher.get(f"{server.base_url}/index", 1000)
        assert first.status == 200 and first.etag and first.last_modified == "Tue, 01 Dec 2026 10:00:00 GMT"
        again = fetcher.get(f"{server.base_url}/index", 1000, etag=first.etag)
        assert again.not_modified and again.body == b""
        by_date = fetcher.get(f"{server.base_url}/index", 1000, last_modified=first.last_modified)
        assert by_date.not_modified
        routes["/index"] = Route(b"<p>two</p>", last_modified="Wed, 02 Dec 2026 10:00:00 GMT")
        changed = fetcher.get(f"{server.base_url}/index", 1000, etag=first.etag, last_modified=first.last_modified)
        assert changed.status == 200 and changed.body == b"<p>two</p>" and changed.etag != first.etag
        assert [r.conditional for r in server.requests if r.path == "/index"] == [False, True, True, True]


def test_parse_retry_after_reads_seconds_and_dates():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412460.0) == pytest.approx(20.0)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: no wait


def test_robots_crawl_delay_outranks_a_shorter_profile_delay(tmp_path):
    # Python's robots parser reads whole seconds only, as most sites write them.
    routes = {"/robots.txt": Route(b"User-agent: *\nCrawl-delay: 1\n", "text/plain"), "/a": Route(b"a", "text/plain")}
    with serve(routes) as server:
        fetcher = fetcher_for(server, tmp_path, delay=0)
        for _ in range(2):
            assert fetcher.refusal(f"{server.base_url}/a") is None
            fetcher.get(f"{server.base_url}/a", 1000)
        first, second = request_times(server, "/a")
        assert second - first >= 0.95
