"""Pictures of renders: the one drawing of a strip grid and of its change heat map (no Streamlit, no files).

`atelier strip`, the Review page, the Directions page's slider preview and the previews in an exported direction
set all draw a strip with :func:`strip_grid`, so a strip looks the same wherever it is seen: rows are seeds (the seed
left of each row), columns are σ steps (the step under each column). Where they differ is only the size of a cell
and how the picture is encoded, which the caller decides.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

BACKGROUND = (250, 248, 245)
INK = (40, 36, 32)
MUTED = (120, 112, 104)
SEED_MARGIN = 74  # px left of the grid for "seed / 12345"
STEP_MARGIN = 30  # px under the grid for the σ labels
# The heat map's colour ramp, 0 → 1: the page's background, amber, brick, deep red.
HEAT_STOPS = np.array([[250, 248, 245], [246, 196, 110], [214, 96, 44], [120, 20, 30]], dtype=np.float32)


def upscale(image: np.ndarray | Image.Image, size: int) -> Image.Image:
    """Square image to `size` px: nearest-neighbour up by whole factors (crisp pixels), Lanczos otherwise."""
    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    if img.width == size:
        return img
    if size > img.width and size % img.width == 0:
        return img.resize((size, size), Image.Resampling.NEAREST)
    return img.resize((size, size), Image.Resampling.LANCZOS)


def display_size(resolution: int, target: int) -> int:
    """The display size for an image: a whole multiple of its resolution near `target` (or `target` if larger)."""
    if resolution >= target:
        return resolution
    return resolution * max(1, round(target / resolution))


def strip_grid(images: np.ndarray, seeds: Sequence[int], steps: Sequence[float], cell: int = 112,
               gap: int = 4) -> Image.Image:
    """Seeds × steps images [S, T, H, W, 3] as one picture: each image scaled to `cell` px, `gap` px apart, the seed
    left of every row and the step in σ under every column (0 σ in a muted ink, so the unedited look stands out)."""
    from model.network.render import label_font, sigma_label

    images = np.asarray(images)
    if images.ndim != 5 or images.shape[:2] != (len(seeds), len(steps)):
        raise ValueError(f"strip_grid takes [seeds, steps, H, W, 3] images for {len(seeds)} seeds × {len(steps)} "
                         f"steps, not an array of shape {images.shape}")
    rows, columns = len(seeds), len(steps)
    width = SEED_MARGIN + columns * cell + (columns - 1) * gap
    height = rows * cell + (rows - 1) * gap + STEP_MARGIN
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    step_font, seed_font = label_font(17), label_font(13)
    for r, seed in enumerate(seeds):
        y = r * (cell + gap)
        for c in range(columns):
            canvas.paste(upscale(images[r, c], cell), (SEED_MARGIN + c * (cell + gap), y))
        draw.text((SEED_MARGIN - 8, y + cell // 2), f"seed\n{seed}", fill=MUTED, font=seed_font, anchor="rm",
                  align="right")
    for c, value in enumerate(steps):
        x = SEED_MARGIN + c * (cell + gap) + cell // 2
        draw.text((x, height - STEP_MARGIN // 2), sigma_label(value, step_font),
                  fill=INK if abs(value) > 1e-9 else MUTED, font=step_font, anchor="mm")
    return canvas


def heat_image(heat: np.ndarray, size: int = 256) -> Image.Image:
    """A change map in 0 … 1 ([H, W]) as a warm colour ramp on the page's background, at about `size` px."""
    scaled = np.clip(np.asarray(heat, np.float32), 0, 1)
    position = scaled * (len(HEAT_STOPS) - 1)
    low = np.floor(position).astype(int).clip(0, len(HEAT_STOPS) - 2)
    frac = (position - low)[..., None]
    rgb = HEAT_STOPS[low] * (1 - frac) + HEAT_STOPS[low + 1] * frac
    return upscale(Image.fromarray(rgb.astype(np.uint8)), display_size(scaled.shape[0], size))
