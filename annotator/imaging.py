"""Images for the browser: display-size JPEG/PNG bytes and data URLs (no Streamlit).

Pages show these bytes directly, so nothing is re-encoded on a rerun. Strip grids and heat maps are drawn by
model.directions.drawing (one drawing for the app, the CLI and exported previews); its names are re-exported here for
the pages. """
from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image

from model.directions.drawing import display_size as display_size
from model.directions.drawing import heat_image as heat_image
from model.directions.drawing import strip_grid as strip_grid
from model.directions.drawing import upscale as upscale


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
