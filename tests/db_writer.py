"""A separate writer process for the reliability tests (run as a script, not collected by pytest).

    python tests/db_writer.py write URL REVIEWER COMPONENT_IDS COUNT
        COUNT reviews, each in its own transaction; prints "DONE <n>".
    python tests/db_writer.py die URL REVIEWER COMPONENT_IDS COUNT
        COUNT committed reviews (printing "COMMITTED <i>" after each commit), then opens one more transaction,
        writes many reviews into it, prints "IN_TRANSACTION <wal bytes>" and waits to be killed.
    python tests/db_writer.py unpublish URL REVIEWER DIRECTION_ID
        prints "READY", waits for a line on stdin (so several writers start together), unpublishes the direction
        and prints "OK" or "REFUSED <message>".
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402

from core.errors import InvalidInput  # noqa: E402
from db import queries  # noqa: E402
from db.engine import is_sqlite, sqlite_path, write_session  # noqa: E402

DECISIONS = ("approve", "reject", "unsure", "skip")


def one_review(url: str, reviewer: str, component_ids: list[int], i: int) -> None:
    with write_session(url) as session:
        queries.record_review(
            session, reviewer, component_ids[i % len(component_ids)], DECISIONS[i % len(DECISIONS)],
            label=f"{reviewer} #{i}", consistency=1 + i % 5, seconds_spent=0.5,
        )


def wal_bytes(url: str) -> int:
    path = sqlite_path(url) if is_sqlite(url) else None
    if path is None:
        return -1
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def unpublish(url: str, reviewer: str, direction_id: int) -> None:
    with write_session(url) as session:
        queries.get_direction(session, direction_id)  # connect (and read) before the start signal
    print("READY", flush=True)
    sys.stdin.readline()
    try:
        with write_session(url) as session:
            queries.unpublish_direction(session, direction_id, reviewer)
    except InvalidInput as exc:
        print(f"REFUSED {exc}", flush=True)
        return
    print("OK", flush=True)


def main() -> None:
    if sys.argv[1] == "unpublish":
        unpublish(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    mode, url, reviewer, ids, count = sys.argv[1:6]
    component_ids = [int(x) for x in ids.split(",")]
    n = int(count)
    if mode == "write":
        for i in range(n):
            one_review(url, reviewer, component_ids, i)
        print(f"DONE {n}", flush=True)
        return
    if mode != "die":
        raise SystemExit(f"unknown mode {mode!r}")
    for i in range(n):
        one_review(url, reviewer, component_ids, i)
        print(f"COMMITTED {i + 1}", flush=True)
    with write_session(url) as session:
        if is_sqlite(url):
            # A tiny page cache makes SQLite spill uncommitted pages into the WAL file, so the kill lands on a
            # file that really holds half a transaction, not just on pages still in memory.
            session.execute(text("PRAGMA cache_size = 2"))
        for i in range(n, n + 400):
            queries.record_review(
                session, reviewer, component_ids[i % len(component_ids)], "reject", note="x" * 2000,
            )
            session.flush()
        print(f"IN_TRANSACTION {wal_bytes(url)}", flush=True)
        time.sleep(300)  # the parent kills us here, inside the open transaction


if __name__ == "__main__":
    main()
