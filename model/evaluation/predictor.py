"""The factor predictor: a small CNN, trained on synthetic runway images, that reads every factor off an image.

The predictor is a 5-layer CNN on 64-px images (others are resized). It regresses the continuous factors (sleeve,
length, hue as cos/sin, saturation, value, height, x offset, skin, hair, background) and classifies garment (4),
pattern (4) and layer (3). Its 128-d penultimate layer is the feature space of the Fréchet distance.
Weights ship as ``model/assets/factor_predictor.safetensors`` (float16, < 1 MB); ``calibration.train_predictor``
rebuilds them, and the file also carries the factor scales and crosstalk that measuring an edit needs
(``factor_changes``).

Seeds: predictor training uses synthetic seeds from 800,000,000 up, the held-out real splits from 900,000,000
up, the crosstalk calibration from 950,000,000 up (its edits borrow values from seeds up to 1,090,000,000); the
demo generator is trained on seeds counting up from 0, so none of them overlaps its training data.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import AtelierError
from core.files import atomic_write_bytes
from core.settings import ASSETS_DIR

PREDICTOR_PATH = ASSETS_DIR / "factor_predictor.safetensors"
TRAIN_SEED0 = 800_000_000
REAL_SEED0 = 900_000_000
INPUT_SIZE = 64
CONTINUOUS = ("sleeve", "length", "hue_cos", "hue_sin", "saturation", "value", "height", "x_offset", "skin", "hair",
              "background")
CATEGORICAL = {"garment": ("dress", "top_skirt", "top_trousers", "coat"),
               "pattern": ("plain", "stripes", "dots", "check"),
               "layer": ("none", "jacket", "long_coat")}
FACTORS = ("garment", "sleeve", "length", "hue", "saturation", "value", "pattern", "layer", "height", "x_offset",
           "skin", "hair", "background")
FEATURES = 128
MEASURE_VERSION = 3  # 2: hue change weighted by saturation, crosstalk stored; 3: crosstalk in CROSSTALK_POWER
CALIBRATION_SEED0 = 950_000_000


class FactorPredictor(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.convs = nn.ModuleList([
            nn.Conv2d(3, w, 3, padding=1),  # 64
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),  # 32
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1),  # 16
            nn.Conv2d(4 * w, 4 * w, 3, stride=2, padding=1),  # 8
            nn.Conv2d(4 * w, 4 * w, 3, stride=2, padding=1),  # 4
        ])
        self.fc = nn.Linear(4 * w * 16, FEATURES)
        self.head = nn.Linear(FEATURES, len(CONTINUOUS) + sum(len(c) for c in CATEGORICAL.values()))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
        return F.leaky_relu(self.fc(x.flatten(1)), 0.2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return self.head(f), f


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, 64, 64] in −1 … 1 (area-resized when H ≠ 64)."""
    x = torch.as_tensor(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    if x.shape[-1] != INPUT_SIZE:
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="area" if x.shape[-1] > INPUT_SIZE else "bilinear",
                          align_corners=None if x.shape[-1] > INPUT_SIZE else False)
    return x


def targets(factors) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    cont = np.array([[f.sleeve, f.length, math.cos(2 * math.pi * f.hue), math.sin(2 * math.pi * f.hue),
                      f.saturation, f.value, f.height, f.x_offset, f.skin, f.hair, f.background] for f in factors],
                    np.float32)
    cats = {name: np.array([choices.index(getattr(f, name)) for f in factors]) for name, choices in CATEGORICAL.items()}
    return cont, cats


@dataclass
class Predictions:
    continuous: np.ndarray  # [N, len(CONTINUOUS)]
    probs: dict[str, np.ndarray]  # factor -> [N, classes]
    features: np.ndarray  # [N, FEATURES]

    def codes(self) -> dict[str, np.ndarray]:
        """Per factor a code [N, d]: the continuous value, hue as (cos, sin), class probabilities (module doc)."""
        c = {name: self.continuous[:, i:i + 1] for i, name in enumerate(CONTINUOUS)}
        out = {}
        for name in FACTORS:
            if name in CATEGORICAL:
                out[name] = self.probs[name]
            elif name == "hue":
                out[name] = np.concatenate([c["hue_cos"], c["hue_sin"]], axis=1)
            else:
                out[name] = c[name]
        return out

    def rows(self, index: slice) -> "Predictions":
        return Predictions(self.continuous[index], {n: p[index] for n, p in self.probs.items()},
                           self.features[index])

    def values(self) -> dict[str, np.ndarray]:
        """Per factor one value per image: class index, hue in [0, 1), or the continuous value."""
        out = {}
        for name in FACTORS:
            if name in CATEGORICAL:
                out[name] = self.probs[name].argmax(axis=1)
            elif name == "hue":
                i, j = CONTINUOUS.index("hue_cos"), CONTINUOUS.index("hue_sin")
                out[name] = (np.arctan2(self.continuous[:, j], self.continuous[:, i]) / (2 * np.pi)) % 1.0
            else:
                out[name] = self.continuous[:, CONTINUOUS.index(name)]
        return out


def true_codes(factors) -> dict[str, np.ndarray]:
    cont, cats = targets(factors)
    p = Predictions(cont, {n: np.eye(len(CATEGORICAL[n]), dtype=np.float32)[cats[n]] for n in CATEGORICAL},
                    np.zeros((len(cont), 0)))
    return p.codes()


class Predictor:
    """A loaded FactorPredictor with its factor scales."""

    def __init__(self, module: FactorPredictor, scales: dict[str, float], meta: dict | None = None,
                 crosstalk: np.ndarray | None = None):
        self.module = module.eval()
        self.scales = scales
        self.meta = meta or {}
        self.crosstalk = crosstalk  # [F, F], see calibrate_crosstalk; None until calibrated

    @torch.inference_mode()
    def predict(self, images: np.ndarray, batch: int = 512) -> Predictions:
        conts, probs, feats = [], {n: [] for n in CATEGORICAL}, []
        for start in range(0, len(images), batch):
            out, f = self.module(to_input(images[start:start + batch]))
            k = len(CONTINUOUS)
            conts.append(out[:, :k].numpy())
            for name, choices in CATEGORICAL.items():
                probs[name].append(torch.softmax(out[:, k:k + len(choices)], dim=1).numpy())
                k += len(choices)
            feats.append(f.numpy())
        if not conts:
            raise AtelierError("no images to predict")
        return Predictions(np.concatenate(conts), {n: np.concatenate(v) for n, v in probs.items()},
                           np.concatenate(feats))

    def save(self, path: str | Path = PREDICTOR_PATH) -> Path:
        from safetensors.torch import save


        tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in self.module.state_dict().items()}
        meta = {"format": "atelier-factor-predictor", "scales": json.dumps(self.scales),
                "meta": json.dumps(self.meta), "width": str(self.module.convs[0].out_channels),
                "measure_version": str(MEASURE_VERSION)}
        if self.crosstalk is not None:
            meta["crosstalk"] = json.dumps(np.round(self.crosstalk, 6).tolist())
        atomic_write_bytes(Path(path), save(tensors, metadata=meta))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path = PREDICTOR_PATH, require_current: bool = True) -> "Predictor":
        from safetensors import safe_open

        path = Path(path)
        if not path.exists():
            raise AtelierError(f"the factor predictor {path} is missing; run `atelier factors train` to build it")
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            state = {k: fh.get_tensor(k).float() for k in fh.keys()}
        if meta.get("format") != "atelier-factor-predictor":
            raise AtelierError(f"{path} is not an Atelier factor predictor")
        module = FactorPredictor(int(meta["width"]))
        module.load_state_dict(state)
        if require_current and meta.get("measure_version") != str(MEASURE_VERSION):
            raise AtelierError(f"{path} was calibrated for an older way of measuring factor changes; run "
                               f"`atelier factors calibrate --predictor {path}` to bring it up to date")
        crosstalk = np.array(json.loads(meta["crosstalk"])) if "crosstalk" in meta else None
        return cls(module, json.loads(meta["scales"]), json.loads(meta.get("meta", "{}")), crosstalk)


def render_real(seeds: Sequence[int], resolution: int = INPUT_SIZE):
    """Synthetic runway looks for `seeds`: (uint8 [N, resolution, resolution, 3], their factors)."""
    from scrape.synth import render_batch

    return render_batch(seeds, resolution)
