"""Lost updates: two people changing the same state at once must not both be told "done" (SQLite and PostgreSQL).

Each state change in db/queries.py is conditional on the state it read (db.rules.apply_if_unchanged) or locks the
row. These tests make the dangerous interleaving happen for real: one writer changes a row inside an open
transaction, a second writer reads the old state and then has to wait; when the first commits, the second must be
refused, not overwrite it.
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from db import queries as q
from db.rules import NotFound
from core.errors import InvalidInput
from db.engine import read_session, write_session
from db_fixtures import Seeded, backend, db_url, empty_url, seeded  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
WRITER = REPO / "tests" / "db_writer.py"
RACERS = 4
TRIALS = 2

pytestmark = pytest.mark.timeout(180)


def publish(s: Seeded, name: str = "longer sleeves") -> int:
    with write_session(s.url) as session:
        return q.publish_direction(session, s.model_id, name, "ana", component_id=s.component_ids[0]).id


def second_writer_after_first(url: str, first: Callable[[Session], object],
                              second: Callable[[Session], object]) -> BaseException | None:
    """Run ``first`` in an open transaction, start ``second`` in another thread, commit the first only once the
    second is waiting on it, and return what the second raised (None when it succeeded)."""
    outcome: dict[str, BaseException | None] = {}
    started = threading.Event()

    def run_second() -> None:
        started.set()
        try:
            with write_session(url) as session:
                second(session)
            outcome["error"] = None
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread to assert on
            outcome["error"] = exc

    with write_session(url) as session:
        first(session)
        session.flush()
        thread = threading.Thread(target=run_second)
        thread.start()
        started.wait(10)
        time.sleep(0.5)
        # The second writer has read the old state (PostgreSQL) or is queued for the write lock (SQLite).
        assert thread.is_alive(), "the second writer did not wait for the first one's transaction"
    thread.join(30)
    assert not thread.is_alive()
    return outcome["error"]


def test_unpublish_after_a_teammate_is_refused(seeded: Seeded) -> None:
    s = seeded
    direction = publish(s)
    error = second_writer_after_first(
        s.url,
        lambda session: q.unpublish_direction(session, direction, "ana"),
        lambda session: q.unpublish_direction(session, direction, "ben"),
    )
    assert isinstance(error, InvalidInput)
    assert "'longer sleeves' is already unpublished (by ana)" in str(error)
    with read_session(s.url) as session:
        info = q.get_direction(session, direction)
    assert info.unpublished_by == "ana"  # the first writer's stamp stands


def test_racing_unpublish_processes_exactly_one_wins(seeded: Seeded) -> None:
    """Separate processes, released together: one "OK", every other one refused, on every trial."""
    s = seeded
    for trial in range(TRIALS):
        direction = publish(s, f"trial {trial}")
        procs = [
            subprocess.Popen([sys.executable, str(WRITER), "unpublish", s.url, s.reviewers[i % 3], str(direction)],
                             cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
            for i in range(RACERS)
        ]
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [proc.communicate(timeout=120) for proc in procs]
        for proc, (_, err) in zip(procs, results):
            assert proc.returncode == 0, err
        answers = [out.strip() for out, _ in results]
        assert answers.count("OK") == 1, answers
        assert all(a == "OK" or (a.startswith("REFUSED") and "already unpublished" in a) for a in answers), answers
        with read_session(s.url) as session:
            info = q.get_direction(session, direction)
        winner = s.reviewers[answers.index("OK") % 3]
        assert info.unpublished_by == winner


def test_retire_and_rename_after_a_teammate_are_refused(seeded: Seeded) -> None:
    s = seeded
    error = second_writer_after_first(
        s.url,
        lambda session: q.retire_category(session, "pattern"),
        lambda session: q.retire_category(session, "pattern"),
    )
    # The second reader found the category still active and lost the race; or (SQLite, serial) found it retired.
    assert isinstance(error, InvalidInput) and "pattern" in str(error)
    error = second_writer_after_first(
        s.url,
        lambda session: q.rename_category(session, "colour", "color"),
        lambda session: q.rename_category(session, "colour", "hue"),
    )
    assert isinstance(error, InvalidInput)
    with read_session(s.url) as session:
        names = [c.name for c in q.list_categories(session, include_retired=True)]
    assert "color" in names and "hue" not in names and "colour" not in names


def test_resampling_seeds_after_a_teammate_is_refused(seeded: Seeded) -> None:
    s = seeded
    with read_session(s.url) as session:
        seen = q.get_component_set(session, s.set_id).review_seeds
    error = second_writer_after_first(
        s.url,
        lambda session: q.set_review_seeds(session, s.set_id, [10, 11], expected=seen),
        lambda session: q.set_review_seeds(session, s.set_id, [20, 21], expected=seen),
    )
    assert isinstance(error, InvalidInput) and "changed this set's review seeds" in str(error)
    with read_session(s.url) as session:
        assert q.get_component_set(session, s.set_id).review_seeds == [10, 11]


def test_two_undos_at_once_take_back_two_reviews(seeded: Seeded) -> None:
    """Two tabs pressing undo: the second undo goes one step further back, as two undos in a row do."""
    s = seeded
    component = s.component_ids[1]
    for decision in ("reject", "unsure", "approve"):
        with write_session(s.url) as session:
            q.record_review(session, "ana", component, decision, label="x")
    error = second_writer_after_first(
        s.url,
        lambda session: q.undo_last_review(session, "ana", component),
        lambda session: q.undo_last_review(session, "ana", component),
    )
    assert error is None
    with read_session(s.url) as session:
        assert q.latest_review(session, "ana", component).decision == "reject"  # type: ignore[union-attr]


def test_deleting_a_look_twice(seeded: Seeded) -> None:
    s = seeded
    with write_session(s.url) as session:
        look = q.save_look(session, s.model_id, "ana", "coat", 3, 0.7, [])
    error = second_writer_after_first(
        s.url, lambda session: q.delete_look(session, look.id), lambda session: q.delete_look(session, look.id))
    assert isinstance(error, NotFound) and "deleted already" in str(error)


def test_moving_a_model_after_a_teammate_is_refused(seeded: Seeded, backend: str) -> None:
    """The same weights registered from two new paths at once. PostgreSQL: the second read the old path and lost the
    race, so it is told and the first path stands. SQLite runs write transactions one after the other, so the second
    reads the first one's path and moves the model on from there, a plain later change."""
    s = seeded
    arch = {"z_dim": 8, "w_dim": 8, "num_ws": 6, "img_resolution": 64, "c_dim": 3}
    error = second_writer_after_first(
        s.url,
        lambda session: q.register_model(session, "demo", "/models/moved-a.safetensors", "ab" * 32, arch),
        lambda session: q.register_model(session, "demo", "/models/moved-b.safetensors", "ab" * 32, arch),
    )
    with read_session(s.url) as session:
        path = q.get_model(session, s.model_id).path
    if backend == "postgres":
        assert isinstance(error, InvalidInput) and "just registered from /models/moved-a" in str(error)
        assert path == "/models/moved-a.safetensors"
    else:
        assert error is None and path == "/models/moved-b.safetensors"
