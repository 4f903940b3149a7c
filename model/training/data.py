"""The images a training run reads: the synthetic runway stream or a prepared dataset, as batches for each process."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from core.errors import AtelierError
from model.training.config import SYNTHETIC, TrainConfig


@dataclass
class DataInfo:
    resolution: int
    c_dim: int
    num_images: int | None  # None for an endless stream


def open_training_data(cfg: TrainConfig, rank: int, world: int, start: int = 0
                       ) -> tuple[DataInfo, Iterator[tuple[np.ndarray, int]]]:
    """An endless iterator of (uint8 HWC image, class index) for this process, and what the data looks like.

    `start` is how many images this process has already consumed: a resumed run continues the same sequence.
    """
    if cfg.data == SYNTHETIC:
        from scrape.synth import RunwayFactors, SyntheticRunwayStream
        stream = SyntheticRunwayStream(resolution=cfg.resolution, seed0=1_000_000 + cfg.seed, rank=rank,
                                       world_size=world, start=start,
                                       conditional_on="garment" if cfg.conditional else None)
        c_dim = len(RunwayFactors.GARMENTS) if cfg.conditional else 0

        def synthetic() -> Iterator[tuple[np.ndarray, int]]:
            for image, label in stream:
                yield image.numpy().transpose(1, 2, 0), max(int(label), 0)
        return DataInfo(cfg.resolution, c_dim, None), synthetic()
    from scrape.dataset import open_dataset, validate_dataset
    info = validate_dataset(cfg.data)
    if info.channels != 3:
        raise AtelierError(f"{cfg.data} has {info.channels}-channel images; Atelier trains on RGB. Prepare the "
                           f"dataset again with `atelier prepare` (it always writes RGB).")
    if cfg.conditional and not info.labels:
        raise AtelierError(f"{cfg.data} has no class labels in dataset.json, so it cannot train a conditional "
                           f"model. Drop --cond, or prepare the dataset with --label-field.")
    c_dim = info.num_classes if cfg.conditional else 0
    items = list(open_dataset(cfg.data))
    if not items:
        raise AtelierError(f"{cfg.data} holds no images; prepare a dataset first (atelier prepare).")

    def shuffled() -> Iterator[tuple[np.ndarray, int]]:
        epoch, offset = divmod(start, len(items))
        while True:
            # Each epoch's order and flips depend only on (seed, rank, epoch), so any position can be resumed.
            rng = np.random.default_rng([cfg.seed, rank, epoch])
            order, flips = rng.permutation(len(items)), rng.random(len(items)) < 0.5
            for pos in range(offset, len(items)):
                _, image, label = items[order[pos]]
                if flips[pos]:  # x-flip doubles a small archive; runway looks are left-right symmetric
                    image = image[:, ::-1]
                yield image, int(label) if label is not None else 0
            epoch, offset = epoch + 1, 0
    return DataInfo(info.resolution, c_dim, info.num_images), shuffled()


def next_batch(source: Iterator[tuple[np.ndarray, int]], batch: int, c_dim: int,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = zip(*(next(source) for _ in range(batch)))
    x = torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy()).to(device).float() / 127.5 - 1
    c = torch.zeros([batch, c_dim], device=device)
    if c_dim:
        c[torch.arange(batch), torch.as_tensor(labels, device=device)] = 1
    return x, c
