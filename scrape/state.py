"""The scraper's own state file (SQLite, stdlib ``sqlite3``): what is queued, visited, downloaded and failed.

Every state change is one transaction, committed before the next request, so a crawl killed at any moment
(even with SIGKILL) restarts exactly where it stopped: finished URLs are never fetched again, and a page whose
links were not yet saved is simply fetched once more.
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import AtelierError

KINDS = ("image", "look", "collection", "listing")
# Images first, then looks, then collections, then listings: the crawl reaches images early (so limits give
# useful results) and the queue stays short, since each listing page is expanded only when the rest is done.
PRIORITY = {kind: rank for rank, kind in enumerate(KINDS)}

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS urls (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    url       TEXT NOT NULL UNIQUE,
    kind      TEXT NOT NULL CHECK (kind IN ('listing', 'collection', 'look', 'image')),
    priority  INTEGER NOT NULL,
    status    TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'visited', 'failed', 'skipped')),
    depth     INTEGER NOT NULL,
    parent    TEXT,
    fields    TEXT NOT NULL DEFAULT '{}',
    reason    TEXT,
    attempts  INTEGER NOT NULL DEFAULT 0,
    updated   REAL
);
CREATE INDEX IF NOT EXISTS urls_queue ON urls (status, priority, id);
CREATE TABLE IF NOT EXISTS images (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    url          TEXT NOT NULL UNIQUE,
    page_url     TEXT,
    sha256       TEXT NOT NULL,
    phash        TEXT NOT NULL,
    path         TEXT,
    format       TEXT NOT NULL,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    bytes        INTEGER NOT NULL,
    fields       TEXT NOT NULL,
    duplicate_of TEXT,
    distance     INTEGER,
    downloaded   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS images_sha ON images (sha256);
"""

# Version 2 (added in place to older state files by ``_migrate``): HTTP validators of each page for --refresh,
# the image limits a content refusal was made under (so --retry-failed can tell whether they changed), which page
# linked which image (for look pages without a usable image, and placeholders), and the detected placeholders.
SCHEMA_VERSION = 2
URL_COLUMNS_V2 = {"etag": "TEXT", "last_modified": "TEXT", "refused_under": "TEXT"}
SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS page_images (
    page  TEXT NOT NULL,
    image TEXT NOT NULL,
    PRIMARY KEY (page, image)
);
CREATE INDEX IF NOT EXISTS page_images_image ON page_images (image);
CREATE TABLE IF NOT EXISTS placeholders (
    url   TEXT PRIMARY KEY,
    pages INTEGER NOT NULL
);
"""
DEPTH_REASON = "beyond max_depth"
# Refusals that depend only on the bytes the site sent and on limits of the profile: fetching again gives the same
# bytes, so --retry-failed requeues them only when the limit that refused them was loosened since.
CONTENT_REFUSALS = ("broken image", "not an image", "decompression bomb", "format not accepted", "too large",
                    "not an HTML page")


@dataclass(frozen=True)
class QueuedUrl:
    url: str
    kind: str
    depth: int
    parent: str | None
    fields: dict[str, str]
    etag: str | None = None  # validators from the last visit, sent back as a conditional request on --refresh
    last_modified: str | None = None


@dataclass(frozen=True)
class Link:
    url: str
    kind: str
    next_page: bool = False  # pagination: the same level continued, so it does not count as one more level


@dataclass(frozen=True)
class LookWithoutImage:
    """A visited look page that gave no usable image, and why."""

    url: str
    why: str


@dataclass(frozen=True)
class ImageRecord:
    url: str
    page_url: str | None
    sha256: str
    phash: str
    path: str | None
    format: str
    width: int
    height: int
    bytes: int
    fields: dict[str, str]
    duplicate_of: str | None = None
    distance: int | None = None

    def metadata_line(self) -> dict[str, Any]:
        return {"url": self.url, "page_url": self.page_url, "path": self.path, "sha256": self.sha256,
                "phash": self.phash, "format": self.format, "width": self.width, "height": self.height,
                "bytes": self.bytes, "fields": self.fields}


@dataclass
class Counts:
    by_kind_status: dict[tuple[str, str], int] = field(default_factory=dict)
    kept: int = 0
    exact_duplicates: int = 0
    near_duplicates: int = 0
    failure_reasons: dict[str, int] = field(default_factory=dict)

    def get(self, kind: str | None = None, status: str | None = None) -> int:
        return sum(n for (k, s), n in self.by_kind_status.items()
                   if (kind is None or k == kind) and (status is None or s == status))

    def pages(self, status: str) -> int:
        return sum(self.get(kind, status) for kind in KINDS if kind != "image")


class StateDB:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Autocommit mode; transactions are opened explicitly in ``transaction()``.
            self.conn = sqlite3.connect(path, isolation_level=None, timeout=30)
            self.conn.execute("PRAGMA journal_mode=WAL")  # readers (progress, tests) never block the crawler
            self.conn.execute("PRAGMA synchronous=NORMAL")  # durable across a killed process, which is the risk here
            self.conn.executescript(SCHEMA)
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise AtelierError(f"The scraper state file {path} is unreadable ({exc}). Fix: move it away to start the "
                               "crawl over, or point --out at another folder.") from exc

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> StateDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def _migrate(self) -> None:
        """Bring a state file of an older version up to SCHEMA_VERSION in place (one transaction), so archives
        crawled before keep resuming: new columns are added, and which page linked which image is rebuilt from
        each image's parent (the first page that linked it)."""
        if self.conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return
        with self.transaction() as tx:
            present = {row[1] for row in tx.execute("PRAGMA table_info(urls)")}
            for name, sql_type in URL_COLUMNS_V2.items():
                if name not in present:
                    tx.execute(f"ALTER TABLE urls ADD COLUMN {name} {sql_type}")
            for statement in SCHEMA_V2.split(";"):
                if statement.strip():
                    tx.execute(statement)
            tx.execute("INSERT OR IGNORE INTO page_images (page, image) "
                       "SELECT parent, url FROM urls WHERE kind = 'image' AND parent IS NOT NULL")
            tx.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # ------------------------------------------------------------------------------------------ meta
    def bind_profile(self, name: str) -> None:
        """Refuse to mix two sites in one state file; the first crawl records its profile name."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'profile'").fetchone()
        if row is None:
            with self.transaction() as tx:
                tx.execute("INSERT INTO meta (key, value) VALUES ('profile', ?)", (name,))
        elif row[0] != name:
            raise AtelierError(f"{self.path} holds a crawl made with profile {row[0]!r}, not {name!r}. Fix: use "
                               "another --out folder for this profile (or delete that state file to start over).")

    # ------------------------------------------------------------------------------------------ queue
    def enqueue(self, url: str, kind: str, depth: int, parent: str | None, fields: dict[str, str]) -> bool:
        with self.transaction() as tx:
            return self._insert(tx, url, kind, depth, parent, fields)

    @staticmethod
    def _insert(tx: sqlite3.Connection, url: str, kind: str, depth: int, parent: str | None,
                fields: dict[str, str]) -> bool:
        """Queue a URL once; a URL cut earlier by max_depth is queued after all when it is reached within it."""
        cursor = tx.execute(
            "INSERT INTO urls (url, kind, priority, depth, parent, fields, updated) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (url) DO UPDATE SET status = 'queued', reason = NULL, depth = excluded.depth, "
            "parent = excluded.parent, fields = excluded.fields, updated = excluded.updated "
            f"WHERE urls.status = 'skipped' AND urls.reason GLOB '{DEPTH_REASON}*'",
            (url, kind, PRIORITY[kind], depth, parent, json.dumps(fields, sort_keys=True), time.time()))
        return cursor.rowcount > 0

    @staticmethod
    def _insert_cut(tx: sqlite3.Connection, link: Link, depth: int, parent: str, fields: dict[str, str]) -> None:
        """Record a link not followed because of max_depth, so it is counted, reported, and followed when the
        limit is raised (its depth is the smallest it was reached at)."""
        tx.execute(
            "INSERT INTO urls (url, kind, priority, status, depth, parent, fields, reason, updated) "
            "VALUES (?, ?, ?, 'skipped', ?, ?, ?, ?, ?) "
            "ON CONFLICT (url) DO UPDATE SET depth = MIN(urls.depth, excluded.depth) "
            f"WHERE urls.status = 'skipped' AND urls.reason GLOB '{DEPTH_REASON}*'",
            (link.url, link.kind, PRIORITY[link.kind], depth, parent, json.dumps(fields, sort_keys=True),
             DEPTH_REASON, time.time()))

    def next_queued(self, kinds: Iterable[str] = KINDS) -> QueuedUrl | None:
        kinds = tuple(kinds)
        marks = ", ".join("?" for _ in kinds)
        row = self.conn.execute(
            f"SELECT url, kind, depth, parent, fields, etag, last_modified FROM urls WHERE status = 'queued' "
            f"AND kind IN ({marks}) ORDER BY priority, id LIMIT 1", kinds).fetchone()
        if row is None:
            return None
        return QueuedUrl(url=row[0], kind=row[1], depth=row[2], parent=row[3], fields=json.loads(row[4]),
                         etag=row[5], last_modified=row[6])

    def finish_page(self, item: QueuedUrl, attempts: int, fields: dict[str, str], children: list[Link],
                    max_depth: int, validators: tuple[str | None, str | None] = (None, None)) -> int:
        """Mark a page visited and queue its links, atomically: either both happen or neither. Returns new links.

        Pagination keeps the page's depth (page 40 of an index is no deeper than page 1); every other link is one
        level deeper, and one beyond ``max_depth`` is recorded as skipped rather than dropped."""
        added = 0
        with self.transaction() as tx:
            for link in children:
                depth = item.depth if link.next_page else item.depth + 1
                if link.kind == "image":
                    tx.execute("INSERT OR IGNORE INTO page_images (page, image) VALUES (?, ?)", (item.url, link.url))
                elif depth > max_depth:
                    self._insert_cut(tx, link, depth, item.url, fields)
                    continue
                added += self._insert(tx, link.url, link.kind, depth, item.url, fields)
            tx.execute("UPDATE urls SET etag = ?, last_modified = ? WHERE url = ?", (*validators, item.url))
            self._set_status(tx, item.url, "visited", None, attempts)
        return added

    def redirect(self, item: QueuedUrl, target: str, attempts: int) -> None:
        """A redirect is queued as its own URL (same kind, depth and fields), so every rule applies to it too."""
        with self.transaction() as tx:
            self._insert(tx, target, item.kind, item.depth, item.parent, item.fields)
            if item.kind == "image":  # the pages that showed the old address show the new one
                tx.execute("INSERT OR IGNORE INTO page_images (page, image) SELECT page, ? FROM page_images "
                           "WHERE image = ?", (target, item.url))
            self._set_status(tx, item.url, "visited", f"redirected to {target}", attempts)

    def finish(self, url: str, status: str, reason: str | None, attempts: int,
               refused_under: dict[str, Any] | None = None) -> None:
        """Record the end of one URL; ``refused_under`` holds the limits a content refusal was made under."""
        with self.transaction() as tx:
            self._set_status(tx, url, status, reason, attempts)
            tx.execute("UPDATE urls SET refused_under = ? WHERE url = ?",
                       (None if refused_under is None else json.dumps(refused_under, sort_keys=True), url))

    @staticmethod
    def _set_status(tx: sqlite3.Connection, url: str, status: str, reason: str | None, attempts: int) -> None:
        tx.execute("UPDATE urls SET status = ?, reason = ?, attempts = attempts + ?, updated = ? WHERE url = ?",
                   (status, reason, attempts, time.time(), url))

    def record_image(self, record: ImageRecord, attempts: int) -> None:
        """Store a downloaded image and mark its URL visited in one transaction."""
        with self.transaction() as tx:
            tx.execute(
                "INSERT OR REPLACE INTO images (url, page_url, sha256, phash, path, format, width, height, bytes, "
                "fields, duplicate_of, distance, downloaded) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.url, record.page_url, record.sha256, record.phash, record.path, record.format, record.width,
                 record.height, record.bytes, json.dumps(record.fields, sort_keys=True), record.duplicate_of,
                 record.distance, time.time()))
            reason = None
            if record.duplicate_of is not None:
                reason = ("exact duplicate of " if record.distance is None else
                          f"near duplicate (distance {record.distance}) of ") + record.duplicate_of
            self._set_status(tx, record.url, "visited", reason, attempts)

    def requeue_failed(self, limits_now: dict[str, Any]) -> tuple[int, int]:
        """Queue failed URLs again (and URLs skipped by robots.txt, which is read again before each is fetched),
        except those refused for their content under limits that are unchanged: the same bytes would be refused
        again. Returns (queued again, still refused)."""
        requeue: list[str] = []
        kept_refused = 0
        rows = self.conn.execute("SELECT url, reason, refused_under FROM urls WHERE status = 'failed' "
                                 "OR (status = 'skipped' AND reason = 'disallowed by robots.txt')").fetchall()
        for url, reason, refused_under in rows:
            category = reason_category(reason or "")
            if category in CONTENT_REFUSALS and not limit_loosened(category, refused_under, limits_now):
                kept_refused += 1
            else:
                requeue.append(url)
        with self.transaction() as tx:
            tx.executemany("UPDATE urls SET status = 'queued', reason = NULL, refused_under = NULL WHERE url = ?",
                           [(url,) for url in requeue])
        return len(requeue), kept_refused

    def requeue(self, urls: Iterable[str]) -> None:
        """Put URLs back in the queue as if never tried (they failed because the site was down, not themselves)."""
        with self.transaction() as tx:
            tx.executemany("UPDATE urls SET status = 'queued', reason = NULL WHERE url = ?", [(u,) for u in urls])

    def requeue_within_depth(self, max_depth: int) -> int:
        """Links cut by a smaller max_depth in an earlier run, now within the limit, are queued again."""
        with self.transaction() as tx:
            return tx.execute("UPDATE urls SET status = 'queued', reason = NULL WHERE status = 'skipped' "
                              f"AND reason GLOB '{DEPTH_REASON}*' AND depth <= ?", (max_depth,)).rowcount

    def requeue_for_refresh(self) -> int:
        """--refresh: visited listing pages are read again (conditionally) to find what the site added since."""
        with self.transaction() as tx:
            return tx.execute("UPDATE urls SET status = 'queued' WHERE kind = 'listing' AND status = 'visited' "
                              "AND reason IS NULL").rowcount

    # ------------------------------------------------------------------------------------------ placeholders
    def mark_placeholders(self, image_urls: Iterable[str], min_pages: int) -> int:
        """Mark as placeholders the images shown on at least ``min_pages`` pages, by address or by identical bytes
        (a lazy-loading site's stand-in GIF, a "coming soon" picture): no look has that as its photo, while two
        pages may legitimately share one (a look shown twice). Returns how many images this took out of the kept
        set."""
        removed = 0
        with self.transaction() as tx:
            for url in image_urls:
                pages = tx.execute("SELECT COUNT(DISTINCT page) FROM page_images WHERE image = ?", (url,)).fetchone()[0]
                targets = {url}
                row = tx.execute("SELECT sha256 FROM images WHERE url = ?", (url,)).fetchone()
                if row is not None:
                    pages = max(pages, tx.execute(
                        "SELECT COUNT(DISTINCT p.page) FROM page_images p JOIN images i ON i.url = p.image "
                        "WHERE i.sha256 = ?", (row[0],)).fetchone()[0])
                    targets.update(r[0] for r in tx.execute("SELECT url FROM images WHERE sha256 = ?", (row[0],)))
                if pages < min_pages:
                    continue
                for target in targets:
                    removed += tx.execute(
                        "SELECT COUNT(*) FROM images WHERE url = ? AND duplicate_of IS NULL "
                        "AND url NOT IN (SELECT url FROM placeholders)", (target,)).fetchone()[0]
                    tx.execute("INSERT OR REPLACE INTO placeholders (url, pages) VALUES (?, ?)", (target, pages))
        return removed

    def placeholders(self) -> list[tuple[str, int]]:
        return [(url, pages) for url, pages in
                self.conn.execute("SELECT url, pages FROM placeholders ORDER BY pages DESC, url")]

    # ------------------------------------------------------------------------------------------ reading
    def images(self, kept_only: bool = True) -> Iterator[ImageRecord]:
        where = "WHERE duplicate_of IS NULL AND url NOT IN (SELECT url FROM placeholders)" if kept_only else ""
        rows = self.conn.execute(
            "SELECT url, page_url, sha256, phash, path, format, width, height, bytes, fields, duplicate_of, distance "
            f"FROM images {where} ORDER BY id").fetchall()
        for row in rows:
            yield ImageRecord(url=row[0], page_url=row[1], sha256=row[2], phash=row[3], path=row[4], format=row[5],
                              width=row[6], height=row[7], bytes=row[8], fields=json.loads(row[9]),
                              duplicate_of=row[10], distance=row[11])

    def reason(self, url: str) -> str | None:
        row = self.conn.execute("SELECT reason FROM urls WHERE url = ?", (url,)).fetchone()
        return None if row is None else row[0]

    def count_queued(self, kind: str | None = None) -> int:
        if kind is not None:
            return self.conn.execute("SELECT COUNT(*) FROM urls WHERE status = 'queued' AND kind = ?",
                                     (kind,)).fetchone()[0]
        return self.conn.execute("SELECT COUNT(*) FROM urls WHERE status = 'queued'").fetchone()[0]

    def count_kept(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM images WHERE duplicate_of IS NULL "
                                 "AND url NOT IN (SELECT url FROM placeholders)").fetchone()[0]

    def count_pages_visited(self) -> int:
        return self.conn.execute(
            "SELECT COUNT(*) FROM urls WHERE kind != 'image' AND status = 'visited'").fetchone()[0]

    def counts(self) -> Counts:
        counts = Counts()
        for kind, status, n in self.conn.execute("SELECT kind, status, COUNT(*) FROM urls GROUP BY kind, status"):
            counts.by_kind_status[(kind, status)] = n
        row = self.conn.execute(
            "SELECT SUM(duplicate_of IS NULL AND url NOT IN (SELECT url FROM placeholders)), "
            "SUM(duplicate_of IS NOT NULL AND distance IS NULL), SUM(distance IS NOT NULL) FROM images").fetchone()
        counts.kept, counts.exact_duplicates, counts.near_duplicates = (int(v or 0) for v in row)
        for (reason,) in self.conn.execute("SELECT reason FROM urls WHERE status IN ('failed', 'skipped')"):
            key = reason_category(reason or "unknown")
            counts.failure_reasons[key] = counts.failure_reasons.get(key, 0) + 1
        return counts

    def failures(self) -> list[tuple[str, str, str, str]]:
        """(url, kind, status, reason) of every failed or skipped URL, in crawl order."""
        return [tuple(r) for r in self.conn.execute(
            "SELECT url, kind, status, reason FROM urls WHERE status IN ('failed', 'skipped') ORDER BY id")]

    def looks_without_image(self) -> list[LookWithoutImage]:
        """Visited look pages none of whose images was downloaded and accepted (placeholders do not count);
        pages whose images are still queued are left out, as they may yet get one."""
        pages = [row[0] for row in self.conn.execute(
            "SELECT u.url FROM urls u WHERE u.kind = 'look' AND u.status = 'visited' AND u.reason IS NULL "
            "AND NOT EXISTS (SELECT 1 FROM page_images p JOIN images i ON i.url = p.image WHERE p.page = u.url "
            "                AND i.url NOT IN (SELECT url FROM placeholders)) "
            "AND NOT EXISTS (SELECT 1 FROM page_images p JOIN urls q ON q.url = p.image WHERE p.page = u.url "
            "                AND q.status = 'queued') ORDER BY u.id")]
        return [LookWithoutImage(url, self._why_no_image(url)) for url in pages]

    def _why_no_image(self, page: str) -> str:
        rows = self.conn.execute(
            "SELECT p.image, u.status, u.reason, h.pages FROM page_images p LEFT JOIN urls u ON u.url = p.image "
            "LEFT JOIN placeholders h ON h.url = p.image WHERE p.page = ? ORDER BY p.rowid", (page,)).fetchall()
        if not rows:
            return "no image matched [selectors] image"
        image, status, reason, shared = rows[0]
        if shared is not None:
            return f"placeholder: {image} is on {shared} pages"
        return f"image {status or 'not queued'}: {reason or image}"


def limit_loosened(category: str, refused_under: str | None, now: dict[str, Any]) -> bool:
    """Whether the profile limit behind a content refusal is looser now than when the URL was refused."""
    if refused_under is None:
        return False
    then = json.loads(refused_under)
    if category == "decompression bomb":
        return now["max_pixels"] > then.get("max_pixels", now["max_pixels"])
    if category == "too large":
        return (now["max_bytes"] > then.get("max_bytes", now["max_bytes"])
                or now["max_page_bytes"] > then.get("max_page_bytes", now["max_page_bytes"]))
    if category == "format not accepted":
        return bool(set(now["formats"]) - set(then.get("formats", now["formats"])))
    return False  # broken or not an image: the same bytes would be refused again


def reason_category(reason: str) -> str:
    """Group reasons for the summary: 'broken image: image file is truncated' -> 'broken image'."""
    return reason.split(":", 1)[0].split(" (", 1)[0].strip()
