"""Automatic scores for every component, measured on rendered edits, and the review priority built from them.

The priority has to match a designer's judgement: a change people can see, the same on every look, on the garment
rather than the backdrop. So every ingredient is measured in units a person perceives and none is relative to the
rest of the set (a set where most components do nearly nothing would otherwise make "nearly nothing" look big),
which also lets the queue use each component's scores as soon as it has them.

Each component is edited by ±a σ (a = 2) on S seeds (default 6) on every ws row, and on the rows of each layer
group (coarse / middle / fine) on fewer seeds (default 2). For each of these readings (layers × side):

- visible      the share of the image whose colour visibly changes: per-pixel RGB change length ≥ VISIBLE_CHANGE
               (0 … 1 units; 0.1 is about 15 levels of 255 on every channel) once the images are at the size a
               review strip shows them, averaged over seeds.
- consistency  mean pairwise cosine similarity of the seeds' change fields, after 4 × 4 average pooling (a mild
               blur: the same change lands a pixel or two apart on different figures), clipped to [0, 1]:
               identical changes → 1, unrelated changes → about 0, opposite changes → 0. A seed with no change
               counts as similarity 0 with every other seed. The fields are compared in YCbCr with the chroma
               channels weighted ¼: the same edit (a longer sleeve, a shorter hem) changes brightness alike on
               every figure, but its chroma change depends on each garment's own colour.
- fade         how much of the figure's contrast against the backdrop the edit takes away (0 … 1): an edit that
               leaves the image manifold turns figures into pale ghosts on that side.
- value        min(1, visible / VISIBLE_FULL)^½ × (½ + ½ consistency′) × (1 − fade), where consistency′ is the
               consistency shrunk by pairs / (pairs + 1) for the number of seed pairs it was measured on (2 seeds:
               ½; 6 seeds: 15/16), so that a lucky 2-seed reading does not beat a 6-seed one.

The component's priority is the best reading's value (the better of its two sides, on its best layers, as a
reviewer would try them), halved when that edit is a background or global-lighting change (garment changes come
first). A component whose edit is visible nowhere (no reading reaches INVISIBLE_SHARE) is dead: priority −1, left
out of the queue. `details` keeps every reading and a one-line reason, for the reviewer's "why is this here?".

The descriptive scores come from the chosen reading's change fields (per σ):

- effect       mean over seeds of the RMS (over pixels) of the per-pixel RGB change length, per σ.
- locality     1 − effective area of the mean |change| map, where effective area = exp(entropy) / pixel count:
               uniform change → 0, a change confined to a third of the image → 0.67, one pixel → 1.
  where        the change map's centroid: top / middle / bottom of the figure's vertical extent, and centre /
               sides (mean horizontal distance of the change from the figure's centre line versus the figure's own).
- colour share chroma energy / total energy of the change in YCbCr (Cb, Cr versus Y).
- layer sensitivity  the layers of the chosen reading ("all" or a group): the range the component opens on.
- suggested category rules on the above (see :func:`suggest_category`); a suggestion for reviewers only.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

CATEGORIES = ("colour", "sleeve", "length", "layers", "pattern", "silhouette", "background", "other")
DEFAULT_SCORE_SEEDS = tuple(range(1000, 1006))
DEFAULT_SPAN = 2.0
GROUP_SEEDS = 2  # seeds for each layer group's readings (the all-rows readings use every seed)
LAYER_GROUPS = ("coarse", "middle", "fine")
POOL = 4
VIEW_SIZE = 64  # the strip cell size a reviewer judges an edit at (px); larger renders are pooled down to it
VISIBLE_CHANGE = 0.1  # per-pixel RGB change length (0 … 1) that a person sees at that size
VISIBLE_FULL = 0.05  # share of the image changing visibly at which an edit counts as fully visible
INVISIBLE_SHARE = 0.001  # below this on every reading the edit is barely visible: after every visible one
FAINT_CHANGE = 0.05  # a change length only a careful eye sees (about 7 levels of 255 per channel)
INVISIBLE_FAINT = 0.0005  # below this share of faint change on every reading the edit is invisible: dead
CONSISTENCY_WEIGHT = 0.5  # how much consistency counts: a strong edit that differs between looks (a coat appearing
# in another cut on every figure) still beats a faint uniform one
BACKDROP_WEIGHT = 0.5  # background and global-lighting edits rank after garment edits of the same strength
YCBCR = np.array([[0.299, 0.587, 0.114],
                  [-0.168736, -0.331264, 0.5],
                  [0.5, -0.418688, -0.081312]])  # RGB -> Y, Cb, Cr (BT.601)
CHROMA_WEIGHT = 0.25  # weight of Cb, Cr against Y when comparing change fields across seeds (see consistency)


@dataclass(frozen=True)
class Reading:
    """One edit of one component, read on rendered images: on `layers` ("all" or a group), towards `side` (±1)."""

    layers: str
    side: int
    seeds: int
    visible: float
    consistency: float
    fade: float
    faint: float = 1.0  # share of the image changing at all (FAINT_CHANGE), for telling invisible edits apart
    kind: str = "garment"  # garment | background | lighting (edit_kind)

    @property
    def value(self) -> float:
        return reading_value(self.visible, self.consistency, self.fade, self.seeds)

    @property
    def label(self) -> str:
        return f"{'+' if self.side > 0 else '−'} side, {self.layers} layers"


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
    kind: str = "garment"  # garment | background | lighting (see edit_kind)
    readings: list[Reading] = field(default_factory=list)
    best: Reading | None = None
    reason: str = ""

    def details(self) -> dict:
        """The priority's ingredients, stored with the component (db: components.score_details)."""
        return {
            "version": 2, "reason": self.reason, "kind": self.kind,
            "best": None if self.best is None else _reading_dict(self.best),
            "readings": [_reading_dict(r) for r in self.readings],
        }

    def db_fields(self) -> dict:
        keys = ("index", "effect", "consistency", "locality", "locality_where", "colour_share", "layer_sensitivity",
                "suggested_category", "priority", "dead")
        return {**{k: getattr(self, k) for k in keys}, "score_details": self.details()}


def _reading_dict(r: Reading) -> dict:
    return {"layers": r.layers, "side": r.side, "seeds": r.seeds, "visible": round(r.visible, 5),
            "consistency": round(r.consistency, 4), "fade": round(r.fade, 4), "faint": round(r.faint, 5),
            "kind": r.kind, "value": round(r.value, 4)}


def reading_value(visible: float, consistency: float, fade: float, seeds: int) -> float:
    """How much a reviewer gets from one edit (see the module docstring). The consistency of few seeds is shrunk
    towards 0 by pairs / (pairs + 1): the best of several noisy readings would otherwise win by luck."""
    seen = min(1.0, max(visible, 0.0) / VISIBLE_FULL) ** 0.5
    pairs = seeds * (seeds - 1) / 2
    trusted = consistency * pairs / (pairs + 1)
    return float(seen * (1 - CONSISTENCY_WEIGHT + CONSISTENCY_WEIGHT * trusted) * (1.0 - fade))


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
    """Binary dilation by a (2r + 1)² square, as a row pass then a column pass (no wrap-around)."""
    out = mask.copy()
    for axis in (0, 1):
        grown = out.copy()
        for d in range(1, r + 1):
            shifted = np.zeros_like(out)
            if axis == 0:
                shifted[d:], grown_up = out[:-d], np.zeros_like(out)
                grown_up[:-d] = out[d:]
            else:
                shifted[:, d:], grown_up = out[:, :-d], np.zeros_like(out)
                grown_up[:, :-d] = out[:, d:]
            grown |= shifted | grown_up
        out = grown
    return out


@functools.lru_cache(maxsize=8)
def _near_figure(mask_bytes: bytes, shape: tuple[int, int]) -> np.ndarray:
    """The figure grown by an eighth of the image width: a coat or a wider skirt changes pixels there, a backdrop
    change does not (cached: every component of a set shares one mask)."""
    mask = np.frombuffer(mask_bytes, dtype=bool).reshape(shape)
    return _dilate(mask, max(1, shape[1] // 8))


def change_map(changes: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """Mean over seeds of the per-pixel change length [H, W]; lengths below `floor` count as 0 (so that a faint
    ripple over the whole image does not hide where the visible change is)."""
    lengths = np.sqrt((changes.astype(np.float64) ** 2).sum(axis=-1))
    if floor > 0:
        lengths = np.where(lengths >= floor, lengths, 0.0)
    return lengths.mean(axis=0)


BROAD_FAINT = 0.25  # when less than this share of a change is above the floor, the change is broad and faint


def where_map(changes: np.ndarray, floor: float) -> np.ndarray:
    """The change map where an edit acts: its changes of at least `floor`, unless those hold less than BROAD_FAINT
    of the whole change (then the edit is a broad, faint one, such as a backdrop tint, and is described as such)."""
    full = change_map(changes)
    floored = change_map(changes, floor) if floor > 0 else full
    return floored if floored.sum() >= BROAD_FAINT * full.sum() and floored.any() else full


def map_locality(m: np.ndarray) -> float:
    """1 − exp(entropy) / pixel count of a change map (see the module docstring); 0 for no change."""
    total = m.sum()
    if total <= 0:
        return 0.0
    nz = m[m > 0] / total
    entropy = float(-(nz * np.log(nz)).sum())
    return float(np.clip(1.0 - np.exp(entropy) / m.size, 0.0, 1.0))


def locality_score(changes: np.ndarray, mask: np.ndarray | None = None, m: np.ndarray | None = None
                   ) -> tuple[float, str, float, float]:
    """(locality, where, vertical position in the figure 0 … 1, sideness); `m`: the change map, when computed."""
    m = change_map(changes) if m is None else m
    total = m.sum()
    h, w = m.shape
    if total <= 0:
        return 0.0, "none", 0.5, 1.0
    p = m / total
    locality = map_locality(m)
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


def outside_share(changes: np.ndarray, mask: np.ndarray | None, m: np.ndarray | None = None) -> float:
    """Share of the change map (`m`, computed from `changes` when not given) lying away from the figure."""
    if mask is None or not mask.any():
        return 0.0
    m = change_map(changes) if m is None else m
    total = m.sum()
    near = _near_figure(np.ascontiguousarray(mask, dtype=bool).tobytes(), mask.shape)
    return float(m[~near].sum() / total) if total > 0 else 0.0


LAYER_AREA = 0.15  # a non-colour change over this share of the image is a garment layer coming or going


def on_backdrop(outside: float, locality: float) -> bool:
    """The change lies mostly away from the figure, or spreads over the whole image with a quarter of it away from
    the figure (a backdrop tint also touches the figure's edges)."""
    return outside > 0.5 or (locality < 0.3 and outside >= 0.25)


def suggest_category(colour: float, outside: float, high_freq: float, vertical: float, sideness: float,
                     locality: float, coherence: float, dead: bool = False, visible: float = 0.0) -> str:
    """Rules, first match wins:
    dead → other; on the backdrop (on_backdrop) → background; chroma ≥ 50 % of the change, or a brightness change
    of one sign over a broad area of the figure → colour; finest-scale energy ≥ 45 % → pattern; a change of shape
    and shade (chroma < 30 %) over at least LAYER_AREA of the image → layers (a coat or a top layer appears or
    goes); change at the sides in the upper 60 % of the figure → sleeve; change in the lower 40 % → length; at the
    sides lower down → layers; a localised change → silhouette; otherwise other.
    Checked on the demo model against the factor predictor (atelier bench discovery: the category table)."""
    if dead:
        return "other"
    if on_backdrop(outside, locality):
        return "background"
    if colour >= 0.5 or (coherence >= 0.85 and locality < 0.6):
        return "colour"
    if high_freq >= 0.45:
        return "pattern"
    if visible >= LAYER_AREA and colour < 0.3:
        return "layers"
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


def measure(changes: np.ndarray, base: np.ndarray, index: int = 0, mask: np.ndarray | None = None,
            floor: float = 0.0, visible: float = 0.0) -> ComponentScore:
    """The descriptive scores of one edit from its change fields [S, H, W, 3] (priority and dead are set by
    :func:`rank`); where the edit acts is read from changes of at least `floor` (see where_map); `visible`: the
    share of the image it visibly changes (see visible_share), for the category."""
    if mask is None:
        mask = figure_mask(base)
    m = where_map(changes, floor)
    effect = effect_score(changes)
    consistency = consistency_score(changes)
    locality, where, vertical, sideness = locality_score(changes, mask, m)
    colour = colour_share(changes)
    outside = outside_share(changes, mask, m)
    hf = high_freq_share(changes)
    coherence = luma_coherence(changes)
    category = suggest_category(colour, outside, hf, vertical, sideness, locality, coherence, visible=visible)
    return ComponentScore(index, effect, consistency, locality, where, colour, None, category, 0.0, False,
                          outside, hf, vertical, sideness, edit_kind(outside, coherence, locality, colour))


def edit_kind(outside: float, coherence: float, locality: float, colour: float) -> str:
    """garment, or background (the change lies mostly outside the figure), or lighting (one brightness change of one
    sign spread over the whole image, little colour)."""
    if on_backdrop(outside, locality):
        return "background"
    if coherence >= 0.85 and locality < 0.3 and colour < 0.3:
        return "lighting"
    return "garment"


# --- readings: how visible, consistent and plausible one edit is ------------------------------------------------------

def view_size_changes(changes: np.ndarray, view: int = VIEW_SIZE) -> np.ndarray:
    """Change fields at the size a reviewer sees them: average-pooled down to `view` px when larger."""
    factor = changes.shape[1] // view
    return _pool(changes, factor) if factor > 1 else changes


def visible_share(changes: np.ndarray, threshold: float = VISIBLE_CHANGE) -> float:
    """Mean over seeds of the share of pixels whose RGB change length reaches `threshold` (changes of the whole
    edit, not per σ; 0 … 1 units)."""
    return float((change_lengths(changes) >= threshold).mean())


def change_lengths(changes: np.ndarray) -> np.ndarray:
    """Per-pixel RGB change length [S, h, w] at the size a reviewer sees (see view_size_changes)."""
    view = view_size_changes(np.asarray(changes, np.float32))
    return np.sqrt((view ** 2).sum(axis=-1))


def figure_presence(images: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per image, the mean colour distance of the figure's pixels from the image's own backdrop colour."""
    x = as_float(images)
    border = np.concatenate([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], axis=1)
    backdrop = np.median(border, axis=1)[:, None, None, :]
    distance = np.sqrt(((x - backdrop) ** 2).sum(axis=-1))
    return distance[:, mask].mean(axis=1) if mask.any() else distance.mean(axis=(1, 2))


def fade_score(base: np.ndarray, after: np.ndarray, mask: np.ndarray, before: np.ndarray | None = None) -> float:
    """How much of the figures' contrast with the backdrop the edit takes away, mean over seeds (0: none; 0.5: the
    figures are half as distinct, pale ghosts). Figures that gain contrast count as 0. `before`: the base images'
    figure_presence, when the caller has it already."""
    before = figure_presence(base, mask) if before is None else before
    now = figure_presence(after, mask)
    return float(np.clip(1.0 - now / np.maximum(before, 1e-6), 0.0, 1.0).mean())


def read_edit(base: np.ndarray, after: np.ndarray, layers: str, side: int, mask: np.ndarray,
              base_presence: np.ndarray | None = None) -> Reading:
    """One reading of an edit: base and after are the unedited and edited images of the same seeds."""
    total = as_float(after) - as_float(base)
    lengths = change_lengths(total)
    return Reading(layers=layers, side=int(side), seeds=len(base), visible=float((lengths >= VISIBLE_CHANGE).mean()),
                   consistency=consistency_score(total), fade=fade_score(base, after, mask, base_presence),
                   faint=float((lengths >= FAINT_CHANGE).mean()), kind=kind_of(total, mask))


def kind_of(changes: np.ndarray, mask: np.ndarray | None) -> str:
    """:func:`edit_kind` of a change field, measured on its own (cheaper than :func:`measure`)."""
    m = where_map(changes, FAINT_CHANGE)
    return edit_kind(outside_share(changes, mask, m), luma_coherence(changes), map_locality(m), colour_share(changes))


# --- the priority -----------------------------------------------------------------------------------------------------

def kind_weight(kind: str) -> float:
    return 1.0 if kind == "garment" else BACKDROP_WEIGHT


def choose_reading(readings: Sequence[Reading]) -> Reading:
    """The reading a component is ranked by and opens on: the highest value, backdrop edits weighted down; ties go
    to every layer, then to the + side."""
    return max(readings, key=lambda r: (r.value * kind_weight(r.kind), r.layers == "all", r.side))


def rank(score: ComponentScore, readings: Sequence[Reading]) -> Reading | None:
    """Set priority, dead, kind, layers and reason from a component's readings; returns the reading chosen."""
    score.readings = list(readings)
    if not readings:
        score.priority, score.dead, score.best = -1.0, True, None
        score.reason = "no readings: nothing was rendered"
        return None
    best = choose_reading(readings)
    score.best = best
    score.kind = best.kind
    score.layer_sensitivity = best.layers
    value = best.value * kind_weight(best.kind)
    most_visible = max(r.visible for r in readings)
    if max(r.faint for r in readings) < INVISIBLE_FAINT:
        score.dead, score.priority = True, -1.0
        score.suggested_category = "other"
        score.reason = (f"invisible at ±{DEFAULT_SPAN:g}σ: not even a faint change on "
                        f"{INVISIBLE_FAINT:.2%} of the image; left out of the queue")
        return best
    score.dead = False
    if most_visible < INVISIBLE_SHARE:
        score.priority = value - 1.0  # below every visible edit, still ordered among the barely visible
        score.reason = (f"barely visible at ±{DEFAULT_SPAN:g}σ ({most_visible:.2%} of the image changes visibly): "
                        f"after every visible edit")
        return best
    score.priority = value
    score.reason = _reason(best, readings)
    return best


def _reason(best: Reading, readings: Sequence[Reading]) -> str:
    parts = [f"{best.visible:.0%} of the image changes visibly" if best.visible >= 0.01 else
             f"{best.visible:.1%} of the image changes visibly",
             f"consistency {best.consistency:.2f} across looks", best.label]
    other = [r for r in readings if r.layers == best.layers and r.side == -best.side]
    if best.fade >= 0.05:
        parts.append(f"figures fade {best.fade:.0%}")
    if other and other[0].fade >= 0.2:
        parts.append(f"the other side fades figures {other[0].fade:.0%}")
    elif other and other[0].value < 0.5 * best.value:
        parts.append("the other side is weaker")
    if best.kind != "garment":
        parts.append(f"{best.kind} change: ranked after garment edits")
    return "; ".join(parts)


def priority_order(scores: Sequence[ComponentScore]) -> list[int]:
    """Component indices, highest priority first (ties by index)."""
    return [s.index for s in sorted(scores, key=lambda s: (-s.priority, s.index))]


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


@dataclass(frozen=True)
class Variant:
    """One kind of edit every component gets: ±span σ on the ws rows [row_start, row_stop) of `seeds` seeds."""

    layers: str
    row_start: int
    row_stop: int
    side: int
    seeds: int


def score_variants(renderer, seeds: int, group_seeds: int = GROUP_SEEDS, layer_groups: bool = True) -> list[Variant]:
    """Both sides on every row with all seeds, and both sides of each layer group with `group_seeds` seeds."""
    from model.directions.discovery import row_span

    variants = [Variant("all", 0, renderer.num_ws, side, seeds) for side in (1, -1)]
    if not layer_groups or group_seeds <= 0:
        return variants
    for name in LAYER_GROUPS:
        try:
            r0, r1 = row_span(renderer.G, name)
        except Exception:  # a very small model may lack a group
            continue
        variants += [Variant(name, r0, r1, side, max(1, min(group_seeds, seeds))) for side in (1, -1)]
    return variants


def score_components(renderer, vectors: np.ndarray, sigmas: np.ndarray, seeds: Sequence[int] = DEFAULT_SCORE_SEEDS,
                     span: float = DEFAULT_SPAN, group_seeds: int = GROUP_SEEDS, resolution: int | None = None,
                     psi: float = 1.0, batch: int = 128, layer_groups: bool = True,
                     indices: Sequence[int] | None = None) -> Iterator[list[ComponentScore]]:
    """Score the components in their order (eigenvalue order for SeFa and PCA), a batch at a time, so callers can
    store each batch as it is done and the queue can use it at once (every score is absolute, none needs the
    rest of the set). `indices`: only these components (default all), in this order."""
    order = np.arange(len(vectors)) if indices is None else np.asarray(list(indices), dtype=np.int64)
    vectors = np.asarray(vectors, np.float32)[order]
    sigmas = np.asarray(sigmas, np.float64)[order]
    seeds = list(seeds)
    ws = renderer.ws_from_seeds(seeds, psi=psi)
    base = renderer.synthesize(ws, resolution=resolution, chunk=batch)
    mask = figure_mask(base)
    variants = score_variants(renderer, len(seeds), group_seeds, layer_groups)
    per = max(1, batch // sum(v.seeds for v in variants))  # components per batch: about `batch` renders
    for start in range(0, len(vectors), per):
        stop = min(len(vectors), start + per)
        rendered = {}
        for v in variants:
            offsets = (sigmas[start:stop] * span * v.side)[:, None]
            images = renderer.synthesize(edited_ws(ws[:v.seeds], vectors[start:stop], offsets, v.row_start, v.row_stop),
                                         resolution=resolution, chunk=batch)
            rendered[v] = images.reshape(stop - start, v.seeds, *images.shape[1:])
        yield [score_edits(int(order[start + i]), base, {v: rendered[v][i] for v in variants}, span, mask)
               for i in range(stop - start)]


def score_edits(index: int, base: np.ndarray, edits: dict[Variant, np.ndarray], span: float,
                mask: np.ndarray) -> ComponentScore:
    """Read every variant of one component's edit (its images after the edit), rank the component by the best
    reading, and describe that reading's change (effect, locality, category, …)."""
    presence = figure_presence(base, mask)
    readings = [read_edit(base[:v.seeds], after, v.layers, v.side, mask, presence[:v.seeds])
                for v, after in edits.items()]
    best = choose_reading(readings)
    variant = next(v for v in edits if (v.layers, v.side) == (best.layers, best.side))
    seed_base = base[:variant.seeds]
    score = measure(edit_changes(seed_base, edits[variant], span), seed_base, index, mask, FAINT_CHANGE / span,
                    best.visible)
    rank(score, readings)
    return score


QUICK_SEEDS = 2  # the first pass: both sides on every row, on this many seeds
REFINE_TOP = 128  # ... then every reading for the components the first pass ranks highest


def scoring_resolution(renderer) -> int | None:
    """The render size for scoring: the smallest of the model's stages that is at least VIEW_SIZE (a reviewer
    judges an edit at that size, and everything is pooled down to it anyway); None (full size) for small models."""
    stages = [r for r in renderer.stage_resolutions() if r >= VIEW_SIZE]
    return min(stages) if stages and min(stages) < renderer.resolution else None


def default_refine(renderer) -> int | None:
    """How many components a two-pass scoring refines: REFINE_TOP, for models of every size.

    Measured on the demo model (64 px, 512 components, `atelier bench discovery`): the two passes order the queue's
    first 32 as one full pass does against the ground truth (the same garment factors, nameable and invisible
    components), and the top 128 keep the consistency's rank correlation with the ground truth (0.745; 0.54 when
    only the top 64 were refined); at 256 px they are what makes the queue ready in seconds. A set of at most
    REFINE_TOP components gets one full pass (scoring_passes)."""
    return REFINE_TOP


def scoring_passes(renderer, count: int, refine: int | None | str = "auto") -> int | None:
    """How many of `count` components a scoring refines in its second pass (``"auto"``: default_refine), or None for
    one full pass — also when it would refine them all, as a quick pass first would only add work."""
    passes = default_refine(renderer) if refine == "auto" else (refine or None)
    return passes if passes and passes < count else None


def score_set(renderer, vectors: np.ndarray, sigmas: np.ndarray, seeds: Sequence[int] = DEFAULT_SCORE_SEEDS,
              span: float = DEFAULT_SPAN, group_seeds: int = GROUP_SEEDS, resolution: int | None = None,
              psi: float = 1.0, batch: int = 128, progress: Callable[[int], None] | None = None,
              layer_groups: bool = True, on_batch: Callable[[list[ComponentScore]], None] | None = None,
              refine: int | None = None) -> list[ComponentScore]:
    """Score every component of a set (see :func:`score_components`); `on_batch` gets each batch as it is done
    (to store it), `progress` the number of components in it.

    refine=None scores every component with every reading in one pass. refine=N scores every component first with
    a quick reading (both sides on every row, QUICK_SEEDS seeds: a queue in a few minutes even for a large model),
    then scores again, with every reading, the N the quick pass ranks highest (so the top of the queue is exact
    and opens on its best layers); `progress` then counts len(vectors) + N steps.
    """
    def run(**kwargs) -> list[ComponentScore]:
        found: list[ComponentScore] = []
        for done in score_components(renderer, vectors, sigmas, span=span, resolution=resolution, psi=psi,
                                     batch=batch, **kwargs):
            found += done
            if on_batch:
                on_batch(done)
            if progress:
                progress(len(done))
        return found

    if refine is None:
        return run(seeds=seeds, group_seeds=group_seeds, layer_groups=layer_groups)
    scores = run(seeds=list(seeds)[:QUICK_SEEDS], layer_groups=False)
    top = [s.index for s in sorted(scores, key=lambda s: (-s.priority, s.index))[:max(0, refine)]]
    for better in run(seeds=seeds, group_seeds=group_seeds, layer_groups=layer_groups, indices=sorted(top)):
        scores[better.index] = better
    return scores


def scores_as_dicts(scores: Sequence[ComponentScore]) -> list[dict]:
    return [asdict(s) for s in scores]
