"""What the reviews add up to: each component's status, the review order and a reviewer's queue, progress, agreement.

These are the review rules; ``db.queries`` only stores and fetches rows, and this module reads them:
- a component's status comes from its reviews, each reviewer's *latest* review counting (:func:`component_statuses`);
- the review order is priority first, unscored components placed by eigenvalue while scoring runs
  (:func:`review_order`);
- a reviewer's queue is what they have not reviewed in that order, skipped ones last (:func:`queue_for`);
- agreement across reviewers is Krippendorff's alpha (:func:`agreement`).
"""
from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from db.agreement import nominal_alpha
from db.queries import get_component, latest_per_reviewer, list_components, list_reviewers, reviewer_row, set_row
from db.records import (
    Agreement,
    ComponentInfo,
    ComponentStatus,
    Progress,
    QueueEntry,
    QueueItem,
    ReviewerProgress,
    ReviewRecord,
)
from db.rules import STATUSES, VOTES, approvals_needed, check_int
from db.schema import WITHDRAWN


def _status_of(component: ComponentInfo, latest: Sequence[ReviewRecord], k: int) -> ComponentStatus:
    votes = [r for r in latest if r.decision in VOTES]
    decisions = {r.reviewer: r.decision for r in votes}
    approvers = sorted(r.reviewer for r in votes if r.decision == "approve")
    rejecters = sorted(r.reviewer for r in votes if r.decision == "reject")
    unsure = sum(1 for r in votes if r.decision == "unsure")

    if not votes:
        status = "unreviewed"
    elif approvers and rejecters:
        status = "conflict"
    elif len(approvers) >= k:
        status = "approved"
    elif len(rejecters) >= k:
        status = "rejected"
    elif unsure == len(votes):
        status = "unsure"
    else:
        status = "in_review"

    conflicts: list[str] = []
    if approvers and rejecters:
        conflicts.append(f"decision: approved by {', '.join(approvers)}; rejected by {', '.join(rejecters)}")
    approver_categories = {r.reviewer: r.category for r in votes if r.decision == "approve" and r.category}
    if len(set(approver_categories.values())) > 1:
        listed = "; ".join(f"{c} ({r})" for r, c in sorted(approver_categories.items()))
        conflicts.append(f"category: {listed}")

    # Prefer what approvers said (that is what gets published), newest first.
    ranked = sorted(votes, key=lambda r: (r.decision == "approve", r.id), reverse=True)
    label = next((r.label for r in ranked if r.label.strip()), None)
    category = next((r.category for r in ranked if r.category), None)
    ratings = [r.consistency for r in votes if r.consistency is not None]
    return ComponentStatus(
        component_id=component.id, index=component.index, status=status, approvals=len(approvers),
        rejections=len(rejecters), unsure=unsure, latest_label=label, latest_category=category,
        reviewers=tuple(sorted(decisions)), decisions=decisions, conflicts=tuple(conflicts),
        mean_consistency=float(np.mean(ratings)) if ratings else None,
    )


def component_statuses(session: Session, set_id: int, min_approvals: int | None = None) -> list[ComponentStatus]:
    """Status of every component in the set, by index.

    approved: at least K reviewers' latest review approves and none rejects; rejected: at least K reject and
    none approves; conflict: both; unsure: only "unsure" votes; in_review: votes, but not enough to decide;
    unreviewed: no votes (skips and withdrawn reviews are not votes).
    """
    k = approvals_needed(min_approvals)
    components = list_components(session, set_id)
    latest: dict[int, list[ReviewRecord]] = defaultdict(list)
    for record in latest_per_reviewer(session, set_id):
        latest[record.component_id].append(record)
    return [_status_of(c, latest[c.id], k) for c in components]


def component_status(session: Session, component_id: int, min_approvals: int | None = None) -> ComponentStatus:
    component = get_component(session, component_id)
    statuses = component_statuses(session, component.set_id, min_approvals)
    return next(s for s in statuses if s.component_id == component.id)


NEIGHBOURS_FOR_UNSCORED = 8  # scored components, nearest in eigenvalue order, whose priorities place an unscored one


def review_order(components: Sequence[ComponentInfo], *, include_dead: bool = False) -> list[ComponentInfo]:
    """The review order of a set, the one rule behind every queue (the Review page, ``atelier queue``):
    highest priority first (as model.directions.scores assigns it), ties by index.

    While scoring is still running (it goes in eigenvalue order) a component without scores is placed by what is
    known: it gets the median priority of the scored components nearest above it in eigenvalue order (the ones
    scored last), so the queue is useful before the scorer is done; with nothing scored yet the order is the
    eigenvalue order. Ties between a scored and an unscored component go to the scored one.
    Components the scorer marked dead are left out unless ``include_dead`` (then they come last).
    """
    by_eigen = sorted(components, key=lambda c: (-(c.eigenvalue if c.eigenvalue is not None else -math.inf),
                                                 c.index))
    keyed: list[tuple[float, int, int, ComponentInfo]] = []
    recent: list[float] = []
    for rank, c in enumerate(by_eigen):
        if c.dead and not include_dead:
            continue
        if c.priority is not None:
            priority, known = (-math.inf if c.dead else c.priority), 0
            if not c.dead:
                recent = (recent + [c.priority])[-NEIGHBOURS_FOR_UNSCORED:]
        else:
            priority, known = (float(np.median(recent)) if recent else 0.0), 1
        keyed.append((-priority, known, rank, c))
    keyed.sort(key=lambda k: k[:3])
    return [c for *_, c in keyed]


def scoring_progress(components: Sequence[ComponentInfo]) -> tuple[int, int]:
    """(components with scores, components) of a set: how far `atelier score` / the Models page have got."""
    return sum(c.priority is not None for c in components), len(components)


def queue_for(
    session: Session, reviewer: str, set_id: int, limit: int | None = None, *, include_dead: bool = False
) -> list[QueueItem]:
    """What this reviewer should look at next: components they have not reviewed, in :func:`review_order`;
    components they skipped come after all of those, earliest skip first.
    Components the scorer marked dead are left out unless ``include_dead``.
    """
    person = reviewer_row(session, reviewer)
    mine = {r.component_id: r for r in latest_per_reviewer(session, set_id) if r.reviewer == person.name}
    fresh: list[QueueItem] = []
    skipped: list[tuple[int, QueueItem]] = []
    for c in review_order(list_components(session, set_id), include_dead=include_dead):
        review = mine.get(c.id)
        if review is None or review.decision == WITHDRAWN:
            fresh.append(QueueItem(component_id=c.id, index=c.index, priority=c.priority, skipped=False))
        elif review.decision == "skip":
            skipped.append((review.id, QueueItem(component_id=c.id, index=c.index, priority=c.priority, skipped=True)))
    skipped.sort(key=lambda pair: pair[0])
    queue = fresh + [item for _, item in skipped]
    if limit is not None:
        queue = queue[: check_int("limit", limit, 0)]
    return queue


def score_reason(component: ComponentInfo) -> str:
    """Why a component sits where it does in the queue, in one line (written by the scorer, see
    model.directions.scores)."""
    if component.priority is None:
        return "not scored yet: placed by its eigenvalue among the components scored so far"
    details = parse_score_details(component.score_details)
    if details.get("reason"):
        return str(details["reason"])
    return f"priority {component.priority:.2f} (scored before reasons were kept; re-run `atelier score`)"


def parse_score_details(text: str | None) -> dict[str, Any]:
    """The stored score details as a dict ({} when there are none or they cannot be read)."""
    if not text:
        return {}
    try:
        parsed = json.loads(text)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def queue_entries(
    session: Session, set_id: int, reviewer: str | None = None, *, top: int | None = None,
    include_dead: bool = False,
) -> list[QueueEntry]:
    """The review order with its reasons: a reviewer's own queue (as the Review page shows it), or without a
    reviewer the whole set in :func:`review_order`."""
    components = {c.id: c for c in list_components(session, set_id)}
    if reviewer is None:
        ids = [(c.id, False) for c in review_order(list(components.values()), include_dead=include_dead)]
    else:
        ids = [(item.component_id, item.skipped)
               for item in queue_for(session, reviewer, set_id, include_dead=include_dead)]
    if top is not None:
        ids = ids[: check_int("top", top, 0)]
    entries = []
    for position, (cid, skipped) in enumerate(ids, start=1):
        c = components[cid]
        entries.append(QueueEntry(
            position=position, component_id=cid, index=c.index, priority=c.priority,
            suggested_category=c.suggested_category, layers=c.layer_sensitivity, reason=score_reason(c),
            scored=c.priority is not None, skipped=skipped, dead=c.dead,
        ))
    return entries


def progress(session: Session, set_id: int, min_approvals: int | None = None) -> Progress:
    """Counts by status and, per reviewer, what their latest reviews say and how much is left.

    ``remaining`` is what :func:`queue_for` would list: live (not dead) components the reviewer has not voted on,
    skipped ones included.
    """
    statuses = component_statuses(session, set_id, min_approvals)
    by_status = {status: 0 for status in STATUSES}
    by_status.update(Counter(s.status for s in statuses))
    live = {c.id for c in list_components(session, set_id) if not c.dead}
    counts: dict[str, Counter[str]] = {r.name: Counter() for r in list_reviewers(session)}
    voted: dict[str, set[int]] = defaultdict(set)
    for record in latest_per_reviewer(session, set_id):
        counts[record.reviewer][record.decision] += 1
        if record.decision in VOTES:
            voted[record.reviewer].add(record.component_id)
    by_reviewer = {
        name: ReviewerProgress(
            reviewer=name, approved=c["approve"], rejected=c["reject"], unsure=c["unsure"], skipped=c["skip"],
            remaining=len(live - voted[name]),
        )
        for name, c in counts.items()
    }
    return Progress(set_id=set_id, total=len(statuses), by_status=by_status, by_reviewer=by_reviewer)


def agreement(session: Session, set_id: int) -> Agreement:
    """Krippendorff's alpha across reviewers on decision and on category, and mean human consistency.

    Each reviewer's latest review counts. Decisions are approve / reject / unsure (skips are missing ratings);
    categories are compared by identity, so renaming one does not change the result.
    """
    set_row(session, set_id)
    decisions: dict[int, list[str]] = defaultdict(list)
    categories: dict[int, list[str]] = defaultdict(list)
    ratings: dict[int, list[int]] = defaultdict(list)
    for record in latest_per_reviewer(session, set_id):
        if record.decision not in VOTES:
            continue
        decisions[record.component_id].append(record.decision)
        if record.category is not None:
            categories[record.component_id].append(record.category)
        if record.consistency is not None:
            ratings[record.component_id].append(record.consistency)
    return Agreement(
        set_id=set_id,
        decision_alpha=nominal_alpha(decisions.values()),
        category_alpha=nominal_alpha(categories.values()),
        decision_units=sum(1 for values in decisions.values() if len(values) >= 2),
        category_units=sum(1 for values in categories.values() if len(values) >= 2),
        mean_consistency={cid: float(np.mean(values)) for cid, values in sorted(ratings.items())},
    )
