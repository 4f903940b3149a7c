"""The predictor's readings of many images at once: held-out synthetic real images, and a generator's samples (a
class-conditional generator drawn with the synthetic data's garment labels), rendered and read chunk by chunk."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from core.errors import AtelierError
from model.evaluation.predictor import CATEGORICAL, Predictions, Predictor, render_real


def real_predictions(predictor: Predictor, count: int, seed0: int, progress: Callable[[int], None] | None = None,
                     chunk: int = 1000) -> Predictions:
    parts = []
    for start in range(0, count, chunk):
        n = min(chunk, count - start)
        images, _ = render_real(range(seed0 + start, seed0 + start + n))
        parts.append(predictor.predict(images))
        if progress:
            progress(n)
    return _concat(parts)


def generated_predictions(predictor: Predictor, renderer, count: int, seed0: int = 0, psi: float = 1.0,
                          progress: Callable[[int], None] | None = None, chunk: int = 256,
                          classes: Sequence[int] | None = None) -> Predictions:
    """Predictions for seeds seed0 … seed0+count-1; a conditional model draws seed i as class ``classes[i]``."""
    if renderer.c_dim and (classes is None or len(classes) < count):
        raise AtelierError(f"this model is class-conditional: give a class for each of the {count} samples")
    parts = []
    for start in range(0, count, chunk):
        n = min(chunk, count - start)
        seeds = np.arange(seed0 + start, seed0 + start + n)
        if renderer.c_dim:
            labels = np.asarray(classes[start:start + n])
            images = np.empty((n, renderer.resolution, renderer.resolution, 3), np.uint8)
            for label in np.unique(labels):  # one batched render per class present in the chunk
                rows = np.flatnonzero(labels == label)
                images[rows] = renderer.render_seeds(seeds[rows].tolist(), psi=psi, class_index=int(label))
        else:
            images = renderer.render_seeds(seeds.tolist(), psi=psi)
        parts.append(predictor.predict(images))
        if progress:
            progress(n)
    return _concat(parts)


def synthetic_classes(renderer, count: int, seed0: int) -> list[int] | None:
    """Classes for a conditional model's samples, drawn as the synthetic stream draws them (its garment labels):
    sample i takes the garment of real image seed0 + i, as metrics on conditional GANs sample labels from the data."""
    if not renderer.c_dim:
        return None
    from scrape.synth import RunwayFactors, sample_factors

    if renderer.c_dim != len(RunwayFactors.GARMENTS):
        raise AtelierError(f"this model has {renderer.c_dim} classes, but the synthetic runway data that eval-model "
                           f"compares with is labelled by its {len(RunwayFactors.GARMENTS)} garment kinds "
                           f"({', '.join(RunwayFactors.GARMENTS)}); evaluate an unconditional model or one trained "
                           f"with --data synthetic --cond")
    return [sample_factors(seed0 + i).garment_index for i in range(count)]


def _concat(parts: list[Predictions]) -> Predictions:
    return Predictions(np.concatenate([p.continuous for p in parts]),
                       {n: np.concatenate([p.probs[n] for p in parts]) for n in CATEGORICAL},
                       np.concatenate([p.features for p in parts]))
