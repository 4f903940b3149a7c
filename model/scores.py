"""Automatic scores for every component, measured on rendered edits, and the review priority built from them.

For each component, S seeds (default 6) are rendered unedited (once for the whole set) and at +a σ (a = 2) with the
edit on all ws rows; the per-seed change field is D_s = (img(+aσ) − img(0)) / a, images in 0 … 1. Then:

- effect       mean over seeds of the RMS (over pixels) of the per-pixel RGB change length, per σ.
- consistency  mean pairwise cosine similarity of the seeds' change fields, after 4 × 4 average pooling (a mild
               blur: the same change lands a pixel or two apart on different figures), clipped to [0, 1]:
               identical changes → 1, unrelated changes → about 0, opposite changes → 0. A seed with no change
               counts as similarity 0 with every other seed. The fields are compared in YCbCr with the chroma
               channels weighted ¼: the same edit (a longer sleeve, a shorter hem) changes brightness alike on
               every figure, but its chroma change depends on each garment's own colour. On the demo model this
               raised the rank correlation with the ground-truth consistency (top 100) from 0.31 (plain RGB) to
               0.41; luminance alone scored the same but would call a consistent pure hue shift inconsistent.
- locality     1 − effective area of the mean |change| map, where effective area = exp(entropy) / pixel count:
               uniform change → 0, a change confined to a third of the image → 0.67, one pixel → 1.
  where        the change map's centroid: top / middle / bottom of the figure's vertical extent, and centre /
               sides (mean horizontal distance of the change from the figure's centre line versus the figure's own).
- colour share chroma energy / total energy of the change in YCbCr (Cb, Cr versus Y).
- layer sensitivity  the group (coarse / middle / fine) whose restricted edit changes the image most (fewer seeds).
- suggested category rules on the above (see :func:`suggest_category`); a suggestion for reviewers only.
- priority     consistency × min(1, effect / reference effect)^½ × (0.5 + 0.5 × locality); the reference effect is
               the set's 90th-percentile effect. Dead components (effect below 5 % of that reference) get −1, last.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

CATEGORIES = ("colour", "sleeve", "length", "layers", "pattern", "silhouette", "background", "other")
DEFAULT_SCORE_SEEDS = tuple(range(1000, 1006))
DEFAULT_SPAN = 2.0
LAYER_SEEDS = 1
DEAD_FRACTION = 0.05
POOL = 4
YCBCR = np.array([[0.299, 0.587, 0.114],
                  [-0.168736, -0.331264, 0.5],
                  [0.5, -0.418688, -0.081312]])  # RGB -> Y, Cb, Cr (BT.601)
CHROMA_WEIGHT = 0.25  # weight of Cb, Cr against Y when comparing change fields across seeds (see consistency)


@dataclass
class ComponentScore:
    index: int
    effect: float
    consistency: float
    locality: float
    locality_where: str
    colour_share: float
    layer_sensitivity: str | None
    suggested_category: str
    priority: float
    dead: bool
    outside_share: float = 0.0  # share of the change outside the figure (background)
    high_freq_share: float = 0.0  # share of the change energy at the finest scale (pattern)
    vertical: float = 0.5  # centroid within the figure, 0 top … 1 bottom
    sideness: float = 1.0  # horizontal spread of the change / the figure's own (> 1.15: sides)

    def db_fields(self) -> dict:
        keys = ("index", "effect", "consistency", "locality", "locality_where", "colour_share", "layer_sensitivity",
                "suggested_category", "priority", "dead")
        return {k: getattr(self, k) for k in keys}


# --- measurements on image stacks (float images in 0 … 1, [S, H, W, 3]) -------------------------------------------

def as_float(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    return images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)


def effect_score(changes: np.ndarray) -> float:
    """Mean over seeds of the RMS per-pixel RGB change length."""
    per_pixel = (changes.astype(np.float64) ** 2).sum(axis=-1)  # [S, H, W]
    return float(np.sqrt(per_pixel.mean(axis=(1, 2))).mean())


def _pool(x: np.ndarray, f: int) -> np.ndarray:
    s, h, w, c = x.shape
    f = max(1, min(f, h, w))
    h2, w2 = h // f, w // f
    return x[:, :h2 * f, :w2 * f].reshape(s, h2, f, w2, f, c).mean(axis=(2, 4))


def consistency_score(changes: np.ndarray, pool: int = POOL) -> float:
    """Mean pairwise cosine of the pooled per-seed change fields (YCbCr, chroma weighted ¼), clipped to [0, 1]
    (1 for a single seed)."""
    if len(changes) < 2:
        return 1.0
    ycc = changes.astype(np.float64) @ (YCBCR * np.array([[1.0], [CHROMA_WEIGHT], [CHROMA_WEIGHT]])).T
    flat = _pool(ycc, pool).reshape(len(changes), -1)
    norms = np.linalg.norm(flat, axis=1)
    unit = flat / np.where(norms > 1e-12, norms, np.inf)[:, None]
    sim = unit @ unit.T
    s = len(flat)
    mean = (sim.sum() - np.trace(sim)) / (s * (s - 1))
    return float(np.clip(mean, 0.0, 1.0))


def figure_mask(base: np.ndarray, threshold: float = 0.12) -> np.ndarray:
    """Pixels far from each image's border colour (the runway backdrop), OR-ed over seeds: bool [H, W]."""
    x = as_float(base)
    border = np.concatenate([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], axis=1)  # [S, 4W, 3]
    colour = np.median(border, axis=1)[:, None, None, :]
    far = np.sqrt(((x - colour) ** 2).sum(axis=-1)) > threshold
    return far.any(axis=0)


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out |= np.roll(np.roll(mask, dy, axis=0), dx, axis=1)
    return out


def change_map(changes: np.ndarray) -> np.ndarray:
    """Mean over seeds of the per-pixel change length [H, W]."""
    return np.sqrt((changes.astype(np.float64) ** 2).sum(axis=-1)).mean(axis=0)


def locality_score(changes: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, str, float, float]:
    """(locality, where, vertical position in the figure 0 … 1, sideness)."""
    m = change_map(changes)
    total = m.sum()
    h, w = m.shape
    if total <= 0:
        return 0.0, "none", 0.5, 1.0
    p = m / total
    nz = p[p > 0]
    entropy = float(-(nz * np.log(nz)).sum())
    locality = float(np.clip(1.0 - np.exp(entropy) / (h * w), 0.0, 1.0))
    ys, xs = np.mgrid[0:h, 0:w]
    ys = (ys + 0.5) / h
    xs = (xs + 0.5) / w
    if mask is not None and mask.any():
        rows = np.where(mask.any(axis=1))[0]
        top, bottom = (rows[0]) / h, (rows[-1] + 1) / h
        fig_cx = float(xs[mask].mean())
        fig_spread = float(np.abs(xs[mask] - fig_cx).mean())
    else:
        top, bottom, fig_cx, fig_spread = 0.0, 1.0, 0.5, 0.25
    cy = float((p * ys).sum())
    vertical = float(np.clip((cy - top) / max(bottom - top, 1e-6), 0.0, 1.0))
    spread = float((p * np.abs(xs - fig_cx)).sum())
    sideness = spread / max(fig_spread, 1e-6)
    v = "top" if vertical < 1 / 3 else ("middle" if vertical < 2 / 3 else "bottom")
    hz = "sides" if sideness > 1.15 else "centre"
    return locality, f"{v}-{hz}", vertical, sideness


def colour_share(changes: np.ndarray) -> float:
    """Chroma (Cb, Cr) energy / total YCbCr energy of the change; 0 when nothing changes."""
    ycc = changes.astype(np.float64) @ YCBCR.T
    energy = (ycc ** 2).sum(axis=(0, 1, 2))
    total = energy.sum()
    return float((energy[1] + energy[2]) / total) if total > 0 else 0.0


def luma_coherence(changes: np.ndarray) -> float:
    """|Σ ΔY| / Σ |ΔY| per seed, averaged: 1 when the whole change brightens (or darkens) together."""
    y = changes.astype(np.float64) @ YCBCR[0]
    num = np.abs(y.sum(axis=(1, 2)))
    den = np.abs(y).sum(axis=(1, 2))
    return float(np.mean(np.where(den > 0, num / np.maximum(den, 1e-12), 0.0)))


def high_freq_share(changes: np.ndarray) -> float:
    """Energy of the change minus its 2 × 2-pooled version / total energy: how much lives at the finest scale."""
    x = changes.astype(np.float64)
    s, h, w, c = x.shape
    low = np.repeat(np.repeat(_pool(x, 2), 2, axis=1), 2, axis=2)
    x = x[:, :low.shape[1], :low.shape[2]]
    total = (x ** 2).sum()
    return float(((x - low) ** 2).sum() / total) if total > 0 else 0.0


def outside_share(changes: np.ndarray, mask: np.ndarray | None) -> float:
    if mask is None or not mask.any():
        return 0.0
    m = change_map(changes)
    total = m.sum()
    return float(m[~_dilate(mask, 1)].sum() / total) if total > 0 else 0.0


def suggest_category(colour: float, outside: float, high_freq: float, vertical: float, sideness: float,
                     locality: float, coherence: float, dead: bool = False) -> str:
    """Rules, first match wins:
    dead → other; change mostly outside the figure → background; chroma ≥ 50 % of the change, or a brightness
    change of one sign over a broad area of the figure → colour; finest-scale energy ≥ 45 % → pattern; change at
    the sides in the upper 60 % of the figure → sleeve; change in the lower 40 % → length; at the sides lower down
    → layers; a localised change → silhouette; otherwise other."""
    if dead:
        return "other"
    if outside > 0.5:
        return "background"
    if colour >= 0.5 or (coherence >= 0.85 and locality < 0.6):
        return "colour"
    if high_freq >= 0.45:
        return "pattern"
    if sideness > 1.15 and vertical < 0.6:
        return "sleeve"
    if vertical >= 0.6 and sideness <= 1.15:
        return "length"
    if sideness > 1.15:
        return "layers"
    if locality >= 0.3:
        return "silhouette"
    return "other"


def edit_changes(before: np.ndarray, after: np.ndarray, step: float) -> np.ndarray:
    """Per-seed change fields per σ: (after − before) / step, float [S, H, W, 3] (images uint8 or 0 … 1)."""
    return (as_float(after) - as_float(before)) / float(step)


def measure(changes: np.ndarray, base: np.ndarray, index: int = 0, mask: np.ndarray | None = None) -> ComponentScore:
    """All per-component scores from change fields [S, H, W, 3] (priority and dead are set later, per set)."""
    if mask is None:
        mask = figure_mask(base)
    effect = effect_score(changes)
    consistency = consistency_score(changes)
    locality, where, vertical, sideness = locality_score(changes, mask)
    colour = colour_share(changes)
    outside = outside_share(changes, mask)
    hf = high_freq_share(changes)
    coherence = luma_coherence(changes)
    category = suggest_category(colour, outside, hf, vertical, sideness, locality, coherence)
    return ComponentScore(index, effect, consistency, locality, where, colour, None, category, 0.0, False,
                          outside, hf, vertical, sideness)


def assign_priority(scores: Sequence[ComponentScore], dead_fraction: float = DEAD_FRACTION) -> None:
    """Set `dead` and `priority` in place (see the module docstring)."""
    if not scores:
        return
    effects = np.array([s.effect for s in scores])
    reference = float(np.percentile(effects, 90)) if len(effects) > 1 else float(effects[0])
    reference = max(reference, 1e-9)
    for s in scores:
        s.dead = bool(s.effect < dead_fraction * reference or s.effect < 1e-5)
        if s.dead:
            s.priority = -1.0
            s.suggested_category = "other"
        else:
            s.priority = float(s.consistency * np.sqrt(min(1.0, s.effect / reference)) * (0.5 + 0.5 * s.locality))


# --- rendering the edits for a whole set ---------------------------------------------------------------------------

def edited_ws(ws, vectors, offsets, row_start: int, row_stop: int):
    """ws [S, L, D], vectors [C, D], offsets [C, T] (w units) -> [C * S * T, L, D] component-, seed-, step-major."""
    import torch

    v = torch.as_tensor(vectors, dtype=ws.dtype, device=ws.device)  # [C, D]
    o = torch.as_tensor(offsets, dtype=ws.dtype, device=ws.device)  # [C, T]
    out = ws[None, :, None].repeat(len(v), 1, o.shape[1], 1, 1)  # [C, S, T, L, D]
    delta = o[:, None, :, None] * v[:, None, None, :]  # [C, 1, T, D]
    out[:, :, :, row_start:row_stop] += delta[:, :, :, None, :]
    return out.reshape(-1, ws.shape[1], ws.shape[2])


def render_edits(renderer, ws, vectors: np.ndarray, sigmas: np.ndarray, span: float, row_start: int = 0,
                 row_stop: int | None = None, resolution: int | None = None, batch: int = 128
                 ) -> Iterator[tuple[int, int, np.ndarray]]:
    """Every component's +span σ edit of every latent in ws [S, L, D], a batch of components at a time:
    yields (start, stop, images [stop − start, S, H, W, 3] uint8)."""
    sigmas = np.asarray(sigmas, np.float64)
    row_stop = renderer.num_ws if row_stop is None else row_stop
    per = max(1, batch // len(ws))
    for start in range(0, len(vectors), per):
        stop = min(len(vectors), start + per)
        offsets = (sigmas[start:stop] * span)[:, None]
        images = renderer.synthesize(edited_ws(ws, vectors[start:stop], offsets, row_start, row_stop),
                                     resolution=resolution, chunk=batch)
        yield start, stop, images.reshape(stop - start, len(ws), *images.shape[1:])


def score_set(renderer, vectors: np.ndarray, sigmas: np.ndarray, seeds: Sequence[int] = DEFAULT_SCORE_SEEDS,
              span: float = DEFAULT_SPAN, layer_seeds: int = LAYER_SEEDS, resolution: int | None = None,
              psi: float = 1.0, batch: int = 128, progress: Callable[[int], None] | None = None,
              layer_groups: bool = True) -> list[ComponentScore]:
    """Score every component of a set.

    Renders are shared where possible: the S unedited seeds once, then one edit (+span σ, all ws rows) per seed
    and component (S renders per component), and for layer sensitivity one edit per group on `layer_seeds` seeds.
    """
    from model.discovery import layer_rows

    vectors = np.asarray(vectors, np.float32)
    sigmas = np.asarray(sigmas, np.float64)
    seeds = list(seeds)
    ws = renderer.ws_from_seeds(seeds, psi=psi)
    base = renderer.synthesize(ws, resolution=resolution, chunk=batch)
    mask = figure_mask(base)
    scores: list[ComponentScore] = []
    for start, stop, images in render_edits(renderer, ws, vectors, sigmas, span, resolution=resolution,
                                            batch=batch):
        for i in range(stop - start):
            scores.append(measure(edit_changes(base, images[i], span), base, start + i, mask))
        if progress:
            progress(stop - start)
    if layer_groups and layer_seeds > 0:
        groups = []
        for name in ("coarse", "middle", "fine"):
            try:
                rows = layer_rows(renderer.G, name)
            except Exception:  # a very small model may lack a group
                continue
            groups.append((name, rows[0], rows[-1] + 1))
        n_sub = max(1, min(layer_seeds, len(seeds)))
        sub, sub_base = ws[:n_sub], as_float(base[:n_sub])
        effects = np.zeros((len(vectors), len(groups)))
        for g, (_, r0, r1) in enumerate(groups):
            for start, stop, images in render_edits(renderer, sub, vectors, sigmas, span, r0, r1, resolution, batch):
                changes = (as_float(images) - sub_base[None]) / span
                effects[start:stop, g] = np.sqrt((changes ** 2).sum(-1).mean(axis=(2, 3))).mean(axis=1)
        for i, s in enumerate(scores):
            if groups:
                s.layer_sensitivity = groups[int(np.argmax(effects[i]))][0]
    assign_priority(scores)
    return scores


def priority_order(scores: Sequence[ComponentScore]) -> list[int]:
    """Component indices, highest priority first (ties by index)."""
    return [s.index for s in sorted(scores, key=lambda s: (-s.priority, s.index))]


def store_scores(set_id: int, scores: Sequence[ComponentScore], url: str | None = None) -> int:
    from db.engine import write_session
    from db.queries import ComponentScores, update_scores

    with write_session(url) as session:
        return update_scores(session, set_id, [ComponentScores(**s.db_fields()) for s in scores])


def scores_as_dicts(scores: Sequence[ComponentScore]) -> list[dict]:
    return [asdict(s) for s in scores]
