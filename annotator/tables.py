"""Tables for the Overview and Components pages, as pandas frames (no Streamlit)."""
from __future__ import annotations

import pandas as pd

from db import queries as q
from db import review_queue
from db.records import Progress
from db.rules import VOTES
from db.engine import read_session, write_session

COLUMNS = ("index", "status", "label", "category", "suggested", "effect", "consistency", "locality", "where",
           "colour", "layers", "priority", "why", "dead", "approvals", "rejections", "unsure", "human consistency",
           "sigma", "component_id")


def components_frame(url: str, set_id: int) -> pd.DataFrame:
    """One row per component: status, label and category from reviews, the automatic scores."""
    with read_session(url) as session:
        components = q.list_components(session, set_id)
        statuses = {s.component_id: s for s in review_queue.component_statuses(session, set_id)}
    rows = []
    for c in components:
        s = statuses[c.id]
        rows.append({
            "index": c.index, "status": s.status.replace("_", " "), "label": s.latest_label or "",
            "category": s.latest_category or "", "suggested": c.suggested_category or "", "effect": c.effect,
            "consistency": c.consistency, "locality": c.locality, "where": c.locality_where or "",
            "colour": c.colour_share, "layers": c.layer_sensitivity or "", "priority": c.priority,
            "why": review_queue.score_reason(c), "dead": c.dead,
            "approvals": s.approvals, "rejections": s.rejections, "unsure": s.unsure,
            "human consistency": s.mean_consistency, "sigma": c.sigma, "component_id": c.id,
        })
    return pd.DataFrame(rows, columns=list(COLUMNS))


def filtered(frame: pd.DataFrame, statuses: list[str] | None = None, categories: list[str] | None = None,
             text: str = "", dead: str = "all") -> pd.DataFrame:
    out = frame
    if statuses:
        out = out[out["status"].isin(statuses)]
    if categories:
        out = out[out["category"].isin(categories) | out["suggested"].isin(categories)]
    if text.strip():
        out = out[out["label"].str.contains(text.strip(), case=False, regex=False)]
    if dead == "dead only":
        out = out[out["dead"]]
    elif dead == "hide dead":
        out = out[~out["dead"]]
    return out


def reject_dead(url: str, set_id: int, reviewer: str) -> int:
    """Reject, as this reviewer, every component the scores mark dead that they have not voted on; returns how many."""
    with write_session(url) as session:
        components = [c for c in q.list_components(session, set_id) if c.dead]
        done = 0
        for c in components:
            mine = q.latest_review(session, reviewer, c.id)
            if mine is not None and mine.decision in VOTES:
                continue
            q.record_review(session, reviewer, c.id, "reject", note="bulk: marked dead by the scores")
            done += 1
    return done


def reviewer_frame(progress: Progress) -> pd.DataFrame:
    return pd.DataFrame([{
        "reviewer": p.reviewer, "reviewed": p.reviewed, "approved": p.approved, "rejected": p.rejected,
        "unsure": p.unsure, "skipped": p.skipped, "remaining": p.remaining,
    } for p in progress.by_reviewer.values()], columns=["reviewer", "reviewed", "approved", "rejected", "unsure",
                                                         "skipped", "remaining"])
