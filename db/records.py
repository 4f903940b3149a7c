"""The plain results the database hands to pages and commands: frozen dataclasses, no session, no SQL.

Pages and commands that name one of these as a type import it from here; the functions that fill them live in
``db.queries`` (rows of the tables) and ``db.review_queue`` (what the reviews add up to).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ReviewerInfo:
    id: int
    name: str
    created_at: datetime


@dataclass(frozen=True)
class CategoryInfo:
    id: int
    name: str
    position: int
    retired: bool


@dataclass(frozen=True)
class ModelInfo:
    id: int
    name: str
    path: str
    fingerprint: str
    architecture: dict[str, Any]
    added_at: datetime

    @property
    def w_dim(self) -> int:
        return int(self.architecture["w_dim"])

    @property
    def num_ws(self) -> int:
        return int(self.architecture["num_ws"])


@dataclass(frozen=True)
class ComponentSetInfo:
    id: int
    model_id: int
    method: str
    params: dict[str, Any]
    sample_count: int
    review_seeds: list[int]
    created_at: datetime
    component_count: int


@dataclass(frozen=True)
class ComponentInfo:
    """A component without its vector (pages list many; fetch the vector with ``db.queries.component_vector``)."""

    id: int
    set_id: int
    index: int
    w_dim: int
    sigma: float
    eigenvalue: float | None
    effect: float | None
    consistency: float | None
    locality: float | None
    locality_where: str | None
    colour_share: float | None
    layer_sensitivity: str | None
    suggested_category: str | None
    priority: float | None
    dead: bool
    score_details: str | None = None  # JSON: the priority's ingredients and reason (model.directions.scores)


@dataclass(frozen=True)
class ComponentScores:
    """Automatic scores for one component, by index; fields left as None are not changed."""

    index: int
    effect: float | None = None
    consistency: float | None = None
    locality: float | None = None
    locality_where: str | None = None
    colour_share: float | None = None
    layer_sensitivity: str | None = None
    suggested_category: str | None = None
    priority: float | None = None
    dead: bool | None = None
    score_details: str | None = None


@dataclass(frozen=True)
class ReviewRecord:
    id: int
    reviewer: str
    component_id: int
    decision: str
    label: str
    category: str | None
    consistency: int | None
    layer_range: tuple[int, int] | None
    strength_range: tuple[float, float] | None
    note: str
    created_at: datetime
    seconds_spent: float | None
    undoes_id: int | None
    # For a review imported in team mode: who made it originally and where it came from (revision 0005).
    provenance: dict[str, Any] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ComponentStatus:
    component_id: int
    index: int
    status: str  # one of db.rules.STATUSES
    approvals: int
    rejections: int
    unsure: int
    latest_label: str | None
    latest_category: str | None
    # Reviewers whose latest review is a vote (approve / reject / unsure), and what each decided.
    reviewers: tuple[str, ...]
    decisions: dict[str, str]
    conflicts: tuple[str, ...]
    mean_consistency: float | None


@dataclass(frozen=True)
class QueueItem:
    component_id: int
    index: int
    priority: float | None
    skipped: bool


@dataclass(frozen=True)
class ReviewerProgress:
    reviewer: str
    approved: int
    rejected: int
    unsure: int
    skipped: int
    remaining: int

    @property
    def reviewed(self) -> int:
        return self.approved + self.rejected + self.unsure


@dataclass(frozen=True)
class Progress:
    set_id: int
    total: int
    by_status: dict[str, int]
    by_reviewer: dict[str, ReviewerProgress]


@dataclass(frozen=True)
class Agreement:
    """Krippendorff's alpha (None when undefined: too few overlapping ratings or no variation at all)."""

    set_id: int
    decision_alpha: float | None
    category_alpha: float | None
    # Components rated by at least two reviewers, i.e. those alpha is computed from.
    decision_units: int
    category_units: int
    mean_consistency: dict[int, float]  # component id -> mean human consistency (1-5) of latest reviews


@dataclass(frozen=True)
class DirectionInfo:
    id: int
    model_id: int
    name: str
    category: str | None
    # float32, shape (w_dim,); not compared, since == on arrays is elementwise.
    vector: np.ndarray = field(compare=False, repr=False)
    layer_range: tuple[int, int]
    strength_range: tuple[float, float]
    # The σ its sliders count in, as stored; None means 1.0 (workflows.sliders.direction_sigma resolves it).
    sigma: float | None
    source: str  # "component" or "supervised"
    component_id: int | None
    published_by: str
    published_at: datetime
    unpublished_at: datetime | None
    unpublished_by: str | None
    # What the publish check measured (mean image change at the slider's ends, 0 … 1; None before revision 0004)
    # and the refusals someone overrode to publish it anyway (empty when it passed every check).
    measured_effect: float | None = None
    override_reasons: tuple[str, ...] = ()
    # For a direction imported in team mode: who published it originally, when, and from which file (revision 0005).
    provenance: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def active(self) -> bool:
        return self.unpublished_at is None


@dataclass(frozen=True)
class LookEdit:
    """One slider of a look. Looks saved since revision 0004 also keep the exact direction they were made with
    (vector, layers, σ), so re-publishing a direction under the same name never changes a saved look."""

    name: str
    value: float
    direction_id: int | None = None
    # float32 (w_dim,), or None for looks saved before the edit's direction was recorded.
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)
    layer_range: tuple[int, int] | None = None
    sigma: float | None = None

    @property
    def frozen(self) -> bool:
        """True when the look holds everything needed to render this edit as it was saved."""
        return self.vector is not None and self.layer_range is not None and self.sigma is not None


@dataclass(frozen=True)
class LookInfo:
    id: int
    model_id: int
    name: str
    seed: int
    psi: float
    class_index: int | None
    edits: tuple[LookEdit, ...]
    reviewer: str
    created_at: datetime
    # The weights the look was designed on (None for looks saved before revision 0004).
    model_fingerprint: str | None = None


@dataclass(frozen=True)
class QueueEntry:
    """One line of the review order as a person or a script reads it (``atelier queue``, the Review page)."""

    position: int
    component_id: int
    index: int
    priority: float | None
    suggested_category: str | None
    layers: str | None  # the layer group the component opens on (its best one by the scores)
    reason: str
    scored: bool
    skipped: bool
    dead: bool
