"""Distances between two sets of predictor readings: total variation per factor, the spread of each continuous
factor, and the Fréchet distance of the predictor's features (the FID formula). Used by ``atelier eval-model``
(``evaluate``) and by the trainer's snapshot quality (``model.training.quality``)."""
from __future__ import annotations

import numpy as np

from model.evaluation.predictor import CATEGORICAL, FACTORS


def tv_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Total variation between two discrete distributions (normalised here): ½ Σ |p − q|."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    return float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())


FACTOR_RANGES = {"x_offset": (-1.0, 1.0)}


def factor_histograms(values: dict[str, np.ndarray], bins: int = 10) -> dict[str, np.ndarray]:
    """Class frequencies for categorical factors, 10-bin histograms (values clipped to the range) for the rest."""
    out = {}
    for name, v in values.items():
        if name in CATEGORICAL:
            out[name] = np.bincount(np.asarray(v, int), minlength=len(CATEGORICAL[name])).astype(float)
        else:
            lo, hi = FACTOR_RANGES.get(name, (0.0, 1.0))
            out[name] = np.histogram(np.clip(v, lo, hi - 1e-9), bins=bins, range=(lo, hi))[0].astype(float)
    return out


# Continuous factors whose spread is compared; hue is circular, so its standard deviation would mislead.
SPREAD_FACTORS = tuple(name for name in FACTORS if name not in CATEGORICAL and name != "hue")


def spread_ratios(generated: dict[str, np.ndarray], real: dict[str, np.ndarray]) -> dict[str, float]:
    """Per continuous factor, the standard deviation of the generated readings over that of the real ones. A
    generator that draws every figure at middling height has a ratio well under 1 there, which tells "too
    narrow" apart from "shifted" when a TV distance is high."""
    return {name: round(float(np.std(generated[name]) / max(np.std(real[name]), 1e-9)), 3)
            for name in SPREAD_FACTORS}


def tv_from_histograms(ha: dict[str, np.ndarray], hb: dict[str, np.ndarray]) -> dict[str, float]:
    return {name: tv_distance(ha[name], hb[name]) for name in FACTORS if name in ha and name in hb}


def tv_per_factor(a: dict[str, np.ndarray], b: dict[str, np.ndarray], bins: int = 10) -> dict[str, float]:
    return tv_from_histograms(factor_histograms(a, bins), factor_histograms(b, bins))


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(features, np.float64)
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½) (the FID formula), with scipy's matrix square root."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    cov1, cov2 = np.atleast_2d(cov1), np.atleast_2d(cov2)
    covmean = linalg.sqrtm(cov1 @ cov2)
    if not np.isfinite(covmean).all():
        eps = np.eye(len(cov1)) * 1e-6
        covmean = linalg.sqrtm((cov1 + eps) @ (cov2 + eps))
    covmean = np.real(covmean)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(covmean))
