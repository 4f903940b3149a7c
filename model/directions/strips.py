"""Review strips: one component shown on S seeds × T σ-steps, rendered in one batch and cached on disk.

A strip is keyed by everything that decides its pixels (model fingerprint and rendering precision, set, component,
seeds, steps, layer range, centring, truncation, resolution, class). The cache stores a display-size JPEG of the
grid and a heat-map PNG (where in the image the component acts), written via temp file + rename so a page never sees
half a file; a cache may draw them differently (the Review page does) under its own file suffixes. A cache hit is a
stat of two files: no model, no rendering.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from core.errors import AtelierError
from core.files import atomic_write_bytes

DEFAULT_STEPS = 7
DEFAULT_SPAN = 3.0
DISPLAY_CELL = 128  # cells are scaled up to at least this many pixels in the cached JPEG
JPEG_QUALITY = 85
# A strip's quick first view (StripCache.render_progressively): at most this share of the full strip's work, at no
# fewer pixels than this, and only for strips of at least this many GFLOP (a 256-px network's 6 × 7 strip at 64 px is
# about 600; the demo model's, 22, renders in a fraction of a second anyway).
FIRST_VIEW_SHARE = 0.2
FIRST_VIEW_MIN_RESOLUTION = 16
FIRST_VIEW_MIN_GFLOP = 50.0


MAX_STEPS = 41  # columns of one strip; a reviewer compares a handful, and each column is a batch of renders
MAX_STRIP_SEEDS = 64  # rows of one strip
MAX_SPAN = 100.0  # σ; directions stop meaning anything long before this


def range_steps(low: float, high: float, count: int) -> tuple[float, ...]:
    """`count` evenly spaced σ values from `low` to `high`: the one σ-step rule, for review strips (symmetric, via
    :func:`sigma_steps`) and for a slider's preview across its strength range (publishing, exported previews).
    Rounded to 3 decimals, so a label reads "+1.667σ", not "+1.66667σ"."""
    return tuple(round(float(x), 3) for x in np.linspace(low, high, count))


def sigma_steps(count: int = DEFAULT_STEPS, span: float = DEFAULT_SPAN) -> tuple[float, ...]:
    """A strip's steps −span … +span in σ units (7 → −3, −2, …, +3), for `atelier strip`, the Review page and the
    benchmarks; refuses counts and spans no strip should have."""
    if not 2 <= count <= MAX_STEPS:
        raise AtelierError(f"a strip has 2 to {MAX_STEPS} steps, not {count}")
    if not 0 < span <= MAX_SPAN:  # also false for NaN
        raise AtelierError(f"the span of a strip is a number of σ above 0 and at most {MAX_SPAN:g}, not {span}")
    return range_steps(-span, span, count)


DRAWING_VERSION = 3  # part of every cache key: a change to how strips are drawn (2: σ labels in DejaVu Sans; 3: one
#                      drawing with the Review page's, whose strips also stopped normalising the vector) must not be
#                      hidden by strips cached before it


@dataclass(frozen=True)
class StripSpec:
    set_key: str  # component set id (or any stable name for a file-based set)
    component: int
    seeds: tuple[int, ...]
    steps: tuple[float, ...]  # σ offsets
    layer_start: int = 0
    layer_stop: int | None = None  # exclusive; None = through the last row
    centred: bool = False
    resolution: int | None = None  # None = the model's full resolution
    psi: float = 1.0
    class_index: int | None = None  # the class of a conditional model; None for unconditional ones

    def __post_init__(self) -> None:
        if not 1 <= len(self.seeds) <= MAX_STRIP_SEEDS:
            raise AtelierError(f"a strip shows 1 to {MAX_STRIP_SEEDS} seeds, not {len(self.seeds)}; ask for fewer")
        if not 1 <= len(self.steps) <= MAX_STEPS:
            raise AtelierError(f"a strip has 1 to {MAX_STEPS} steps, not {len(self.steps)}")

    def key(self, identity: str) -> str:
        """The cache key; `identity` is the renderer's picture_identity (weights, and precision unless float32)."""
        payload = {"fingerprint": identity, "drawing": DRAWING_VERSION, **asdict(self)}
        payload["seeds"], payload["steps"] = list(self.seeds), [float(s) for s in self.steps]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass
class StripResult:
    images: np.ndarray  # uint8 [S, T, H, W, 3]
    heatmap: np.ndarray  # float32 [H, W] in 0 … 1


def strip_offsets(sigma: float, steps: Sequence[float]) -> list[float]:
    """σ steps to w offsets, rounded to float32 once so strips and single edits add identical numbers."""
    return [float(np.float32(float(t) * float(sigma))) for t in steps]


def render_strip(renderer, vector: np.ndarray, sigma: float, spec: StripSpec) -> StripResult:
    """One batched render of S × T images (seed-major) and the strip's change heat map."""
    from model.network.render import strip_ws

    if not spec.seeds:
        raise AtelierError("a strip needs at least one seed")
    ws = renderer.ws_from_seeds(list(spec.seeds), psi=spec.psi, class_index=spec.class_index)
    batch = strip_ws(ws, np.asarray(vector, np.float32), strip_offsets(sigma, spec.steps), spec.layer_start,
                     spec.layer_stop, spec.centred)
    images = renderer.synthesize(batch, resolution=spec.resolution, chunk=max(1, batch.shape[0]))
    s, t = len(spec.seeds), len(spec.steps)
    images = images.reshape(s, t, *images.shape[1:])
    return StripResult(images, change_heatmap(images))


def change_heatmap(images: np.ndarray) -> np.ndarray:
    """Where the strip changes: per pixel, the mean over seeds and steps of the colour distance to the seed's
    middle step, normalised to 0 … 1 (all zeros when nothing changes)."""
    x = images.astype(np.float32) / 255.0
    middle = x[:, x.shape[1] // 2: x.shape[1] // 2 + 1]
    heat = np.sqrt(((x - middle) ** 2).sum(axis=-1)).mean(axis=(0, 1))
    peak = float(heat.max())
    return (heat / peak if peak > 0 else heat).astype(np.float32)


def _encode(array: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    if fmt == "JPEG":
        Image.fromarray(array).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    else:
        Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def draw_strip(result: StripResult, spec: StripSpec) -> tuple[bytes, bytes]:
    """The grid (model.directions.drawing's, as on the Review page) as a JPEG with cells of at least DISPLAY_CELL px,
    and the heat map as a PNG of about the same size."""
    from model.directions.drawing import heat_image, strip_grid

    cell = max(result.images.shape[2], DISPLAY_CELL)
    return (_encode(np.asarray(strip_grid(result.images, spec.seeds, spec.steps, cell=cell)), "JPEG"),
            _encode(np.asarray(heat_image(result.heatmap, cell)), "PNG"))


Draw = Callable[[StripResult, StripSpec], tuple[bytes, bytes]]  # rendered strip -> (grid file, heat-map file)


@dataclass(frozen=True)
class CachedStrip:
    image: Path  # the grid, as the cache draws it (by default a display-size JPEG with σ labels)
    heatmap: Path  # the heat map (by default a PNG)
    key: str
    cached: bool  # True when it came from the cache without rendering


class StripCache:
    """Strips on disk under root/<key[:2]>/<key><grid suffix> and <key><heat suffix> (.jpg and -heat.png).

    ``draw`` makes the two files' bytes from a rendered strip. The key names the pixels, not their drawing, so a
    cache that draws differently in the same root needs its own ``suffixes``.
    """

    def __init__(self, root: str | Path | None = None, draw: Draw = draw_strip,
                 suffixes: tuple[str, str] = (".jpg", "-heat.png")):
        if root is None:
            from core.settings import cache_dir

            root = cache_dir() / "strips"
        self.root = Path(root)
        self.draw, self.suffixes = draw, suffixes

    def paths(self, key: str) -> tuple[Path, Path]:
        folder = self.root / key[:2]
        return folder / f"{key}{self.suffixes[0]}", folder / f"{key}{self.suffixes[1]}"

    def lookup(self, identity: str, spec: StripSpec) -> CachedStrip | None:
        """The cached strip, or None; needs no model (`identity`: the renderer's picture_identity)."""
        key = spec.key(identity)
        image, heat = self.paths(key)
        if image.exists() and heat.exists():
            return CachedStrip(image, heat, key, True)
        return None

    def get_or_render(self, renderer, vector: np.ndarray, sigma: float, spec: StripSpec) -> CachedStrip:

        hit = self.lookup(renderer.picture_identity, spec)
        if hit is not None:
            return hit
        grid, heatmap = self.draw(render_strip(renderer, vector, sigma, spec), spec)
        key = spec.key(renderer.picture_identity)
        image, heat = self.paths(key)
        atomic_write_bytes(heat, heatmap)
        atomic_write_bytes(image, grid)  # image last: lookup needs both
        return CachedStrip(image, heat, key, False)

    def render_progressively(self, renderer, vector: np.ndarray, sigma: float, spec: StripSpec,
                             min_gflop: float | None = None) -> Iterator[CachedStrip]:
        """The strip in views that sharpen: where the full strip is not cached and costs enough to make a reviewer
        wait, first a cheap low-resolution view (:func:`first_view_spec`, cached under its own key), then the full
        strip. Yields one or two strips; the last is always the full one."""
        hit = self.lookup(renderer.picture_identity, spec)
        if hit is not None:
            yield hit
            return
        quick = first_view_spec(renderer, spec, min_gflop=min_gflop)
        if quick is not None:
            yield self.get_or_render(renderer, vector, sigma, quick)
        yield self.get_or_render(renderer, vector, sigma, spec)


def first_view_resolution(renderer, spec: StripSpec, share: float = FIRST_VIEW_SHARE,
                          min_gflop: float | None = None) -> int | None:
    """The resolution of a strip's quick first view: the largest stage of at least FIRST_VIEW_MIN_RESOLUTION px
    whose rendering costs at most `share` of the full strip's (FLOPs counted from the network's shapes). None where
    a first view would not help: on a GPU, for strips under `min_gflop` (they render in well under a second on a
    CPU), or when no stage is cheap enough."""
    from model.network.render import synthesis_flops

    if renderer.device.type != "cpu":
        return None
    min_gflop = FIRST_VIEW_MIN_GFLOP if min_gflop is None else min_gflop
    target = spec.resolution or renderer.resolution
    full = synthesis_flops(renderer.G, len(spec.seeds) * len(spec.steps), target)
    if full < min_gflop * 1e9:
        return None
    cheap = [r for r in renderer.stage_resolutions() if FIRST_VIEW_MIN_RESOLUTION <= r < target
             and synthesis_flops(renderer.G, 1, r) <= share * synthesis_flops(renderer.G, 1, target)]
    return max(cheap) if cheap else None


def first_view_spec(renderer, spec: StripSpec, min_gflop: float | None = None) -> StripSpec | None:
    """`spec` at its first view's resolution (same seeds, steps and layers), or None (see first_view_resolution)."""
    resolution = first_view_resolution(renderer, spec, min_gflop=min_gflop)
    return None if resolution is None else replace(spec, resolution=resolution)


MAX_STRIP_RESOLUTION = 128  # px: a review strip cell is shown far smaller; larger renders only cost time


def strip_resolution(renderer) -> int | None:
    """The resolution review strips render at, in the app and in `atelier strip` alike: at most
    MAX_STRIP_RESOLUTION (None = the model's own)."""
    resolution = min(renderer.resolution, MAX_STRIP_RESOLUTION)
    return None if resolution == renderer.resolution else resolution
