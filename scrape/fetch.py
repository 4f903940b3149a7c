"""Polite HTTP for the scraper: robots.txt, one request at a time per host with a delay, retries with backoff.

The fetcher never follows redirects by itself: it reports them, and the crawler queues the target like any other
link, so the same-site rule, robots.txt and de-duplication apply to it too.
"""
from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import requests

from scrape.profile import USER_AGENT_NAME, SiteProfile

# Statuses worth another try: the server is overloaded or asked us to slow down.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
ROBOTS_MAX_BYTES = 500_000
CHUNK_BYTES = 64 * 1024


class FetchError(Exception):
    """A URL could not be fetched; ``reason`` is stored in the state file and shown in the summary."""

    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts


class SiteUnreachable(Exception):
    """robots.txt of a host could not be read (down, refused, 5xx, 429): RFC 9309 says do not crawl it now.

    This is not a property of one URL, so nothing is marked failed or skipped: the crawl stops with the queue
    intact, to continue when the site answers again."""

    def __init__(self, robots_url: str, reason: str) -> None:
        super().__init__(f"{robots_url} could not be fetched ({reason})")
        self.robots_url = robots_url
        self.reason = reason


@dataclass(frozen=True)
class Fetched:
    url: str
    status: int
    content_type: str
    body: bytes
    attempts: int
    redirect: str | None = None  # absolute target when the server answered with a redirect
    etag: str | None = None
    last_modified: str | None = None

    @property
    def not_modified(self) -> bool:
        """304: the page is as it was at the last visit (answer to a conditional request)."""
        return self.status == 304

    @property
    def media_type(self) -> str:
        return self.content_type.split(";", 1)[0].strip().lower()


class _TooLarge(Exception):
    pass


class _Retryable(Exception):
    """A failure that another attempt may cure (timeouts, dropped connections, 429/5xx)."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = datetime.now(timezone.utc).timestamp() if now is None else now
    return max(0.0, when.timestamp() - current)


class Fetcher:
    """Fetches URLs of one site profile, sequentially, with per-host delay, robots.txt and retries."""

    def __init__(self, profile: SiteProfile, session: requests.Session | None = None, *,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 delay: float | None = None) -> None:
        self.profile = profile
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = profile.user_agent
        self.sleep = sleep
        self.clock = clock
        self.delay = profile.crawl.delay if delay is None else delay
        self._robots: dict[str, RobotFileParser] = {}
        self._host_delay: dict[str, float] = {}
        self._last_request: dict[str, float] = {}
        self.requests_made = 0

    # ------------------------------------------------------------------------------------------ public
    def refusal(self, url: str) -> str | None:
        """Why this URL must not be fetched (off-site, robots.txt), or None when it may be."""
        if not self.profile.is_allowed_host(url):
            return f"off-site: {urlsplit(url).netloc or url} is not a host of this profile"
        if not self._robots_for(url).can_fetch(USER_AGENT_NAME, url):
            return "disallowed by robots.txt"
        return None

    def get(self, url: str, max_bytes: int, *, etag: str | None = None,
            last_modified: str | None = None) -> Fetched:
        """GET one URL with retries; raise FetchError with a reason when every attempt failed.

        With ``etag`` / ``last_modified`` from an earlier visit the request is conditional, and an unchanged page
        comes back as a bodiless 304."""
        crawl = self.profile.crawl
        conditions: dict[str, str] = {}
        if etag:
            conditions["If-None-Match"] = etag
        if last_modified:
            conditions["If-Modified-Since"] = last_modified
        reason = "no attempt made"
        for attempt in range(1, crawl.max_attempts + 1):
            try:
                return self._attempt(url, max_bytes, attempt, conditions)
            except _TooLarge as exc:
                raise FetchError(str(exc), attempt) from None
            except _Retryable as exc:
                reason = exc.reason
                if attempt == crawl.max_attempts:
                    break
                backoff = crawl.backoff * 2 ** (attempt - 1)
                if exc.wait is not None and exc.wait > crawl.max_wait:
                    # Retrying sooner than the server asked would be rude; give up on this URL instead.
                    raise FetchError(f"{reason}: server asked to retry after {exc.wait:.0f}s, more than max_wait "
                                     f"{crawl.max_wait:.0f}s", attempt) from None
                self.sleep(min(crawl.max_wait, max(backoff, exc.wait or 0.0)))
        raise FetchError(f"{reason} (gave up after {crawl.max_attempts} attempts)", crawl.max_attempts)

    # ------------------------------------------------------------------------------------------ internals
    def _attempt(self, url: str, max_bytes: int, attempt: int, conditions: dict[str, str]) -> Fetched:
        crawl = self.profile.crawl
        host = urlsplit(url).netloc.lower()
        self._wait_turn(host)
        try:
            response = self.session.get(url, stream=True, allow_redirects=False, headers=conditions,
                                        timeout=(crawl.connect_timeout, crawl.read_timeout))
        except requests.Timeout:
            raise _Retryable("timed out") from None
        except requests.ConnectionError as exc:
            raise _Retryable(f"connection failed ({type(exc).__name__})") from None
        except requests.RequestException as exc:
            raise FetchError(f"request failed: {exc}", attempt) from None
        with response:
            status = response.status_code
            if status in RETRY_STATUSES:
                raise _Retryable(f"HTTP {status}", parse_retry_after(response.headers.get("Retry-After")))
            content_type = response.headers.get("Content-Type", "")
            if status in REDIRECT_STATUSES and response.headers.get("Location"):
                target = urljoin(url, response.headers["Location"])
                return Fetched(url, status, content_type, b"", attempt, redirect=target)
            etag, last_modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
            if status == 304 and conditions:
                return Fetched(url, status, content_type, b"", attempt, etag=etag, last_modified=last_modified)
            if status >= 400 or status < 200 or status == 304:
                raise FetchError(f"HTTP {status}", attempt)
            body = self._read_body(response, max_bytes)
        return Fetched(url, status, content_type, body, attempt, etag=etag, last_modified=last_modified)

    def _read_body(self, response: requests.Response, max_bytes: int) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise _TooLarge(f"too large: Content-Length {int(declared):,} bytes > limit {max_bytes:,}")
        # The read timeout bounds each socket read, not the whole body; a trickling server is cut off here.
        deadline = self.clock() + max(60.0, 4 * self.profile.crawl.read_timeout)
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(CHUNK_BYTES):
                size += len(chunk)
                if size > max_bytes:
                    raise _TooLarge(f"too large: body exceeds limit {max_bytes:,} bytes")
                if self.clock() > deadline:
                    raise _Retryable("timed out while reading the body")
                chunks.append(chunk)
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, requests.Timeout) as exc:
            raise _Retryable(f"connection dropped while reading ({type(exc).__name__})") from None
        return b"".join(chunks)

    def _wait_turn(self, host: str) -> None:
        """One request at a time per host, at least ``delay`` seconds apart (or the robots.txt Crawl-delay)."""
        delay = max(self.delay, self._host_delay.get(host, 0.0))
        last = self._last_request.get(host)
        if last is not None:
            remaining = last + delay - self.clock()
            if remaining > 0:
                self.sleep(remaining)
        self._last_request[host] = self.clock()
        self.requests_made += 1

    def _robots_for(self, url: str) -> RobotFileParser:
        parts = urlsplit(url)
        host = parts.netloc.lower()
        parser = self._robots.get(host)
        if parser is None:
            parser = self._load_robots(f"{parts.scheme}://{parts.netloc}/robots.txt")
            self._robots[host] = parser
            crawl_delay = parser.crawl_delay(USER_AGENT_NAME)
            if crawl_delay:
                self._host_delay[host] = float(crawl_delay)
        return parser

    def _load_robots(self, robots_url: str) -> RobotFileParser:
        """Read robots.txt as RFC 9309 says: 4xx means no rules; an unreachable file (5xx, 429, no connection)
        means do not crawl now, which raises SiteUnreachable (never cached, so a later run asks again)."""
        parser = RobotFileParser(robots_url)
        url = robots_url
        for _hop in range(5):
            try:
                fetched = self.get(url, ROBOTS_MAX_BYTES)
            except FetchError as exc:
                # 429 is "slow down", not "no robots.txt": treat it like an unreachable file.
                if exc.reason.startswith("HTTP 4") and not exc.reason.startswith("HTTP 429"):
                    parser.allow_all = True
                    return parser
                raise SiteUnreachable(robots_url, exc.reason) from None
            if fetched.redirect is None:
                text = fetched.body.decode("utf-8", errors="replace")
                parser.parse(text.splitlines())
                return parser
            if not self.profile.is_allowed_host(fetched.redirect):
                break
            url = fetched.redirect
        # A robots.txt that leads off-site (or loops) is treated as absent, as RFC 9309 allows.
        parser.allow_all = True
        return parser
