"""A published direction as a slider: the σ it counts in and the edit a slider value makes (the Generate page,
looks and exports use these, so a slider moves w exactly as the review strip did)."""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from db import queries
from model.directions.set_format import (
    edit_for,
    stored_sigma,
)
from model.network.render import Edit

# --------------------------------------------------------------------------------------------------------------
# Sliders on published directions


def direction_sigma(session: Session, direction: Any) -> float:
    """σ of a published direction (``db.records.DirectionInfo``): the σ stored with it; for rows without one, its
    component's σ, or 1.0 without a component (vector units)."""
    if direction.sigma is not None or direction.component_id is None:
        return stored_sigma(direction)
    return stored_sigma(direction, queries.get_component(session, direction.component_id))


def direction_edit(session: Session, direction: Any, value: float) -> Edit:
    """The edit for a published direction (``DirectionInfo``) at ``value`` σ: what the Generate page applies."""
    start, stop = direction.layer_range
    return edit_for(direction.vector, direction_sigma(session, direction), value, start, stop)
