"""Image checks shared by the scraper and the preparation step: safe decoding, hashes and near-duplicate search.

Decoding never trusts the server's Content-Type: the format is what Pillow finds in the bytes. The pixel count is
checked from the header before any pixel is decoded, so a small file that declares a huge image is refused cheaply.
"""
from __future__ import annotations

import hashlib
import io
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}
HASH_BITS = 64
_LIMIT_LOCK = threading.Lock()  # Image.MAX_IMAGE_PIXELS is process-wide: one decode changes it at a time


class ImageRejected(Exception):
    """The bytes are not an acceptable image; ``reason`` says why in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class CheckedImage:
    format: str
    width: int
    height: int
    sha256: str
    phash: int

    @property
    def extension(self) -> str:
        return EXTENSIONS.get(self.format, self.format.lower())


def decode_image(data: bytes | Path, max_pixels: int, formats: tuple[str, ...] | None = None) -> Image.Image:
    """Open and fully decode an image, refusing non-images, other formats, decompression bombs and broken files."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    with warnings.catch_warnings(), _pillow_limit(max_pixels):
        # Pillow only warns between its limit and twice its limit; any warning here means "too many pixels".
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(source) as probe:
                fmt, (width, height) = probe.format or "?", probe.size
                _check_header(fmt, width, height, max_pixels, formats)
                probe.verify()  # structural checks (chunk CRCs etc.) that decoding alone may skip
            if isinstance(source, io.BytesIO):
                source.seek(0)
            image = Image.open(source)
            image.load()  # a truncated file only shows up when every pixel is decoded
        except ImageRejected:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            # Pillow's own message quotes its limit, which here is ours; say so in the profile's words.
            raise ImageRejected(f"decompression bomb: more than {max_pixels:,} pixels (limit [images] max_pixels)"
                                ) from None
        except UnidentifiedImageError:
            raise ImageRejected(f"not an image: Pillow cannot read it (starts with {_preview(data)})") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageRejected(f"broken image: {exc}") from None
    return image


@contextmanager
def _pillow_limit(max_pixels: int) -> Iterator[None]:
    """Pillow refuses images above its own global limit (about 89 million pixels) whatever the caller allows, with a
    message quoting its number. Hand the limit to ``_check_header`` (which runs on the header, before any pixel is
    decoded) by raising Pillow's to the caller's for this decode, then put it back."""
    with _LIMIT_LOCK:
        previous = Image.MAX_IMAGE_PIXELS
        # Pillow warns above its limit and fails above twice it; at twice ours, only our own check can trigger.
        Image.MAX_IMAGE_PIXELS = max(max_pixels * 2, previous or 0)
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def _check_header(fmt: str, width: int, height: int, max_pixels: int, formats: tuple[str, ...] | None) -> None:
    if formats is not None and fmt not in formats:
        raise ImageRejected(f"format not accepted: {fmt} (allowed: {', '.join(formats)})")
    if width <= 0 or height <= 0:
        raise ImageRejected(f"broken image: declared size {width}x{height}")
    if width * height > max_pixels:
        raise ImageRejected(f"decompression bomb: declares {width}x{height} = {width * height:,} pixels, "
                            f"limit {max_pixels:,}")


def _preview(data: bytes | Path) -> str:
    if isinstance(data, bytes):
        return repr(data[:12])
    with open(data, "rb") as handle:
        return repr(handle.read(12))


def check_image(data: bytes, max_pixels: int, formats: tuple[str, ...] | None = None) -> CheckedImage:
    """Validate downloaded bytes and compute the exact (sha256) and perceptual hashes."""
    image = decode_image(data, max_pixels, formats)
    with image:
        return CheckedImage(format=image.format or "?", width=image.width, height=image.height,
                            sha256=hashlib.sha256(data).hexdigest(), phash=perceptual_hash(image))


# ---------------------------------------------------------------------------------------------------- pHash

def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II basis: row k holds cos(pi * (2i + 1) * k / 2n)."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    matrix = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    matrix[0] /= np.sqrt(2.0)
    return matrix


_DCT32 = _dct_matrix(32)


def perceptual_hash(image: Image.Image) -> int:
    """64-bit pHash: the 8x8 lowest DCT frequencies of a 32x32 grey thumbnail, each bit 'above the median'.

    Re-encoding, small brightness or contrast changes and resizing barely move these frequencies, so near copies
    land within a few bits of each other while different looks differ in about half of the bits.
    """
    grey = image.convert("L").resize((32, 32), Image.Resampling.LANCZOS, reducing_gap=2.0)
    pixels = np.asarray(grey, dtype=np.float64)
    low = (_DCT32 @ pixels @ _DCT32.T)[:8, :8].flatten()
    # The DC term only encodes overall brightness; leaving it out of the median makes the hash brightness-proof.
    bits = low > np.median(low[1:])
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return value


def hash_to_hex(value: int) -> str:
    return f"{value:016x}"


def hex_to_hash(text: str) -> int:
    return int(text, 16)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


class NearDuplicateIndex:
    """Perceptual hashes of the kept images; answers 'is there one within N bits of this?' in one numpy pass."""

    def __init__(self) -> None:
        # Grown by doubling so adding tens of thousands of hashes one by one stays linear.
        self._hashes = np.zeros(64, dtype=np.uint64)
        self._keys: list[str] = []

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: str, phash: int) -> None:
        count = len(self._keys)
        if count == len(self._hashes):
            self._hashes = np.concatenate([self._hashes, np.zeros_like(self._hashes)])
        self._hashes[count] = np.uint64(phash)
        self._keys.append(key)

    def nearest(self, phash: int) -> tuple[str, int] | None:
        """(key, distance) of the closest stored hash, or None when the index is empty."""
        if not self._keys:
            return None
        distances = _popcount(self._hashes[: len(self._keys)] ^ np.uint64(phash))
        best = int(np.argmin(distances))
        return self._keys[best], int(distances[best])


def _popcount(values: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(values)
    as_bytes = values.view(np.uint8).reshape(-1, 8)
    return np.unpackbits(as_bytes, axis=1).sum(axis=1)
