"""Map page logic without Streamlit: a UMAP of sampled W (cached per model), coloured by k-means or a component."""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.errors import AtelierError

DEFAULT_POINTS = 1500


def load(renderer) -> tuple[np.ndarray, np.ndarray] | None:
    from model.directions.discovery import load_map

    return load_map(renderer.fingerprint)


def compute(renderer, points: int = DEFAULT_POINTS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sample `points` renderable w (by seed), embed them with UMAP and cache the result for this model."""
    from model.directions.discovery import sample_w, save_map, umap_embedding

    if points < 20:
        raise AtelierError("The map needs at least 20 points.")
    w, seeds = sample_w(renderer, points, seed=seed, renderable=True)
    coords, seeds = umap_embedding(w, seeds, points=points)
    save_map(renderer.fingerprint, coords, seeds)
    return coords, seeds


def w_of(renderer, seeds: np.ndarray) -> np.ndarray:
    class_index = 0 if renderer.c_dim else None
    return renderer.ws_from_seeds([int(s) for s in seeds], psi=1.0, class_index=class_index)[:, 0].cpu().numpy()


def kmeans_labels(w: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(w.astype(np.float64))


def projection(w: np.ndarray, vector: np.ndarray) -> np.ndarray:
    unit = np.asarray(vector, np.float64)
    unit = unit / max(float(np.linalg.norm(unit)), 1e-12)
    centred = w - w.mean(axis=0)
    return centred @ unit


def frame(coords: np.ndarray, seeds: np.ndarray, colour: np.ndarray, colour_name: str) -> pd.DataFrame:
    return pd.DataFrame({"x": coords[:, 0], "y": coords[:, 1], "seed": seeds.astype(np.int64), colour_name: colour})
