"""Component sets: discover and store a set, and score and store its components — for the app and the CLI alike.

Discovery and scoring themselves are pure (model.directions.discovery, model.directions.scores); this module is where
their results meet the database, so the rules for what gets stored live once: which model a set belongs to
(workflows.registry), which review seeds it gets, and how scores are stored batch by batch while scoring runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from core.errors import AtelierError
from db import queries as q
from db.records import ComponentScores, ComponentSetInfo, ModelInfo
from db.engine import read_session, write_session
from db.migrate import ensure_current
from model.directions import discovery, scores
from workflows.registry import register_network


@dataclass(frozen=True)
class StoredSet:
    """A component set as scoring and strips need it: its record, vectors, σ and model."""

    info: ComponentSetInfo
    vectors: np.ndarray
    sigmas: np.ndarray
    model: ModelInfo


def load_set(set_id: int, url: str | None = None) -> StoredSet:
    with read_session(url) as session:
        info = q.get_component_set(session, set_id)
        vectors = q.component_vectors(session, set_id)
        sigmas = np.array([c.sigma for c in q.list_components(session, set_id)], dtype=np.float64)
        model = q.get_model(session, info.model_id)
    return StoredSet(info=info, vectors=vectors, sigmas=sigmas, model=model)


def same_set(found: discovery.ComponentSet, url: str | None = None) -> int | None:
    """The id of a stored set of the same model and method with the same vectors, if there is one."""
    with read_session(url) as session:
        model = q.model_by_fingerprint(session, found.fingerprint)
        if model is None:
            return None
        for info in q.list_component_sets(session, model.id):
            if info.method != found.method or info.component_count != len(found):
                continue
            stored = q.component_vectors(session, info.id)
            if stored.shape == found.vectors.shape and np.allclose(stored, found.vectors, atol=1e-6):
                return info.id
    return None


def _stored_params(found: discovery.ComponentSet) -> dict:
    params = dict(found.params)
    params["fingerprint"] = found.fingerprint
    if found.method == "kmeans":
        params["centroids"] = [[round(float(x), 5) for x in row] for row in found.extra.get("centroids", [])]
    return params


def store_component_set(found: discovery.ComponentSet, renderer, name: str | None = None,
                        review_seeds: Sequence[int] | None = None, url: str | None = None) -> ComponentSetInfo:
    """Register the model (idempotent by fingerprint; workflows.registry names it) and store the set in one
    transaction. Review seeds: :func:`discovery.choose_review_seeds` seeded by the model's id, unless given."""
    ensure_current(url)
    with write_session(url) as session:
        model = register_network(session, renderer, name).model
        seeds = list(review_seeds) if review_seeds is not None else discovery.choose_review_seeds(rng_seed=model.id)
        return q.add_component_set(session, model.id, found.method, _stored_params(found), found.sample_count,
                                   found.vectors, found.sigmas, eigenvalues=found.values, review_seeds=seeds)


def discover_and_store(renderer, method: str = "sefa", layers: str | tuple[int, int] = "all",
                       name: str | None = None, url: str | None = None, *, samples: int | None = None, k: int = 16,
                       seed: int = 0, progress: Callable[[int], None] | None = None) -> ComponentSetInfo:
    """Find directions (SeFa, PCA or k-means looks) and store them as a new component set."""
    spec = layers if isinstance(layers, str) else f"{layers[0]}-{layers[1] - 1}"
    found = discovery.discover(renderer, method, layers=spec, samples=samples, k=k, seed=seed, progress=progress)
    return store_component_set(found, renderer, name, url=url)


def store_scores(set_id: int, batch: Sequence[scores.ComponentScore], url: str | None = None) -> int:
    with write_session(url) as session:
        return q.update_scores(session, set_id, [ComponentScores(**s.db_fields()) for s in batch])


def score_and_store(set_id: int, renderer, url: str | None = None, *, seeds: Sequence[int] | None = None,
                    resolution: int | None = None, refine: int | None | str = "auto", batch: int = 64,
                    progress: Callable[[int], None] | None = None) -> list[scores.ComponentScore]:
    """Score every component of a set and store each batch as it is done, so the queue (db.review_queue.review_order)
    places what is scored at once. Defaults are scoring's own: the model's scoring resolution and, for large
    models, a quick pass refined at the top (``refine="auto"``; 0 or None: one full pass)."""
    stored = load_set(set_id, url)
    if stored.model.fingerprint != renderer.fingerprint:
        raise AtelierError(f"the generator holds different weights than set {set_id} was discovered on "
                           f"({renderer.fingerprint[:12]} ≠ {stored.model.fingerprint[:12]}); load the right file")
    passes = scores.scoring_passes(renderer, len(stored.vectors), refine)
    return scores.score_set(renderer, stored.vectors, stored.sigmas,
                            seeds=tuple(seeds) if seeds is not None else scores.DEFAULT_SCORE_SEEDS,
                            resolution=resolution or scores.scoring_resolution(renderer), batch=batch,
                            progress=progress, refine=passes,
                            on_batch=lambda done: store_scores(set_id, done, url))


def scoring_steps(set_id: int, renderer, refine: int | None | str = "auto", url: str | None = None) -> int:
    """How many progress steps :func:`score_and_store` reports (components, plus the refined ones)."""
    with read_session(url) as session:
        count = q.get_component_set(session, set_id).component_count
    passes = scores.scoring_passes(renderer, count, refine)
    return count + (passes or 0)
