"""Crawl a runway archive described by a site profile and download its look images, resumably.

Layout of the output folder::

    OUT/state.sqlite              queue, visited/failed URLs with reasons, downloaded images (the resumable state)
    OUT/images/ab/ab12...ef.jpg   kept images, named by their sha256
    OUT/metadata.jsonl            one line per kept image: url, page_url, path, sha256, phash, size, fields

Run the same command again after a crash, Ctrl-C or kill: it continues from the state file. A site that cannot be
reached stops the crawl with an error and the queue intact; ``--refresh`` reads a finished crawl's listing pages
again for what is new; ``report_lines`` (``--report``) lists everything that was not downloaded, and why.
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO
from urllib.parse import urldefrag, urljoin

import requests
from bs4 import BeautifulSoup, Tag
from tqdm import tqdm

from core.errors import AtelierError
from core.files import atomic_write_bytes
from scrape.fetch import Fetched, Fetcher, FetchError, SiteUnreachable
from scrape.images import ImageRejected, NearDuplicateIndex, check_image, hash_to_hex, hex_to_hash
from scrape.profile import FieldRule, SiteProfile, placeholder_contact_problem
from scrape.state import DEPTH_REASON, KINDS, ImageRecord, Link, QueuedUrl, StateDB, reason_category

STATE_FILE = "state.sqlite"
METADATA_FILE = "metadata.jsonl"
IMAGES_DIR = "images"
HTML_TYPES = ("text/html", "application/xhtml+xml")
# Where lazy-loading scripts keep the real address while ``src`` holds a stand-in; tried after the profile's
# image_attr, before src (see _image_source).
LAZY_ATTRS = ("data-srcset", "data-src", "data-lazy-srcset", "data-lazy-src", "data-original", "data-lazy")
SHOWN_PLACEHOLDERS = 3  # in the summary; `atelier scrape --report` lists them all


@dataclass(frozen=True)
class RunNotes:
    """What this run did besides crawling: --refresh and --retry-failed figures."""

    refreshed: int | None = None  # listing pages read again (--refresh)
    unchanged: int = 0            # ... of which the site answered 304 Not Modified
    new_urls: int = 0             # URLs queued this run that were not known before
    requeued: int | None = None   # --retry-failed: URLs queued again
    still_refused: int = 0        # ... and those left refused for their content


@dataclass
class ScrapeSummary:
    out_dir: Path
    pages_visited: int = 0
    images_kept: int = 0
    exact_duplicates: int = 0
    near_duplicates: int = 0
    queued_left: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    stopped_by: str | None = None
    requests_made: int = 0
    image_urls_found: int = 0
    error: str | None = None  # the crawl could not go on (site down): the CLI exits non-zero
    depth_cut: int = 0
    max_depth: int = 0
    looks_without_image: dict[str, int] = field(default_factory=dict)  # why -> look pages
    placeholders: list[tuple[str, int]] = field(default_factory=list)  # (image URL, pages showing it)
    notes: RunNotes = field(default_factory=RunNotes)

    def lines(self) -> list[str]:
        lines = [
            f"Scrape of {self.out_dir}: {self.images_kept} images kept, {self.pages_visited} pages visited, "
            f"{self.requests_made} requests this run.",
            f"  duplicates skipped: {self.exact_duplicates} exact, {self.near_duplicates} near",
        ]
        for reason, count in sorted(self.failures.items(), key=lambda item: (-item[1], item[0])):
            lines.append(f"  not downloaded ({reason}): {count}")
        lines.extend(self._problem_lines())
        lines.extend(self._note_lines())
        if self.error:
            lines.append(f"  stopped: {self.error}; {self.queued_left} URLs still queued, nothing was lost: "
                         "run the same command again when the site answers")
        elif self.stopped_by:
            lines.append(f"  stopped: {self.stopped_by}; {self.queued_left} URLs still queued "
                         "(run again with a higher limit to continue)")
        elif self.queued_left:
            lines.append(f"  {self.queued_left} URLs still queued: run the same command again to continue")
        else:
            within = f" up to max_depth {self.max_depth}" if self.depth_cut else ""
            lines.append(f"  crawl complete{within}: nothing left in the queue")
        if self.pages_visited and not self.image_urls_found and not self.depth_cut:
            # The usual first-run problem with a new profile: selectors that match nothing on the real pages.
            lines.append("  hint: no page had an image matching the profile's selectors; open a look page in a "
                         "browser and check [selectors] look_links and image")
        lines.append(f"  metadata: {self.out_dir / METADATA_FILE}")
        return lines

    def _problem_lines(self) -> list[str]:
        """What the crawl found but did not turn into kept images, so nothing is lost without a word."""
        lines = []
        report = f"atelier scrape --report --out {self.out_dir}"
        if self.depth_cut:
            lines.append(f"  links not followed (beyond max_depth {self.max_depth}): {self.depth_cut}; raise [crawl] "
                         "max_depth and run again to follow them")
        missing = sum(self.looks_without_image.values())
        if missing:
            why = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.looks_without_image.items(),
                                                                       key=lambda item: (-item[1], item[0])))
            lines.append(f"  look pages without a usable image: {missing} ({why}); list them: {report}")
        for url, pages in self.placeholders[:SHOWN_PLACEHOLDERS]:
            lines.append(f"  placeholder, not kept: {url} is the image of {pages} pages")
        if len(self.placeholders) > SHOWN_PLACEHOLDERS:
            lines.append(f"  ... and {len(self.placeholders) - SHOWN_PLACEHOLDERS} more placeholders ({report})")
        if self.placeholders:
            lines.append("  hint: a placeholder usually means lazy loading: open a look page's HTML source, find the "
                         "attribute holding the real file (data-src, data-srcset ...) and set [selectors] image_attr "
                         "(if it is a real look shown on many pages, set [images] placeholder_pages higher, or 0)")
        if any(n for reason, n in self.failures.items() if reason != DEPTH_REASON):
            lines.append(f"  failed URLs and reasons: {report}")
        return lines

    def _note_lines(self) -> list[str]:
        notes, lines = self.notes, []
        if notes.refreshed is not None:
            lines.append(f"  refresh: {notes.refreshed} listing pages read again, {notes.unchanged} unchanged (304), "
                         f"{notes.new_urls} new URLs found")
        if notes.requeued is not None:
            lines.append(f"  retry: {notes.requeued} failed URLs queued again; {notes.still_refused} refused for "
                         "their content stay refused (the same bytes under the same limits)")
        return lines


@dataclass(frozen=True)
class Limits:
    max_pages: int | None
    max_images: int | None


class Crawler:
    """One crawl of one profile into one output folder; ``run()`` can be called again after any interruption."""

    def __init__(self, profile: SiteProfile, out_dir: Path, *, fetcher: Fetcher | None = None,
                 limits: Limits | None = None, progress: bool = True, progress_file: TextIO | None = None) -> None:
        self.profile = profile
        self.out_dir = out_dir
        self.fetcher = fetcher or Fetcher(profile)
        self.limits = limits or Limits(profile.crawl.max_pages, profile.crawl.max_images)
        self.progress = progress
        self.progress_file = progress_file or sys.stderr
        self.state = StateDB(out_dir / STATE_FILE)
        self.index = NearDuplicateIndex()
        self.sha_to_kept: dict[str, str] = {}
        self.kept = 0
        self.pages_visited = 0
        self.failure_streak: list[str] = []  # URLs that failed in a row for reasons that point at the site
        self.notes = RunNotes()

    def close(self) -> None:
        self.state.close()

    # ------------------------------------------------------------------------------------------ main loop
    def prepare(self, *, retry_failed: bool = False, refresh: bool = False) -> None:
        """Queue changes made before the first request: profile binding, --retry-failed, --refresh."""
        self.state.bind_profile(self.profile.name)
        if retry_failed:
            requeued, still_refused = self.state.requeue_failed(self._limits_now())
            self.notes = replace(self.notes, requeued=requeued, still_refused=still_refused)
        if refresh:
            self.notes = replace(self.notes, refreshed=self.state.requeue_for_refresh())
        # Links an earlier run cut at a smaller max_depth are followed now that they are within the limit.
        self.state.requeue_within_depth(self.profile.crawl.max_depth)

    def run(self) -> ScrapeSummary:
        self.state.bind_profile(self.profile.name)
        self._remove_stale_temp_files()
        for url in self.profile.start_urls:
            self.state.enqueue(urldefrag(url).url, "listing", 0, None, {})
        self._load_hashes()
        self.pages_visited = self.state.count_pages_visited()
        stopped_by = error = None
        # The bar's total is the images known so far (kept + queued), never max_images: that is a ceiling, and an
        # ETA computed from it would promise hours for a site that has a few hundred looks.
        bar = tqdm(total=self._known_images(), initial=self.kept, unit="img", desc=f"scrape {self.profile.name}",
                   disable=not self.progress, file=self.progress_file, dynamic_ncols=True)
        try:
            while True:
                if self.limits.max_images is not None and self.kept >= self.limits.max_images:
                    stopped_by = f"max_images ({self.limits.max_images}) reached"
                    break
                # Past the page limit, images already found are still downloaded, but no new page is read.
                pages_allowed = self.limits.max_pages is None or self.pages_visited < self.limits.max_pages
                item = self.state.next_queued(KINDS if pages_allowed else ("image",))
                if item is None:
                    if not pages_allowed and self.state.count_queued():
                        stopped_by = f"max_pages ({self.limits.max_pages}) reached"
                    break
                kept_before = self.kept
                try:
                    self._process(item)
                except SiteUnreachable as exc:
                    # RFC 9309: robots.txt unreachable means "do not crawl now", not "everything is disallowed".
                    error = f"{exc} (RFC 9309: do not crawl while robots.txt cannot be read)"
                    break
                if len(self.failure_streak) >= self.profile.crawl.max_consecutive_failures:
                    # Every recent request failed after retries: the site is down or is refusing us. Hammering on
                    # would be rude; stop. Those URLs failed because of the site, not of themselves: they go back
                    # in the queue, so a plain rerun picks up from here.
                    error = (f"{len(self.failure_streak)} requests in a row failed after retries, the last with "
                             f"{self.state.reason(self.failure_streak[-1])!r} (site down or blocking us?)")
                    self.state.requeue(self.failure_streak)
                    break
                bar.total = self._known_images()
                bar.update(self.kept - kept_before)
                bar.set_postfix(pages=self.pages_visited, queued=self.state.count_queued(), refresh=False)
        finally:
            bar.close()
            # Rewritten even when interrupted, so metadata.jsonl always matches the images on disk.
            write_metadata(self.state, self.out_dir)
        summary = self.summary(stopped_by)
        summary.error = error
        return summary

    def summary(self, stopped_by: str | None = None) -> ScrapeSummary:
        counts = self.state.counts()
        failures = dict(counts.failure_reasons)
        depth_cut = failures.pop(DEPTH_REASON, 0)
        looks: dict[str, int] = {}
        for look in self.state.looks_without_image():
            key = reason_category(look.why)
            looks[key] = looks.get(key, 0) + 1
        return ScrapeSummary(out_dir=self.out_dir, pages_visited=counts.pages("visited"), images_kept=counts.kept,
                             exact_duplicates=counts.exact_duplicates, near_duplicates=counts.near_duplicates,
                             queued_left=self.state.count_queued(), failures=failures,
                             stopped_by=stopped_by, requests_made=self.fetcher.requests_made,
                             image_urls_found=counts.get(kind="image"), depth_cut=depth_cut,
                             max_depth=self.profile.crawl.max_depth, looks_without_image=looks,
                             placeholders=self.state.placeholders(), notes=self.notes)

    def _known_images(self) -> int:
        known = self.kept + self.state.count_queued("image")
        return known if self.limits.max_images is None else min(known, self.limits.max_images)

    def _limits_now(self) -> dict[str, object]:
        """The profile limits a content refusal depends on, stored with it for --retry-failed."""
        images = self.profile.images
        return {"max_pixels": images.max_pixels, "max_bytes": images.max_bytes, "formats": list(images.formats),
                "max_page_bytes": self.profile.crawl.max_page_bytes}

    def _remove_stale_temp_files(self) -> None:
        """A kill during a file write leaves a '.<name>.<random>.tmp' file (or '.tmp-<random>' from older versions);
        the image itself is downloaded again, so drop it."""
        images = self.out_dir / IMAGES_DIR
        for pattern in (".*.tmp", ".tmp-*"):
            for stale in [*self.out_dir.glob(pattern), *images.glob(f"*/{pattern}")]:
                stale.unlink(missing_ok=True)

    def _load_hashes(self) -> None:
        """Rebuild the in-memory duplicate indexes from the state file (they are not stored separately)."""
        for record in self.state.images(kept_only=False):
            kept_sha = record.duplicate_of or record.sha256
            self.sha_to_kept.setdefault(record.sha256, kept_sha)
            if record.duplicate_of is None:
                self.index.add(record.sha256, hex_to_hash(record.phash))
        self.kept = self.state.count_kept()  # placeholders are in the index (their copies stay out) but not kept

    def _fetch(self, item: QueuedUrl, max_bytes: int, conditional: bool = False) -> Fetched | None:
        """Fetch or record the failure; counts failures that look like the site (not the URL) is the problem."""
        try:
            fetched = self.fetcher.get(item.url, max_bytes, etag=item.etag if conditional else None,
                                       last_modified=item.last_modified if conditional else None)
        except FetchError as exc:
            refused = self._limits_now() if exc.reason.startswith("too large") else None
            self.state.finish(item.url, "failed", exc.reason, exc.attempts, refused_under=refused)
            site_trouble = exc.reason.startswith(("HTTP 429", "HTTP 5", "timed out", "connection"))
            self.failure_streak = [*self.failure_streak, item.url] if site_trouble else []
            return None
        self.failure_streak = []
        if fetched.redirect is not None:
            self._follow_redirect(item, fetched.redirect, fetched.attempts)
            return None
        return fetched

    def _process(self, item: QueuedUrl) -> None:
        refusal = self.fetcher.refusal(item.url)
        if refusal is not None:
            self.state.finish(item.url, "skipped", refusal, 0)
            return
        if item.kind == "image":
            self._process_image(item)
        else:
            self._process_page(item)

    # ------------------------------------------------------------------------------------------ pages
    def _process_page(self, item: QueuedUrl) -> None:
        # Only listing pages are ever visited twice (--refresh), and only they carry validators worth sending.
        fetched = self._fetch(item, self.profile.crawl.max_page_bytes, conditional=item.kind == "listing")
        if fetched is None:
            return
        if self.notes.refreshed is not None and item.kind == "listing" and (item.etag or item.last_modified):
            self.notes = replace(self.notes, unchanged=self.notes.unchanged + fetched.not_modified)
        if fetched.not_modified:  # its links are all known from the last visit
            self.state.finish(item.url, "visited", None, fetched.attempts)
            self.pages_visited += 1
            return
        if fetched.media_type and fetched.media_type not in HTML_TYPES:
            self.state.finish(item.url, "failed", f"not an HTML page: Content-Type {fetched.media_type}",
                              fetched.attempts)
            return
        soup = BeautifulSoup(fetched.body, "html.parser", from_encoding=_charset(fetched.content_type))
        fields = dict(item.fields)
        fields.update(extract_fields(soup, self.profile.fields))
        children = extract_links(soup, item.kind, fetched.url, self.profile)
        added = self.state.finish_page(item, fetched.attempts, fields, children, self.profile.crawl.max_depth,
                                       (fetched.etag, fetched.last_modified))
        self.notes = replace(self.notes, new_urls=self.notes.new_urls + added)
        self.pages_visited += 1
        images = [link.url for link in children if link.kind == "image"]
        if images and self.profile.images.placeholder_pages:
            self.kept -= self.state.mark_placeholders(images, self.profile.images.placeholder_pages)

    def _follow_redirect(self, item: QueuedUrl, target: str, attempts: int) -> None:
        target = urldefrag(target).url
        if not self.profile.is_allowed_host(target):
            self.state.finish(item.url, "failed", f"off-site: redirects to {target}", attempts)
        else:
            self.state.redirect(item, target, attempts)

    # ------------------------------------------------------------------------------------------ images
    def _process_image(self, item: QueuedUrl) -> None:
        settings = self.profile.images
        fetched = self._fetch(item, settings.max_bytes)
        if fetched is None:
            return
        try:
            checked = check_image(fetched.body, settings.max_pixels, settings.formats)
        except ImageRejected as exc:
            said = f" (server said {fetched.media_type})" if fetched.media_type else ""
            self.state.finish(item.url, "failed", exc.reason + said, fetched.attempts,
                              refused_under=self._limits_now())
            return
        record = ImageRecord(url=item.url, page_url=item.parent, sha256=checked.sha256,
                             phash=hash_to_hex(checked.phash), path=None, format=checked.format,
                             width=checked.width, height=checked.height, bytes=len(fetched.body), fields=item.fields)
        exact = self.sha_to_kept.get(checked.sha256)
        nearest = self.index.nearest(checked.phash)
        if exact is not None:
            record = replace(record, duplicate_of=exact)
        elif nearest is not None and nearest[1] <= settings.near_duplicate_distance:
            record = replace(record, duplicate_of=nearest[0], distance=nearest[1])
        else:
            relative = f"{IMAGES_DIR}/{checked.sha256[:2]}/{checked.sha256}.{checked.extension}"
            atomic_write_bytes(self.out_dir / relative, fetched.body)
            record = replace(record, path=relative)
        # The file is on disk before the state says so; a kill in between only leaves a file that is rewritten.
        self.state.record_image(record, fetched.attempts)
        self.sha_to_kept.setdefault(checked.sha256, record.duplicate_of or checked.sha256)
        if record.duplicate_of is None:
            self.index.add(checked.sha256, checked.phash)
            self.kept += 1
        # Same bytes under many addresses (a placeholder served as /blank.gif?look=12) show up only once downloaded.
        if settings.placeholder_pages:
            self.kept -= self.state.mark_placeholders([item.url], settings.placeholder_pages)


# ---------------------------------------------------------------------------------------------------- HTML reading

def extract_fields(soup: BeautifulSoup, rules: tuple[FieldRule, ...]) -> dict[str, str]:
    """Metadata found on this page; a field missing here is left to what the pages above it said."""
    values: dict[str, str] = {}
    for rule in rules:
        element = soup.select_one(rule.selector)
        if element is None:
            continue
        raw = element.get(rule.attr) if rule.attr else element.get_text(" ", strip=True)
        if isinstance(raw, list):  # multi-valued attributes such as class
            raw = " ".join(raw)
        text = " ".join(str(raw or "").split())
        if rule.pattern:
            match = re.search(rule.pattern, text)
            if match is None:
                continue
            text = (match.group(1) if match.groups() else match.group(0)) or ""
        if text:
            values[rule.name] = text.strip()
    return values


def _link_rules(kind: str, profile: SiteProfile) -> list[tuple[str | None, str, bool]]:
    """Which selectors are followed from a page of this kind, what kind of page each leads to, and whether it is
    pagination (the same page continued, which does not count against max_depth)."""
    s = profile.selectors
    if kind == "listing":
        return [(s.pagination, "listing", True), (s.listing_links, "listing", False),
                (s.collection_links, "collection", False), (s.look_links, "look", False)]
    if kind == "collection":
        rules = [(s.pagination, "collection", True), (s.look_links, "look", False)]
        # Galleries without look pages: the images sit on the collection page itself.
        if s.look_links is None:
            rules.append((s.image, "image", False))
        return rules
    return [(s.look_links, "look", False), (s.image, "image", False)]


def extract_links(soup: BeautifulSoup, kind: str, page_url: str, profile: SiteProfile) -> list[Link]:
    base_tag = soup.find("base", href=True)
    base = urljoin(page_url, str(base_tag["href"])) if isinstance(base_tag, Tag) else page_url
    links: list[Link] = []
    seen: set[str] = set()
    for selector, target_kind, next_page in _link_rules(kind, profile):
        if selector is None:
            continue
        for element in soup.select(selector):
            if target_kind == "image":
                href = _image_source(element, profile.selectors.image_attr)
            else:
                href = element.get("href")
            if not isinstance(href, str) or not href.strip():
                continue
            url = urldefrag(urljoin(base, href.strip())).url
            # Same-site rule: links elsewhere are dropped here and never reach the queue.
            if url in seen or not profile.is_allowed_host(url):
                continue
            seen.add(url)
            links.append(Link(url, target_kind, next_page))
    return links


def _image_source(element: Tag, attr: str) -> str | None:
    """The image address of one element: the profile's image_attr, then the lazy-loading attributes, then srcset,
    then src (or href on a link). With image_attr "src" the lazy attributes come first: on a lazy-loaded image src
    holds a stand-in and data-src the real file. Empty values and inline data: URIs are passed over."""
    primary = [] if attr == "src" else [attr]
    plain = "href" if element.name == "a" else "src"
    for name in dict.fromkeys([*primary, *LAZY_ATTRS, "srcset", plain]):
        value = element.get(name)
        if not isinstance(value, str) or not value.strip():
            continue
        url = _largest_in_srcset(value) if name.endswith("srcset") else value.strip()
        if url and not url.lower().startswith("data:"):
            return url
    return None


def _largest_in_srcset(srcset: str) -> str | None:
    """Pick the biggest candidate of 'a.jpg 480w, b.jpg 1080w' (or '1x, 2x'): training wants full resolution."""
    best, best_size = None, -1.0
    for candidate in srcset.split(","):
        parts = candidate.split()
        if not parts:
            continue
        size = 1.0
        if len(parts) > 1 and parts[1][:-1].replace(".", "", 1).isdigit():
            size = float(parts[1][:-1])
        if size > best_size:
            best, best_size = parts[0], size
    return best


def _charset(content_type: str) -> str | None:
    match = re.search(r"charset=([\w.-]+)", content_type, re.IGNORECASE)
    return match.group(1) if match else None


# ---------------------------------------------------------------------------------------------------- files

def write_metadata(state: StateDB, out_dir: Path) -> Path:
    """Rewrite metadata.jsonl from the state file (temp file + rename), so it is never half-written."""
    lines = [json.dumps(record.metadata_line(), ensure_ascii=False, sort_keys=True) + "\n"
             for record in state.images(kept_only=True)]
    target = out_dir / METADATA_FILE
    atomic_write_bytes(target, "".join(lines).encode("utf-8"))
    return target


def scrape(profile: SiteProfile, out_dir: str | Path, *, max_pages: int | None = None, max_images: int | None = None,
           delay: float | None = None, retry_failed: bool = False, refresh: bool = False, progress: bool = True,
           session: requests.Session | None = None, progress_file: TextIO | None = None) -> ScrapeSummary:
    """Crawl (or resume crawling) ``profile`` into ``out_dir``; CLI overrides take precedence over the profile.

    ``refresh`` reads the listing pages of a finished crawl again (conditional requests) to find what is new."""
    problem = placeholder_contact_problem(profile)
    if problem is not None:  # before the output folder is created: nothing is written for a refused profile
        raise AtelierError(problem)
    out = Path(out_dir).expanduser()
    limits = Limits(max_pages if max_pages is not None else profile.crawl.max_pages,
                    max_images if max_images is not None else profile.crawl.max_images)
    crawler = Crawler(profile, out, fetcher=Fetcher(profile, session, delay=delay), limits=limits, progress=progress,
                      progress_file=progress_file)
    try:
        crawler.prepare(retry_failed=retry_failed, refresh=refresh)
        return crawler.run()
    finally:
        crawler.close()


def report_lines(out_dir: str | Path) -> list[str]:
    """`atelier scrape --report`: every failed or skipped URL with its reason, look pages without a usable image,
    and placeholders, read from the state file (no request is made)."""
    out = Path(out_dir).expanduser()
    if not (out / STATE_FILE).is_file():
        raise AtelierError(f"{out} holds no crawl ({STATE_FILE} is missing). Fix: pass the --out folder of an "
                           "earlier `atelier scrape`.")
    with StateDB(out / STATE_FILE) as state:
        failures = state.failures()
        looks = state.looks_without_image()
        placeholders = state.placeholders()
        queued = state.count_queued()
    lines = [f"Report of {out}: {len(failures)} URLs failed or skipped, {len(looks)} look pages without a usable "
             f"image, {len(placeholders)} placeholder images, {queued} URLs still queued."]
    groups: dict[str, list[tuple[str, str, str, str]]] = {}
    for row in failures:
        groups.setdefault(reason_category(row[3] or "unknown"), []).append(row)
    for category, rows in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0])):
        lines.append(f"{category} ({len(rows)}):")
        lines.extend(f"  {url}  [{kind}, {status}] {reason}" for url, kind, status, reason in rows)
    if looks:
        lines.append(f"look pages without a usable image ({len(looks)}):")
        lines.extend(f"  {look.url}  {look.why}" for look in looks)
    if placeholders:
        lines.append(f"placeholder images, not kept ({len(placeholders)}):")
        lines.extend(f"  {url}  on {pages} pages" for url, pages in placeholders)
    return lines

