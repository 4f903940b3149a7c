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

from model.errors import AtelierError

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


@dataclass(frozen=True)
class QueuedUrl:
    url: str
    kind: str
    depth: int
    parent: str | None
    fields: dict[str, str]


@dataclass(frozen=True)
class Link:
    url: str
    kind: str


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
        cursor = tx.execute(
            "INSERT OR IGNORE INTO urls (url, kind, priority, depth, parent, fields, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (url, kind, PRIORITY[kind], depth, parent, json.dumps(fields, sort_keys=True), time.time()))
        return cursor.rowcount > 0

    def next_queued(self, kinds: Iterable[str] = KINDS) -> QueuedUrl | None:
        kinds = tuple(kinds)
        marks = ", ".join("?" for _ in kinds)
        row = self.conn.execute(
            f"SELECT url, kind, depth, parent, fields FROM urls WHERE status = 'queued' AND kind IN ({marks}) "
            "ORDER BY priority, id LIMIT 1", kinds).fetchone()
        if row is None:
            return None
        return QueuedUrl(url=row[0], kind=row[1], depth=row[2], parent=row[3], fields=json.loads(row[4]))

    def finish_page(self, item: QueuedUrl, attempts: int, fields: dict[str, str], children: list[Link],
                    max_depth: int, reason: str | None = None) -> int:
        """Mark a page visited and queue its links, atomically: either both happen or neither. Returns new links."""
        added = 0
        with self.transaction() as tx:
            for link in children:
                depth = item.depth + 1
                if link.kind != "image" and depth > max_depth:
                    continue
                added += self._insert(tx, link.url, link.kind, depth, item.url, fields)
            self._set_status(tx, item.url, "visited", reason, attempts)
        return added

    def redirect(self, item: QueuedUrl, target: str, attempts: int) -> None:
        """A redirect is queued as its own URL (same kind, depth and fields), so every rule applies to it too."""
        with self.transaction() as tx:
            self._insert(tx, target, item.kind, item.depth, item.parent, item.fields)
            self._set_status(tx, item.url, "visited", f"redirected to {target}", attempts)

    def finish(self, url: str, status: str, reason: str | None, attempts: int) -> None:
        with self.transaction() as tx:
            self._set_status(tx, url, status, reason, attempts)

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

    def requeue_failed(self) -> int:
        with self.transaction() as tx:
            return tx.execute("UPDATE urls SET status = 'queued', reason = NULL WHERE status = 'failed'").rowcount

    # ------------------------------------------------------------------------------------------ reading
    def images(self, kept_only: bool = True) -> Iterator[ImageRecord]:
        where = "WHERE duplicate_of IS NULL" if kept_only else ""
        rows = self.conn.execute(
            "SELECT url, page_url, sha256, phash, path, format, width, height, bytes, fields, duplicate_of, distance "
            f"FROM images {where} ORDER BY id").fetchall()
        for row in rows:
            yield ImageRecord(url=row[0], page_url=row[1], sha256=row[2], phash=row[3], path=row[4], format=row[5],
                              width=row[6], height=row[7], bytes=row[8], fields=json.loads(row[9]),
                              duplicate_of=row[10], distance=row[11])

    def count_queued(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM urls WHERE status = 'queued'").fetchone()[0]

    def count_kept(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM images WHERE duplicate_of IS NULL").fetchone()[0]

    def count_pages_visited(self) -> int:
        return self.conn.execute(
            "SELECT COUNT(*) FROM urls WHERE kind != 'image' AND status = 'visited'").fetchone()[0]

    def counts(self) -> Counts:
        counts = Counts()
        for kind, status, n in self.conn.execute("SELECT kind, status, COUNT(*) FROM urls GROUP BY kind, status"):
            counts.by_kind_status[(kind, status)] = n
        row = self.conn.execute(
            "SELECT SUM(duplicate_of IS NULL), SUM(duplicate_of IS NOT NULL AND distance IS NULL), "
            "SUM(distance IS NOT NULL) FROM images").fetchone()
        counts.kept, counts.exact_duplicates, counts.near_duplicates = (int(v or 0) for v in row)
        for (reason,) in self.conn.execute("SELECT reason FROM urls WHERE status IN ('failed', 'skipped')"):
            key = reason_category(reason or "unknown")
            counts.failure_reasons[key] = counts.failure_reasons.get(key, 0) + 1
        return counts

    def failures(self) -> list[tuple[str, str, str, str]]:
        """(url, kind, status, reason) of every failed or skipped URL, in crawl order."""
        return [tuple(r) for r in self.conn.execute(
            "SELECT url, kind, status, reason FROM urls WHERE status IN ('failed', 'skipped') ORDER BY id")]


def reason_category(reason: str) -> str:
    """Group reasons for the summary: 'broken image: image file is truncated' -> 'broken image'."""
    return reason.split(":", 1)[0].split(" (", 1)[0].strip()
