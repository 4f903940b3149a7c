"""File writing shared by the model, the app and the scraper; no heavy imports (the scraper runs without torch)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from core.errors import AtelierError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600; give the file the permissions an ordinary write would (shared models, pictures).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_path(path: Path, option: str, folder: bool = False) -> None:
    """Refuse, before any work is done, an output that cannot be written: a file where a folder is wanted (or the
    reverse), a path that runs through a file, or a place this user may not write to."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        kind = "a folder" if path.is_dir() else "a file"
        raise AtelierError(f"{option} {path} is {kind}; give {'a folder' if folder else 'a file name'} instead")
    base = _nearest_existing(path if folder else path.parent)
    if not base.is_dir():
        raise AtelierError(f"{option} {path}: {base} is a file, so nothing can be written under it; choose another "
                           f"path")
    if not os.access(base, os.W_OK | os.X_OK):
        raise AtelierError(f"{option} {path}: no permission to write in {base}; choose a folder you can write to")


IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def image_format(path: Path, option: str = "--out") -> str:
    """Pillow's format name for a picture path, or a clear error naming the endings Atelier writes."""
    fmt = IMAGE_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise AtelierError(f"{option} {path}: give a file name ending in .png, .jpg or .webp")
    return fmt


def write_image(path: Path, image) -> Path:
    """Save a PIL image atomically, in the format its name asks for (checked first, so nothing is half-written)."""
    import io

    fmt = image_format(path)
    if fmt == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 90} if fmt in ("JPEG", "WEBP") else {}))
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)
