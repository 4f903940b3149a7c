"""Snapshot quality while training, so the best snapshot of a run is picked by a measure and not by eye.

At every snapshot the trainer renders a fixed set of latents with G_ema and compares them with a fixed set of
training images: the Fréchet distance between the two in the factor predictor's feature space
(model.evaluation.predictor, model.evaluation.distributions).
On the synthetic runway stream that is exactly eval-model's Fréchet distance (on fewer samples). On a team's own
archive the predictor, trained on synthetic looks, is only a proxy feature space: it sees figures, garments,
colours and layout, not photographic detail. It needs no network download and is the same for every run, so it
ranks the snapshots of one run consistently, which is what choosing a snapshot needs. Fewer samples bias the
distance upward by about the same amount for every snapshot, so the ranking holds with the default 1,000.

The run folder keeps the best snapshot's generator as ``network-best.safetensors`` (pruning never removes it)
with ``best.json`` saying which kimg it is from and its distance.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from core.files import atomic_write_bytes

BEST_NETWORK = "network-best.safetensors"
BEST_RECORD = "best.json"
REAL_SEED0 = 970_000_000      # synthetic reference looks: apart from the predictor's and eval-model's seeds
FAKE_SEED0 = 0                # the generated side: the same latents at every snapshot
CHUNK = 50                    # images rendered and read at a time (bounded memory at 1024 px)


@dataclass
class QualityProbe:
    """Feature statistics of the reference images, and how many generated images to compare with them."""
    predictor: object
    mu: np.ndarray
    cov: np.ndarray
    samples: int

    @classmethod
    def from_chunks(cls, chunks: Iterator[np.ndarray], samples: int, predictor=None) -> "QualityProbe":
        from model.evaluation.distributions import gaussian_stats
        from model.evaluation.predictor import Predictor

        predictor = predictor or Predictor.load(require_current=False)
        features = np.concatenate([predictor.predict(images).features for images in chunks])
        mu, cov = gaussian_stats(features)
        return cls(predictor, mu, cov, samples)

    @torch.no_grad()
    def frechet(self, G, c_dim: int) -> float:
        """Fréchet distance of G's samples (ψ = 1, constant noise; classes in turn) from the reference images."""
        from model.evaluation.distributions import frechet_distance, gaussian_stats
        from model.network.render import seeds_to_z, to_uint8

        device = next(G.parameters()).device
        was_training = G.training
        G.eval()
        features = []
        for start in range(0, self.samples, CHUNK):
            seeds = list(range(FAKE_SEED0 + start, FAKE_SEED0 + min(start + CHUNK, self.samples)))
            z = torch.as_tensor(seeds_to_z(seeds, G.z_dim), dtype=torch.float32, device=device)
            c = torch.zeros([len(seeds), c_dim], device=device)
            if c_dim:
                c[torch.arange(len(seeds)), torch.as_tensor([s % c_dim for s in seeds], device=device)] = 1
            images = to_uint8(G(z, c, truncation_psi=1.0, noise_mode="const", force_fp32=True))
            features.append(self.predictor.predict(images).features)
        G.train(was_training)
        mu, cov = gaussian_stats(np.concatenate(features))
        return frechet_distance(mu, cov, self.mu, self.cov)


def synthetic_reference(samples: int, resolution: int) -> Iterator[np.ndarray]:
    """Looks of the synthetic runway stream, in chunks (uint8 [n, H, W, 3])."""
    from scrape.synth import render_batch

    for start in range(0, samples, CHUNK):
        images, _ = render_batch(range(REAL_SEED0 + start, REAL_SEED0 + min(start + CHUNK, samples)), resolution)
        yield images


def dataset_reference(path: str | Path, samples: int) -> Iterator[np.ndarray]:
    """Up to `samples` images spread evenly over a dataset, in chunks (only those images are decoded)."""
    from scrape.dataset import open_dataset

    with open_dataset(path) as dataset:
        names = dataset.names
        picks = np.unique(np.linspace(0, len(names) - 1, min(samples, len(names))).round().astype(int))
        for start in range(0, len(picks), CHUNK):
            yield np.stack([dataset.read(names[i]) for i in picks[start:start + CHUNK]])


def read_best(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / BEST_RECORD).read_text())
    except (OSError, ValueError):
        return None


def keep_if_best(run_dir: Path, frechet: float, kimg: float, save_generator: Callable[[Path], object]) -> bool:
    """Make this snapshot the run's best when its distance is the lowest so far; returns whether it was."""
    best = read_best(run_dir)
    if best is not None and (run_dir / BEST_NETWORK).exists() and best["frechet"] <= frechet:
        return False
    save_generator(run_dir / BEST_NETWORK)  # the weights first: best.json never names weights that are not there
    atomic_write_bytes(run_dir / BEST_RECORD, json.dumps({"kimg": kimg, "frechet": frechet}, indent=2).encode())
    return True
