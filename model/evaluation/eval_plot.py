"""A picture of an eval-model result: per factor, the generated distribution drawn over the real one.

A TV figure says *that* a factor is off; the bars say *how* (too narrow, shifted, a missing class), which is
what decides the next training change.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.evaluation.distributions import FACTOR_RANGES
from model.evaluation.predictor import CATEGORICAL, FACTORS

REAL_COLOUR = (190, 190, 196)
GENERATED_COLOUR = (196, 64, 96)
OVER_COLOUR = (176, 32, 32)
OK_COLOUR = (32, 120, 64)
TV_TARGET = 0.15


@dataclass(frozen=True)
class PanelLayout:
    width: int = 260
    height: int = 150
    columns: int = 4
    margin: int = 10
    title: int = 22  # pixels above the bars for the factor's name and figures
    axis: int = 16  # pixels below the bars for the range labels


def _axis_labels(name: str) -> tuple[str, str]:
    if name in CATEGORICAL:
        return CATEGORICAL[name][0], CATEGORICAL[name][-1]
    lo, hi = FACTOR_RANGES.get(name, (0.0, 1.0))
    return f"{lo:g}", f"{hi:g}"


def _draw_panel(draw, x0: int, y0: int, name: str, generated: np.ndarray, real: np.ndarray, tv: float,
                spread: float | None, layout: PanelLayout, font) -> None:
    generated = generated / max(generated.sum(), 1.0)
    real = real / max(real.sum(), 1.0)
    top = max(generated.max(), real.max(), 1e-9)
    bars_h = layout.height - layout.title - layout.axis
    inner_w = layout.width - 2 * layout.margin
    slot = inner_w / len(real)
    base = y0 + layout.title + bars_h
    for i, (g, r) in enumerate(zip(generated, real)):
        left = x0 + layout.margin + i * slot
        # Real as a wide pale bar, generated as a narrower bar in front of it: both stay readable.
        draw.rectangle([left + 1, base - r / top * bars_h, left + slot - 1, base], fill=REAL_COLOUR)
        draw.rectangle([left + slot * 0.3, base - g / top * bars_h, left + slot * 0.7, base], fill=GENERATED_COLOUR)
    draw.line([x0 + layout.margin, base, x0 + layout.margin + inner_w, base], fill=(90, 90, 90))
    verdict = OK_COLOUR if tv <= TV_TARGET else OVER_COLOUR
    title = f"{name}   TV {tv:.2f}" + ("" if spread is None else f"   spread {spread:.2f}")
    draw.text((x0 + layout.margin, y0 + 3), title, fill=verdict, font=font)
    low, high = _axis_labels(name)
    draw.text((x0 + layout.margin, base + 2), low, fill=(90, 90, 90), font=font)
    right = draw.textlength(high, font=font)
    draw.text((x0 + layout.margin + inner_w - right, base + 2), high, fill=(90, 90, 90), font=font)


def draw_eval(result: dict, layout: PanelLayout = PanelLayout()) -> np.ndarray:
    """uint8 [H, W, 3]: one panel per factor, in FACTORS order, and a legend line."""
    from PIL import Image, ImageDraw

    from model.network.render import label_font

    hists = result["histograms"]
    names = [name for name in FACTORS if name in hists]
    rows = -(-len(names) // layout.columns)
    legend = 28
    image = Image.new("RGB", (layout.columns * layout.width, rows * layout.height + legend), "white")
    draw = ImageDraw.Draw(image)
    font = label_font(12)
    for index, name in enumerate(names):
        r, c = divmod(index, layout.columns)
        _draw_panel(draw, c * layout.width, r * layout.height, name, np.asarray(hists[name]["generated"], float),
                    np.asarray(hists[name]["real"], float), result["tv"][name], result.get("spread", {}).get(name),
                    layout, font)
    y = rows * layout.height + 6
    draw.rectangle([10, y + 2, 24, y + 14], fill=REAL_COLOUR)
    draw.text((30, y + 1), "real (held-out synthetic)", fill=(40, 40, 40), font=font)
    draw.rectangle([210, y + 2, 224, y + 14], fill=GENERATED_COLOUR)
    kimg = result.get("kimg")
    draw.text((230, y + 1), f"generated ({result.get('samples')} samples" + (f", {kimg} kimg)" if kimg else ")") +
              f"   Fréchet {result['frechet']:.1f} (real vs real {result['frechet_real_baseline']:.2f})",
              fill=(40, 40, 40), font=font)
    return np.asarray(image)
