"""A small factor predictor trained on synthetic runway images, and the quality measures built on it.

The predictor is a 5-layer CNN on 64-px images (others are resized). It regresses the continuous factors (sleeve,
length, hue as cos/sin, saturation, value, height, x offset, skin, hair, background) and classifies garment (4),
pattern (4) and layer (3). Its 128-d penultimate layer is the feature space of the Fréchet distance.
Weights ship as ``model/assets/factor_predictor.safetensors`` (float16, < 1 MB); ``train_predictor`` rebuilds them.

Seeds: predictor training uses synthetic seeds from 800,000,000 up, the held-out real splits from 900,000,000
up, the crosstalk calibration from 950,000,000 up (its edits borrow values from seeds up to 1,090,000,000); the
demo generator is trained on seeds counting up from 0, so none of them overlaps its training data.

Factor changes (used to measure edits): each factor f gets a code — the value for continuous factors, the
(cos, sin) point for hue, the class-probability vector for categorical ones — and a change between two codes
(hue: the turn of the colour wheel times the lower saturation), and a scale, the mean change between two random
real images (for a categorical factor: the chance two images differ). A change of 1.0 in a factor therefore
means "as different as two typical real images are in it". The predictor's crosstalk (its readings of other
factors moving when one changes) is calibrated on single-factor edits and taken out of edit measurements.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import AtelierError
from core.files import atomic_write_bytes
from core.settings import ASSETS_DIR

PREDICTOR_PATH = ASSETS_DIR / "factor_predictor.safetensors"
TRAIN_SEED0 = 800_000_000
REAL_SEED0 = 900_000_000
INPUT_SIZE = 64
CONTINUOUS = ("sleeve", "length", "hue_cos", "hue_sin", "saturation", "value", "height", "x_offset", "skin", "hair",
              "background")
CATEGORICAL = {"garment": ("dress", "top_skirt", "top_trousers", "coat"),
               "pattern": ("plain", "stripes", "dots", "check"),
               "layer": ("none", "jacket", "long_coat")}
FACTORS = ("garment", "sleeve", "length", "hue", "saturation", "value", "pattern", "layer", "height", "x_offset",
           "skin", "hair", "background")
FEATURES = 128
MEASURE_VERSION = 3  # 2: hue change weighted by saturation, crosstalk stored; 3: crosstalk in CROSSTALK_POWER
CALIBRATION_SEED0 = 950_000_000


class FactorPredictor(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.convs = nn.ModuleList([
            nn.Conv2d(3, w, 3, padding=1),  # 64
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),  # 32
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1),  # 16
            nn.Conv2d(4 * w, 4 * w, 3, stride=2, padding=1),  # 8
            nn.Conv2d(4 * w, 4 * w, 3, stride=2, padding=1),  # 4
        ])
        self.fc = nn.Linear(4 * w * 16, FEATURES)
        self.head = nn.Linear(FEATURES, len(CONTINUOUS) + sum(len(c) for c in CATEGORICAL.values()))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
        return F.leaky_relu(self.fc(x.flatten(1)), 0.2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return self.head(f), f


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, 64, 64] in −1 … 1 (area-resized when H ≠ 64)."""
    x = torch.as_tensor(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    if x.shape[-1] != INPUT_SIZE:
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="area" if x.shape[-1] > INPUT_SIZE else "bilinear",
                          align_corners=None if x.shape[-1] > INPUT_SIZE else False)
    return x


def targets(factors) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    cont = np.array([[f.sleeve, f.length, math.cos(2 * math.pi * f.hue), math.sin(2 * math.pi * f.hue),
                      f.saturation, f.value, f.height, f.x_offset, f.skin, f.hair, f.background] for f in factors],
                    np.float32)
    cats = {name: np.array([choices.index(getattr(f, name)) for f in factors]) for name, choices in CATEGORICAL.items()}
    return cont, cats


@dataclass
class Predictions:
    continuous: np.ndarray  # [N, len(CONTINUOUS)]
    probs: dict[str, np.ndarray]  # factor -> [N, classes]
    features: np.ndarray  # [N, FEATURES]

    def codes(self) -> dict[str, np.ndarray]:
        """Per factor a code [N, d]: the continuous value, hue as (cos, sin), class probabilities (module doc)."""
        c = {name: self.continuous[:, i:i + 1] for i, name in enumerate(CONTINUOUS)}
        out = {}
        for name in FACTORS:
            if name in CATEGORICAL:
                out[name] = self.probs[name]
            elif name == "hue":
                out[name] = np.concatenate([c["hue_cos"], c["hue_sin"]], axis=1)
            else:
                out[name] = c[name]
        return out

    def rows(self, index: slice) -> "Predictions":
        return Predictions(self.continuous[index], {n: p[index] for n, p in self.probs.items()},
                           self.features[index])

    def values(self) -> dict[str, np.ndarray]:
        """Per factor one value per image: class index, hue in [0, 1), or the continuous value."""
        out = {}
        for name in FACTORS:
            if name in CATEGORICAL:
                out[name] = self.probs[name].argmax(axis=1)
            elif name == "hue":
                i, j = CONTINUOUS.index("hue_cos"), CONTINUOUS.index("hue_sin")
                out[name] = (np.arctan2(self.continuous[:, j], self.continuous[:, i]) / (2 * np.pi)) % 1.0
            else:
                out[name] = self.continuous[:, CONTINUOUS.index(name)]
        return out


def true_codes(factors) -> dict[str, np.ndarray]:
    cont, cats = targets(factors)
    p = Predictions(cont, {n: np.eye(len(CATEGORICAL[n]), dtype=np.float32)[cats[n]] for n in CATEGORICAL},
                    np.zeros((len(cont), 0)))
    return p.codes()


def factor_delta(name: str, a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> np.ndarray:
    """The change a → b of one factor, row by row, [N, d] (codes as ``Predictions.codes`` gives them).

    Hue is the signed turn of the colour wheel times the lower of the two saturations: a grey has no hue, so a
    grey garment whose (meaningless) hue reading jumps has not changed colour, and a saturation-only change reads
    as no hue change.
    """
    if name != "hue":
        return b[name] - a[name]
    turn = np.arctan2(b["hue"][:, 1], b["hue"][:, 0]) - np.arctan2(a["hue"][:, 1], a["hue"][:, 0])
    turn = (turn + np.pi) % (2 * np.pi) - np.pi
    weight = np.clip(np.minimum(a["saturation"][:, 0], b["saturation"][:, 0]), 0.0, 1.0)
    return (turn / (2 * np.pi) * weight)[:, None]


def delta_magnitude(name: str, delta: np.ndarray) -> np.ndarray:
    """Size of a change per row: half the L1 (= TV) for class probabilities, the L2 norm otherwise."""
    return 0.5 * np.abs(delta).sum(axis=1) if name in CATEGORICAL else np.linalg.norm(delta, axis=1)


def code_scales(codes: dict[str, np.ndarray], pairs: int = 20_000, seed: int = 0) -> dict[str, float]:
    """Mean size of the change between two random samples, per factor (categorical: the chance they differ)."""
    rng = np.random.default_rng(seed)
    n = len(next(iter(codes.values())))
    ia, ib = rng.integers(n, size=(2, pairs))
    a = {k: v[ia] for k, v in codes.items()}
    b = {k: v[ib] for k, v in codes.items()}
    return {name: float(max(delta_magnitude(name, factor_delta(name, a, b)).mean(), 1e-6)) for name in FACTORS}


class Predictor:
    """A loaded FactorPredictor with its factor scales."""

    def __init__(self, module: FactorPredictor, scales: dict[str, float], meta: dict | None = None,
                 crosstalk: np.ndarray | None = None):
        self.module = module.eval()
        self.scales = scales
        self.meta = meta or {}
        self.crosstalk = crosstalk  # [F, F], see calibrate_crosstalk; None until calibrated

    @torch.inference_mode()
    def predict(self, images: np.ndarray, batch: int = 512) -> Predictions:
        conts, probs, feats = [], {n: [] for n in CATEGORICAL}, []
        for start in range(0, len(images), batch):
            out, f = self.module(to_input(images[start:start + batch]))
            k = len(CONTINUOUS)
            conts.append(out[:, :k].numpy())
            for name, choices in CATEGORICAL.items():
                probs[name].append(torch.softmax(out[:, k:k + len(choices)], dim=1).numpy())
                k += len(choices)
            feats.append(f.numpy())
        if not conts:
            raise AtelierError("no images to predict")
        return Predictions(np.concatenate(conts), {n: np.concatenate(v) for n, v in probs.items()},
                           np.concatenate(feats))

    def save(self, path: str | Path = PREDICTOR_PATH) -> Path:
        from safetensors.torch import save


        tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in self.module.state_dict().items()}
        meta = {"format": "atelier-factor-predictor", "scales": json.dumps(self.scales),
                "meta": json.dumps(self.meta), "width": str(self.module.convs[0].out_channels),
                "measure_version": str(MEASURE_VERSION)}
        if self.crosstalk is not None:
            meta["crosstalk"] = json.dumps(np.round(self.crosstalk, 6).tolist())
        atomic_write_bytes(Path(path), save(tensors, metadata=meta))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path = PREDICTOR_PATH, require_current: bool = True) -> "Predictor":
        from safetensors import safe_open

        path = Path(path)
        if not path.exists():
            raise AtelierError(f"the factor predictor {path} is missing; run `atelier factors train` to build it")
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            state = {k: fh.get_tensor(k).float() for k in fh.keys()}
        if meta.get("format") != "atelier-factor-predictor":
            raise AtelierError(f"{path} is not an Atelier factor predictor")
        module = FactorPredictor(int(meta["width"]))
        module.load_state_dict(state)
        if require_current and meta.get("measure_version") != str(MEASURE_VERSION):
            raise AtelierError(f"{path} was calibrated for an older way of measuring factor changes; run "
                               f"`atelier factors calibrate --predictor {path}` to bring it up to date")
        crosstalk = np.array(json.loads(meta["crosstalk"])) if "crosstalk" in meta else None
        return cls(module, json.loads(meta["scales"]), json.loads(meta.get("meta", "{}")), crosstalk)


def _render_real(seeds: Sequence[int], resolution: int = INPUT_SIZE):
    from scrape.synth import render_batch

    return render_batch(seeds, resolution)


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
        images = _render_real(range(seed0, seed0 + count))
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


# --- the instrument's crosstalk ----------------------------------------------------------------------------------
# A predictor is an imperfect instrument: when only the sleeves change, its readings of skin or colour move a
# little too. Summed over a dozen factors, that leakage made a perfectly pure edit of a real synthetic image read
# as only 0.2–0.65 pure. As with spillover compensation in flow cytometry, we measure the leakage once, on images
# where exactly one factor is changed, and take it out of every later reading (non-negative least squares).
#
# How leaks from several factors add up decides how well that works on the edits that matter. Added as plain
# magnitudes (power 1) they are exact for a one- or two-factor edit but overstate the leakage when many factors
# change at once: leaks of random sign partly cancel, so the compensation took out real change as well. On 64
# held-out looks with k of the 13 factors changed at once (the true change per factor read from the same edit made
# alone), the composition read after compensation was off by this total variation (first trials, fitted power
# means without the shape correction of `compensate`):
#
#     power     k=1    k=2    k=4    k=7    k=13   mean
#     1         0.026  0.020  0.073  0.161  0.259  0.108
#     1.5       0.090  0.035  0.013  0.047  0.138  0.065
#     2         0.162  0.092  0.052  0.038  0.055  0.080
#
# Power 2 (independent leaks adding in quadrature) suits many-factor edits but the square root amplifies the noise
# of small readings; 1.5 is the best compromise, so readings and leaks are compared as magnitude ** 1.5. With the
# shape correction the shipped rule reads 0.084, 0.008, 0.018, 0.056, 0.141, and the changed factors' magnitudes
# come out 1.00, 0.99, 0.95, 0.86, 0.71 of the truth (power 1: down to 0.45 for k=13).
CROSSTALK_POWER = 1.5

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


def compensate(readings: np.ndarray, crosstalk: np.ndarray | None) -> np.ndarray:
    """Per-factor change magnitudes summed over edits, with the instrument's crosstalk taken out.

    `readings` [edits, F] are each edit's magnitudes as read. The leak model is fitted to their powers summed over
    the edits (one least-squares problem, which is steadier than one per edit). The result is a sum over the edits
    again, in the units of ``readings.sum(0)`` (which is what uncalibrated gives): the fitted power mean of each
    factor is scaled by the ratio of plain to power mean of its own readings, so an edit of one factor alone gives
    back exactly its readings' sum."""
    readings = np.atleast_2d(np.asarray(readings, np.float64))
    plain = readings.sum(axis=0)
    if crosstalk is None:
        return plain
    from scipy.optimize import nnls

    p, edits = CROSSTALK_POWER, len(readings)
    fitted, _ = nnls(np.asarray(crosstalk, np.float64).T, (readings ** p).sum(axis=0))
    power_mean = ((readings ** p).sum(axis=0) / edits) ** (1 / p)
    shape = np.divide(plain / edits, power_mean, out=np.ones_like(plain), where=power_mean > 0)
    return edits * (fitted / edits) ** (1 / p) * shape


# --- distribution measures ---------------------------------------------------------------------------------------

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


def real_predictions(predictor: Predictor, count: int, seed0: int, progress: Callable[[int], None] | None = None,
                     chunk: int = 1000) -> Predictions:
    parts = []
    for start in range(0, count, chunk):
        n = min(chunk, count - start)
        images, _ = _render_real(range(seed0 + start, seed0 + start + n))
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


def eval_model(renderer, predictor: Predictor, samples: int = 10_000, progress: Callable[[int], None] | None = None
               ) -> dict:
    """TV per factor (generated vs held-out real, both as the predictor reads them) and Fréchet distances."""
    gen = generated_predictions(predictor, renderer, samples, progress=progress,
                                classes=synthetic_classes(renderer, samples, REAL_SEED0))
    real_a = real_predictions(predictor, samples, REAL_SEED0, progress=progress)
    real_b = real_predictions(predictor, samples, REAL_SEED0 + samples, progress=progress)
    gen_values, real_values = gen.values(), real_a.values()
    hist_gen, hist_real = factor_histograms(gen_values), factor_histograms(real_values)
    tv = tv_from_histograms(hist_gen, hist_real)
    mu_g, cov_g = gaussian_stats(gen.features)
    mu_a, cov_a = gaussian_stats(real_a.features)
    mu_b, cov_b = gaussian_stats(real_b.features)
    return {"tv": {k: round(v, 4) for k, v in tv.items()},
            "frechet": round(frechet_distance(mu_g, cov_g, mu_a, cov_a), 4),
            "frechet_real_baseline": round(frechet_distance(mu_a, cov_a, mu_b, cov_b), 4),
            "spread": spread_ratios(gen_values, real_values),
            "histograms": {name: {"generated": hist_gen[name].tolist(), "real": hist_real[name].tolist()}
                           for name in tv},
            "samples": samples, "network": str(getattr(renderer.network, "source", "")),
            "kimg": getattr(renderer.network, "kimg", None)}


def format_eval(result: dict) -> str:
    lines = [f"network {result['network']} (kimg {result['kimg']}), {result['samples']} samples",
             f"{'factor':<12} {'TV':>6}        {'spread':>6}  (TV target ≤ 0.15; spread: generated sd / real sd)"]
    spread = result.get("spread", {})
    for name, value in result["tv"].items():
        ratio = spread.get(name)
        note = "" if ratio is None else f"{ratio:>6.2f}" + ("  too narrow" if ratio < 0.8 else
                                                             "  too wide" if ratio > 1.25 else "")
        lines.append(f"{name:<12} {value:>6.3f}  {'ok  ' if value <= 0.15 else 'over'}  {note}".rstrip())
    lines.append(f"Fréchet distance (predictor features): {result['frechet']:.3f}; "
                 f"real-vs-real baseline: {result['frechet_real_baseline']:.3f}")
    return "\n".join(lines)


# --- edits measured in factor space ------------------------------------------------------------------------------

def factor_changes(predictor: Predictor, before: Predictions, after: Predictions) -> dict[str, np.ndarray]:
    """Per factor, the signed change [N, d] between two readings, divided by the factor's real scale."""
    a, b = before.codes(), after.codes()
    return {name: factor_delta(name, a, b) / predictor.scales[name] for name in FACTORS}


def edit_factor_stats(changes: dict[str, np.ndarray], crosstalk: np.ndarray | None = None) -> dict:
    """For one component (rows = seeds): per-factor magnitude, purity and agreement, and the ground-truth consistency.

    Readings: r_f,s = |Δ_f,s| (categorical: ½ L1, others: L2); t = compensate(r), the per-factor sum over seeds with
    the crosstalk taken out; magnitude_f = t_f / seeds; purity_f = t_f / Σ_g t_g;
    consistency = mean pairwise cosine of the seeds' full Δ vectors (all factors), clipped to [0, 1];
    agreement_f = |mean over seeds of Δ_f| / mean over seeds of |Δ_f|: 1 when the factor moves the same way on every
    seed, about 1/√seeds when its direction is random.
    """
    readings = np.stack([delta_magnitude(name, changes[name]) for name in FACTORS], axis=1)
    true = compensate(readings, crosstalk)
    seeds = len(changes[FACTORS[0]])
    total = true.sum()
    purity = {n: float(true[i] / total) if total > 0 else 0.0 for i, n in enumerate(FACTORS)}
    full = np.concatenate([changes[n] for n in FACTORS], axis=1)
    norms = np.linalg.norm(full, axis=1)
    if len(full) < 2:
        consistency = 1.0
    else:
        unit = full / np.where(norms > 1e-12, norms, np.inf)[:, None]
        sim = unit @ unit.T
        s = len(full)
        consistency = float(np.clip((sim.sum() - np.trace(sim)) / (s * (s - 1)), 0.0, 1.0))
    agreement = {}
    for name in FACTORS:  # does the factor move the same way on every seed: |mean Δ| / mean |Δ| (1: always alike)
        per_seed = changes[name].reshape(seeds, -1)
        spread = float(np.linalg.norm(per_seed, axis=1).mean())
        agreement[name] = float(np.linalg.norm(per_seed.mean(axis=0)) / spread) if spread > 1e-12 else 0.0
    return {"magnitude": {n: float(true[i] / max(seeds, 1)) for i, n in enumerate(FACTORS)}, "purity": purity,
            "consistency": consistency, "agreement": agreement}


def varied_factors(gen: Predictions, real: Predictions, ratio: float = 0.5) -> dict[str, float]:
    """Spread of each factor in generated samples relative to real ones (as the predictor reads both)."""
    sg, sr = code_scales(gen.codes()), code_scales(real.codes())
    return {n: sg[n] / sr[n] for n in FACTORS}


TRUTH_SEEDS = tuple(range(2000, 2024))  # generator seeds, disjoint from the scoring seeds (model.directions.scores)


def measure_components(renderer, predictor: Predictor, vectors: np.ndarray, sigmas: np.ndarray, seeds: Sequence[int],
                       span: float, resolution: int | None = None, batch: int = 128,
                       progress: Callable[[int], None] | None = None,
                       rows: tuple[int, int] | None = None) -> list[dict]:
    """Each component's edit (span σ on the ws rows [start, stop) of `rows`, default all; a negative span edits
    the other way) on `seeds`, read by the predictor: edit_factor_stats per component. The ground truth that the
    automatic scores are checked against."""
    from model.directions.scores import render_edits

    ws = renderer.ws_from_seeds(list(seeds))
    before = predictor.predict(renderer.synthesize(ws, resolution=resolution, chunk=batch))
    stats: list[dict] = []
    row_start, row_stop = rows if rows is not None else (0, None)
    for start, stop, images in render_edits(renderer, ws, vectors, sigmas, span, row_start, row_stop,
                                            resolution=resolution, batch=batch):
        after = predictor.predict(images.reshape(-1, *images.shape[2:]))
        for i in range(stop - start):
            rows = slice(i * len(ws), (i + 1) * len(ws))
            stats.append(edit_factor_stats(factor_changes(predictor, before, after.rows(rows)), predictor.crosstalk))
        if progress:
            progress(stop - start)
    return stats


# --- the review order against the ground truth ------------------------------------------------------------------
# A designer names a direction by the garment factor it moves. These say, from the predictor's readings, which
# factors a reading shows "visibly and consistently" and what a reviewer would call it.
GARMENT_FACTORS: dict[str, tuple[str, ...]] = {
    "garment": ("garment",), "sleeve": ("sleeve",), "length": ("length",),
    "colour": ("hue", "saturation", "value"), "pattern": ("pattern",), "layer": ("layer",),
}
FACTOR_CATEGORY: dict[str, str] = {
    "garment": "silhouette", "sleeve": "sleeve", "length": "length", "hue": "colour", "saturation": "colour",
    "value": "colour", "pattern": "pattern", "layer": "layers", "background": "background",
    "height": "other", "x_offset": "other", "skin": "other", "hair": "other",
}
VISIBLE_MOVE = 0.25  # a quarter of the typical difference between two random real looks: a person notices it
CONSISTENT_AGREEMENT = 0.5  # the factor moves the same way on most seeds (random directions give about 1/√seeds)
INVISIBLE_MOVE = 0.1  # no factor moves this much on either side: the edit is invisible (the reading noise is ~0.05)
CATEGORY_TIE = 0.75  # factors within this share of the strongest move all count as a right answer
ORDER_DEPTHS = (8, 16, 32)


def factors_shown(stats: dict) -> set[str]:
    """The garment factors (GARMENT_FACTORS) a reading moves visibly (≥ VISIBLE_MOVE) and consistently
    (agreement ≥ CONSISTENT_AGREEMENT)."""
    return {group for group, names in GARMENT_FACTORS.items()
            if any(stats["magnitude"][n] >= VISIBLE_MOVE and stats["agreement"][n] >= CONSISTENT_AGREEMENT
                   for n in names)}


def true_categories(stats: dict) -> set[str]:
    """What a reviewer would call a reading: the category of its strongest factor, and of any factor moving at least
    CATEGORY_TIE × as much (the predictor cannot rank moves that close)."""
    strongest = max(stats["magnitude"].values())
    return {FACTOR_CATEGORY[n] for n, m in stats["magnitude"].items() if m >= CATEGORY_TIE * strongest}


def is_visible(stats: dict, threshold: float = VISIBLE_MOVE) -> bool:
    return max(stats["magnitude"].values()) >= threshold


def factors_within(order: Sequence[int], shown: Sequence[set[str]], depth: int) -> int:
    """How many distinct garment factors the first `depth` components of an order show."""
    return len(set().union(*[shown[i] for i in order[:depth]])) if depth else 0


def order_quality(orders: dict[str, Sequence[int]], shown: Sequence[set[str]], invisible: Sequence[bool],
                  depths: Sequence[int] = ORDER_DEPTHS, random_trials: int = 200, seed: int = 0) -> dict:
    """For each named order and a random one (mean of `random_trials`), within each depth: the distinct garment
    factors shown, the nameable components (those showing at least one garment factor: a direction a designer
    names at once), and the invisible components."""
    def row(order: Sequence[int]) -> dict[str, dict[str, int]]:
        return {"factors": {str(d): factors_within(order, shown, d) for d in depths},
                "nameable": {str(d): int(sum(bool(shown[i]) for i in order[:d])) for d in depths},
                "invisible": {str(d): int(sum(invisible[i] for i in order[:d])) for d in depths}}

    out: dict[str, dict] = {name: row(order) for name, order in orders.items()}
    # What any order could reach: the whole set's factors and nameable components (the best possible at a depth is
    # min(depth, nameable) nameable components and at most this many factors).
    everything = list(range(len(shown)))
    out["whole set"] = {"factors": factors_within(everything, shown, len(shown)),
                        "nameable": int(sum(bool(s) for s in shown)), "invisible": int(sum(invisible))}
    rng = np.random.default_rng(seed)
    trials = [row(rng.permutation(len(shown))) for _ in range(random_trials)]
    out["random"] = {key: {str(d): round(float(np.mean([t[key][str(d)] for t in trials])), 2) for d in depths}
                     for key in ("factors", "nameable", "invisible")}
    return out


def category_accuracy(suggested: Sequence[str], truth: Sequence[set[str]], visible: Sequence[bool]) -> dict:
    """Share of visible components whose suggested category is one of the true ones, and the confusion matrix
    (rows: the true category, the strongest factor's; columns: the suggestion)."""
    rows = [i for i, v in enumerate(visible) if v]
    right = sum(suggested[i] in truth[i] for i in rows)
    confusion: dict[str, dict[str, int]] = {}
    for i in rows:
        true = sorted(truth[i])[0] if len(truth[i]) == 1 else (suggested[i] if suggested[i] in truth[i]
                                                                 else sorted(truth[i])[0])
        confusion.setdefault(true, {}).setdefault(suggested[i], 0)
        confusion[true][suggested[i]] += 1
    return {"accuracy": round(right / len(rows), 3) if rows else float("nan"), "visible_components": len(rows),
            "confusion": confusion}


def ground_truth_benchmark(renderer, predictor: Predictor, vectors: np.ndarray, sigmas: np.ndarray,
                           seeds: Sequence[int] | None = None, truth_seeds: Sequence[int] = TRUTH_SEEDS,
                           span: float | None = None, resolution: int | None = None, varied_samples: int = 1000,
                           top: int = 100, min_share: float = 0.25, progress: Callable[[int], None] | None = None,
                           truth_progress: Callable[[int], None] | None = None) -> dict:
    """Score every component, measure the same edits with the predictor, and match components to factors.

    The automatic scores use `seeds` (the scoring default, 6); the ground truth is measured on `truth_seeds`, more of
    them and disjoint: on the demo model a 6-seed ground-truth consistency agreed with itself on other seeds only
    weakly (split-half rank correlation 0.14 on 3 + 3 seeds; a seed near a class boundary flips garment or pattern
    and dominates its vector), so it was too noisy to check the automatic score against.
    Each component's edit is measured on every ws row towards both sides, and on the reading its scores chose (the
    side and layer group it is ranked by and opens on), as a reviewer tries the sides and layer presets and approves
    the range that works (GANSpace's layer-range edits). For each factor the best match is the purest
    (component, reading) pair among those that move the factor at least `min_share` × the strongest pair's mean move.
    A factor counts as varied by the generator when its generated spread is ≥ 0.5 × the real spread.
    Spearman: automatic consistency vs ground-truth consistency of the same reading over the `top` components of the
    queue. `ordering`: garment factors shown visibly and consistently (factors_shown) within the first 8, 16 and 32 of
    the queue, of the eigenvalue order and of random orders; `categories`: the suggestions against true_categories.
    """
    from scipy.stats import spearmanr

    from model.directions import scores as S

    seeds = list(seeds) if seeds is not None else list(S.DEFAULT_SCORE_SEEDS)
    span = S.DEFAULT_SPAN if span is None else span
    t0 = time.perf_counter()
    scores = S.score_set(renderer, vectors, sigmas, seeds=seeds, span=span, resolution=resolution,
                         progress=progress)
    seconds = time.perf_counter() - t0
    readings = _truth_readings(renderer, predictor, vectors, sigmas, scores, truth_seeds, span, resolution,
                               truth_progress)
    order = S.priority_order(scores)
    rank = {index: r + 1 for r, index in enumerate(order)}
    gen = generated_predictions(predictor, renderer, varied_samples, seed0=5_000_000,
                                classes=synthetic_classes(renderer, varied_samples, REAL_SEED0 + 50_000))
    real = real_predictions(predictor, varied_samples, REAL_SEED0 + 50_000)
    spread = varied_factors(gen, real)
    candidates = [(i, label, st) for i, per in enumerate(readings) for label, st in per.items() if label != "chosen"]
    rows = []
    for name in FACTORS:
        mags = np.array([st["magnitude"][name] for _, _, st in candidates])
        purity = np.array([st["purity"][name] for _, _, st in candidates])
        strong = mags >= min_share * mags.max() if mags.max() > 0 else np.ones(len(mags), bool)
        best = int(np.argmax(np.where(strong, purity, -1)))
        component, layers, st = candidates[best]
        rows.append({"factor": name, "component": component, "layers": layers,
                     "purity": round(float(purity[best]), 3), "consistency": round(st["consistency"], 3),
                     "rank": rank[component], "move": round(float(mags[best]), 3),
                     "strongest_move": round(float(mags.max()), 3),
                     "varied": bool(spread[name] >= 0.5), "spread": round(float(spread[name]), 3)})
    chosen = [per["chosen"] for per in readings]
    top_ids = order[:min(top, len(order))]
    auto = [scores[i].consistency for i in top_ids]
    truth = [chosen[i]["consistency"] for i in top_ids]
    rho = float(spearmanr(auto, truth).correlation) if len(top_ids) > 2 else float("nan")
    shown = [set().union(*[factors_shown(st) for st in per.values()]) for per in readings]
    invisible = [not any(is_visible(st, INVISIBLE_MOVE) for st in per.values()) for per in readings]
    eigen = list(range(len(scores)))  # components come in eigenvalue order (SeFa, PCA)
    ordering = order_quality({"queue": order, "eigenvalue": eigen}, shown, invisible)
    categories = category_accuracy([s.suggested_category for s in scores], [true_categories(st) for st in chosen],
                                   [is_visible(st) for st in chosen])
    return {"factors": rows, "spearman": round(rho, 3), "scoring_seconds": round(seconds, 2),
            "scores": scores, "components": len(scores), "span": span, "ordering": ordering,
            "categories": categories}


def _truth_readings(renderer, predictor: Predictor, vectors: np.ndarray, sigmas: np.ndarray, scores,
                    seeds: Sequence[int], span: float, resolution: int | None,
                    progress: Callable[[int], None] | None) -> list[dict[str, dict]]:
    """Per component, edit_factor_stats of: every row towards + ("all +") and − ("all −"), and the reading its
    scores chose ("chosen": the same object as one of those two when it is on every row)."""
    from model.directions.discovery import row_span

    sigmas = np.asarray(sigmas, np.float64)
    found: list[dict[str, dict]] = [{} for _ in scores]
    for side, label in ((1, "all +"), (-1, "all −")):
        for i, st in enumerate(measure_components(renderer, predictor, vectors, sigmas * side, seeds, span,
                                                  resolution, progress=progress)):
            found[i][label] = st
    for i, s in enumerate(scores):
        if s.best is None or s.best.layers == "all":
            found[i]["chosen"] = found[i]["all +" if s.best is None or s.best.side > 0 else "all −"]
    groups = sorted({(s.best.layers, s.best.side) for s in scores if s.best is not None and s.best.layers != "all"})
    for layers, side in groups:
        members = [i for i, s in enumerate(scores) if s.best is not None and (s.best.layers, s.best.side) == (layers,
                                                                                                              side)]
        stats = measure_components(renderer, predictor, vectors[members], sigmas[members] * side, seeds, span,
                                   resolution, progress=progress, rows=row_span(renderer.G, layers))
        for i, st in zip(members, stats):
            found[i][f"{layers} {'+' if side > 0 else '−'}"] = st
            found[i]["chosen"] = st
    return found


def format_benchmark(result: dict) -> str:
    lines = [f"{'factor':<12} {'varied':>6} {'component':>9} {'layers':>7} {'purity':>7} {'consist.':>8} {'rank':>5} "
             f"{'move':>6} {'strongest':>9}"]
    for row in result["factors"]:
        lines.append(f"{row['factor']:<12} {('yes' if row['varied'] else 'no'):>6} {row['component']:>9} "
                     f"{row.get('layers', 'all'):>7} {row['purity']:>7.3f} {row['consistency']:>8.3f} "
                     f"{row['rank']:>5} {row['move']:>6.3f} {row['strongest_move']:>9.3f}")
    lines.append(f"move: the component's mean change of the factor per edit (+{result['span']:g}σ), in units of the "
                 "typical difference between two random real looks; strongest: the largest such change of any "
                 "component")
    lines.append(f"Spearman (automatic vs ground-truth consistency, top 100 by priority): {result['spearman']:.3f}")
    if "ordering" in result:
        lines += format_ordering(result["ordering"], result["categories"])
    return "\n".join(lines)


def format_ordering(ordering: dict, categories: dict) -> list[str]:
    depths = list(next(iter(ordering.values()))["factors"])
    lines = ["within the first N: garment factors shown visibly and consistently / nameable components / invisible "
             "components",
             f"{'order':<11}" + "".join(f"{'N = ' + d:>22}" for d in depths)]
    for name, row in ordering.items():
        if name == "whole set":
            lines.append(f"the whole set: {row['factors']} factors, {row['nameable']} nameable components, "
                         f"{row['invisible']} invisible")
            continue
        cells = [f"{row['factors'][d]:>8g} / {row['nameable'][d]:>5g} / {row['invisible'][d]:>5g}" for d in depths]
        lines.append(f"{name:<11}" + "".join(cells))
    lines.append(f"suggested category right on {categories['accuracy']:.0%} of the "
                 f"{categories['visible_components']} components with a visible effect; confusion (true → suggested):")
    for true, row in sorted(categories["confusion"].items()):
        lines.append(f"  {true:<11} " + ", ".join(f"{k} {v}" for k, v in sorted(row.items(), key=lambda kv: -kv[1])))
    return lines
