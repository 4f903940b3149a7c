"""Directions & export page logic without Streamlit: what can be published, with which defaults; export/import."""
from __future__ import annotations

from dataclasses import dataclass

from db import queries as q
from db import review_queue
from db.records import DirectionInfo, ModelInfo
from db.rules import DEFAULT_STRENGTH_RANGE
from db.engine import read_session, write_session
from model.directions import publishing


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


def candidates(url: str, set_id: int, model: ModelInfo) -> list[Candidate]:
    """Approved components not published yet, and components in conflict that someone approved (shown so the
    refusal and its reason are visible where people publish, not only on the command line)."""
    with read_session(url) as session:
        published = {d.component_id for d in q.active_directions(session, model.id)}
        out = []
        for status in review_queue.component_statuses(session, set_id):
            wanted = status.status == "approved" or (status.status == "conflict" and status.approvals)
            if not wanted or status.component_id in published:
                continue
            approvals = [r for r in reversed(q.review_history(session, status.component_id))
                         if r.decision == "approve"]
            latest = approvals[0] if approvals else None
            layers = (latest.layer_range if latest and latest.layer_range else (0, model.num_ws))
            strengths = (latest.strength_range if latest and latest.strength_range else DEFAULT_STRENGTH_RANGE)
            out.append(Candidate(
                component_id=status.component_id, index=status.index,
                name=(status.latest_label or f"component {status.index}").strip(),
                category=status.latest_category, layer_range=tuple(layers),  # type: ignore[arg-type]
                strength_range=tuple(strengths), approvals=status.approvals))  # type: ignore[arg-type]
    return out


def check_name(name: str) -> str:
    """Direction names become keys in the exported file: the one name rule (core.names), checked before publishing."""
    from core.names import check_direction_name

    return check_direction_name(name.strip())


def proposal(url: str, renderer, model_id: int, component_id: int, layer_range: tuple[int, int],
             strength_range: tuple[float, float] | None = None) -> publishing.Proposal:
    """What publishing this component on these settings would do: the effect strip, its measure, the refusals."""
    with read_session(url) as session:
        return publishing.propose(session, renderer, model_id, component_id, layer_range=layer_range,
                                  strength_range=strength_range)


def default_span(url: str, renderer, component_id: int, layer_range: tuple[int, int]) -> publishing.Span:
    """The slider range the form starts from: where the edit stays plausible on these layers."""
    with read_session(url) as session:
        component = q.get_component(session, component_id)
        vector = q.component_vector(session, component_id)
        seeds = q.get_component_set(session, component.set_id).review_seeds[: publishing.MEASURE_SEEDS]
    return publishing.plausible_span(renderer, vector, float(component.sigma) or 1.0, layer_range,
                                     seeds or list(range(publishing.MEASURE_SEEDS)))


def publish(url: str, renderer, reviewer: str, model_id: int, component_id: int, name: str, category: str | None,
            layer_range: tuple[int, int], strength_range: tuple[float, float],
            force: bool = False) -> DirectionInfo:
    """Publish through the checks (model.directions.publishing); ``force`` overrides their refusals and records them."""
    clean = check_name(name)
    with write_session(url) as session:
        checked = publishing.propose(session, renderer, model_id, component_id, name=clean,
                                     category=category or None, layer_range=layer_range,
                                     strength_range=strength_range)
        return publishing.publish(session, checked, reviewer, force=force)


def flags(url: str, model_id: int) -> dict[int, publishing.DirectionFlags]:
    with read_session(url) as session:
        return publishing.direction_flags(session, model_id)


def update(url: str, renderer, reviewer: str, direction_id: int, force: bool = False) -> DirectionInfo:
    with write_session(url) as session:
        return publishing.update_direction(session, renderer, direction_id, reviewer, force=force)


def unpublish(url: str, reviewer: str, direction_id: int) -> DirectionInfo:
    with write_session(url) as session:
        return q.unpublish_direction(session, direction_id, reviewer)


def export_bytes(url: str, model_id: int, all_reviewed: bool = False) -> bytes:
    from workflows.exchange import export_direction_set

    data = export_direction_set(url, model_id, all_reviewed=all_reviewed)
    assert isinstance(data, bytes)
    return data


def export_file_name(model: ModelInfo) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in model.name).strip("-") or "model"
    return f"atelier-directions-{safe}.zip"
