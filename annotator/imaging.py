"""Images for the browser: display-size JPEG/PNG bytes, labelled strip grids and change heat maps (no Streamlit).

Pages show these bytes directly, so nothing is re-encoded on a rerun.
"""
from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from model.render import label_font, sigma_label

BACKGROUND = (250, 248, 245)
INK = (40, 36, 32)
MUTED = (120, 112, 104)


def upscale(image: np.ndarray | Image.Image, size: int) -> Image.Image:
    """Square image to `size` px: nearest-neighbour up by whole factors (crisp pixels), Lanczos otherwise."""
    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    if img.width == size:
        return img
    if size > img.width and size % img.width == 0:
        return img.resize((size, size), Image.Resampling.NEAREST)
    return img.resize((size, size), Image.Resampling.LANCZOS)


def to_jpeg(image: np.ndarray | Image.Image, quality: int = 90) -> bytes:
    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    buffer = io.BytesIO()
    img.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def to_png(image: np.ndarray | Image.Image) -> bytes:
    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def display_size(resolution: int, target: int) -> int:
    """The display size for an image: a whole multiple of its resolution near `target` (or `target` if larger)."""
    if resolution >= target:
        return resolution
    return resolution * max(1, round(target / resolution))


def strip_grid(images: np.ndarray, seeds: Sequence[int], sigmas: Sequence[float], cell: int = 112,
               gap: int = 4) -> Image.Image:
    """Seeds × steps grid [S*T, H, W, 3] (seed-major) with σ under every column and the seed left of every row."""
    rows, columns = len(seeds), len(sigmas)
    assert images.shape[0] == rows * columns, (images.shape, rows, columns)
    left, bottom = 74, 30
    width = left + columns * cell + (columns - 1) * gap
    height = rows * cell + (rows - 1) * gap + bottom
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    step_font, seed_font = label_font(17), label_font(13)
    for r, seed in enumerate(seeds):
        y = r * (cell + gap)
        for c in range(columns):
            x = left + c * (cell + gap)
            canvas.paste(upscale(images[r * columns + c], cell), (x, y))
        draw.text((left - 8, y + cell // 2), f"seed\n{seed}", fill=MUTED, font=seed_font, anchor="rm", align="right")
    for c, value in enumerate(sigmas):
        x = left + c * (cell + gap) + cell // 2
        draw.text((x, height - bottom // 2), sigma_label(value, step_font), fill=INK if abs(value) > 1e-9 else MUTED,
                  font=step_font, anchor="mm")
    return canvas


def heat_image(heat: np.ndarray, size: int = 256) -> Image.Image:
    """A change map in 0 … 1 ([H, W]) as a warm colour ramp on the page's background: white → amber → deep red."""
    scaled = np.clip(np.asarray(heat, np.float32), 0, 1)
    stops = np.array([[250, 248, 245], [246, 196, 110], [214, 96, 44], [120, 20, 30]], dtype=np.float32)
    position = scaled * (len(stops) - 1)
    low = np.floor(position).astype(int).clip(0, len(stops) - 2)
    frac = (position - low)[..., None]
    rgb = stops[low] * (1 - frac) + stops[low + 1] * frac
    return upscale(Image.fromarray(rgb.astype(np.uint8)), display_size(scaled.shape[0], size))


def read_bytes(path: str | Path) -> bytes:
    return Path(path).read_bytes()


def data_url(image: bytes) -> str:
    """Encoded JPEG or PNG bytes as a `data:` URL that `st.image` shows as it is.

    Why: Streamlit serves images from a media store that drops a run's files as soon as the next run finishes.
    When a slider or a shortcut starts run after run, the browser can ask for an image of an interrupted run after
    it was dropped (an HTTP 404 and, for a moment, a broken picture). A data URL travels inside the page, so
    there is nothing to fetch and nothing to lose. The cost is a third more bytes per rerun: on the demo model a
    Generate picture is about 7 kB and a 6 × 7 review strip about 100 kB, small next to a render.
    """
    if image.startswith(b"\xff\xd8\xff"):
        mime = "image/jpeg"
    elif image.startswith(b"\x89PNG\r\n\x1a\n"):
        mime = "image/png"
    else:
        raise ValueError("data_url takes JPEG or PNG bytes")
    return f"data:{mime};base64,{base64.b64encode(image).decode('ascii')}"
