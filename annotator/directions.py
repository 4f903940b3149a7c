"""Directions & export page logic without Streamlit: what can be published, with which defaults; export/import."""
from __future__ import annotations

from db import queries as q
from db.records import DirectionInfo, ModelInfo
from db.engine import read_session, write_session
from model.directions import publishing
from workflows import publishing as publish_flow


def candidates(url: str, set_id: int, model: ModelInfo) -> list[publish_flow.Candidate]:
    with read_session(url) as session:
        return publish_flow.candidates(session, set_id, model)


def check_name(name: str) -> str:
    """Direction names become keys in the exported file: the one name rule (core.names), checked before publishing."""
    from core.names import check_direction_name

    return check_direction_name(name.strip())


def proposal(url: str, renderer, model_id: int, component_id: int, layer_range: tuple[int, int],
             strength_range: tuple[float, float] | None = None) -> publishing.Proposal:
    """What publishing this component on these settings would do: the effect strip, its measure, the refusals."""
    with read_session(url) as session:
        return publish_flow.propose(session, renderer, model_id, component_id, layer_range=layer_range,
                                  strength_range=strength_range)


def default_span(url: str, renderer, component_id: int, layer_range: tuple[int, int]) -> publishing.Span:
    with read_session(url) as session:
        return publish_flow.default_span(session, renderer, component_id, layer_range)


def publish(url: str, renderer, reviewer: str, model_id: int, component_id: int, name: str, category: str | None,
            layer_range: tuple[int, int], strength_range: tuple[float, float],
            force: bool = False) -> DirectionInfo:
    """Publish through the checks (model.directions.publishing); ``force`` overrides their refusals and records them."""
    clean = check_name(name)
    with write_session(url) as session:
        checked = publish_flow.propose(session, renderer, model_id, component_id, name=clean,
                                     category=category or None, layer_range=layer_range,
                                     strength_range=strength_range)
        return publish_flow.publish(session, checked, reviewer, force=force)


def flags(url: str, model_id: int) -> dict[int, publishing.DirectionFlags]:
    with read_session(url) as session:
        return publish_flow.direction_flags(session, model_id)


def update(url: str, renderer, reviewer: str, direction_id: int, force: bool = False) -> DirectionInfo:
    with write_session(url) as session:
        return publish_flow.update_direction(session, renderer, direction_id, reviewer, force=force)


def unpublish(url: str, reviewer: str, direction_id: int) -> DirectionInfo:
    with write_session(url) as session:
        return q.unpublish_direction(session, direction_id, reviewer)


def export_bytes(url: str, model_id: int, all_reviewed: bool = False) -> bytes:
    from workflows.export import export_direction_set

    data = export_direction_set(url, model_id, all_reviewed=all_reviewed)
    assert isinstance(data, bytes)
    return data


def export_file_name(model: ModelInfo) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in model.name).strip("-") or "model"
    return f"atelier-directions-{safe}.zip"
