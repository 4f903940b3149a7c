"""The review order: one rule (db.review_queue.review_order) behind the Review page's queue and `atelier queue`."""
from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from conftest import assert_clean_user_error
from db import queries as q, review_queue
from db.records import ComponentScores
from core.errors import InvalidInput
from db.engine import read_session, write_session
from db_fixtures import backend, db_url, empty_url, seed  # noqa: F401
from cli.discovery_commands import register


def _score(url, set_id, rows):
    """rows: index -> (priority, dead, reason); everything else a plain garment edit on all layers."""
    with write_session(url) as session:
        q.update_scores(session, set_id, [
            ComponentScores(index=i, effect=0.1, consistency=0.5, priority=p, dead=dead, suggested_category="colour",
                              layer_sensitivity="fine" if i % 2 else "all",
                              score_details={"reason": reason, "version": 2})
            for i, (p, dead, reason) in rows.items()])


def test_unscored_components_are_placed_by_eigenvalue_among_the_scored_ones(db_url):
    s = seed(db_url, components=8)
    # Scoring goes in eigenvalue order; 0–3 are done. 4–7 have no scores yet.
    _score(db_url, s.set_id, {0: (0.9, False, "a"), 1: (0.05, False, "b"), 2: (0.6, False, "c"),
                              3: (-1.0, True, "dead")})
    with read_session(db_url) as session:
        components = q.list_components(session, s.set_id)
        order = [c.index for c in review_queue.review_order(components)]
        # the unscored ones take the median of the scored live ones above them (0.9, 0.05, 0.6 -> 0.6) and follow
        # the scored component of that priority; the dead one is left out
        assert order == [0, 2, 4, 5, 6, 7, 1]
        assert [c.index for c in review_queue.review_order(components, include_dead=True)] == [0, 2, 4, 5, 6, 7, 1, 3]
        assert review_queue.scoring_progress(components) == (4, 8)
    # a reviewer's queue is that order, minus what they reviewed, skipped ones last
    with write_session(db_url) as session:
        q.record_review(session, "ana", s.component_ids[2], "skip")
        q.record_review(session, "ana", s.component_ids[4], "approve", label="x")
    with read_session(db_url) as session:
        assert [i.index for i in review_queue.queue_for(session, "ana", s.set_id)] == [0, 5, 6, 7, 1, 2]
        entries = review_queue.queue_entries(session, s.set_id, "ana", top=3)
        assert [(e.position, e.index, e.reason, e.scored) for e in entries] == [
            (1, 0, "a", True), (2, 5, "not scored yet: placed by its eigenvalue among the components scored so far",
                                False), (3, 6, entries[2].reason, False)]


def test_nothing_scored_yet_is_the_eigenvalue_order(db_url):
    s = seed(db_url, components=5)
    with read_session(db_url) as session:
        assert [c.index for c in review_queue.review_order(q.list_components(session, s.set_id))] == [0, 1, 2, 3, 4]


def test_atelier_queue_prints_the_review_pages_order(db_url, monkeypatch):
    monkeypatch.setenv("ATELIER_DATABASE_URL", db_url)
    s = seed(db_url, components=6)
    _score(db_url, s.set_id, {i: (p, False, f"reason {i}") for i, p in enumerate([0.2, 0.8, 0.5, 0.9, 0.1, 0.3])})
    with write_session(db_url) as session:
        q.record_review(session, "ben", s.component_ids[3], "approve", label="coat")
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    result = runner.invoke(app, ["queue", "--set", str(s.set_id), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["scored"], data["components"]) == (6, 6)
    assert [e["index"] for e in data["queue"]] == [3, 1, 2, 5, 0, 4]
    assert data["queue"][0] == {"position": 1, "component_id": s.component_ids[3], "index": 3, "priority": 0.9,
                                "suggested_category": "colour", "layers": "fine", "reason": "reason 3",
                                "scored": True, "skipped": False, "dead": False}
    # a reviewer's own queue, exactly as their Review page lists it
    mine = json.loads(runner.invoke(app, ["queue", "--set", str(s.set_id), "--reviewer", "ben", "--json"]).output)
    with read_session(db_url) as session:
        queue = review_queue.queue_for(session, "ben", s.set_id)
        assert [e["component_id"] for e in mine["queue"]] == [i.component_id for i in queue]
    assert [e["index"] for e in mine["queue"]] == [1, 2, 5, 0, 4]
    text = runner.invoke(app, ["queue", "--set", str(s.set_id), "--top", "2"])
    assert text.exit_code == 0 and "6 of 6 components scored; 2 shown" in text.output
    lines = text.output.strip().splitlines()[2:]
    assert [line.split()[1] for line in lines] == ["3", "1"] and lines[0].rstrip().endswith("reason 3")
    assert_clean_user_error(runner.invoke(app, ["queue", "--set", str(s.set_id), "--top", "-1"]), "--top")
    assert_clean_user_error(runner.invoke(app, ["queue", "--set", "999"]), "999")
    assert_clean_user_error(runner.invoke(app, ["queue", "--set", str(s.set_id), "--reviewer", "nobody"]), "nobody")


def test_score_details_are_checked_json_objects(db_url):
    s = seed(db_url, components=2)
    with pytest.raises(InvalidInput, match="JSON object"), write_session(db_url) as session:
        q.update_scores(session, s.set_id, [{"index": 0, "score_details": "[1, 2]"}])
    with pytest.raises(InvalidInput, match="not valid JSON"), write_session(db_url) as session:
        q.update_scores(session, s.set_id, [{"index": 0, "score_details": "{oops"}])
    with read_session(db_url) as session:
        assert q.list_components(session, s.set_id)[0].score_details is None  # nothing half-written
