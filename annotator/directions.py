"""Directions & export page logic without Streamlit: what can be published, with which defaults; export/import."""
from __future__ import annotations

from dataclasses import dataclass

from db import queries as q
from db.engine import read_session, write_session


@dataclass(frozen=True)
class Candidate:
    """An approved component that is not published yet, with defaults from its approvals."""

    component_id: int
    index: int
    name: str
    category: str | None
    layer_range: tuple[int, int]
    strength_range: tuple[float, float]
    approvals: int


def candidates(url: str, set_id: int, model: q.ModelInfo) -> list[Candidate]:
    with read_session(url) as session:
        published = {d.component_id for d in q.active_directions(session, model.id)}
        out = []
        for status in q.component_statuses(session, set_id):
            if status.status != "approved" or status.component_id in published:
                continue
            approvals = [r for r in reversed(q.review_history(session, status.component_id))
                         if r.decision == "approve"]
            latest = approvals[0] if approvals else None
            layers = (latest.layer_range if latest and latest.layer_range else (0, model.num_ws))
            strengths = (latest.strength_range if latest and latest.strength_range else q.DEFAULT_STRENGTH_RANGE)
            out.append(Candidate(
                component_id=status.component_id, index=status.index,
                name=(status.latest_label or f"component {status.index}").strip(),
                category=status.latest_category, layer_range=tuple(layers),  # type: ignore[arg-type]
                strength_range=tuple(strengths), approvals=status.approvals))  # type: ignore[arg-type]
    return out


def check_name(name: str) -> str:
    """Direction names become keys in the exported file: the export module's rules, checked before publishing."""
    from model.direction_set import check_direction_name

    return check_direction_name(name.strip())


def publish(url: str, reviewer: str, model_id: int, component_id: int, name: str, category: str | None,
            layer_range: tuple[int, int], strength_range: tuple[float, float]) -> q.DirectionInfo:
    clean = check_name(name)
    with write_session(url) as session:
        return q.publish_direction(session, model_id, clean, reviewer, component_id=component_id,
                                   category=category or None, layer_range=layer_range,
                                   strength_range=strength_range)


def unpublish(url: str, reviewer: str, direction_id: int) -> q.DirectionInfo:
    with write_session(url) as session:
        return q.unpublish_direction(session, direction_id, reviewer)


def export_bytes(url: str, model_id: int, all_reviewed: bool = False) -> bytes:
    from model.direction_set import export_direction_set

    data = export_direction_set(url, model_id, all_reviewed=all_reviewed)
    assert isinstance(data, bytes)
    return data


def export_file_name(model: q.ModelInfo) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in model.name).strip("-") or "model"
    return f"atelier-directions-{safe}.zip"
