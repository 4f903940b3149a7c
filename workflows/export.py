"""Export of direction sets: the labelled directions of a model, from the database to the shared file format.

Both ``atelier export`` and the Directions & export page call :func:`export_direction_set`. Exports are
deterministic (no timestamps of their own, fixed zip dates), so the same database state gives the same bytes. The
rows are read first; the document is then built from them by pure code, and written by
:mod:`model.directions.set_format`.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from core.errors import InvalidInput
from core.files import atomic_write_bytes
from core.names import check_direction_name
from db import queries
from db.agreement import nominal_alpha
from db.engine import read_session
from db.review_queue import component_statuses
from model.directions.set_format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    DirectionSetError,
    iso_utc,
    json_pair,
    original_indices,
    pack_direction_set,
    render_previews,
    stored_sigma,
    strip_import,
)
from model.network.render import Renderer

# --------------------------------------------------------------------------------------------------------------
# Export: read the rows (session), then build the document from them (pure)


@dataclass
class _Entry:
    name: str
    status: str
    vector: np.ndarray
    direction: Any = None  # DirectionInfo when published
    component: Any = None  # ComponentInfo when from a component
    set_id: int | None = None


@dataclass
class _ExportRows:
    """Everything an export reads from the database, before any of it becomes the document."""

    model: Any  # ModelInfo
    entries: list[_Entry]
    sets: dict[int, Any]  # set id -> ComponentSetInfo
    statuses: dict[int, dict[int, Any]] = field(default_factory=dict)  # set id -> component id -> ComponentStatus
    # set id -> component id -> each reviewer's latest review when it is a vote, oldest first (import replays this
    # order)
    votes: dict[int, dict[int, list[Any]]] = field(default_factory=dict)


def _read_rows(session: Session, model_id: int, all_reviewed: bool) -> _ExportRows:
    """The model, its published directions, (with ``all_reviewed``) its reviewed components, and the statuses and
    votes of every set an entry comes from."""
    model = queries.get_model(session, model_id)
    rows = _ExportRows(model, [], {s.id: s for s in queries.list_component_sets(session, model.id)})
    published_components: set[int] = set()
    for info in queries.active_directions(session, model.id):
        component = None if info.component_id is None else queries.get_component(session, info.component_id)
        rows.entries.append(_Entry(info.name, "published", info.vector, direction=info, component=component,
                                   set_id=None if component is None else component.set_id))
        if component is not None:
            published_components.add(component.id)

    def statuses_of(set_id: int) -> dict[int, Any]:
        if set_id not in rows.statuses:
            rows.statuses[set_id] = {s.component_id: s for s in component_statuses(session, set_id)}
        return rows.statuses[set_id]

    if all_reviewed:
        for set_id in sorted(rows.sets):
            for component in queries.list_components(session, set_id):
                status = statuses_of(set_id)[component.id]
                if component.id in published_components or not status.reviewers:
                    continue
                rows.entries.append(_Entry("", status.status, queries.component_vector(session, component.id),
                                           component=component, set_id=set_id))
    for set_id in sorted({e.set_id for e in rows.entries if e.set_id is not None}):
        statuses_of(set_id)
        rows.votes[set_id] = queries.latest_votes(session, set_id)
    return rows


def _majority_share(decisions: Sequence[str]) -> float | None:
    """Per-direction agreement: the share of voting reviewers who made the most common decision (None below 2)."""
    if len(decisions) < 2:
        return None
    return Counter(decisions).most_common(1)[0][1] / len(decisions)


def _name_entries(rows: _ExportRows, all_reviewed: bool, keys: dict[int, str],
                  originals: dict[int, dict[int, int]]) -> list[_Entry]:
    """The entries sorted by name, unpublished components named ``<method>_<set key>_<index>``; every name checked
    by the one direction-name rule and unique."""
    if not rows.entries:
        what = "reviewed components or published directions" if all_reviewed else "published directions"
        hint = "" if all_reviewed else ", or export with --all-reviewed to include reviewed components"
        raise DirectionSetError(f"nothing to export: model {rows.model.name!r} has no {what}. Publish directions on "
                                f"the Directions page{hint}")
    for entry in rows.entries:
        if not entry.name:
            method = re.sub(r"[^A-Za-z0-9_-]+", "-", rows.sets[entry.set_id].method)
            entry.name = f"{method}_{keys[entry.set_id]}_{originals[entry.set_id][entry.component.index]:03d}"
        try:
            check_direction_name(entry.name)
        except InvalidInput as exc:
            raise DirectionSetError(f"cannot export: {exc}. Unpublish it and publish it again under another "
                                    f"name") from None
    counts = Counter(e.name for e in rows.entries)
    clash = sorted(n for n, c in counts.items() if c > 1)
    if clash:
        raise DirectionSetError(f"cannot export: the name(s) {clash} are used twice (a published direction has the "
                                f"name Atelier gives an unpublished component); rename the published one")
    return sorted(rows.entries, key=lambda e: e.name)


def _reviews_record(status: Any, votes: list[Any]) -> dict[str, Any]:
    """A component's ``reviews`` field: its status and every reviewer's latest vote."""
    return {
        "status": status.status, "reviewers": sorted(r.reviewer for r in votes),
        "decisions": {r.reviewer: r.decision for r in sorted(votes, key=lambda r: r.reviewer)},
        "approvals": status.approvals, "rejections": status.rejections, "unsure": status.unsure,
        "agreement": _majority_share([r.decision for r in votes]),
        "mean_consistency": status.mean_consistency, "label": status.latest_label,
        "category": status.latest_category, "conflicts": list(status.conflicts),
        "by_reviewer": [
            {"reviewer": r.reviewer, "decision": r.decision, "label": r.label, "category": r.category,
             "consistency": r.consistency, "layer_range": json_pair(r.layer_range, int),
             "strength_range": json_pair(r.strength_range, float), "note": r.note}
            for r in votes
        ],
    }


def _scores_record(c: Any) -> dict[str, Any]:
    """A component's ``scores`` field (``db.records.ComponentInfo``)."""
    return {"eigenvalue": c.eigenvalue, "effect": c.effect, "consistency": c.consistency,
            "locality": c.locality, "locality_where": c.locality_where, "colour_share": c.colour_share,
            "layer_sensitivity": c.layer_sensitivity, "suggested_category": c.suggested_category,
            "priority": c.priority, "dead": bool(c.dead)}


def _set_record(key: str, info: Any, ordered: list[list[Any]]) -> dict[str, Any]:
    """A ``component_sets`` entry; ``ordered`` holds the votes on each exported component, by original index."""
    decision_units = [[r.decision for r in votes] for votes in ordered]
    category_units = [[r.category for r in votes if r.category is not None] for votes in ordered]
    return {
        "key": key, "method": info.method, "params": strip_import(info.params),
        "sample_count": info.sample_count, "review_seeds": list(info.review_seeds),
        "agreement": {"decision_alpha": nominal_alpha(decision_units),
                      "category_alpha": nominal_alpha(category_units),
                      "decision_units": sum(1 for u in decision_units if len(u) >= 2),
                      "category_units": sum(1 for u in category_units if len(u) >= 2)},
    }


def _model_record(model: Any) -> dict[str, Any]:
    arch = model.architecture
    return {"name": model.name, "fingerprint": model.fingerprint,
            "architecture": {"z_dim": int(arch.get("z_dim", 0) or 0), "w_dim": int(arch["w_dim"]),
                             "num_ws": int(arch["num_ws"]),
                             "resolution": int(arch.get("img_resolution", arch.get("resolution", 0)) or 0),
                             "c_dim": int(arch.get("c_dim", 0) or 0)}}


def _export_document(rows: _ExportRows, all_reviewed: bool) -> tuple[dict[str, Any], np.ndarray]:
    """directions.json and the vectors in its order, from the rows alone (no database)."""
    used_sets = sorted({e.set_id for e in rows.entries if e.set_id is not None})
    keys = {set_id: f"s{i + 1}" for i, set_id in enumerate(used_sets)}
    originals = {set_id: original_indices(rows.sets[set_id]) for set_id in used_sets}
    entries = _name_entries(rows, all_reviewed, keys, originals)

    directions: list[dict[str, Any]] = []
    units: dict[int, dict[int, list[Any]]] = {set_id: {} for set_id in used_sets}
    for entry in entries:
        d = entry.direction
        record: dict[str, Any] = {"name": entry.name, "status": entry.status,
                                  "category": None if d is None else d.category}
        reviews = scores = None
        sigma = float(entry.component.sigma) if d is None else stored_sigma(d, entry.component)
        if entry.component is None:
            record["source"] = {"kind": "supervised"}
        else:
            c = entry.component
            original = originals[entry.set_id][c.index]
            record["source"] = {"kind": "component", "set": keys[entry.set_id],
                                "method": rows.sets[entry.set_id].method, "index": original}
            votes = rows.votes[entry.set_id].get(c.id, [])
            units[entry.set_id].setdefault(original, votes)
            reviews = _reviews_record(rows.statuses[entry.set_id][c.id], votes)
            scores = _scores_record(c)
        record.update({
            "layer_range": None if d is None else json_pair(d.layer_range, int),
            "strength_range": None if d is None else json_pair(d.strength_range, float),
            "sigma": sigma, "reviews": reviews, "scores": scores,
            "published_by": None if d is None else d.published_by,
            "published_at": None if d is None else iso_utc(d.published_at), "preview": None,
        })
        directions.append(record)

    component_sets = [_set_record(keys[set_id], rows.sets[set_id], [units[set_id][i] for i in sorted(units[set_id])])
                      for set_id in used_sets]
    doc = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "selection": "all-reviewed" if all_reviewed else "published",
        "model": _model_record(rows.model),
        "component_sets": component_sets,
        "directions": directions,
    }
    vectors = np.stack([np.asarray(e.vector, dtype=np.float32) for e in entries])
    return doc, vectors


def export_direction_set(session_or_url: Any, model_id: int, out_path: str | Path | None = None,
                         all_reviewed: bool = False, include_previews: bool = False,
                         renderer: Any = None) -> bytes | Path:
    """Export a model's published directions (with ``all_reviewed``, also every reviewed component).

    ``session_or_url``: an open SQLAlchemy session, a database URL, or None for the configured database. Returns
    the zip bytes (for a download button) or, with ``out_path``, writes them there atomically and returns the
    path. ``include_previews`` renders one strip per direction with ``renderer`` (default: the model's file, which
    must have the registered fingerprint).
    """
    if isinstance(session_or_url, Session):
        rows = _read_rows(session_or_url, model_id, all_reviewed)
    else:
        with read_session(session_or_url) as session:
            rows = _read_rows(session, model_id, all_reviewed)
    model = rows.model
    doc, vectors = _export_document(rows, all_reviewed)
    previews: dict[str, bytes] = {}
    if include_previews:
        if renderer is None:
            renderer = Renderer(model.path)
        if renderer.fingerprint != model.fingerprint:
            raise DirectionSetError(f"the network given for previews has other weights than model {model.name!r}; "
                                    f"pass the model's own file (registered from {model.path})")
        previews = render_previews(renderer, doc, vectors)
    data = pack_direction_set(doc, vectors, previews)
    if out_path is None:
        return data

    path = Path(out_path)
    atomic_write_bytes(path, data)
    return path
