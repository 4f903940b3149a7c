"""Review strips for the Review page: model.directions.strips' cache drawn for the page, and prefetch of the next
components.

A strip is seeds × steps: each seed's w moved along the component by each step (in σ of that component), on the chosen
ws rows. Rendering, the key and the folder are model.directions.strips.StripCache's, shared with `atelier strip`; this
module encodes the grid and the change heat map (drawn by model.directions.drawing, as everywhere) as display-size JPEGs
under their own suffixes, so moving back and forth, and every teammate, reuses them.

The direction is rendered as stored, never normalised: a step of t σ moves w by float32(t · σ) · vector, exactly
what the Generate slider and an exported direction set do (docs/direction-set.md, "Sliders"), so a strip and a
slider at the same σ show the same picture even for an imported vector that is not unit length.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from annotator import imaging
from model.directions.strips import StripCache, StripResult, StripSpec

log = logging.getLogger("atelier.annotator")

CELL_TARGET = 112  # px per image in the grid (a whole multiple of the model's resolution)
SUFFIXES = (".review.jpg", ".review-heat.jpg")  # beside the CLI's .jpg and -heat.png of the same key


@dataclass(frozen=True)
class StripRequest:
    """One component's strip as the page asks for it: what decides the pixels, and the direction to render it."""

    identity: str  # the renderer's picture_identity: its weights, and its precision unless float32
    spec: StripSpec
    sigma: float
    vector: np.ndarray | None = field(default=None, compare=False, hash=False, repr=False)

    def key(self) -> str:
        return self.spec.key(self.identity)


@dataclass(frozen=True)
class StripImages:
    grid: bytes
    heat: bytes
    grid_path: Path
    heat_path: Path


def draw_for_page(result: StripResult, spec: StripSpec) -> tuple[bytes, bytes]:
    """The grid and the heat map as JPEG bytes (pixels from model.directions.strips; the drawing is
    model.directions.drawing's)."""
    cell = imaging.display_size(result.images.shape[2], CELL_TARGET)
    grid = imaging.strip_grid(result.images, spec.seeds, spec.steps, cell=cell)
    return imaging.to_jpeg(grid), imaging.to_jpeg(imaging.heat_image(result.heatmap, 256))


def strip_cache() -> StripCache:
    """The strip cache under this ATELIER_HOME, drawn for the page."""
    return StripCache(draw=draw_for_page, suffixes=SUFFIXES)


_inflight: dict[str, Future] = {}
_inflight_lock = threading.Lock()


def cached(request: StripRequest) -> StripImages | None:
    hit = strip_cache().lookup(request.identity, request.spec)
    if hit is None:
        return None
    try:
        return StripImages(hit.image.read_bytes(), hit.heatmap.read_bytes(), hit.image, hit.heatmap)
    except OSError:
        return None


def _read(strip) -> StripImages:
    return StripImages(strip.image.read_bytes(), strip.heatmap.read_bytes(), strip.image, strip.heatmap)


def get_strip(request: StripRequest, renderer,
              on_first_view: Callable[[StripImages], None] | None = None) -> StripImages:
    """From the cache, waiting for a prefetch already rendering it, or rendered now. Rendered now and given
    `on_first_view`, a strip expensive enough (a real-size network's on a CPU) first renders a cheap low-resolution
    view and hands it over while the full strip renders (model.directions.strips.StripCache.render_progressively)."""
    found = cached(request)
    if found is not None:
        return found
    key = request.key()
    with _inflight_lock:
        future = _inflight.get(key)
        mine = future is None
        if mine:
            future = Future()
            _inflight[key] = future
    if not mine:
        future.result()
        found = cached(request)
        if found is not None:
            return found
    try:
        if request.vector is None:
            raise ValueError("StripRequest.vector is needed to render")
        vector = np.asarray(request.vector, dtype=np.float32)  # as stored: see the module docstring
        if on_first_view is None:
            strip = strip_cache().get_or_render(renderer, vector, request.sigma, request.spec)
        else:
            for strip in strip_cache().render_progressively(renderer, vector, request.sigma, request.spec):
                if strip.key != key:
                    on_first_view(_read(strip))
        images = _read(strip)
        if mine:
            future.set_result(True)
        return images
    except BaseException as exc:
        if mine:
            future.set_exception(exc)
        raise
    finally:
        if mine:
            with _inflight_lock:
                _inflight.pop(key, None)


class Prefetcher:
    """One background worker (CPU is scarce) rendering the strips the reviewer will most likely see next."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atelier-prefetch")
        self._queued: set[str] = set()
        self._lock = threading.Lock()
        self.futures: list[Future] = []

    def submit(self, requests: Iterable[StripRequest], renderer) -> list[Future]:
        submitted = []
        for request in requests:
            key = request.key()
            with self._lock:
                if key in self._queued or cached(request) is not None:
                    continue
                self._queued.add(key)
            future = self._pool.submit(self._render, request, renderer, key)
            submitted.append(future)
        self.futures = [f for f in self.futures if not f.done()] + submitted
        return submitted

    def _render(self, request: StripRequest, renderer, key: str) -> None:
        try:
            get_strip(request, renderer)
        except Exception:
            log.exception("prefetch of component %s failed", request.spec.component)
        finally:
            with self._lock:
                self._queued.discard(key)

    def wait(self, timeout: float | None = None) -> None:
        for future in list(self.futures):
            future.result(timeout=timeout)


_prefetcher: Prefetcher | None = None
_prefetcher_lock = threading.Lock()


def prefetcher() -> Prefetcher:
    global _prefetcher
    with _prefetcher_lock:
        if _prefetcher is None:
            _prefetcher = Prefetcher()
        return _prefetcher
