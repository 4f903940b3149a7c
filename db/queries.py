"""The rows behind every page and command: store and fetch reviewers, categories, models, component sets and
components, reviews, published directions and looks.

Pages never touch tables directly: they open a session (``db.engine.write_session`` / ``read_session``), call
these functions and get the plain dataclasses of ``db.records`` back. Bad input raises
:class:`~core.errors.InvalidInput` (the checks are ``db.rules``) before anything is written, and since a write session
is one transaction, nothing partial is ever left behind. What the reviews add up to (status, queue, progress,
agreement) is ``db.review_queue``.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Select, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.records import (
    CategoryInfo,
    ComponentInfo,
    ComponentScores,
    ComponentSetInfo,
    DirectionInfo,
    LookEdit,
    LookInfo,
    ModelInfo,
    ReviewerInfo,
    ReviewRecord,
)
from db.rules import (
    DEFAULT_STRENGTH_RANGE,
    FINGERPRINT_PATTERN,
    SCORE_FIELDS,
    VOTES,
    NotFound,
    apply_if_unchanged,
    check_float,
    check_int,
    check_json,
    check_layer_range,
    check_name,
    check_score_details,
    check_seeds,
    check_strength_range,
    check_text,
    check_vector,
)
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
from core.errors import InvalidInput
from core.names import check_direction_name


# --------------------------------------------------------------------------------------------------------------
# Reviewers


def _reviewer_info(row: Reviewer) -> ReviewerInfo:
    return ReviewerInfo(id=row.id, name=row.name, created_at=row.created_at)


def reviewer_row(session: Session, name: str) -> Reviewer:
    row = session.scalar(select(Reviewer).where(Reviewer.name == check_text("reviewer", name).strip()))
    if row is None:
        raise NotFound(f"Unknown reviewer {name!r}: add them to the team first (add_reviewer / the Team page).")
    return row


def add_reviewer(session: Session, name: str) -> ReviewerInfo:
    clean = check_name("reviewer name", name, 100)
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
    clean = check_name("reviewer name", name, 100)
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
    row = session.scalar(select(Category).where(Category.name == check_text("category", name).strip()))
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
    clean = check_name("category name", name, 60)
    row = session.scalar(select(Category).where(Category.name == clean))
    if row is not None:
        # Conditional, so two people bringing the same category back are not both told it was retired.
        if not apply_if_unchanged(session, update(Category)
                                  .where(Category.id == row.id, Category.retired_at.is_not(None))
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
    clean = check_name("category name", new, 60)
    if clean != row.name and session.scalar(select(Category.id).where(Category.name == clean)) is not None:
        raise InvalidInput(f"Category {clean!r} already exists: retire one of the two instead of renaming.")
    statement = update(Category).where(Category.id == row.id, Category.name == row.name).values(name=clean)
    try:
        with session.begin_nested():
            renamed = apply_if_unchanged(session, statement)
    except IntegrityError:
        raise InvalidInput(f"Category {clean!r} was just added by someone else: choose another name.") from None
    if not renamed:
        raise InvalidInput(f"Category {row.name!r} was just renamed by someone else: reload the page.")
    session.refresh(row)
    return _category_info(row)


def retire_category(session: Session, name: str) -> CategoryInfo:
    """Hide a category from new reviews; old reviews keep it."""
    row = _category(session, name)
    if not apply_if_unchanged(session, update(Category).where(Category.id == row.id, Category.retired_at.is_(None))
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
    row = session.get(Model, check_int("model id", model_id))
    if row is None:
        raise NotFound(f"Unknown model id {model_id}: register the model first (register_model).")
    return row


def register_model(
    session: Session, name: str, path: str, fingerprint: str, architecture: Mapping[str, Any]
) -> ModelInfo:
    """Register a generator file; registering the same weights again returns the existing entry."""
    clean = check_name("model name", name, 200)
    fingerprint = check_text("fingerprint", fingerprint).strip().lower()
    if not FINGERPRINT_PATTERN.match(fingerprint):
        raise InvalidInput(
            "fingerprint must be the sha256 of the weights as 64 hex digits (hashlib.sha256(...).hexdigest())."
        )
    arch = dict(check_json("architecture", dict(architecture)))
    for key in ("w_dim", "num_ws"):
        if key not in arch:
            raise InvalidInput(
                f"architecture lacks {key!r}; pass the generator's z_dim, w_dim, num_ws, img_resolution, c_dim."
            )
        arch[key] = check_int(f"architecture {key}", arch[key], 1)
    existing = session.scalar(select(Model).where(Model.fingerprint == fingerprint))
    if existing is not None:
        # Same weights: the file may simply have moved, and the path is where to load it from now. Conditional on
        # the path read, so of two people moving it at once the second is told, not silently overruled.
        if existing.path != str(path) and not apply_if_unchanged(
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


def set_row(session: Session, set_id: int) -> ComponentSet:
    row = session.get(ComponentSet, check_int("component set id", set_id))
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
    method = check_name("method", method, 40)
    params = dict(check_json("params", dict(params)))
    sample_count = check_int("sample count", sample_count, 0)
    matrix = np.asarray(vectors, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != w_dim or matrix.shape[0] == 0:
        raise InvalidInput(f"vectors have shape {matrix.shape}; this model needs (n, {w_dim}) with n >= 1.")
    if not np.all(np.isfinite(matrix)):
        raise InvalidInput("vectors contain NaN or infinite values; rerun discovery.")
    n = matrix.shape[0]
    sigma_values = [check_float("sigma", s) for s in np.asarray(sigmas).tolist()]
    if len(sigma_values) != n or any(s < 0 for s in sigma_values):
        raise InvalidInput(f"sigmas must be {n} numbers >= 0, one per vector; got {len(sigma_values)}.")
    eigen_values: list[float | None] = [None] * n
    if eigenvalues is not None:
        eigen_values = [check_float("eigenvalue", e) for e in np.asarray(eigenvalues).tolist()]
        if len(eigen_values) != n:
            raise InvalidInput(f"eigenvalues must be {n} numbers, one per vector; got {len(eigen_values)}.")
    row = ComponentSet(
        model_id=model.id, method=method, params=params, sample_count=sample_count,
        review_seeds=check_seeds(review_seeds), created_at=utcnow(),
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
    return _set_info(session, set_row(session, set_id))


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
    set_row(session, set_id)
    clean = check_seeds(seeds)
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
    set_row(session, set_id)
    query = select(Component).where(Component.set_id == set_id).order_by(Component.index)
    return [_component_info(row) for row in session.scalars(query)]


def _component(session: Session, component_id: int) -> Component:
    row = session.get(Component, check_int("component id", component_id))
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
        set_row(session, set_id)
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([vector_from_bytes(blob, w_dim) for blob, w_dim in rows])


def update_scores(
    session: Session, set_id: int, rows: Iterable[ComponentScores | Mapping[str, Any]]
) -> int:
    """Write automatic scores by component index; returns how many components were updated."""
    pairs = session.execute(select(Component.index, Component.id).where(Component.set_id == set_id))
    ids: dict[int, int] = {index: cid for index, cid in pairs}
    if not ids:
        set_row(session, set_id)
    updates: list[dict[str, Any]] = []
    for item in rows:
        values = (
            {f.name: getattr(item, f.name) for f in fields(ComponentScores)}
            if isinstance(item, ComponentScores)
            else dict(item)
        )
        index = check_int("component index", values.pop("index", None))
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
                clean[key] = check_text(key, value)
            elif key == "score_details":
                clean[key] = check_score_details(value)
            elif key == "dead":
                clean[key] = bool(value)
            else:
                clean[key] = check_float(key, value)
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
    person = reviewer_row(session, reviewer)
    # One query for existence and the model's layer count; the component row itself (with its vector) is not needed.
    found = session.execute(
        select(Component.id, Model.architecture)
        .join(ComponentSet, ComponentSet.id == Component.set_id)
        .join(Model, Model.id == ComponentSet.model_id)
        .where(Component.id == check_int("component id", component_id))
    ).first()
    if found is None:
        raise NotFound(f"Unknown component {component_id}: reload the page, the set may have been replaced.")
    component_id, architecture = found
    if decision not in DECISIONS:
        raise InvalidInput(f"Unknown decision {decision!r}: use one of {', '.join(DECISIONS)}.")
    label = check_text("label", label)
    if decision == "approve" and not label.strip():
        raise InvalidInput("An approval needs a label: say in a few words what the direction changes.")
    category_row = None if category is None or category == "" else _category(session, category)
    rating = None if consistency is None else check_int("consistency rating", consistency, 1, 5)
    layers = None if layer_range is None else check_layer_range(layer_range, int(architecture["num_ws"]))
    strengths = None if strength_range is None else check_strength_range(strength_range)
    seconds = None if seconds_spent is None else check_float("seconds spent", seconds_spent)
    if seconds is not None and seconds < 0:
        raise InvalidInput(f"seconds spent cannot be negative, got {seconds}.")
    row = Review(
        reviewer_id=person.id, component_id=component_id, decision=decision, label=label,
        category_id=None if category_row is None else category_row.id, consistency=rating,
        layer_start=None if layers is None else layers[0], layer_end=None if layers is None else layers[1],
        strength_min=None if strengths is None else strengths[0],
        strength_max=None if strengths is None else strengths[1],
        note=check_text("note", note), created_at=utcnow(), seconds_spent=seconds,
        provenance=None if provenance is None else dict(check_json("provenance", dict(provenance))),
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
    person = reviewer_row(session, reviewer)
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
    person = reviewer_row(session, reviewer)
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
    set_row(session, set_id)
    votes: dict[int, list[ReviewRecord]] = defaultdict(list)
    for record in latest_per_reviewer(session, set_id):
        if record.decision in VOTES:
            votes[record.component_id].append(record)
    return dict(votes)


def latest_per_reviewer(session: Session, set_id: int) -> list[ReviewRecord]:
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
    person = reviewer_row(session, reviewer)
    try:
        clean = check_direction_name(check_text("direction name", name).strip())
    except InvalidInput as exc:
        raise InvalidInput(f"Cannot publish: {str(exc).rstrip('.')}.") from None
    if sigma is not None:
        sigma = check_float("sigma", sigma)
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
    values = check_vector("direction vector", vector, w_dim)
    if not np.any(values):
        raise InvalidInput("The direction vector is all zeros; it would change nothing.")
    category_row = None if not category else _category(session, category)
    layers = (0, num_ws) if layer_range is None else check_layer_range(layer_range, num_ws)
    strengths = DEFAULT_STRENGTH_RANGE if strength_range is None else check_strength_range(strength_range)
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
        provenance=None if provenance is None else dict(check_json("provenance", dict(provenance))),
        measured_effect=None if measured_effect is None else check_float("measured effect", measured_effect),
        override_reasons=[check_text("override reason", r) for r in override_reasons] or None,
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
    person = reviewer_row(session, reviewer)
    row = session.get(PublishedDirection, check_int("direction id", direction_id))
    if row is None:
        raise NotFound(f"Unknown published direction {direction_id}: reload the page.")
    if row.unpublished_at is None:
        statement = (
            update(PublishedDirection)
            .where(PublishedDirection.id == row.id, PublishedDirection.unpublished_at.is_(None))
            .values(unpublished_at=utcnow(), unpublished_by=person.id)
        )
        if apply_if_unchanged(session, statement):
            session.refresh(row)
            return _direction_info(session, row)
        session.refresh(row)
    by = session.get(Reviewer, row.unpublished_by) if row.unpublished_by is not None else None
    raise InvalidInput(
        f"Direction {row.name!r} is already unpublished" + (f" (by {by.name})." if by is not None else ".")
    )


def get_direction(session: Session, direction_id: int) -> DirectionInfo:
    row = session.get(PublishedDirection, check_int("direction id", direction_id))
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
        direction = session.get(PublishedDirection, check_int("direction id", direction_id))
        if direction is None or direction.model_id != model_id:
            raise NotFound(f"Edit refers to direction {direction_id}, which is not published for this model.")
        # The name is kept too, so a look stays readable after its direction is unpublished.
        name = name or direction.name
    if not name:
        raise InvalidInput("Each edit needs a direction name or a direction_id.")
    stored: dict[str, Any] = {
        "direction_id": direction_id,
        "name": check_text("direction name", name),
        "value": check_float(f"value of {name}", values.get("value")),
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
    exact = np.asarray(check_vector(f"vector of {name}", vector, w_dim), dtype=np.float32)
    # float32 → Python float is exact, and JSON keeps 17 significant digits, so the vector reads back bit for bit.
    return {"vector": [float(v) for v in exact], "layer_range": list(check_layer_range(layers, num_ws)),
            "sigma": check_float(f"σ of {name}", sigma)}


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
    person = reviewer_row(session, reviewer)
    clean = check_name("look name", name, 200)
    seed = check_int("seed", seed, 0, MAX_SEED)
    psi = check_float("psi", psi)
    c_dim = int(model.architecture.get("c_dim", 0) or 0)
    if class_index is not None:
        if c_dim == 0:
            raise InvalidInput(f"Model {model.name!r} is unconditional: leave the class empty.")
        class_index = check_int("class", class_index, 0, c_dim - 1)
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
        query = query.where(Look.reviewer_id == reviewer_row(session, reviewer).id)
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
    if not apply_if_unchanged(session, delete(Look).where(Look.id == check_int("look id", look_id))):
        raise NotFound(f"Unknown look {look_id}: it may have been deleted already; reload the page.")
