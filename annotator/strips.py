"""Review strips for the Review page: rendering, an on-disk JPEG cache, and prefetch of the next components.

A strip is seeds × steps: each seed's w moved along the component by each step (in σ of that component), on the
chosen ws rows. The grid (σ under each column) and the change heat map are stored as display-size JPEGs keyed by
everything that changes the picture, so moving back and forth, and every teammate, reuses them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from annotator import imaging
from model.settings import cache_dir

log = logging.getLogger("atelier.annotator")

CACHE_VERSION = 2
CELL_TARGET = 112  # px per image in the grid (a whole multiple of the model's resolution)
MAX_STRIP_RESOLUTION = 128


@dataclass(frozen=True)
class StripRequest:
    model_path: str
    fingerprint: str
    set_id: int
    index: int
    sigma: float
    seeds: tuple[int, ...]
    steps: tuple[float, ...]  # in σ
    layer_start: int
    layer_stop: int
    centred: bool = False
    psi: float = 0.7
    class_index: int | None = None
    vector: np.ndarray | None = field(default=None, compare=False, hash=False, repr=False)

    def key(self) -> str:
        values = {k: v for k, v in asdict(self).items() if k not in ("vector", "model_path")}
        values["version"] = CACHE_VERSION
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class StripImages:
    grid: bytes
    heat: bytes
    grid_path: Path
    heat_path: Path


def strip_dir() -> Path:
    path = cache_dir() / "strips"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _paths(request: StripRequest) -> tuple[Path, Path]:
    key = request.key()
    folder = strip_dir() / key[:2]
    return folder / f"{key}.jpg", folder / f"{key}.heat.jpg"


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def render_strip_images(request: StripRequest, renderer) -> tuple[bytes, bytes]:
    """Render the grid and the heat map as JPEG bytes (pixels from model.strips; layout from annotator.imaging)."""
    from model import strips as model_strips

    if request.vector is None:
        raise ValueError("StripRequest.vector is needed to render")
    unit = np.asarray(request.vector, dtype=np.float64)
    unit = (unit / max(float(np.linalg.norm(unit)), 1e-12)).astype(np.float32)
    resolution = min(renderer.resolution, MAX_STRIP_RESOLUTION)
    spec = model_strips.StripSpec(
        set_key=str(request.set_id), component=request.index, seeds=request.seeds, steps=request.steps,
        layer_start=request.layer_start, layer_stop=request.layer_stop, centred=request.centred,
        resolution=None if resolution == renderer.resolution else resolution, psi=request.psi)
    if renderer.c_dim == 0:
        result = model_strips.render_strip(renderer, unit, request.sigma, spec)
        images, heat = result.images, result.heatmap
    else:  # model.strips renders unconditional models only; conditional ones use class 0 here
        from model.render import strip_ws

        ws = renderer.ws_from_seeds(list(request.seeds), psi=request.psi, class_index=request.class_index or 0)
        moved = strip_ws(ws, unit, model_strips.strip_offsets(request.sigma, request.steps), request.layer_start,
                         request.layer_stop, request.centred)
        flat = renderer.synthesize(moved, resolution=spec.resolution, chunk=moved.shape[0])
        images = flat.reshape(len(request.seeds), len(request.steps), *flat.shape[1:])
        heat = model_strips.change_heatmap(images)
    s, t = images.shape[:2]
    flat = images.reshape(s * t, *images.shape[2:])
    cell = imaging.display_size(flat.shape[1], CELL_TARGET)
    grid = imaging.strip_grid(flat, request.seeds, request.steps, cell=cell)
    return imaging.to_jpeg(grid), imaging.to_jpeg(imaging.heat_image(heat, 256))


_inflight: dict[str, Future] = {}
_inflight_lock = threading.Lock()


def cached(request: StripRequest) -> StripImages | None:
    grid_path, heat_path = _paths(request)
    try:
        return StripImages(grid_path.read_bytes(), heat_path.read_bytes(), grid_path, heat_path)
    except OSError:
        return None


def get_strip(request: StripRequest, renderer) -> StripImages:
    """From the cache, waiting for a prefetch already rendering it, or rendered now."""
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
        grid, heat = render_strip_images(request, renderer)
        grid_path, heat_path = _paths(request)
        _atomic_write(heat_path, heat)
        _atomic_write(grid_path, grid)
        if mine:
            future.set_result(True)
        return StripImages(grid, heat, grid_path, heat_path)
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
            log.exception("prefetch of component %s failed", request.index)
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
