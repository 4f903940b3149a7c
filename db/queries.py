"""Every read and write the app and the export make, and the review rules, in one place.

Pages never touch tables directly: they open a session (``db.engine.write_session`` / ``read_session``), call
these functions and get plain dataclasses back. Bad input raises :class:`InvalidInput` before anything is
written, and since a write session is one transaction, nothing partial is ever left behind.

The rules that live here:
- a component's status comes from its reviews, each reviewer's *latest* review counting (:func:`component_statuses`);
- agreement across reviewers is Krippendorff's alpha (:func:`agreement`);
- a reviewer's queue is what they have not reviewed, highest priority first, skipped ones last (:func:`queue_for`).
"""
from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Select, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.agreement import nominal_alpha
from db.schema import (
    DECISIONS,
    MAX_SEED,
    WITHDRAWN,
    Category,
    Component,
    ComponentSet,
    Look,
    Model,
    PublishedDirection,
    Review,
    Reviewer,
    utcnow,
    vector_from_bytes,
    vector_to_bytes,
)
from core.errors import AtelierError
from core.settings import min_approvals_setting

STATUSES: tuple[str, ...] = ("approved", "rejected", "conflict", "unsure", "in_review", "unreviewed")
# Decisions that are an opinion about the component; skip and withdrawn are "no opinion (yet)".
VOTES: tuple[str, ...] = ("approve", "reject", "unsure")
DEFAULT_STRENGTH_RANGE: tuple[float, float] = (-3.0, 3.0)
SCORE_FIELDS: tuple[str, ...] = (
    "effect", "consistency", "locality", "locality_where", "colour_share", "layer_sensitivity",
    "suggested_category", "priority", "dead", "score_details",
)
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
MAX_DIRECTION_NAME_LENGTH = 200
# Right-to-left overrides and isolates can make "evil.exe" display as something else in file listings.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class InvalidInput(AtelierError):
    """Input the database refuses; the message names the problem and what to do instead."""


class NotFound(InvalidInput):
    """A reviewer, component, model, ... that does not exist."""


# --------------------------------------------------------------------------------------------------------------
# Plain results for pages


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
    """A component without its vector (pages list many; fetch the vector with :func:`component_vector`)."""

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
    status: str  # one of STATUSES
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
    # The σ its sliders count in, as stored; None means 1.0 (model.directions.direction_set.direction_sigma resolves
    # it).
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


# --------------------------------------------------------------------------------------------------------------
# Validation helpers: each names the field, the bad value and the allowed range.


def _int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    # bool is an int subclass; True as a rating is a bug in the caller, not a 1.
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInput(f"{name} must be a whole number, got {value!r}.")
    number = int(value)
    if (low is not None and number < low) or (high is not None and number > high):
        raise InvalidInput(f"{name} must be between {low} and {high}, got {number}.")
    return number


def _float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidInput(f"{name} must be a number, got {value!r}.")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInput(f"{name} must be a finite number, got {number}.")
    return number


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be text, got {type(value).__name__}.")
    return value


MAX_SCORE_DETAILS = 20_000  # characters; the scorer writes well under 2,000


def _score_details(value: Any) -> str:
    """Score details arrive as a dict (the scorer) or JSON text (an import); stored as JSON text of an object."""
    if isinstance(value, Mapping):
        value = json.dumps(value, sort_keys=True, allow_nan=False)
    text = _text("score_details", value)
    if len(text) > MAX_SCORE_DETAILS:
        raise InvalidInput(f"score_details is {len(text)} characters long; the limit is {MAX_SCORE_DETAILS}.")
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"score_details is not valid JSON ({exc}); re-run `atelier score` to rebuild it.") from None
    if not isinstance(parsed, dict):
        raise InvalidInput("score_details must be a JSON object; re-run `atelier score` to rebuild it.")
    return text


def _name(name: str, value: Any, max_length: int) -> str:
    text = _text(name, value).strip()
    if not text:
        raise InvalidInput(f"{name} is empty: type a name.")
    if len(text) > max_length:
        raise InvalidInput(f"{name} is {len(text)} characters long; keep it to {max_length}.")
    return text


def check_direction_name(name: Any, where: str = "direction name") -> str:
    """A direction name is a safetensors key and shows in file listings: no separators, no '..', no controls.

    The one rule for direction names: publishing refuses what the export (``model.directions.direction_set``) would
    refuse,
    and importing a file refuses the same names.
    """
    if not isinstance(name, str):
        raise InvalidInput(f"{where} must be text, got {type(name).__name__}")
    fix = "use letters, digits, spaces, '-' or '_'"
    if not name.strip():
        raise InvalidInput(f"{where} is empty: give every direction a name")
    if name != name.strip():
        raise InvalidInput(f"{where} {name!r} starts or ends with spaces; remove them")
    if len(name) > MAX_DIRECTION_NAME_LENGTH:
        raise InvalidInput(
            f"{where} {name[:40]!r}… is {len(name)} characters; keep it to {MAX_DIRECTION_NAME_LENGTH}"
        )
    if "/" in name or "\\" in name:
        raise InvalidInput(f"{where} {name!r} contains a path separator ('/' or '\\'); {fix}")
    if ".." in name:
        raise InvalidInput(f"{where} {name!r} contains '..'; {fix}")
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in _BIDI_CONTROLS for ch in name):
        raise InvalidInput(f"{where} {name!r} contains control characters; {fix}")
    return name


def _layer_range(value: Any, num_ws: int) -> tuple[int, int]:
    try:
        start, end = value
    except (TypeError, ValueError):
        raise InvalidInput(f"layer range must be a pair (start, end), got {value!r}.") from None
    start = _int("layer range start", start)
    end = _int("layer range end", end)
    if not 0 <= start < end <= num_ws:
        raise InvalidInput(
            f"layer range ({start}, {end}) is outside this model's {num_ws} ws: pick start < end within "
            f"0..{num_ws} (end is exclusive, so ({0}, {num_ws}) means every layer)."
        )
    return start, end


def _strength_range(value: Any) -> tuple[float, float]:
    try:
        low, high = value
    except (TypeError, ValueError):
        raise InvalidInput(f"strength range must be a pair (min, max), got {value!r}.") from None
    low = _float("strength range min", low)
    high = _float("strength range max", high)
    if high < low:
        raise InvalidInput(f"strength range ({low}, {high}) has max below min: swap them.")
    return low, high


def _json(name: str, value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{name} must be plain JSON (numbers, text, lists, dicts): {exc}.") from None
    return value


def _seeds(value: Iterable[Any]) -> list[int]:
    return [_int("review seed", seed, 0, MAX_SEED) for seed in value]


def _vector(name: str, value: Any, w_dim: int) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (w_dim,):
        raise InvalidInput(f"{name} has shape {array.shape}; this model needs ({w_dim},).")
    if not np.all(np.isfinite(array)):
        raise InvalidInput(f"{name} contains NaN or infinite values; recompute it.")
    return array


def _k(min_approvals: int | None) -> int:
    return min_approvals_setting() if min_approvals is None else _int("min_approvals", min_approvals, 1)


def _changed(session: Session, statement: Any) -> bool:
    """Run a conditional UPDATE or DELETE (``WHERE`` the state the caller read) and say whether it hit a row.

    Every state change goes through here rather than "read the row, set attributes, flush": under PostgreSQL's
    READ COMMITTED two transactions can both read the old state, and the second one's plain ``UPDATE … WHERE
    id = ?`` waits for the first and then overwrites it, so both people are told "done". A condition on the old
    state is re-checked after that wait, matches nothing, and the loser gets a message instead.
    """
    result = session.execute(statement.execution_options(synchronize_session=False))
    return bool(result.rowcount)


# --------------------------------------------------------------------------------------------------------------
# Reviewers


def _reviewer_info(row: Reviewer) -> ReviewerInfo:
    return ReviewerInfo(id=row.id, name=row.name, created_at=row.created_at)


def _reviewer(session: Session, name: str) -> Reviewer:
    row = session.scalar(select(Reviewer).where(Reviewer.name == _text("reviewer", name).strip()))
    if row is None:
        raise NotFound(f"Unknown reviewer {name!r}: add them to the team first (add_reviewer / the Team page).")
    return row


def add_reviewer(session: Session, name: str) -> ReviewerInfo:
    clean = _name("reviewer name", name, 100)
    if session.scalar(select(Reviewer.id).where(Reviewer.name == clean)) is not None:
        raise InvalidInput(f"Reviewer {clean!r} already exists: pick them from the list, or choose another name.")
    row = Reviewer(name=clean, created_at=utcnow())
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        # Someone added the same name between our check and our insert.
        raise InvalidInput(f"Reviewer {clean!r} was just added by someone else: pick them from the list.") from None
    return _reviewer_info(row)


def ensure_reviewer(session: Session, name: str) -> ReviewerInfo:
    """The reviewer with this name, created if new (for "type your name" sign-in)."""
    clean = _name("reviewer name", name, 100)
    existing = session.scalar(select(Reviewer).where(Reviewer.name == clean))
    if existing is not None:
        return _reviewer_info(existing)
    try:
        # A savepoint, so losing a race for the same name does not abort the caller's transaction.
        with session.begin_nested():
            row = Reviewer(name=clean, created_at=utcnow())
            session.add(row)
        return _reviewer_info(row)
    except IntegrityError:
        return _reviewer_info(session.scalars(select(Reviewer).where(Reviewer.name == clean)).one())


def list_reviewers(session: Session) -> list[ReviewerInfo]:
    return [_reviewer_info(row) for row in session.scalars(select(Reviewer).order_by(Reviewer.name))]


# --------------------------------------------------------------------------------------------------------------
# Categories (the editable taxonomy)


def _category_info(row: Category) -> CategoryInfo:
    return CategoryInfo(id=row.id, name=row.name, position=row.position, retired=row.retired_at is not None)


def _category(session: Session, name: str, *, allow_retired: bool = False) -> Category:
    row = session.scalar(select(Category).where(Category.name == _text("category", name).strip()))
    if row is None or (row.retired_at is not None and not allow_retired):
        known = ", ".join(c.name for c in list_categories(session))
        why = "is retired" if row is not None else "is not in the taxonomy"
        raise NotFound(f"Category {name!r} {why}: use one of {known}, or add it on the Taxonomy page.")
    return row


def list_categories(session: Session, *, include_retired: bool = False) -> list[CategoryInfo]:
    query = select(Category).order_by(Category.position, Category.name)
    if not include_retired:
        query = query.where(Category.retired_at.is_(None))
    return [_category_info(row) for row in session.scalars(query)]


def add_category(session: Session, name: str) -> CategoryInfo:
    """Add a category; adding a retired one brings it back."""
    clean = _name("category name", name, 60)
    row = session.scalar(select(Category).where(Category.name == clean))
    if row is not None:
        # Conditional, so two people bringing the same category back are not both told it was retired.
        if not _changed(session, update(Category).where(Category.id == row.id, Category.retired_at.is_not(None))
                        .values(retired_at=None)):
            raise InvalidInput(f"Category {clean!r} already exists.")
        session.refresh(row)
        return _category_info(row)
    last = session.scalar(select(func.max(Category.position))) or 0
    row = Category(name=clean, position=last + 1)
    session.add(row)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise InvalidInput(f"Category {clean!r} was just added by someone else.") from None
    return _category_info(row)


def rename_category(session: Session, old: str, new: str) -> CategoryInfo:
    """Rename in place: reviews point at the category, so past reviews show the new name."""
    row = _category(session, old, allow_retired=True)
    clean = _name("category name", new, 60)
    if clean != row.name and session.scalar(select(Category.id).where(Category.name == clean)) is not None:
        raise InvalidInput(f"Category {clean!r} already exists: retire one of the two instead of renaming.")
    statement = update(Category).where(Category.id == row.id, Category.name == row.name).values(name=clean)
    try:
        with session.begin_nested():
            renamed = _changed(session, statement)
    except IntegrityError:
        raise InvalidInput(f"Category {clean!r} was just added by someone else: choose another name.") from None
    if not renamed:
        raise InvalidInput(f"Category {row.name!r} was just renamed by someone else: reload the page.")
    session.refresh(row)
    return _category_info(row)


def retire_category(session: Session, name: str) -> CategoryInfo:
    """Hide a category from new reviews; old reviews keep it."""
    row = _category(session, name)
    if not _changed(session, update(Category).where(Category.id == row.id, Category.retired_at.is_(None))
                    .values(retired_at=utcnow())):
        raise InvalidInput(f"Category {row.name!r} was just retired by someone else.")
    session.refresh(row)
    return _category_info(row)


# --------------------------------------------------------------------------------------------------------------
# Models


def _model_info(row: Model) -> ModelInfo:
    return ModelInfo(
        id=row.id, name=row.name, path=row.path, fingerprint=row.fingerprint,
        architecture=dict(row.architecture), added_at=row.added_at,
    )


def _model(session: Session, model_id: int) -> Model:
    row = session.get(Model, _int("model id", model_id))
    if row is None:
        raise NotFound(f"Unknown model id {model_id}: register the model first (register_model).")
    return row


def register_model(
    session: Session, name: str, path: str, fingerprint: str, architecture: Mapping[str, Any]
) -> ModelInfo:
    """Register a generator file; registering the same weights again returns the existing entry."""
    clean = _name("model name", name, 200)
    fingerprint = _text("fingerprint", fingerprint).strip().lower()
    if not _FINGERPRINT.match(fingerprint):
        raise InvalidInput(
            "fingerprint must be the sha256 of the weights as 64 hex digits (hashlib.sha256(...).hexdigest())."
        )
    arch = dict(_json("architecture", dict(architecture)))
    for key in ("w_dim", "num_ws"):
        if key not in arch:
            raise InvalidInput(
                f"architecture lacks {key!r}; pass the generator's z_dim, w_dim, num_ws, img_resolution, c_dim."
            )
        arch[key] = _int(f"architecture {key}", arch[key], 1)
    existing = session.scalar(select(Model).where(Model.fingerprint == fingerprint))
    if existing is not None:
        # Same weights: the file may simply have moved, and the path is where to load it from now. Conditional on
        # the path read, so of two people moving it at once the second is told, not silently overruled.
        if existing.path != str(path) and not _changed(
            session, update(Model).where(Model.id == existing.id, Model.path == existing.path).values(path=str(path))
        ):
            session.refresh(existing)
            raise InvalidInput(f"Model {existing.name!r} was just registered from {existing.path} by someone else: "
                               "reload the Models page.")
        session.refresh(existing)
        return _model_info(existing)
    if session.scalar(select(Model.id).where(Model.name == clean)) is not None:
        raise InvalidInput(f"A different model is already registered as {clean!r}: choose another name.")
    row = Model(name=clean, path=str(path), fingerprint=fingerprint, architecture=arch, added_at=utcnow())
    session.add(row)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise InvalidInput(f"Model {clean!r} (or these weights) was just registered by someone else: reload the "
                           "Models page.") from None
    return _model_info(row)


def get_model(session: Session, model_id: int) -> ModelInfo:
    return _model_info(_model(session, model_id))


def model_by_fingerprint(session: Session, fingerprint: str) -> ModelInfo | None:
    row = session.scalar(select(Model).where(Model.fingerprint == fingerprint.strip().lower()))
    return None if row is None else _model_info(row)


def list_models(session: Session) -> list[ModelInfo]:
    return [_model_info(row) for row in session.scalars(select(Model).order_by(Model.added_at, Model.id))]


# --------------------------------------------------------------------------------------------------------------
# Component sets and components


def _component_info(row: Component) -> ComponentInfo:
    return ComponentInfo(
        id=row.id, set_id=row.set_id, index=row.index, w_dim=row.w_dim, sigma=row.sigma, eigenvalue=row.eigenvalue,
        effect=row.effect, consistency=row.consistency, locality=row.locality, locality_where=row.locality_where,
        colour_share=row.colour_share, layer_sensitivity=row.layer_sensitivity,
        suggested_category=row.suggested_category, priority=row.priority, dead=bool(row.dead),
        score_details=row.score_details,
    )


def _set(session: Session, set_id: int) -> ComponentSet:
    row = session.get(ComponentSet, _int("component set id", set_id))
    if row is None:
        raise NotFound(f"Unknown component set {set_id}: run discovery first, or pick a set from the list.")
    return row


def _set_info(session: Session, row: ComponentSet) -> ComponentSetInfo:
    count = session.scalar(select(func.count()).select_from(Component).where(Component.set_id == row.id)) or 0
    return ComponentSetInfo(
        id=row.id, model_id=row.model_id, method=row.method, params=dict(row.params),
        sample_count=row.sample_count, review_seeds=list(row.review_seeds), created_at=row.created_at,
        component_count=int(count),
    )


def add_component_set(
    session: Session,
    model_id: int,
    method: str,
    params: Mapping[str, Any],
    sample_count: int,
    vectors: np.ndarray,
    sigmas: Sequence[float] | np.ndarray,
    eigenvalues: Sequence[float] | np.ndarray | None = None,
    review_seeds: Iterable[int] = (),
) -> ComponentSetInfo:
    """Store a discovery result: one set and its n components (index 0..n-1), in one bulk insert."""
    model = _model(session, model_id)
    w_dim = int(model.architecture["w_dim"])
    method = _name("method", method, 40)
    params = dict(_json("params", dict(params)))
    sample_count = _int("sample count", sample_count, 0)
    matrix = np.asarray(vectors, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != w_dim or matrix.shape[0] == 0:
        raise InvalidInput(f"vectors have shape {matrix.shape}; this model needs (n, {w_dim}) with n >= 1.")
    if not np.all(np.isfinite(matrix)):
        raise InvalidInput("vectors contain NaN or infinite values; rerun discovery.")
    n = matrix.shape[0]
    sigma_values = [_float("sigma", s) for s in np.asarray(sigmas).tolist()]
    if len(sigma_values) != n or any(s < 0 for s in sigma_values):
        raise InvalidInput(f"sigmas must be {n} numbers >= 0, one per vector; got {len(sigma_values)}.")
    eigen_values: list[float | None] = [None] * n
    if eigenvalues is not None:
        eigen_values = [_float("eigenvalue", e) for e in np.asarray(eigenvalues).tolist()]
        if len(eigen_values) != n:
            raise InvalidInput(f"eigenvalues must be {n} numbers, one per vector; got {len(eigen_values)}.")
    row = ComponentSet(
        model_id=model.id, method=method, params=params, sample_count=sample_count,
        review_seeds=_seeds(review_seeds), created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    session.execute(
        insert(Component),
        [
            {
                "set_id": row.id, "index": i, "w_dim": w_dim, "vector": vector_to_bytes(matrix[i]),
                "sigma": sigma_values[i], "eigenvalue": eigen_values[i], "dead": False,
            }
            for i in range(n)
        ],
    )
    return _set_info(session, row)


def get_component_set(session: Session, set_id: int) -> ComponentSetInfo:
    return _set_info(session, _set(session, set_id))


def list_component_sets(session: Session, model_id: int | None = None) -> list[ComponentSetInfo]:
    query = select(ComponentSet).order_by(ComponentSet.created_at.desc(), ComponentSet.id.desc())
    if model_id is not None:
        query = query.where(ComponentSet.model_id == model_id)
    return [_set_info(session, row) for row in session.scalars(query)]


def set_review_seeds(
    session: Session, set_id: int, seeds: Iterable[int], *, expected: Sequence[int] | None = None
) -> ComponentSetInfo:
    """Replace the seeds every reviewer sees for this set ("resample on request").

    ``expected`` is the seeds the caller saw: when given and the set no longer has them (a teammate resampled in
    the meantime), nothing changes and the caller is told. The row is locked while it is compared, so two
    resamples at once cannot both succeed (PostgreSQL; SQLite's write sessions are serial anyway).
    """
    _set(session, set_id)
    clean = _seeds(seeds)
    row = session.execute(
        select(ComponentSet).where(ComponentSet.id == set_id).with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()
    if expected is not None and list(row.review_seeds) != [int(x) for x in expected]:
        raise InvalidInput("Someone else changed this set's review seeds a moment ago: reload the page to see them.")
    row.review_seeds = clean
    session.flush()
    return _set_info(session, row)


def list_components(session: Session, set_id: int) -> list[ComponentInfo]:
    _set(session, set_id)
    query = select(Component).where(Component.set_id == set_id).order_by(Component.index)
    return [_component_info(row) for row in session.scalars(query)]


def _component(session: Session, component_id: int) -> Component:
    row = session.get(Component, _int("component id", component_id))
    if row is None:
        raise NotFound(f"Unknown component {component_id}: reload the page, the set may have been replaced.")
    return row


def get_component(session: Session, component_id: int) -> ComponentInfo:
    return _component_info(_component(session, component_id))


def component_vector(session: Session, component_id: int) -> np.ndarray:
    return _component(session, component_id).vector_array()


def component_vectors(session: Session, set_id: int) -> np.ndarray:
    """All vectors of a set as an (n, w_dim) float32 array, row i = component index i."""
    rows = session.execute(
        select(Component.vector, Component.w_dim).where(Component.set_id == set_id).order_by(Component.index)
    ).all()
    if not rows:
        _set(session, set_id)
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([vector_from_bytes(blob, w_dim) for blob, w_dim in rows])


def update_scores(
    session: Session, set_id: int, rows: Iterable[ComponentScores | Mapping[str, Any]]
) -> int:
    """Write automatic scores by component index; returns how many components were updated."""
    pairs = session.execute(select(Component.index, Component.id).where(Component.set_id == set_id))
    ids: dict[int, int] = {index: cid for index, cid in pairs}
    if not ids:
        _set(session, set_id)
    updates: list[dict[str, Any]] = []
    for item in rows:
        values = (
            {f.name: getattr(item, f.name) for f in fields(ComponentScores)}
            if isinstance(item, ComponentScores)
            else dict(item)
        )
        index = _int("component index", values.pop("index", None))
        unknown = set(values) - set(SCORE_FIELDS)
        if unknown:
            raise InvalidInput(f"Unknown score field(s) {sorted(unknown)}; known: {', '.join(SCORE_FIELDS)}.")
        if index not in ids:
            raise NotFound(f"Component index {index} is not in set {set_id} (it has 0..{len(ids) - 1}).")
        clean: dict[str, Any] = {}
        for key, value in values.items():
            if value is None:
                continue
            if key in ("locality_where", "layer_sensitivity", "suggested_category"):
                clean[key] = _text(key, value)
            elif key == "score_details":
                clean[key] = _score_details(value)
            elif key == "dead":
                clean[key] = bool(value)
            else:
                clean[key] = _float(key, value)
        if clean:
            updates.append({"id": ids[index], **clean})
    # One UPDATE per distinct set of columns; the ORM's bulk-by-primary-key form needs uniform dicts.
    by_shape: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for values in updates:
        by_shape[tuple(sorted(values))].append(values)
    for batch in by_shape.values():
        session.execute(update(Component), batch)
    return len(updates)


# --------------------------------------------------------------------------------------------------------------
# Reviews (append-only)


def _record(row: Review, reviewer: str, category: str | None) -> ReviewRecord:
    layers = None if row.layer_start is None else (row.layer_start, row.layer_end)
    strengths = None if row.strength_min is None else (row.strength_min, row.strength_max)
    return ReviewRecord(
        id=row.id, reviewer=reviewer, component_id=row.component_id, decision=row.decision, label=row.label,
        category=category, consistency=row.consistency, layer_range=layers,  # type: ignore[arg-type]
        strength_range=strengths, note=row.note, created_at=row.created_at,  # type: ignore[arg-type]
        seconds_spent=row.seconds_spent, undoes_id=row.undoes_id, provenance=row.provenance,
    )


def _review_query() -> Select[tuple[Review, str, str | None]]:
    return (
        select(Review, Reviewer.name, Category.name)
        .join(Reviewer, Reviewer.id == Review.reviewer_id)
        .outerjoin(Category, Category.id == Review.category_id)
    )


def record_review(
    session: Session,
    reviewer: str,
    component_id: int,
    decision: str,
    *,
    label: str = "",
    category: str | None = None,
    consistency: int | None = None,
    layer_range: tuple[int, int] | None = None,
    strength_range: tuple[float, float] | None = None,
    note: str = "",
    seconds_spent: float | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> ReviewRecord:
    """Append one review. Editing a review is calling this again: the newest row per reviewer counts.

    ``provenance`` is for imports in team mode: who made the review originally (the row is the importer's).
    """
    person = _reviewer(session, reviewer)
    # One query for existence and the model's layer count; the component row itself (with its vector) is not needed.
    found = session.execute(
        select(Component.id, Model.architecture)
        .join(ComponentSet, ComponentSet.id == Component.set_id)
        .join(Model, Model.id == ComponentSet.model_id)
        .where(Component.id == _int("component id", component_id))
    ).first()
    if found is None:
        raise NotFound(f"Unknown component {component_id}: reload the page, the set may have been replaced.")
    component_id, architecture = found
    if decision not in DECISIONS:
        raise InvalidInput(f"Unknown decision {decision!r}: use one of {', '.join(DECISIONS)}.")
    label = _text("label", label)
    if decision == "approve" and not label.strip():
        raise InvalidInput("An approval needs a label: say in a few words what the direction changes.")
    category_row = None if category is None or category == "" else _category(session, category)
    rating = None if consistency is None else _int("consistency rating", consistency, 1, 5)
    layers = None if layer_range is None else _layer_range(layer_range, int(architecture["num_ws"]))
    strengths = None if strength_range is None else _strength_range(strength_range)
    seconds = None if seconds_spent is None else _float("seconds spent", seconds_spent)
    if seconds is not None and seconds < 0:
        raise InvalidInput(f"seconds spent cannot be negative, got {seconds}.")
    row = Review(
        reviewer_id=person.id, component_id=component_id, decision=decision, label=label,
        category_id=None if category_row is None else category_row.id, consistency=rating,
        layer_start=None if layers is None else layers[0], layer_end=None if layers is None else layers[1],
        strength_min=None if strengths is None else strengths[0],
        strength_max=None if strengths is None else strengths[1],
        note=_text("note", note), created_at=utcnow(), seconds_spent=seconds,
        provenance=None if provenance is None else dict(_json("provenance", dict(provenance))),
    )
    session.add(row)
    session.flush()
    return _record(row, person.name, None if category_row is None else category_row.name)


def _effective_stack(rows: Sequence[Review]) -> list[Review]:
    """Replay one reviewer's rows on one component: reviews push, undo rows pop. The top is what counts."""
    stack: list[Review] = []
    for row in rows:
        if row.undoes_id is None:
            stack.append(row)
        elif stack:
            stack.pop()
    return stack


def undo_last_review(session: Session, reviewer: str, component_id: int) -> ReviewRecord:
    """Take back this reviewer's last review of the component, by appending a row (history is kept).

    The new row restores the review before it, or is a ``withdrawn`` marker when there was none. Undo again
    and it goes one step further back, like an editor's undo.
    """
    person = _reviewer(session, reviewer)
    component = _component(session, component_id)
    # Two undos by the same person at once (two tabs) would otherwise both take back the same review on
    # PostgreSQL; locking their reviewer row makes the second wait and then read the first one's row.
    session.execute(select(Reviewer.id).where(Reviewer.id == person.id).with_for_update())
    rows = session.scalars(
        select(Review)
        .where(Review.reviewer_id == person.id, Review.component_id == component.id)
        .order_by(Review.id)
    ).all()
    stack = _effective_stack(rows)
    if not stack:
        raise InvalidInput(f"{person.name} has no review of component {component.id} to undo.")
    undone = stack.pop()
    restored = stack[-1] if stack else None
    row = Review(
        reviewer_id=person.id, component_id=component.id, undoes_id=undone.id, created_at=utcnow(),
        decision=WITHDRAWN if restored is None else restored.decision,
        label="" if restored is None else restored.label,
        category_id=None if restored is None else restored.category_id,
        consistency=None if restored is None else restored.consistency,
        layer_start=None if restored is None else restored.layer_start,
        layer_end=None if restored is None else restored.layer_end,
        strength_min=None if restored is None else restored.strength_min,
        strength_max=None if restored is None else restored.strength_max,
        note="" if restored is None else restored.note,
        seconds_spent=None,
    )
    session.add(row)
    session.flush()
    category = None if row.category_id is None else session.get(Category, row.category_id)
    return _record(row, person.name, None if category is None else category.name)


def review_history(session: Session, component_id: int) -> list[ReviewRecord]:
    """Every review of a component by everyone, oldest first: the audit trail."""
    _component(session, component_id)
    query = _review_query().where(Review.component_id == component_id).order_by(Review.id)
    return [_record(row, name, category) for row, name, category in session.execute(query)]


def latest_review(session: Session, reviewer: str, component_id: int) -> ReviewRecord | None:
    """This reviewer's current review of the component (to prefill the form), None if none or withdrawn."""
    person = _reviewer(session, reviewer)
    query = (
        _review_query()
        .where(Review.reviewer_id == person.id, Review.component_id == component_id)
        .order_by(Review.id.desc())
        .limit(1)
    )
    found = session.execute(query).first()
    if found is None or found[0].decision == WITHDRAWN:
        return None
    return _record(*found)


def latest_votes(session: Session, set_id: int) -> dict[int, list[ReviewRecord]]:
    """Component id -> each reviewer's latest review of it when that review is a vote, oldest first.

    One query for the whole set. A reviewer whose latest review is a skip or withdrawn has no vote (an earlier
    vote of theirs does not count); components without votes are left out.
    """
    _set(session, set_id)
    votes: dict[int, list[ReviewRecord]] = defaultdict(list)
    for record in _latest_per_reviewer(session, set_id):
        if record.decision in VOTES:
            votes[record.component_id].append(record)
    return dict(votes)


def _latest_per_reviewer(session: Session, set_id: int) -> list[ReviewRecord]:
    """Each reviewer's latest review of each component in the set (one query, answered by an index)."""
    latest_ids = (
        select(func.max(Review.id).label("id"))
        .join(Component, Component.id == Review.component_id)
        .where(Component.set_id == set_id)
        .group_by(Review.component_id, Review.reviewer_id)
        .subquery()
    )
    query = _review_query().join(latest_ids, latest_ids.c.id == Review.id).order_by(Review.id)
    return [_record(row, name, category) for row, name, category in session.execute(query)]


# --------------------------------------------------------------------------------------------------------------
# Derived status, queue, progress, agreement


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
    k = _k(min_approvals)
    components = list_components(session, set_id)
    latest: dict[int, list[ReviewRecord]] = defaultdict(list)
    for record in _latest_per_reviewer(session, set_id):
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
    person = _reviewer(session, reviewer)
    mine = {r.component_id: r for r in _latest_per_reviewer(session, set_id) if r.reviewer == person.name}
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
        queue = queue[: _int("limit", limit, 0)]
    return queue


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
        ids = ids[: _int("top", top, 0)]
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
    for record in _latest_per_reviewer(session, set_id):
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
    _set(session, set_id)
    decisions: dict[int, list[str]] = defaultdict(list)
    categories: dict[int, list[str]] = defaultdict(list)
    ratings: dict[int, list[int]] = defaultdict(list)
    for record in _latest_per_reviewer(session, set_id):
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


# --------------------------------------------------------------------------------------------------------------
# Published directions


def _direction_info(session: Session, row: PublishedDirection) -> DirectionInfo:
    names: dict[int, str] = {
        rid: name
        for rid, name in session.execute(
            select(Reviewer.id, Reviewer.name).where(Reviewer.id.in_([row.published_by, row.unpublished_by or -1]))
        )
    }
    category = None if row.category_id is None else session.get(Category, row.category_id)
    return DirectionInfo(
        id=row.id, model_id=row.model_id, name=row.name, category=None if category is None else category.name,
        vector=row.vector_array(), layer_range=(row.layer_start, row.layer_end),
        strength_range=(row.strength_min, row.strength_max), sigma=row.sigma, source=row.source,
        component_id=row.component_id,
        published_by=names[row.published_by], published_at=row.published_at, unpublished_at=row.unpublished_at,
        unpublished_by=None if row.unpublished_by is None else names[row.unpublished_by],
        measured_effect=row.measured_effect, override_reasons=tuple(row.override_reasons or ()),
        provenance=row.provenance,
    )


def publish_direction(
    session: Session,
    model_id: int,
    name: str,
    reviewer: str,
    *,
    component_id: int | None = None,
    vector: np.ndarray | Sequence[float] | None = None,
    category: str | None = None,
    layer_range: tuple[int, int] | None = None,
    strength_range: tuple[float, float] | None = None,
    sigma: float | None = None,
    published_at: datetime | None = None,
    provenance: Mapping[str, Any] | None = None,
    measured_effect: float | None = None,
    override_reasons: Sequence[str] = (),
) -> DirectionInfo:
    """Make a direction available to the generate page and the export.

    From a component (its vector unless one is given; source "component") or from a vector alone (source
    "supervised"). Layer range defaults to every layer, strength range to ``DEFAULT_STRENGTH_RANGE``. ``sigma``
    (the σ its sliders count in) defaults to the component's; a supervised direction without one counts in
    vector units (σ 1). ``published_at`` defaults to now; an import passes the original time.
    ``measured_effect`` and ``override_reasons`` record what the publish check (``model.directions.publishing``)
    measured and
    which of its refusals were overridden; this function does not render, so it checks only what the database can.
    The name must be one the export accepts (:func:`check_direction_name`); surrounding spaces are trimmed.
    """
    model = _model(session, model_id)
    person = _reviewer(session, reviewer)
    try:
        clean = check_direction_name(_text("direction name", name).strip())
    except InvalidInput as exc:
        raise InvalidInput(f"Cannot publish: {str(exc).rstrip('.')}.") from None
    if sigma is not None:
        sigma = _float("sigma", sigma)
        if sigma < 0:
            raise InvalidInput(f"sigma must be 0 or more (it scales the sliders), got {sigma}.")
    if published_at is not None and (not isinstance(published_at, datetime) or published_at.tzinfo is None):
        raise InvalidInput(
            f"published_at must be a datetime with a time zone (e.g. datetime.now(timezone.utc)), got {published_at!r}."
        )
    w_dim, num_ws = int(model.architecture["w_dim"]), int(model.architecture["num_ws"])
    source = "supervised"
    if component_id is not None:
        component = _component(session, component_id)
        owner = session.scalar(select(ComponentSet.model_id).where(ComponentSet.id == component.set_id))
        if owner != model.id:
            raise InvalidInput(f"Component {component.id} belongs to another model (id {owner}), not {model.name!r}.")
        source = "component"
        if vector is None:
            vector = component.vector_array()
        if sigma is None:
            sigma = component.sigma
    if vector is None:
        raise InvalidInput("Give a component to publish, or the direction's vector (for supervised directions).")
    values = _vector("direction vector", vector, w_dim)
    if not np.any(values):
        raise InvalidInput("The direction vector is all zeros; it would change nothing.")
    category_row = None if not category else _category(session, category)
    layers = (0, num_ws) if layer_range is None else _layer_range(layer_range, num_ws)
    strengths = DEFAULT_STRENGTH_RANGE if strength_range is None else _strength_range(strength_range)
    taken = session.scalar(
        select(PublishedDirection).where(
            PublishedDirection.model_id == model.id, PublishedDirection.name == clean,
            PublishedDirection.unpublished_at.is_(None),
        )
    )
    if taken is not None:
        raise InvalidInput(
            f"A direction named {clean!r} is already published for this model: unpublish it first, "
            "or choose another name."
        )
    row = PublishedDirection(
        model_id=model.id, name=clean, category_id=None if category_row is None else category_row.id,
        w_dim=w_dim, vector=vector_to_bytes(values), layer_start=layers[0], layer_end=layers[1],
        strength_min=strengths[0], strength_max=strengths[1], sigma=sigma, source=source,
        component_id=component_id, published_by=person.id,
        published_at=utcnow() if published_at is None else published_at,
        provenance=None if provenance is None else dict(_json("provenance", dict(provenance))),
        measured_effect=None if measured_effect is None else _float("measured effect", measured_effect),
        override_reasons=[_text("override reason", r) for r in override_reasons] or None,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        # The partial unique index caught a teammate publishing the same name at the same moment.
        raise InvalidInput(
            f"A direction named {clean!r} was just published by someone else: choose another name."
        ) from None
    return _direction_info(session, row)


def unpublish_direction(session: Session, direction_id: int, reviewer: str) -> DirectionInfo:
    """Withdraw a direction from use; the row stays, stamped with who and when."""
    person = _reviewer(session, reviewer)
    row = session.get(PublishedDirection, _int("direction id", direction_id))
    if row is None:
        raise NotFound(f"Unknown published direction {direction_id}: reload the page.")
    if row.unpublished_at is None:
        statement = (
            update(PublishedDirection)
            .where(PublishedDirection.id == row.id, PublishedDirection.unpublished_at.is_(None))
            .values(unpublished_at=utcnow(), unpublished_by=person.id)
        )
        if _changed(session, statement):
            session.refresh(row)
            return _direction_info(session, row)
        session.refresh(row)
    by = session.get(Reviewer, row.unpublished_by) if row.unpublished_by is not None else None
    raise InvalidInput(
        f"Direction {row.name!r} is already unpublished" + (f" (by {by.name})." if by is not None else ".")
    )


def get_direction(session: Session, direction_id: int) -> DirectionInfo:
    row = session.get(PublishedDirection, _int("direction id", direction_id))
    if row is None:
        raise NotFound(f"Unknown published direction {direction_id}: reload the page.")
    return _direction_info(session, row)


def active_directions(session: Session, model_id: int) -> list[DirectionInfo]:
    """The published directions in use for a model, by name."""
    query = (
        select(PublishedDirection)
        .where(PublishedDirection.model_id == model_id, PublishedDirection.unpublished_at.is_(None))
        .order_by(PublishedDirection.name)
    )
    return [_direction_info(session, row) for row in session.scalars(query)]


def direction_history(session: Session, model_id: int) -> list[DirectionInfo]:
    """Every publication for a model, active or not, oldest first."""
    query = select(PublishedDirection).where(PublishedDirection.model_id == model_id).order_by(PublishedDirection.id)
    return [_direction_info(session, row) for row in session.scalars(query)]


# --------------------------------------------------------------------------------------------------------------
# Looks


def _look_edit(stored: Mapping[str, Any]) -> LookEdit:
    vector = stored.get("vector")
    layers = stored.get("layer_range")
    sigma = stored.get("sigma")
    return LookEdit(
        name=stored["name"], value=float(stored["value"]), direction_id=stored.get("direction_id"),
        vector=None if vector is None else np.asarray(vector, dtype=np.float32),
        layer_range=None if layers is None else (int(layers[0]), int(layers[1])),
        sigma=None if sigma is None else float(sigma),
    )


def _look_info(row: Look, reviewer: str) -> LookInfo:
    return LookInfo(
        id=row.id, model_id=row.model_id, name=row.name, seed=row.seed, psi=row.psi, class_index=row.class_index,
        edits=tuple(_look_edit(e) for e in row.edits), reviewer=reviewer, created_at=row.created_at,
        model_fingerprint=row.model_fingerprint,
    )


def _edit(session: Session, model: Model, item: LookEdit | Mapping[str, Any]) -> dict[str, Any]:
    values = (
        {"name": item.name, "value": item.value, "direction_id": item.direction_id, "vector": item.vector,
         "layer_range": item.layer_range, "sigma": item.sigma}
        if isinstance(item, LookEdit)
        else dict(item)
    )
    model_id = model.id
    direction_id = values.get("direction_id")
    name = values.get("name")
    if direction_id is not None:
        direction = session.get(PublishedDirection, _int("direction id", direction_id))
        if direction is None or direction.model_id != model_id:
            raise NotFound(f"Edit refers to direction {direction_id}, which is not published for this model.")
        # The name is kept too, so a look stays readable after its direction is unpublished.
        name = name or direction.name
    if not name:
        raise InvalidInput("Each edit needs a direction name or a direction_id.")
    stored: dict[str, Any] = {
        "direction_id": direction_id,
        "name": _text("direction name", name),
        "value": _float(f"value of {name}", values.get("value")),
    }
    return stored | _frozen_parts(name, values, model)


def _frozen_parts(name: str, values: Mapping[str, Any], model: Model) -> dict[str, Any]:
    """The exact direction an edit was made with, checked, as JSON; empty when the caller gave none of it."""
    vector, layers, sigma = values.get("vector"), values.get("layer_range"), values.get("sigma")
    if vector is None and layers is None and sigma is None:
        return {}
    if vector is None or layers is None or sigma is None:
        raise InvalidInput(f"Edit {name!r} gives only part of its direction: pass its vector, layer range and σ "
                           "together (or none of them).")
    w_dim, num_ws = int(model.architecture["w_dim"]), int(model.architecture["num_ws"])
    exact = np.asarray(_vector(f"vector of {name}", vector, w_dim), dtype=np.float32)
    # float32 → Python float is exact, and JSON keeps 17 significant digits, so the vector reads back bit for bit.
    return {"vector": [float(v) for v in exact], "layer_range": list(_layer_range(layers, num_ws)),
            "sigma": _float(f"σ of {name}", sigma)}


def save_look(
    session: Session,
    model_id: int,
    reviewer: str,
    name: str,
    seed: int,
    psi: float,
    edits: Iterable[LookEdit | Mapping[str, Any]],
    class_index: int | None = None,
) -> LookInfo:
    model = _model(session, model_id)
    person = _reviewer(session, reviewer)
    clean = _name("look name", name, 200)
    seed = _int("seed", seed, 0, MAX_SEED)
    psi = _float("psi", psi)
    c_dim = int(model.architecture.get("c_dim", 0) or 0)
    if class_index is not None:
        if c_dim == 0:
            raise InvalidInput(f"Model {model.name!r} is unconditional: leave the class empty.")
        class_index = _int("class", class_index, 0, c_dim - 1)
    row = Look(
        model_id=model.id, name=clean, seed=seed, psi=psi, class_index=class_index,
        edits=[_edit(session, model, e) for e in edits], reviewer_id=person.id, created_at=utcnow(),
        model_fingerprint=model.fingerprint,
    )
    session.add(row)
    session.flush()
    return _look_info(row, person.name)


def list_looks(session: Session, model_id: int | None = None, reviewer: str | None = None) -> list[LookInfo]:
    """Saved looks, newest first, optionally for one model and/or one reviewer."""
    query = select(Look, Reviewer.name).join(Reviewer, Reviewer.id == Look.reviewer_id).order_by(Look.id.desc())
    if model_id is not None:
        query = query.where(Look.model_id == model_id)
    if reviewer is not None:
        query = query.where(Look.reviewer_id == _reviewer(session, reviewer).id)
    return [_look_info(row, name) for row, name in session.execute(query)]


def get_look(session: Session, look_id: int) -> LookInfo:
    found = session.execute(
        select(Look, Reviewer.name).join(Reviewer, Reviewer.id == Look.reviewer_id).where(Look.id == look_id)
    ).first()
    if found is None:
        raise NotFound(f"Unknown look {look_id}: it may have been deleted; reload the page.")
    return _look_info(*found)


def delete_look(session: Session, look_id: int) -> None:
    """Looks are the team's own content, so unlike reviews they can be deleted."""
    if not _changed(session, delete(Look).where(Look.id == _int("look id", look_id))):
        raise NotFound(f"Unknown look {look_id}: it may have been deleted already; reload the page.")
