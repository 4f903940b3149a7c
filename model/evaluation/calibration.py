"""Building the factor predictor (``atelier factors train``) and bringing a saved one up to the current measure
(``atelier factors calibrate``): training on synthetic runway images, factor scales from the synthetic prior, and
the crosstalk calibration on single-factor edits that ``factor_changes.compensate`` takes out of later readings."""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from core.errors import AtelierError
from model.evaluation.factor_changes import CROSSTALK_POWER, code_scales, delta_magnitude, factor_changes
from model.evaluation.predictor import (CALIBRATION_SEED0, CATEGORICAL, CONTINUOUS, FACTORS, PREDICTOR_PATH,
                                        TRAIN_SEED0, FactorPredictor, Predictions, Predictor, render_real, targets,
                                        to_input, true_codes)


def train_predictor(count: int = 40_000, epochs: int = 8, batch: int = 64, lr: float = 2e-3, width: int = 16,
                    seed0: int = TRAIN_SEED0, seed: int = 0, progress: Callable[[str], None] | None = None,
                    images=None, calibration_count: int = 256) -> Predictor:
    """Train on `count` synthetic images (seeds seed0 …), Adam with a cosine schedule; returns the predictor.

    `images` may pass pre-rendered (uint8 [N, 64, 64, 3], factors) to skip rendering. Losses: MSE on the
    continuous factors (hue only where saturation ≥ 0.2, since grey has no hue), cross-entropy on the categories.
    The crosstalk calibration then runs on `calibration_count` single-factor edits (0 skips it).
    """
    torch.manual_seed(seed)
    if images is None:
        t0 = time.perf_counter()
        images = render_real(range(seed0, seed0 + count))
        if progress:
            progress(f"rendered {count} images in {time.perf_counter() - t0:.0f} s")
    pixels, factors = images
    cont, cats = targets(factors)
    x_all = to_input(pixels)
    y_cont = torch.as_tensor(cont)
    y_cats = {n: torch.as_tensor(v) for n, v in cats.items()}
    hue_weight = torch.as_tensor([f.saturation >= 0.2 for f in factors], dtype=torch.float32)
    module = FactorPredictor(width)
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    steps = epochs * math.ceil(len(x_all) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    hue_idx = [CONTINUOUS.index("hue_cos"), CONTINUOUS.index("hue_sin")]
    other_idx = [i for i in range(len(CONTINUOUS)) if i not in hue_idx]
    gen = torch.Generator().manual_seed(seed)
    module.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x_all), generator=gen)
        total = 0.0
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            x = x_all[idx]
            if x.shape[0] > 1:  # a little robustness to generator artefacts: noise
                x = x + 0.03 * torch.randn_like(x)
            out, _ = module(x)
            k = len(CONTINUOUS)
            err = (out[:, :k] - y_cont[idx]) ** 2
            loss = err[:, other_idx].mean() + (err[:, hue_idx].mean(1) * hue_weight[idx]).mean()
            for name, choices in CATEGORICAL.items():
                loss = loss + 0.5 * F.cross_entropy(out[:, k:k + len(choices)], y_cats[name][idx])
                k += len(choices)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if progress:
            progress(f"epoch {epoch + 1}/{epochs}: loss {total / len(order):.4f}")
    module.eval()
    predictor = Predictor(module, prior_scales(),
                          {"count": len(x_all), "epochs": epochs, "seed0": seed0, "width": width})
    if calibration_count:
        predictor.crosstalk = calibrate_crosstalk(predictor, calibration_count)
    return predictor


def prior_scales(count: int = 20_000, seed0: int = CALIBRATION_SEED0) -> dict[str, float]:
    """Factor scales from the synthetic prior itself: they describe the data, not the predictor."""
    from scrape.synth import sample_factors

    return code_scales(true_codes([sample_factors(seed0 + i) for i in range(count)]))


def recalibrate(path: str | Path = PREDICTOR_PATH, count: int = 256) -> Predictor:
    """Bring a saved predictor up to the current measure: fresh scales and crosstalk, written in place."""
    predictor = Predictor.load(path, require_current=False)
    predictor.scales = prior_scales()
    predictor.crosstalk = calibrate_crosstalk(predictor, count)
    predictor.save(path)
    return predictor


def single_factor_edit(factors, name: str, donor_seed: int):
    """`factors` with only `name` replaced by a value drawn from the prior (a different class for categories)."""
    import dataclasses

    from scrape.synth import sample_factors

    current = getattr(factors, name)
    for k in range(100):
        value = getattr(sample_factors(donor_seed + 7919 * k), name)
        if value != current:
            return dataclasses.replace(factors, **{name: value})
    raise AtelierError(f"could not find a different {name} to edit")  # pragma: no cover - the prior has several


def measure_edits(predictor: Predictor, before: Sequence, after: Sequence,
                  before_predictions: Predictions | None = None) -> dict[str, np.ndarray]:
    """Render two lists of synthetic factors and return the predictor's normalised changes, per factor [N, d].
    `before_predictions` skips rendering and reading `before` again when several edits share it."""
    from scrape.synth import render_looks

    if before_predictions is None:
        before_predictions = predictor.predict(render_looks(before))
    return factor_changes(predictor, before_predictions, predictor.predict(render_looks(after)))


def calibrate_crosstalk(predictor: Predictor, count: int = 256, seed0: int = CALIBRATION_SEED0) -> np.ndarray:
    """Crosstalk matrix M [F, F] in powers p = CROSSTALK_POWER: row g is the mean of every factor's reading ** p when
    only factor g changes, divided by that of g itself (so M[g, g] = 1). Readings summed over edits as m ** p are
    then ≈ Mᵀ t ** p for the true per-factor changes t ≥ 0."""
    from scrape.synth import render_looks, sample_factors

    base = [sample_factors(seed0 + i) for i in range(count)]
    base_predictions = predictor.predict(render_looks(base))
    matrix = np.zeros((len(FACTORS), len(FACTORS)))
    for g, name in enumerate(FACTORS):
        edited = [single_factor_edit(f, name, seed0 + 10_000_000 * (g + 1) + i) for i, f in enumerate(base)]
        changes = measure_edits(predictor, base, edited, base_predictions)
        row = np.array([(delta_magnitude(n, changes[n]) ** CROSSTALK_POWER).mean() for n in FACTORS])
        matrix[g] = row / max(row[g], 1e-9)
    return matrix
