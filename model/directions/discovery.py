"""Direction discovery: turn a generator into a set of unit directions in W, each with its scale σ.

Three methods, all giving a :class:`ComponentSet` of unit rows in W (never z: edits are applied to ws rows):

- ``sefa``   closed-form factorisation (Shen & Zhou, 2021): the style-affine weights of the chosen synthesis
  layers are stacked (one row per style channel, each row L2-normalised), and the eigenvectors of AᵀA, largest
  eigenvalue first, are the directions. Uses weights only; σ still comes from sampled W.
- ``pca``    GANSpace (Härkönen et al., 2020): principal components of sampled W from a streaming covariance
  (mini-batches, float64 accumulators), with explained-variance ratios.
- ``kmeans`` k-means on sampled W: the centroids are "looks", and the directions point from the mean of W to
  each centroid (sorted by cluster size).

σ of a component is the standard deviation of sampled W projected on its unit vector, so strips and sliders step
in σ units whatever the method. Sampled W for σ: 20,000 latents by default (``SIGMA_SAMPLES``).

Layer groups (`coarse`, `middle`, `fine`) are defined on the model's own stages so they work from 32 px to 1024 px:
coarse = the 4 and 8 px stages; fine = stages of 64 px and more, or only the last stage when the model is smaller
than 64 px; middle = the stages in between (16–32 px). At 1024 px that is GANSpace's 0–3 / 4–7 / 8–17 ws rows;
at 64 px rows 0–3 / 4–7 / 8–9; at 32 px rows 0–3 / 4–5 / 6–7. A group covers the ws rows its stages' convolutions
read, plus the final toRGB row for the last stage (:func:`rows_per_resolution`). This is the one layer-preset rule:
the CLI's ``--layers``, discovery, scoring and the app's presets (:func:`layer_presets`) all come from here.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from core.errors import AtelierError
from core.files import atomic_write_bytes

LAYER_GROUPS = ("all", "coarse", "middle", "fine")
SIGMA_SAMPLES = 20_000
DEFAULT_PCA_SAMPLES = 100_000
DEFAULT_MAP_POINTS = 5_000
DEFAULT_REVIEW_SEEDS = 6
REVIEW_SEED_RANGE = 100_000  # review seeds are drawn from 0 … 99,999 (short numbers people can type)


@dataclass
class ComponentSet:
    """A discovery result: unit directions in W, strongest first."""

    method: str
    params: dict[str, Any]
    vectors: np.ndarray  # [K, w_dim] float32, unit rows
    values: np.ndarray  # [K] eigenvalue (sefa), explained-variance ratio (pca) or cluster share (kmeans)
    sigmas: np.ndarray  # [K] std of sampled W projected on each vector
    sample_count: int
    fingerprint: str
    w_dim: int
    num_ws: int
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def save(self, path: str | Path) -> Path:
        """A .npz file the database can import (vectors, values, sigmas + JSON metadata); written atomically."""
        import io

        meta = {"method": self.method, "params": self.params, "sample_count": int(self.sample_count),
                "fingerprint": self.fingerprint, "w_dim": int(self.w_dim), "num_ws": int(self.num_ws),
                "extra": _jsonable(self.extra)}
        buffer = io.BytesIO()
        np.savez(buffer, vectors=self.vectors.astype(np.float32), values=np.asarray(self.values, np.float64),
                 sigmas=np.asarray(self.sigmas, np.float64), meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
        atomic_write_bytes(Path(path), buffer.getvalue())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "ComponentSet":
        with np.load(Path(path), allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            return cls(method=meta["method"], params=meta["params"], vectors=data["vectors"].astype(np.float32),
                       values=data["values"], sigmas=data["sigmas"], sample_count=meta["sample_count"],
                       fingerprint=meta["fingerprint"], w_dim=meta["w_dim"], num_ws=meta["num_ws"],
                       extra=meta.get("extra", {}))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- layer groups ------------------------------------------------------------------------------------------------

def rows_per_resolution(G) -> dict[int, list[int]]:
    """Which ws rows each stage's convolutions read; the last stage also holds the final toRGB row."""
    rows, start = {}, 0
    for block in G.synthesis.blocks():
        rows[block.resolution] = list(range(start, start + block.num_conv))
        start += block.num_conv
    rows[G.img_resolution].append(start)
    return rows


def group_resolutions(resolutions: Sequence[int], group: str) -> list[int]:
    """The stages of a layer group (see the module docstring for the rule)."""
    stages = sorted(resolutions)
    fine = [r for r in stages if r >= 64] or stages[-1:]
    coarse = [r for r in stages if r <= 8 and r not in fine]
    middle = [r for r in stages if r not in fine and r not in coarse]
    chosen = {"all": stages, "coarse": coarse, "middle": middle, "fine": fine}.get(group)
    if chosen is None:
        raise AtelierError(f"unknown layer group {group!r}; use all, coarse, middle, fine or a range like 0-4")
    if not chosen:
        raise AtelierError(f"this {stages[-1]}-px model has no '{group}' stages; use all, coarse or fine")
    return chosen


def parse_layers(layers: str | tuple[int, int] | None, num_ws: int) -> str | tuple[int, int]:
    """'all' | 'coarse' | 'middle' | 'fine' | 'A-B' (ws rows A … B inclusive) | (start, stop)
    -> group or (start, stop)."""
    if layers is None:
        return "all"
    if isinstance(layers, tuple):
        start, stop = int(layers[0]), int(layers[1])
    else:
        text = str(layers).strip().lower()
        if text in LAYER_GROUPS:
            return text
        parts = text.replace("–", "-").split("-")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise AtelierError(f"--layers {layers!r} is not understood; use all, coarse, middle, fine or A-B "
                               f"(ws rows, inclusive, 0 … {num_ws - 1})")
        start, stop = int(parts[0]), int(parts[1]) + 1
    if not 0 <= start < stop <= num_ws:
        raise AtelierError(f"layer range {start}-{stop - 1} is outside this model's ws rows 0 … {num_ws - 1}")
    return (start, stop)


def layer_rows(G, layers: str | tuple[int, int]) -> list[int]:
    """ws row indices of a layer group or an explicit (start, stop) range (stop exclusive)."""
    if isinstance(layers, tuple):
        return list(range(layers[0], layers[1]))
    per_res = rows_per_resolution(G)
    chosen = group_resolutions(list(per_res), layers)
    return sorted(row for res in chosen for row in per_res[res])


def row_span(G, layers: str | tuple[int, int]) -> tuple[int, int]:
    """(start, stop) covering a group's rows (groups are contiguous)."""
    rows = layer_rows(G, layers)
    return rows[0], rows[-1] + 1


def layer_presets(G) -> dict[str, tuple[int, int]]:
    """The named layer choices a reviewer picks from, as (start, stop) ws rows: coarse, middle and fine where this
    model has those stages (a 16-px model has no middle one), then all."""
    stages = list(rows_per_resolution(G))
    presets = {}
    for group in ("coarse", "middle", "fine"):
        try:
            group_resolutions(stages, group)
        except AtelierError:  # the model is too small for this group: it is simply not offered
            continue
        presets[group] = row_span(G, group)
    presets["all"] = (0, int(G.num_ws))
    return presets


def affine_layers_by_row(G) -> list[tuple[int, torch.nn.Module]]:
    """Every style affine in the synthesis network with the ws row it reads (conv0, conv1, toRGB)."""
    out, start = [], 0
    for block in G.synthesis.blocks():
        row = start
        for name in ("conv0", "conv1"):
            if hasattr(block, name):
                out.append((row, getattr(block, name).affine))
                row += 1
        out.append((row, block.torgb.affine))  # toRGB reads the row after the block's convolutions
        start += block.num_conv
    return out


# --- SeFa --------------------------------------------------------------------------------------------------------

def sefa_matrix(G, layers: str | tuple[int, int] = "all") -> np.ndarray:
    """Stacked style-affine weights [style channels, w_dim] of the layers reading the chosen rows,
    rows L2-normalised."""
    rows = set(layer_rows(G, layers))
    mats = [affine.weight.detach().cpu().double().numpy() for row, affine in affine_layers_by_row(G) if row in rows]
    a = np.concatenate(mats, axis=0)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def sefa(G, layers: str | tuple[int, int] = "all", w_samples: np.ndarray | None = None,
         fingerprint: str = "") -> ComponentSet:
    """Closed-form factorisation: eigenvectors of AᵀA (w_dim × w_dim, symmetric solver), largest eigenvalue first."""
    layers = parse_layers(layers, G.num_ws)
    a = sefa_matrix(G, layers)
    values, vectors = np.linalg.eigh(a.T @ a)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order].T  # rows are directions
    vectors = _canonical_sign(vectors)
    sigmas = projection_sigmas(vectors, w_samples) if w_samples is not None else np.ones(len(values))
    start, stop = row_span(G, layers)
    params = {"layers": layers if isinstance(layers, str) else f"{layers[0]}-{layers[1] - 1}",
              "layer_start": start, "layer_stop": stop, "style_channels": int(a.shape[0]),
              "sigma_samples": 0 if w_samples is None else int(len(w_samples))}
    return ComponentSet("sefa", params, vectors.astype(np.float32), values, sigmas,
                        0 if w_samples is None else len(w_samples), fingerprint, G.w_dim, G.num_ws)


def _canonical_sign(vectors: np.ndarray) -> np.ndarray:
    """Eigenvectors have no sign; fix it (largest-magnitude entry positive) so runs and machines agree."""
    idx = np.argmax(np.abs(vectors), axis=1)
    signs = np.sign(vectors[np.arange(len(vectors)), idx])
    signs[signs == 0] = 1
    return vectors * signs[:, None]


# --- sampling W --------------------------------------------------------------------------------------------------

def sample_w(renderer, n: int, seed: int = 0, batch: int = 4096, psi: float = 1.0, renderable: bool = False,
             progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """n latents w [n, w_dim] float32 (one ws row: mapping output, before broadcasting).

    ``renderable=True`` draws z with the standard seed convention (seeds seed … seed+n-1, so any point can be
    rendered by its seed; ~0.1–0.25 ms per seed) and returns the seeds; otherwise z comes from one numpy
    Generator seeded with `seed` (fast; for statistics such as PCA and σ) and the seeds are None.
    """
    from model.network.render import seeds_to_z

    if n < 1:
        raise AtelierError("the number of samples must be at least 1")
    rng = np.random.default_rng(seed)
    out = np.empty((n, renderer.w_dim), dtype=np.float32)
    seeds = np.arange(seed, seed + n, dtype=np.int64) if renderable else None
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        if renderable:
            z = seeds_to_z([int(s) for s in seeds[start:stop]], renderer.z_dim)
        else:
            z = rng.standard_normal((stop - start, renderer.z_dim))
        c = renderer.class_vector(0 if renderer.c_dim else None, stop - start)
        with torch.inference_mode():
            zt = torch.as_tensor(z, dtype=torch.float32, device=renderer.device)
            w = renderer.G.mapping(zt, c, truncation_psi=psi, update_w_avg=False)[:, 0]
        out[start:stop] = w.cpu().numpy()
        if progress:
            progress(stop - start)
    return out, seeds


def projection_sigmas(vectors: np.ndarray, w: np.ndarray) -> np.ndarray:
    """σ_k = standard deviation (ddof 0) of the samples w projected on unit vector k."""
    return projection_sigmas_from_cov(vectors, *_mean_cov(w))


def projection_sigmas_from_cov(vectors: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, np.float64)
    return np.sqrt(np.maximum(((v @ cov) * v).sum(axis=1), 0.0))


def _mean_cov(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    acc = _CovAccumulator(w.shape[1])
    acc.add(w)
    return acc.mean_cov()


class _CovAccumulator:
    """Streaming mean and covariance (float64; shifted by the first batch's mean for numerical safety)."""

    def __init__(self, dim: int):
        self.n = 0
        self.shift: np.ndarray | None = None
        self.s1 = np.zeros(dim)
        self.s2 = np.zeros((dim, dim))

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64)
        if self.shift is None:
            self.shift = x.mean(axis=0)
        x = x - self.shift
        self.n += len(x)
        self.s1 += x.sum(axis=0)
        self.s2 += x.T @ x

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        m = self.s1 / self.n
        cov = self.s2 / self.n - np.outer(m, m)
        return m + self.shift, (cov + cov.T) / 2


# --- PCA ---------------------------------------------------------------------------------------------------------

def pca_from_samples(batches, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Principal axes of streamed batches: (components [dim, dim] rows, variances, ratios, mean, count)."""
    acc = _CovAccumulator(dim)
    for x in batches:
        acc.add(x)
    mean, cov = acc.mean_cov()
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    values = np.maximum(values[order], 0.0)
    vectors = _canonical_sign(vectors[:, order].T)
    return vectors, values, values / values.sum(), mean, acc.n


def pca(renderer, n: int = DEFAULT_PCA_SAMPLES, seed: int = 0, batch: int = 4096, psi: float = 1.0,
        progress: Callable[[int], None] | None = None) -> ComponentSet:
    """GANSpace: PCA of n sampled w, mini-batched (only a w_dim × w_dim covariance is kept). σ = √variance."""
    if n < 2:  # a covariance needs two samples; fewer used to end in a TypeError deep in the statistics
        raise AtelierError(f"PCA needs at least 2 samples, not {n} ({DEFAULT_PCA_SAMPLES:,} is the default)")

    def batches():
        for start in range(0, n, batch):
            w, _ = sample_w(renderer, min(batch, n - start), seed=seed + start, batch=batch, psi=psi)
            if progress:
                progress(len(w))
            yield w

    vectors, variances, ratios, mean, count = pca_from_samples(batches(), renderer.w_dim)
    params = {"samples": n, "seed": seed, "psi": psi, "batch": batch}
    return ComponentSet("pca", params, vectors.astype(np.float32), ratios, np.sqrt(variances), count,
                        renderer.fingerprint, renderer.w_dim, renderer.num_ws,
                        extra={"explained_variance": variances.tolist(), "mean": mean.tolist()})


# --- k-means looks and the map -----------------------------------------------------------------------------------

def kmeans_looks(renderer, k: int, n: int = SIGMA_SAMPLES, seed: int = 0, psi: float = 1.0,
                 w: np.ndarray | None = None) -> ComponentSet:
    """k-means on n sampled w: centroids are looks; directions run from the mean of W to each centroid.

    Components are sorted by cluster size (largest first); `values` are the cluster shares. σ is measured on the
    same samples. ``extra`` holds the centroids, their distance from the mean, and each cluster's nearest sample.
    """
    from sklearn.cluster import KMeans

    if not 2 <= k <= 4096:
        raise AtelierError(f"--k must be from 2 to 4096, got {k}")
    if w is None:
        w, _ = sample_w(renderer, n, seed=seed, psi=psi)
    if len(w) < k:
        raise AtelierError(f"k-means needs at least k={k} samples; got {len(w)}")
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(w.astype(np.float64))
    mean = w.mean(axis=0, dtype=np.float64)
    offsets = km.cluster_centers_ - mean
    norms = np.linalg.norm(offsets, axis=1)
    shares = np.bincount(km.labels_, minlength=k) / len(w)
    order = np.argsort(-shares, kind="stable")
    vectors = offsets[order] / np.maximum(norms[order, None], 1e-12)
    sigmas = projection_sigmas(vectors, w)
    params = {"k": k, "samples": len(w), "seed": seed, "psi": psi}
    extra = {"centroids": km.cluster_centers_[order].astype(np.float32).tolist(),
             "centroid_distance": norms[order].tolist(), "inertia": float(km.inertia_)}
    return ComponentSet("kmeans", params, vectors.astype(np.float32), shares[order], sigmas, len(w),
                        renderer.fingerprint, renderer.w_dim, renderer.num_ws, extra=extra)


def umap_embedding(w: np.ndarray, seeds: np.ndarray, points: int = DEFAULT_MAP_POINTS, random_state: int = 0,
                   n_neighbors: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """2-D UMAP of sampled w for the map page: (coords [m, 2] float32, seeds [m]).

    UMAP on 100k points takes minutes on 2 cores, so a random subsample of `points` (default 5,000) is embedded;
    each point keeps its seed so the page can render it.
    """
    import umap

    w = np.asarray(w, np.float32)
    seeds = np.asarray(seeds)
    if len(w) != len(seeds):
        raise AtelierError("umap_embedding needs one seed per sample")
    if len(w) > points:
        pick = np.sort(np.random.default_rng(random_state).choice(len(w), points, replace=False))
        w, seeds = w[pick], seeds[pick]
    # One worker: a seeded UMAP is reproducible only single-threaded (umap would otherwise warn and use one anyway).
    reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, len(w) - 1), random_state=random_state,
                        n_jobs=1)
    return reducer.fit_transform(w).astype(np.float32), seeds


def map_path(fingerprint: str) -> Path:
    from core.settings import cache_dir

    return cache_dir() / "maps" / f"{fingerprint[:16]}.npz"


def save_map(fingerprint: str, coords: np.ndarray, seeds: np.ndarray, psi: float = 1.0) -> Path:
    import io


    buffer = io.BytesIO()
    np.savez(buffer, coords=coords, seeds=seeds, psi=np.float64(psi))
    path = map_path(fingerprint)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_map(fingerprint: str) -> tuple[np.ndarray, np.ndarray] | None:
    path = map_path(fingerprint)
    if not path.exists():
        return None
    with np.load(path) as data:
        return data["coords"], data["seeds"]


# --- one entry point ---------------------------------------------------------------------------------------------

def choose_review_seeds(count: int = DEFAULT_REVIEW_SEEDS, rng_seed: int | None = None) -> list[int]:
    """A fresh review set: `count` distinct seeds from 0 … 99,999 (pass rng_seed for a reproducible pick)."""
    rng = np.random.default_rng(rng_seed)
    return sorted(int(s) for s in rng.choice(REVIEW_SEED_RANGE, size=count, replace=False))


def discover(renderer, method: str, layers: str = "all", samples: int | None = None, k: int = 16, seed: int = 0,
             sigma_samples: int = SIGMA_SAMPLES, progress: Callable[[int], None] | None = None) -> ComponentSet:
    """Run one method and record timing in params."""
    t0 = time.perf_counter()
    # None means each method's default; 0 is a count like any other (and refused below), never "the default".
    if method == "sefa":
        w, _ = sample_w(renderer, sigma_samples if samples is None else samples, seed=seed)
        cs = sefa(renderer.G, layers, w_samples=w, fingerprint=renderer.fingerprint)
    elif method == "pca":
        cs = pca(renderer, n=DEFAULT_PCA_SAMPLES if samples is None else samples, seed=seed, progress=progress)
    elif method == "kmeans":
        cs = kmeans_looks(renderer, k=k, n=sigma_samples if samples is None else samples, seed=seed)
    else:
        raise AtelierError(f"unknown method {method!r}; use sefa, pca or kmeans")
    cs.params["seconds"] = round(time.perf_counter() - t0, 3)
    return cs
