"""Publishing checked: the one rule for turning a component into a slider, used by the app and by the CLI.

A slider that changes nothing visible, a component the team has not settled (in conflict) or approvals that
disagree on which layers to move are refused with the reason; ``force`` publishes anyway and the overridden
reasons are stored with the direction, so an override is never silent. Before anything is stored the slider's
effect is rendered (seeds × its range) and measured, and its default range is the span where the edit stays a
plausible look (:func:`plausible_span`).

This module is pure (pictures and numbers in, verdicts out); workflows.publishing applies it to what the database
holds: the reviews' verdicts, proposing, publishing, and which published directions no longer match their approvals.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from core.errors import AtelierError

# Mean absolute pixel change (as a share of the 0–255 range) below which a slider at its ends "changes nothing
# visible": about 2 grey levels on average. On the demo model a colour component on the coarse layers moves 0.3 %.
VISIBLE_CHANGE = 0.008
# The plausible span is searched in these steps up to this far out (σ).
SPAN_STEP = 0.5
SPAN_LIMIT = 3.0
# Never default a side below this (σ): a slider needs room to move, even when its first step already jumps.
SPAN_FLOOR = 1.0
# A step whose change is this many times the average step before it is a jump (a new look, not the same edit).
JUMP_RATIO = 3.0
# The figure "fades" when its contrast falls under this share of the unedited look's.
FADE_RATIO = 0.6
MEASURE_SEEDS = 4
PREVIEW_STEPS = 5
DEFAULT_PSI = 0.7


class PublishRefused(AtelierError):
    """The checks found reasons not to publish; each reason says what is wrong and what to do."""

    def __init__(self, reasons: Sequence[str]):
        self.reasons = tuple(reasons)
        super().__init__("Not published: " + " ".join(self.reasons)
                         + " To publish anyway, override (the app's checkbox, or --force); the override is recorded.")


@dataclass(frozen=True)
class SliderEffect:
    """What a slider does, rendered on a few seeds across its range."""

    seeds: tuple[int, ...]  # one per row
    steps: tuple[float, ...]  # σ values, one per column
    images: np.ndarray = field(compare=False, repr=False)  # uint8 [seeds, steps, H, W, 3]
    change: tuple[float, ...]  # mean |Δ pixel| / 255 against the unedited look, per column

    @property
    def low_change(self) -> float:
        return self.change[0]

    @property
    def high_change(self) -> float:
        return self.change[-1]

    @property
    def measured(self) -> float:
        """The effect stored with a published direction: the larger change at either end."""
        return max(self.low_change, self.high_change)

    @property
    def visible(self) -> bool:
        return self.measured >= VISIBLE_CHANGE


@dataclass(frozen=True)
class Span:
    """Where an edit stays a plausible look, per side (σ), and why each side stops where it does."""

    low: float
    high: float
    low_reason: str
    high_reason: str


@dataclass(frozen=True)
class Proposal:
    """Everything a publish needs, with what the checks found; ``refusals`` empty means it may go out as is."""

    model_id: int
    component_id: int
    component_index: int
    name: str
    category: str | None
    layer_range: tuple[int, int]
    strength_range: tuple[float, float]
    sigma: float
    effect: SliderEffect
    refusals: tuple[str, ...]


@dataclass(frozen=True)
class DirectionFlags:
    """Why a published direction needs attention: its component in conflict, or approved since with other layers."""

    direction_id: int
    conflict: str | None = None
    out_of_date: str | None = None
    approved_layers: tuple[int, int] | None = None  # what the update would publish

    @property
    def any(self) -> bool:
        return bool(self.conflict or self.out_of_date)


# --------------------------------------------------------------------------------------------------------------
# Measuring

_CACHE_ENTRIES = 64
_cache: OrderedDict[tuple, Any] = OrderedDict()
_cache_lock = threading.Lock()


def _cached(key: tuple, compute: Callable[[], Any]) -> Any:
    """The publish form re-measures on every change of a widget; the same settings are rendered once."""
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    value = compute()
    with _cache_lock:
        _cache[key] = value
        while len(_cache) > _CACHE_ENTRIES:
            _cache.popitem(last=False)
    return value


def _key(kind: str, renderer, vector: np.ndarray, *rest: Any) -> tuple:
    digest = hashlib.sha256(np.asarray(vector, np.float32).tobytes()).hexdigest()
    return (kind, renderer.fingerprint, digest, *rest)


def _figure_contrast(images: np.ndarray) -> np.ndarray:
    """Per image, how far its pixels stand from its own border colour: a figure that fades into the background
    (pale ghosts) loses it, while a change of colour or shape keeps it."""
    pixels = images.astype(np.float32)
    border = np.concatenate([pixels[..., 0, :, :], pixels[..., -1, :, :], pixels[..., :, 0, :],
                             pixels[..., :, -1, :]], axis=-2)
    background = np.median(border, axis=-2)  # [..., 3]
    return np.abs(pixels - background[..., None, None, :]).mean(axis=(-3, -2, -1)) / 255.0


def _render_steps(renderer, vector: np.ndarray, sigma: float, layer_range: tuple[int, int],
                  steps: Sequence[float], seeds: Sequence[int], psi: float) -> np.ndarray:
    from model.network.render import strip_ws
    from model.directions.strips import strip_offsets

    class_index = 0 if renderer.c_dim else None
    ws = renderer.ws_from_seeds(list(seeds), psi=psi, class_index=class_index)
    batch = strip_ws(ws, np.asarray(vector, np.float32), strip_offsets(sigma, steps), layer_range[0], layer_range[1])
    images = renderer.synthesize(batch, resolution=_measure_resolution(renderer), chunk=max(1, batch.shape[0]))
    return images.reshape(len(seeds), len(steps), *images.shape[1:])


def _measure_resolution(renderer) -> int:
    """64 px is enough to see whether a slider does anything, and keeps a 256 px model's check quick."""
    stages = [r for r in renderer.stage_resolutions() if r >= 64]
    return min(stages) if stages else renderer.resolution


def measure_effect(renderer, vector: np.ndarray, sigma: float, layer_range: tuple[int, int],
                   strength_range: tuple[float, float], seeds: Sequence[int], psi: float = DEFAULT_PSI,
                   columns: int = PREVIEW_STEPS) -> SliderEffect:
    """Render seeds × ``columns`` steps across the slider's range and measure each column's change from 0 σ."""
    if not seeds:
        raise AtelierError("measuring a slider needs at least one seed")
    key = _key("effect", renderer, vector, float(sigma), tuple(layer_range), tuple(strength_range), tuple(seeds),
               psi, columns)
    return _cached(key, lambda: _measure_effect(renderer, vector, sigma, layer_range, strength_range, seeds, psi,
                                                columns))


def _measure_effect(renderer, vector: np.ndarray, sigma: float, layer_range: tuple[int, int],
                    strength_range: tuple[float, float], seeds: Sequence[int], psi: float,
                    columns: int) -> SliderEffect:
    from model.directions.strips import range_steps

    low, high = strength_range
    steps = range_steps(low, high, max(2, columns))
    images = _render_steps(renderer, vector, sigma, layer_range, (0.0, *steps), seeds, psi)
    base, grid = images[:, :1].astype(np.float32), images[:, 1:]
    change = np.abs(grid.astype(np.float32) - base).mean(axis=(0, 2, 3, 4)) / 255.0
    return SliderEffect(seeds=tuple(int(s) for s in seeds), steps=steps, images=grid,
                        change=tuple(float(c) for c in change))


def _side(changes: np.ndarray, contrast: np.ndarray, base_contrast: float, steps: np.ndarray) -> tuple[float, str]:
    """How far one side may go: stop before the figure fades or the change jumps (a new look, not the edit)."""
    reach = float(steps[-1])
    increments = np.diff(np.concatenate([[0.0], changes]))
    for i, value in enumerate(steps):
        if contrast[i] < FADE_RATIO * base_contrast:
            return max(SPAN_FLOOR, float(steps[i - 1]) if i else SPAN_FLOOR), f"the figure fades beyond {value:g}σ"
        earlier = increments[:i]
        if i >= 2 and earlier.mean() > 0 and increments[i] > JUMP_RATIO * earlier.mean():
            return max(SPAN_FLOOR, float(steps[i - 1])), f"the change jumps at {value:g}σ"
        if i >= 2 and increments[i] < 0:
            return max(SPAN_FLOOR, float(steps[i - 1])), f"the change stops growing at {value:g}σ"
    return reach, f"plausible up to {reach:g}σ (the farthest measured)"


def plausible_span(renderer, vector: np.ndarray, sigma: float, layer_range: tuple[int, int], seeds: Sequence[int],
                   psi: float = DEFAULT_PSI, limit: float = SPAN_LIMIT) -> Span:
    """The slider's default range: per side, the farthest σ where the edit still grows smoothly and the figure
    keeps its contrast against the background (measured on ``seeds``, in steps of ``SPAN_STEP``)."""
    key = _key("span", renderer, vector, float(sigma), tuple(layer_range), tuple(seeds), psi, limit)
    return _cached(key, lambda: _plausible_span(renderer, vector, sigma, layer_range, seeds, psi, limit))


def _plausible_span(renderer, vector: np.ndarray, sigma: float, layer_range: tuple[int, int], seeds: Sequence[int],
                    psi: float, limit: float) -> Span:
    out = np.arange(SPAN_STEP, limit + 1e-9, SPAN_STEP)
    steps = (0.0, *(-out), *out)
    images = _render_steps(renderer, vector, sigma, layer_range, steps, seeds, psi).astype(np.float32)
    base = images[:, :1]
    change = np.abs(images - base).mean(axis=(0, 2, 3, 4)) / 255.0
    contrast = _figure_contrast(images).mean(axis=0)
    n = len(out)
    low, low_reason = _side(change[1:1 + n], contrast[1:1 + n], float(contrast[0]), out)
    high, high_reason = _side(change[1 + n:], contrast[1 + n:], float(contrast[0]), out)
    return Span(low=-low, high=high, low_reason=low_reason, high_reason=high_reason)


def format_layers(layers: tuple[int, int] | None) -> str:
    return "every layer" if layers is None else f"{layers[0]}–{layers[1] - 1}"


def effect_refusal(effect: SliderEffect, layer_range: tuple[int, int], strength_range: tuple[float, float],
                   suggested: str | None = None) -> str | None:
    if effect.visible:
        return None
    hint = f" (the scores say it acts on the {suggested} layers)" if suggested else ""
    return (f"The slider changes nothing visible: at {strength_range[0]:g}σ and {strength_range[1]:g}σ on layers "
            f"{format_layers(layer_range)} the image changes by {effect.low_change:.1%} and {effect.high_change:.1%} "
            f"(needs {VISIBLE_CHANGE:.0%}). Choose the layers where the component acts{hint}.")
