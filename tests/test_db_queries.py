"""The review rules and the reads/writes pages use, on SQLite and PostgreSQL."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from sqlalchemy import event, func, select

from db import queries as q, review_queue
from db.records import ComponentScores, ComponentStatus, LookEdit, ReviewRecord, ReviewerProgress
from db.rules import DEFAULT_STRENGTH_RANGE, NotFound, VOTES
from db.engine import read_session, write_session
from db.schema import Look, PublishedDirection, Review
from core.errors import AtelierError, InvalidInput
from db_fixtures import NUM_WS, W_DIM, Seeded, backend, db_url, empty_url, seeded  # noqa: F401


def review(s: Seeded, who: str, index: int, decision: str, **kwargs) -> ReviewRecord:
    if decision == "approve":
        kwargs.setdefault("label", f"label {index}")
    with write_session(s.url) as session:
        return q.record_review(session, who, s.component_ids[index], decision, **kwargs)


def statuses(s: Seeded, k: int | None = None) -> dict[int, ComponentStatus]:
    with read_session(s.url) as session:
        return {st.index: st for st in review_queue.component_statuses(session, s.set_id, k)}


def review_count(s: Seeded) -> int:
    with read_session(s.url) as session:
        return int(session.scalar(select(func.count()).select_from(Review)) or 0)


# ---------------------------------------------------------------------------------------------- status


def test_status_follows_each_reviewers_latest_review(seeded: Seeded) -> None:
    s = seeded
    review(s, "ana", 0, "approve", label="longer sleeves", category="sleeve", consistency=4)
    review(s, "ana", 1, "reject")
    review(s, "ana", 2, "approve", label="red")
    review(s, "ben", 2, "reject")  # conflict
    review(s, "ana", 3, "unsure")
    review(s, "ana", 4, "reject")
    review(s, "ana", 4, "approve", label="changed my mind")  # edit: the newer row counts
    review(s, "ana", 5, "skip")

    st = statuses(s)
    assert st[0].status == "approved" and st[0].latest_label == "longer sleeves"
    assert st[0].latest_category == "sleeve" and st[0].mean_consistency == 4.0
    assert st[1].status == "rejected"
    assert st[2].status == "conflict" and st[2].approvals == 1 and st[2].rejections == 1
    assert st[2].conflicts == ("decision: approved by ana; rejected by ben",)
    assert st[2].decisions == {"ana": "approve", "ben": "reject"}
    assert st[3].status == "unsure"
    assert st[4].status == "approved" and st[4].latest_label == "changed my mind"
    assert st[5].status == "unreviewed"  # a skip is not a vote


def test_min_approvals_k(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    s = seeded
    review(s, "ana", 0, "approve")
    assert statuses(s, k=2)[0].status == "in_review"
    monkeypatch.setenv("ATELIER_MIN_APPROVALS", "2")
    assert statuses(s)[0].status == "in_review"
    review(s, "ben", 0, "approve")
    assert statuses(s)[0].status == "approved"
    review(s, "cleo", 0, "reject")
    assert statuses(s)[0].status == "conflict"
    monkeypatch.setenv("ATELIER_MIN_APPROVALS", "zero")
    with read_session(s.url) as session, pytest.raises(AtelierError, match="ATELIER_MIN_APPROVALS must be"):
        review_queue.component_statuses(session, s.set_id)


def test_category_disagreement_among_approvers_is_listed(seeded: Seeded) -> None:
    review(seeded, "ana", 0, "approve", category="sleeve")
    review(seeded, "ben", 0, "approve", category="length")
    st = statuses(seeded)[0]
    assert st.status == "approved"
    assert st.conflicts == ("category: sleeve (ana); length (ben)",)


# -------------------------------------------------------------------------------------- undo / history


def test_undo_walks_back_and_history_keeps_everything(seeded: Seeded) -> None:
    s = seeded
    first = review(s, "ana", 0, "reject", note="meh")
    second = review(s, "ana", 0, "approve", label="wider skirt", category="silhouette", layer_range=(0, 4))
    review(s, "ben", 0, "approve", label="skirt")

    with write_session(s.url) as session:
        restored = q.undo_last_review(session, "ana", s.component_ids[0])
    assert restored.undoes_id == second.id
    assert (restored.decision, restored.note) == ("reject", "meh")
    assert statuses(s)[0].status == "conflict"

    with write_session(s.url) as session:
        withdrawn = q.undo_last_review(session, "ana", s.component_ids[0])
    assert withdrawn.undoes_id == first.id and withdrawn.decision == "withdrawn"
    assert statuses(s)[0].status == "approved"  # only ben's approval is left
    with read_session(s.url) as session:
        assert q.latest_review(session, "ana", s.component_ids[0]) is None
        assert q.latest_review(session, "ben", s.component_ids[0]).label == "skirt"
        # Withdrawn: the component is back in ana's queue at its normal place.
        assert review_queue.queue_for(session, "ana", s.set_id)[0].component_id == s.component_ids[0]

    with write_session(s.url) as session, pytest.raises(InvalidInput, match="no review .* to undo"):
        q.undo_last_review(session, "ana", s.component_ids[0])

    with read_session(s.url) as session:
        history = q.review_history(session, s.component_ids[0])
    assert [(h.reviewer, h.decision) for h in history] == [
        ("ana", "reject"), ("ana", "approve"), ("ben", "approve"), ("ana", "reject"), ("ana", "withdrawn"),
    ]
    assert history[1].layer_range == (0, 4) and history[1].category == "silhouette"
    assert all(h.created_at.tzinfo == timezone.utc for h in history)

    # Reviewing again after an undo works as usual.
    review(s, "ana", 0, "approve", label="again")
    assert statuses(s)[0].approvals == 2


def test_latest_votes_per_component_in_one_query(seeded: Seeded) -> None:
    s = seeded
    review(s, "ana", 0, "reject")
    review(s, "ben", 0, "unsure")
    review(s, "ana", 0, "approve", label="wider")  # an edit: ana's newer review counts
    review(s, "cleo", 0, "approve", label="skirt")
    review(s, "cleo", 0, "skip")  # cleo's latest is no vote, so her earlier approval does not count
    review(s, "ben", 1, "approve", label="red")
    with write_session(s.url) as session:
        q.undo_last_review(session, "ben", s.component_ids[1])  # withdrawn: no vote left on component 1
    review(s, "ana", 2, "reject")

    statements: list[str] = []

    def seen(connection, cursor, statement, *args) -> None:
        statements.append(statement)

    with read_session(s.url) as session:
        engine = session.get_bind()
        event.listen(engine, "before_cursor_execute", seen)
        try:
            votes = q.latest_votes(session, s.set_id)
        finally:
            event.remove(engine, "before_cursor_execute", seen)
    assert len([sql for sql in statements if "reviews" in sql]) == 1
    assert {cid: [(r.reviewer, r.decision, r.label) for r in records] for cid, records in votes.items()} == {
        s.component_ids[0]: [("ben", "unsure", ""), ("ana", "approve", "wider")],
        s.component_ids[2]: [("ana", "reject", "")],
    }
    with read_session(s.url) as session:
        # The same as replaying each component's history.
        for cid in s.component_ids:
            latest = {r.reviewer: r for r in q.review_history(session, cid)}
            expected = sorted((r for r in latest.values() if r.decision in VOTES), key=lambda r: r.id)
            assert votes.get(cid, []) == expected
        with pytest.raises(NotFound, match="Unknown component set 999"):
            q.latest_votes(session, 999)


# ----------------------------------------------------------------------------------------------- queue


def test_queue_is_priority_order_with_skips_last(seeded: Seeded) -> None:
    s = seeded
    with write_session(s.url) as session:
        q.update_scores(session, s.set_id, [
            ComponentScores(index=0, priority=5.0),
            ComponentScores(index=1, priority=1.0),
            ComponentScores(index=2, priority=3.0),
            {"index": 3, "priority": 2.0, "dead": True},
            # 4 and 5 are not scored yet: placed by the median priority of the live ones scored above them in
            # eigenvalue order (5, 1, 3 -> 3), after the scored component of that priority.
        ])
    with read_session(s.url) as session:
        # Higher priority first (model.directions.scores gives the most promising components the highest numbers).
        assert [i.index for i in review_queue.queue_for(session, "ana", s.set_id)] == [0, 2, 4, 5, 1]
        everything = review_queue.queue_for(session, "ana", s.set_id, include_dead=True)
        assert [i.index for i in everything] == [0, 2, 4, 5, 1, 3]
    review(s, "ana", 1, "skip")
    review(s, "ana", 2, "approve")
    review(s, "ana", 0, "skip")
    review(s, "ben", 4, "reject")  # someone else's review does not take it out of ana's queue
    with read_session(s.url) as session:
        queue = review_queue.queue_for(session, "ana", s.set_id)
        assert [(i.index, i.skipped) for i in queue] == [(4, False), (5, False), (1, True), (0, True)]
        assert [i.index for i in review_queue.queue_for(session, "ana", s.set_id, limit=2)] == [4, 5]
        assert [i.index for i in review_queue.queue_for(session, "ben", s.set_id)] == [0, 2, 5, 1]
    review(s, "ana", 1, "skip")  # skipped again: goes behind 0
    with read_session(s.url) as session:
        assert [i.index for i in review_queue.queue_for(session, "ana", s.set_id)][-2:] == [0, 1]
        with pytest.raises(NotFound, match="Unknown reviewer 'zoe'"):
            review_queue.queue_for(session, "zoe", s.set_id)


def test_progress_counts(seeded: Seeded) -> None:
    s = seeded
    review(s, "ana", 0, "approve")
    review(s, "ana", 1, "reject")
    review(s, "ana", 2, "skip")
    review(s, "ben", 0, "approve")
    with write_session(s.url) as session:
        q.update_scores(session, s.set_id, [{"index": 5, "dead": True}])
    with read_session(s.url) as session:
        p = review_queue.progress(session, s.set_id)
        queue_length = len(review_queue.queue_for(session, "ana", s.set_id))
    assert p.total == 6
    assert p.by_status == {"approved": 1, "rejected": 1, "conflict": 0, "unsure": 0, "in_review": 0, "unreviewed": 4}
    # remaining: 6 components - 1 dead - 2 voted on (the skipped one is still to do), as long as the queue.
    assert p.by_reviewer["ana"] == ReviewerProgress("ana", approved=1, rejected=1, unsure=0, skipped=1, remaining=3)
    assert p.by_reviewer["ana"].remaining == queue_length
    assert p.by_reviewer["ana"].reviewed == 2
    assert p.by_reviewer["cleo"].remaining == 5


def test_agreement_on_decisions_categories_and_consistency(seeded: Seeded) -> None:
    s = seeded
    # Two reviewers, four components: they agree on three decisions and disagree on one.
    for who, decisions in {"ana": ["approve", "reject", "approve", "reject"],
                           "ben": ["approve", "reject", "reject", "reject"]}.items():
        for index, decision in enumerate(decisions):
            extra = {"category": "colour", "consistency": 4 if who == "ana" else 2} if decision == "approve" else {}
            review(s, who, index, decision, **extra)
    review(s, "cleo", 5, "skip")  # a skip is a missing rating, not a value
    with read_session(s.url) as session:
        a = review_queue.agreement(session, s.set_id)
    # Coincidences: approve-approve 2, reject-reject 4, approve-reject 1 + 1 → n = 8, n_a = 3, n_r = 5.
    # alpha = 1 - (n - 1) * 2 / (2 * n_a * n_r) = 1 - 7 * 2 / 30.
    assert a.decision_alpha == pytest.approx(1 - 14 / 30)
    assert a.decision_units == 4
    assert a.category_alpha is None and a.category_units == 1  # one shared unit, no variation: undefined
    assert a.mean_consistency == {s.component_ids[0]: 3.0, s.component_ids[2]: 4.0}


# ------------------------------------------------------------------------------------------- bad input


BAD_REVIEWS: list[tuple[dict, str]] = [
    ({"reviewer": "zoe"}, "Unknown reviewer 'zoe'"),
    ({"component_id": 10_000}, "Unknown component 10000"),
    ({"decision": "maybe"}, "Unknown decision 'maybe'"),
    ({"decision": "withdrawn"}, "Unknown decision 'withdrawn'"),  # only undo writes that
    ({"consistency": 0}, "consistency rating must be between 1 and 5"),
    ({"consistency": 6}, "consistency rating must be between 1 and 5"),
    ({"consistency": 2.5}, "consistency rating must be a whole number"),
    ({"layer_range": (0, NUM_WS + 1)}, f"outside this model's {NUM_WS} ws"),
    ({"layer_range": (-1, 2)}, "outside this model's"),
    ({"layer_range": (3, 3)}, "outside this model's"),
    ({"layer_range": 3}, "must be a pair"),
    ({"strength_range": (2.0, -1.0)}, "max below min"),
    ({"strength_range": (0.0, float("nan"))}, "finite"),
    ({"label": "   "}, "An approval needs a label"),
    ({"label": None}, "label must be text"),
    ({"category": "hats"}, "Category 'hats' is not in the taxonomy"),
    ({"seconds_spent": -1}, "cannot be negative"),
]


def test_bad_reviews_are_refused_and_nothing_is_written(seeded: Seeded) -> None:
    s = seeded
    for kwargs, message in BAD_REVIEWS:
        args = {"reviewer": "ana", "component_id": s.component_ids[0], "decision": "approve", "label": "ok"} | kwargs
        with pytest.raises(InvalidInput, match=message):
            with write_session(s.url) as session:
                # A valid review first in the same transaction: the failure must take it back too.
                q.record_review(session, "ben", s.component_ids[1], "reject")
                q.record_review(session, **args)
        assert review_count(s) == 0, f"a refused review ({kwargs}) left rows behind"


def test_empty_label_is_fine_when_not_approving(seeded: Seeded) -> None:
    assert review(seeded, "ana", 0, "reject").label == ""


def test_labels_are_stored_exactly_as_typed(seeded: Seeded) -> None:
    label = "<script>alert('x')</script> **bold** [link](http://x) & \"quotes\"\n  trailing  "
    review(seeded, "ana", 0, "approve", label=label, note="<b>note</b>")
    with read_session(seeded.url) as session:
        stored = q.review_history(session, seeded.component_ids[0])[0]
        assert stored.label == label and stored.note == "<b>note</b>"
        assert review_queue.component_statuses(session, seeded.set_id)[0].latest_label == label


# --------------------------------------------------------------------------------- reviewers, taxonomy


def test_reviewers_and_taxonomy(seeded: Seeded) -> None:
    s = seeded
    with write_session(s.url) as session:
        assert q.ensure_reviewer(session, "  dora ").name == "dora"
        assert q.ensure_reviewer(session, "dora").id == q.ensure_reviewer(session, "dora").id
        with pytest.raises(InvalidInput, match="already exists"):
            q.add_reviewer(session, "ana")
        with pytest.raises(InvalidInput, match="empty"):
            q.add_reviewer(session, " ")
    with read_session(s.url) as session:
        assert [r.name for r in q.list_reviewers(session)] == ["ana", "ben", "cleo", "dora"]
        assert [c.name for c in q.list_categories(session)] == [
            "sleeve", "colour", "layers", "length", "neckline", "pattern", "silhouette", "other", "background"]

    review(s, "ana", 0, "approve", category="colour")
    with write_session(s.url) as session:
        q.rename_category(session, "colour", "color")
        q.add_category(session, "hem")
        q.retire_category(session, "pattern")
        with pytest.raises(InvalidInput, match="already exists"):
            q.rename_category(session, "color", "sleeve")
    with read_session(s.url) as session:
        names = [c.name for c in q.list_categories(session)]
        assert "color" in names and "hem" in names and "pattern" not in names
        assert [c.name for c in q.list_categories(session, include_retired=True)].count("pattern") == 1
        # Past reviews follow the rename.
        assert q.review_history(session, s.component_ids[0])[0].category == "color"
    with pytest.raises(NotFound, match="Category 'pattern' is retired"), write_session(s.url) as session:
        q.record_review(session, "ana", s.component_ids[1], "reject", category="pattern")
    with write_session(s.url) as session:
        assert q.add_category(session, "pattern").retired is False  # adding a retired one restores it


# -------------------------------------------------------------------------------- models, sets, scores


def test_models_sets_vectors_and_scores(seeded: Seeded) -> None:
    s = seeded
    with write_session(s.url) as session:
        again = q.register_model(session, "demo", "/moved/demo.safetensors", "AB" * 32, {"w_dim": 8, "num_ws": 6})
        assert again.id == s.model_id and again.path == "/moved/demo.safetensors"
        with pytest.raises(InvalidInput, match="already registered as 'demo'"):
            q.register_model(session, "demo", "/x", "cd" * 32, {"w_dim": 8, "num_ws": 6})
        with pytest.raises(InvalidInput, match="64 hex digits"):
            q.register_model(session, "other", "/x", "xyz", {"w_dim": 8, "num_ws": 6})
        with pytest.raises(InvalidInput, match="lacks 'num_ws'"):
            q.register_model(session, "other", "/x", "cd" * 32, {"w_dim": 8})

        vectors = np.arange(3 * W_DIM, dtype=np.float64).reshape(3, W_DIM) / 7
        info = q.add_component_set(session, s.model_id, "pca", {"k": 3}, 5000, vectors, [1.0, 2.0, 3.0])
        assert info.component_count == 3 and info.sample_count == 5000 and info.review_seeds == []
        np.testing.assert_array_equal(q.component_vectors(session, info.id), vectors.astype(np.float32))
        first = q.list_components(session, info.id)[0]
        np.testing.assert_array_equal(q.component_vector(session, first.id), vectors[0].astype(np.float32))
        assert q.set_review_seeds(session, info.id, [7, 2**32 - 1]).review_seeds == [7, 2**32 - 1]

        with pytest.raises(InvalidInput, match=r"shape \(3, 5\)"):
            q.add_component_set(session, s.model_id, "pca", {}, 1, np.zeros((3, 5)), [1, 1, 1])
        with pytest.raises(InvalidInput, match="sigmas must be 3"):
            q.add_component_set(session, s.model_id, "pca", {}, 1, vectors, [1, 1])
        with pytest.raises(InvalidInput, match="plain JSON"):
            q.add_component_set(session, s.model_id, "pca", {"x": object()}, 1, vectors, [1, 1, 1])
        with pytest.raises(InvalidInput, match="review seed must be between"):
            q.set_review_seeds(session, info.id, [-1])

        assert q.update_scores(session, info.id, [
            {"index": 0, "effect": 0.5, "locality": 0.2, "locality_where": "sleeves", "layer_sensitivity": "coarse",
             "suggested_category": "sleeve", "colour_share": 0.1, "consistency": 0.9, "priority": 1.5},
            ComponentScores(index=2, effect=np.float32(0.25)),
        ]) == 2
        with pytest.raises(InvalidInput, match="Unknown score field"):
            q.update_scores(session, info.id, [{"index": 0, "bogus": 1}])
        with pytest.raises(NotFound, match="index 9 is not in set"):
            q.update_scores(session, info.id, [{"index": 9, "effect": 1}])
    with read_session(s.url) as session:
        comps = q.list_components(session, info.id)
        assert (comps[0].effect, comps[0].locality_where, comps[0].priority) == (0.5, "sleeves", 1.5)
        assert comps[2].effect == 0.25 and comps[1].effect is None
        assert [m.name for m in q.list_models(session)] == ["demo"]
        assert q.get_model(session, s.model_id).num_ws == NUM_WS
        assert [cs.id for cs in q.list_component_sets(session, s.model_id)] == [info.id, s.set_id]


# ----------------------------------------------------------------------------------- directions, looks


def test_publish_unpublish_republish_keeps_history(seeded: Seeded) -> None:
    s = seeded
    with write_session(s.url) as session:
        d = q.publish_direction(session, s.model_id, "Sleeve length", "ana", component_id=s.component_ids[0],
                                category="sleeve", layer_range=(0, 3), strength_range=(-2, 2))
        assert (d.source, d.category, d.layer_range, d.published_by) == ("component", "sleeve", (0, 3), "ana")
        assert d.active
        np.testing.assert_array_equal(d.vector, q.component_vector(session, s.component_ids[0]))
        sup = q.publish_direction(session, s.model_id, "Brightness", "ben", vector=np.ones(W_DIM))
        assert sup.source == "supervised" and sup.layer_range == (0, NUM_WS)
        assert sup.strength_range == DEFAULT_STRENGTH_RANGE
        with pytest.raises(InvalidInput, match="already published"):
            q.publish_direction(session, s.model_id, "Sleeve length", "ben", vector=np.ones(W_DIM))
        with pytest.raises(InvalidInput, match="outside this model's"):
            q.publish_direction(session, s.model_id, "x", "ben", vector=np.ones(W_DIM), layer_range=(0, 99))
        with pytest.raises(InvalidInput, match=r"needs \(8,\)"):
            q.publish_direction(session, s.model_id, "x", "ben", vector=np.ones(3))
        with pytest.raises(InvalidInput, match="all zeros"):
            q.publish_direction(session, s.model_id, "x", "ben", vector=np.zeros(W_DIM))

    with write_session(s.url) as session:
        gone = q.unpublish_direction(session, d.id, "ben")
        assert (gone.active, gone.unpublished_by) == (False, "ben")
        with pytest.raises(InvalidInput, match="already unpublished"):
            q.unpublish_direction(session, d.id, "ben")
        again = q.publish_direction(session, s.model_id, "Sleeve length", "cleo", vector=np.full(W_DIM, 0.5))
    with read_session(s.url) as session:
        assert [(x.name, x.published_by) for x in q.active_directions(session, s.model_id)] == [
            ("Brightness", "ben"), ("Sleeve length", "cleo")]
        assert [(x.id, x.active) for x in q.direction_history(session, s.model_id)] == [
            (d.id, False), (sup.id, True), (again.id, True)]
        assert session.scalar(select(func.count()).select_from(PublishedDirection)) == 3


def test_publish_keeps_sigma_and_time(seeded: Seeded) -> None:
    s = seeded
    when = datetime(2025, 1, 31, 12, 0, tzinfo=timezone.utc)
    with write_session(s.url) as session:
        from_component = q.publish_direction(session, s.model_id, "Sleeves", "ana", component_id=s.component_ids[1])
        assert from_component.sigma == q.get_component(session, s.component_ids[1]).sigma == pytest.approx(1.8)
        own = q.publish_direction(session, s.model_id, "Own", "ana", component_id=s.component_ids[2], sigma=0.5)
        supervised = q.publish_direction(session, s.model_id, "Shine", "ana", vector=np.ones(W_DIM))
        scaled = q.publish_direction(session, s.model_id, "Gloss", "ana", vector=np.ones(W_DIM), sigma=2.5,
                                     published_at=when.astimezone(timezone(timedelta(hours=2))))
        assert (own.sigma, supervised.sigma, scaled.sigma) == (0.5, None, 2.5)
        assert scaled.published_at == when and supervised.published_at > when
        for bad, message in [({"sigma": -1.0}, "sigma must be 0 or more"), ({"sigma": float("nan")}, "finite"),
                             ({"sigma": "2"}, "sigma must be a number"),
                             ({"published_at": datetime(2025, 1, 31)}, "published_at must be a datetime with a time"),
                             ({"published_at": "2025-01-31T12:00:00+00:00"}, "published_at must be a datetime")]:
            with pytest.raises(InvalidInput, match=message):
                q.publish_direction(session, s.model_id, "x", "ana", vector=np.ones(W_DIM), **bad)
    with read_session(s.url) as session:
        stored = {d.name: (d.sigma, d.published_at) for d in q.active_directions(session, s.model_id)}
    assert stored["Gloss"] == (2.5, when) and stored["Shine"][0] is None
    assert stored["Sleeves"][0] == from_component.sigma and stored["Own"][0] == 0.5


@pytest.mark.parametrize(("name", "message"), [
    ("sleeves/long", re.escape("contains a path separator ('/' or '\\'); use letters, digits")),
    ("back\\slash", "contains a path separator"),
    ("..", "contains '..'; use letters"),
    ("tab\there", "contains control characters; use letters"),
    ("rtl\u202eoverride", "contains control characters"),
    ("   ", "direction name is empty: give every direction a name"),
    ("x" * 201, "is 201 characters; keep it to 200"),
    (7, r"direction name must be text, got int\.$"),
], ids=["slash", "backslash", "dots", "tab", "bidi", "blank", "long", "not-text"])
def test_publish_refuses_names_the_export_would_refuse(seeded: Seeded, name: object, message: str) -> None:
    s = seeded
    with write_session(s.url) as session:
        with pytest.raises(InvalidInput, match="^Cannot publish: .*" + message):
            q.publish_direction(session, s.model_id, name, "ana", vector=np.ones(W_DIM))  # type: ignore[arg-type]
        # Surrounding spaces are trimmed as before; any other printable text is a fine name.
        assert q.publish_direction(session, s.model_id, "  Ärmel: länger (a.b) ", "ana",
                                   vector=np.ones(W_DIM)).name == "Ärmel: länger (a.b)"
        assert q.publish_direction(session, s.model_id, "x" * 200, "ana", vector=np.ones(W_DIM)).name == "x" * 200
    with read_session(s.url) as session:
        assert len(q.active_directions(session, s.model_id)) == 2


def test_looks_save_list_delete(seeded: Seeded) -> None:
    s = seeded
    with write_session(s.url) as session:
        d = q.publish_direction(session, s.model_id, "Sleeve", "ana", vector=np.ones(W_DIM))
        look = q.save_look(session, s.model_id, "ana", "Red gown", 2**32 - 1, 0.7,
                           [{"direction_id": d.id, "value": 1.5}, LookEdit(name="Sleeve", value=-0.5)],
                           class_index=2)
        assert look.edits == (LookEdit("Sleeve", 1.5, d.id), LookEdit("Sleeve", -0.5, None))
        q.save_look(session, s.model_id, "ben", "Plain", 0, 1.0, [])
        for bad, message in [({"seed": 2**32}, "seed must be between"), ({"psi": float("inf")}, "psi must be a finite"),
                             ({"class_index": 3}, "class must be between 0 and 2"),
                             ({"edits": [{"direction_id": 999, "value": 1}]}, "not published for this model"),
                             ({"edits": [{"value": 1}]}, "needs a direction name"),
                             ({"name": ""}, "look name is empty")]:
            args = {"model_id": s.model_id, "reviewer": "ana", "name": "x", "seed": 1, "psi": 0.5, "edits": []} | bad
            with pytest.raises(InvalidInput, match=message):
                q.save_look(session, **args)
    with read_session(s.url) as session:
        assert [x.name for x in q.list_looks(session, s.model_id)] == ["Plain", "Red gown"]
        assert [x.name for x in q.list_looks(session, reviewer="ana")] == ["Red gown"]
        assert q.get_look(session, look.id).seed == 2**32 - 1
    with write_session(s.url) as session:
        q.delete_look(session, look.id)
        with pytest.raises(NotFound):
            q.delete_look(session, look.id)
    with read_session(s.url) as session:
        assert session.scalar(select(func.count()).select_from(Look)) == 1


def test_unconditional_model_refuses_a_class(db_url: str) -> None:
    with write_session(db_url) as session:
        model = q.register_model(session, "plain", "/p", "ef" * 32, {"w_dim": 4, "num_ws": 2, "c_dim": 0})
        q.add_reviewer(session, "ana")
        with pytest.raises(InvalidInput, match="unconditional"):
            q.save_look(session, model.id, "ana", "x", 1, 0.5, [], class_index=0)
