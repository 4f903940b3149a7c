"""Team-safe writes: concurrent writers lose nothing, a killed writer corrupts nothing, SQLite locks up front."""
from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select, text

from db import queries as q, review_queue
from db.engine import get_engine, is_sqlite, read_session, sqlite_path, write_session
from db.schema import Review, Reviewer
from db_fixtures import backend, db_url, empty_url, seed  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
WRITER = REPO / "tests" / "db_writer.py"
WRITERS = 8
REVIEWS_EACH = 100

pytestmark = pytest.mark.timeout(180)


def writer_names(prefix: str) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(WRITERS))


def labels_by_reviewer(url: str) -> dict[str, list[str]]:
    with read_session(url) as session:
        rows = session.execute(
            select(Reviewer.name, Review.label).join(Reviewer, Reviewer.id == Review.reviewer_id).order_by(Review.id)
        ).all()
    found: dict[str, list[str]] = {}
    for name, label in rows:
        found.setdefault(name, []).append(label)
    return found


def assert_all_present(url: str, names: tuple[str, ...]) -> None:
    found = labels_by_reviewer(url)
    assert sum(len(v) for v in found.values()) == WRITERS * REVIEWS_EACH
    for name in names:
        # Every review of every writer, each exactly once and in that writer's order.
        assert found[name] == [f"{name} #{i}" for i in range(REVIEWS_EACH)]


def run_writer(mode: str, url: str, reviewer: str, component_ids: list[int], count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WRITER), mode, url, reviewer, ",".join(map(str, component_ids)), str(count)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_concurrent_writer_threads(db_url: str) -> None:
    s = seed(db_url, reviewers=writer_names("t"))
    errors: list[BaseException] = []
    start = threading.Barrier(WRITERS)

    def work(name: str) -> None:
        try:
            start.wait()
            for i in range(REVIEWS_EACH):
                with write_session(s.url) as session:
                    q.record_review(session, name, s.component_ids[i % len(s.component_ids)],
                                    ("approve", "reject", "unsure", "skip")[i % 4], label=f"{name} #{i}")
        except BaseException as exc:  # noqa: BLE001 - any error at all fails the test below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(name,)) for name in s.reviewers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=150)
    assert not any(t.is_alive() for t in threads), "a writer thread hung"
    assert errors == []
    assert_all_present(s.url, tuple(s.reviewers))


def test_concurrent_writer_processes(db_url: str) -> None:
    s = seed(db_url, reviewers=writer_names("p"))
    procs = [run_writer("write", s.url, name, s.component_ids, REVIEWS_EACH) for name in s.reviewers]
    outputs = [p.communicate(timeout=150) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
        assert out.strip() == f"DONE {REVIEWS_EACH}"
        assert "locked" not in err and "Error" not in err, err
    assert_all_present(s.url, tuple(s.reviewers))
    # The derived views cope with the volume and read each component's latest reviews: every writer reviewed
    # component i % C with DECISIONS[i % 4], so all writers agree on each component's last decision.
    from db_writer import DECISIONS

    last = {}
    for i in range(REVIEWS_EACH):
        last[s.component_ids[i % len(s.component_ids)]] = DECISIONS[i % len(DECISIONS)]
    status_of = {"approve": "approved", "reject": "rejected", "unsure": "unsure", "skip": "unreviewed"}
    expected = Counter(status_of[last.get(c, "skip")] for c in s.component_ids)
    with read_session(s.url) as session:
        progress = review_queue.progress(session, s.set_id, min_approvals=1)
    assert {k: v for k, v in progress.by_status.items() if v} == dict(expected)
    decided = Counter(last.values())
    assert sorted(progress.by_reviewer) == sorted(s.reviewers)
    for row in progress.by_reviewer.values():
        assert (row.approved, row.rejected, row.unsure) == (decided["approve"], decided["reject"], decided["unsure"])


def test_writer_killed_mid_transaction(db_url: str) -> None:
    s = seed(db_url, reviewers=("victim", "bystander"))
    committed_before_kill = 20
    proc = run_writer("die", s.url, "victim", s.component_ids, committed_before_kill)
    committed = 0
    wal_at_kill = None
    assert proc.stdout is not None
    for line in proc.stdout:
        word, value = line.split()
        if word == "COMMITTED":
            committed = int(value)
        elif word == "IN_TRANSACTION":
            wal_at_kill = int(value)
            proc.send_signal(signal.SIGKILL)
            break
    _, err = proc.communicate(timeout=60)  # also closes the pipes
    assert proc.returncode == -signal.SIGKILL, err
    assert committed == committed_before_kill

    if is_sqlite(s.url):
        path = sqlite_path(s.url)
        assert path is not None
        assert wal_at_kill is not None and wal_at_kill > 400 * 2000, "uncommitted pages never reached the WAL"
        # A fresh connection straight from the sqlite3 module, as any tool would open the file.
        raw = sqlite3.connect(path)
        try:
            assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
        finally:
            raw.close()

    # Every committed review is there; nothing of the killed transaction is.
    assert labels_by_reviewer(s.url).get("victim") == [f"victim #{i}" for i in range(committed_before_kill)]
    # And the database carries on normally.
    with write_session(s.url) as session:
        q.record_review(session, "bystander", s.component_ids[0], "approve", label="still works")
    with read_session(s.url) as session:
        assert session.scalar(select(Review.label).order_by(Review.id.desc()).limit(1)) == "still works"


# ------------------------------------------------------------------------------------ SQLite specifics


def test_sqlite_connection_settings(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'settings.db'}"
    with read_session(url) as session:
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert session.execute(text("PRAGMA busy_timeout")).scalar() >= 10_000


def test_sqlite_write_session_takes_the_lock_up_front(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lock.db'}"
    get_engine(url)
    path = tmp_path / "lock.db"
    with write_session(url) as session:
        session.execute(text("SELECT 1")).all()  # no write yet
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        finally:
            other.close()
    # A reader does not take it, so a writer can go ahead while a page is reading.
    with read_session(url) as session:
        session.execute(text("SELECT 1")).all()
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("COMMIT")
        finally:
            other.close()


@pytest.mark.parametrize("backend", ["sqlite"])  # SQLite's file lock only; PostgreSQL locks rows
def test_sqlite_writer_waits_instead_of_failing(db_url: str, backend: str) -> None:
    """A writer that finds the lock taken waits for it (busy timeout) rather than raising 'database is locked'."""
    s = seed(db_url, reviewers=("ana", "ben"))
    holding = threading.Event()
    release = threading.Event()

    def hold_lock() -> None:
        with write_session(s.url) as session:
            q.record_review(session, "ana", s.component_ids[0], "reject")
            holding.set()
            release.wait(timeout=30)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert holding.wait(timeout=30)
    threading.Timer(1.0, release.set).start()
    with write_session(s.url) as session:  # blocks about a second, then succeeds
        q.record_review(session, "ben", s.component_ids[0], "approve", label="waited")
    holder.join(timeout=30)
    with read_session(s.url) as session:
        assert Counter(r.decision for r in q.review_history(session, s.component_ids[0])) == {"reject": 1, "approve": 1}
