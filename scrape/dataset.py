"""The training dataset layout (as stylegan2-ada reads it), written by ``atelier prepare`` and read by the trainer.

A dataset is a ``.zip`` or a folder holding:

- square PNG images, all the same power-of-two size and channel count, named like ``00000/img00000000.png``;
- ``dataset.json`` at the root: ``{"labels": [["00000/img00000000.png", 3], ...]}`` with integer class labels, or
  ``{"labels": null}``; optional ``"class_names": ["Fall 2021", ...]`` maps label index to a readable name.
  Other keys are allowed and ignored.

``validate_dataset`` checks all of that and says what is wrong and how to fix it; ``open_dataset`` iterates
``(name, uint8 HWC array, label)``.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.errors import AtelierError

DATASET_JSON = "dataset.json"
# What stylegan2-ada's loader picks up as images; anything else in the archive is ignored, as it does.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CHANNELS_BY_MODE = {"L": 1, "RGB": 3}
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same images give a byte-identical archive
HOW_TO_MAKE = "create it with `atelier prepare SRC DST.zip --resolution 256` (or `atelier synth`)"


@dataclass(frozen=True)
class DatasetInfo:
    path: Path
    num_images: int
    resolution: int
    channels: int
    labels: bool
    num_classes: int  # 0 when the dataset has no labels
    class_names: tuple[str, ...] | None = None


def image_name(index: int) -> str:
    """The stylegan2-ada naming: 1000 images per folder, ``00000/img00000000.png``."""
    return f"{index // 1000:05d}/img{index:08d}.png"


def is_power_of_two(value: int) -> bool:
    return value >= 1 and value & (value - 1) == 0


# ---------------------------------------------------------------------------------------------------- reading

class _Source:
    """Uniform access to the files of a zip or a folder, by '/'-separated names relative to the root."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        if not path.exists():
            raise AtelierError(f"Dataset {path} does not exist. Fix: {HOW_TO_MAKE}.")
        if path.is_file():
            try:
                self.zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise AtelierError(f"Dataset {path} is a file but not a readable zip ({exc}). Fix: point at the .zip "
                                   f"or folder that `atelier prepare` wrote, or {HOW_TO_MAKE}.") from exc
            self.names = sorted(info.filename for info in self.zip.infolist() if not info.is_dir())
        else:
            self.names = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()

    def image_names(self) -> list[str]:
        return [n for n in self.names if n.lower().endswith(IMAGE_EXTENSIONS) and not _is_hidden(n)]

    def open(self, name: str) -> io.BufferedIOBase:
        if self.zip is not None:
            return self.zip.open(name)  # type: ignore[return-value]
        return open(self.path / name, "rb")

    def read_json(self) -> Any | None:
        if DATASET_JSON not in self.names:
            return None
        try:
            with self.open(DATASET_JSON) as handle:
                return json.loads(handle.read().decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise AtelierError(f"{self.path}: {DATASET_JSON} is not valid JSON ({exc}). Fix: correct it, or "
                               f"{HOW_TO_MAKE}.") from exc


def _is_hidden(name: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in name.split("/"))


def _fail(path: Path, problem: str, fix: str = HOW_TO_MAKE) -> AtelierError:
    return AtelierError(f"Dataset {path}: {problem}. Fix: {fix}.")


def validate_dataset(path: str | Path, *, decode: bool = False) -> DatasetInfo:
    """Check the layout rigorously and describe it; raise AtelierError naming the first problem and its fix.

    Image headers are always read (size, mode); ``decode=True`` also decodes every pixel to catch truncated files.
    """
    path = Path(path).expanduser()
    source = _Source(path)
    try:
        names = source.image_names()
        if not names:
            raise _fail(path, "holds no images (.png files)")
        resolution, channels = _check_images(source, names, decode)
        labels, num_classes, class_names = _check_labels(path, source.read_json(), names)
    finally:
        source.close()
    return DatasetInfo(path=path, num_images=len(names), resolution=resolution, channels=channels,
                       labels=labels is not None, num_classes=num_classes, class_names=class_names)


def _check_images(source: _Source, names: list[str], decode: bool) -> tuple[int, int]:
    path = source.path
    expected: tuple[int, int, str] | None = None
    for name in names:
        try:
            with source.open(name) as handle, Image.open(handle) as image:
                size, mode = image.size, image.mode
                if decode:
                    image.load()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise _fail(path, f"image {name} is unreadable ({exc})", f"remove it, or {HOW_TO_MAKE}") from exc
        if mode not in CHANNELS_BY_MODE:
            raise _fail(path, f"image {name} has mode {mode}; images must be RGB (or greyscale L)",
                        f"convert it, or {HOW_TO_MAKE} (it writes RGB)")
        width, height = size
        if width != height:
            raise _fail(path, f"image {name} is {width}x{height}, not square")
        if not is_power_of_two(width) or width < 4:
            raise _fail(path, f"image {name} is {width}x{height}; the side must be a power of two (4, 8, ... 1024)")
        if expected is None:
            expected = (width, height, mode)
        elif (width, height, mode) != expected:
            raise _fail(path, f"image {name} is {width}x{height} {mode} but {names[0]} is "
                        f"{expected[0]}x{expected[1]} {expected[2]}; all images must share one size and mode")
    assert expected is not None
    return expected[0], CHANNELS_BY_MODE[expected[2]]


def _check_labels(path: Path, meta: Any, names: list[str]) -> tuple[dict[str, int] | None, int, tuple[str, ...] | None]:
    if meta is None:
        return None, 0, None
    if not isinstance(meta, dict) or "labels" not in meta:
        raise _fail(path, f'{DATASET_JSON} must be an object with a "labels" key',
                    'write {"labels": null} for an unlabelled dataset, or ' + HOW_TO_MAKE)
    raw = meta["labels"]
    if raw is None:
        return None, 0, None
    if not isinstance(raw, list):
        raise _fail(path, f'"labels" in {DATASET_JSON} must be null or a list of [name, class], '
                    f"got {type(raw).__name__}")
    labels: dict[str, int] = {}
    for entry in raw:
        if (not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[0], str)
                or isinstance(entry[1], bool) or not isinstance(entry[1], int) or entry[1] < 0):
            raise _fail(path, f'"labels" entry {entry!r} is not [image name, class index >= 0]',
                        "write integer class labels like [\"00000/img00000000.png\", 3]")
        if entry[0] in labels:
            raise _fail(path, f"image {entry[0]} is labelled twice in {DATASET_JSON}", "keep one label per image")
        labels[entry[0]] = entry[1]
    image_set = set(names)
    missing = [n for n in names if n not in labels]
    if missing:
        raise _fail(path, f"{len(missing)} image(s) have no label, e.g. {missing[0]}",
                    "label every image, or set \"labels\": null for an unconditional dataset")
    extra = sorted(set(labels) - image_set)
    if extra:
        raise _fail(path, f"{DATASET_JSON} labels {len(extra)} image(s) that are not in the dataset, e.g. {extra[0]}",
                    "remove those entries (names are paths inside the dataset, with '/' separators)")
    num_classes = max(labels.values()) + 1
    class_names = meta.get("class_names")
    if class_names in (None, []):
        return labels, num_classes, None
    if not isinstance(class_names, list) or not all(isinstance(c, str) for c in class_names):
        raise _fail(path, '"class_names" must be a list of strings (index -> name)', "fix or remove it")
    if len(class_names) < num_classes:
        raise _fail(path, f'"class_names" has {len(class_names)} names but labels go up to {num_classes - 1}',
                    "give one name per class index")
    return labels, len(class_names), tuple(class_names)


class ImageDataset:
    """A validated dataset; iterate it for ``(name, uint8 array of shape (H, W, C), label or None)``.

    Each iteration opens the zip (or folder) and closes it when done, so ``list(open_dataset(p))`` leaks nothing.
    """

    def __init__(self, path: str | Path) -> None:
        self.info = validate_dataset(path)
        source = _Source(self.info.path)
        try:
            self.names = source.image_names()
            self.labels: dict[str, int] | None = _check_labels(self.info.path, source.read_json(), self.names)[0]
        finally:
            source.close()
        self._reader: _Source | None = None

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[tuple[str, np.ndarray, int | None]]:
        source = _Source(self.info.path)
        try:
            for name in self.names:
                yield name, _read_array(source, name), None if self.labels is None else self.labels[name]
        finally:
            source.close()

    def read(self, name: str) -> np.ndarray:
        """One image by name (random access; keeps the zip open until ``close()``)."""
        if self._reader is None:
            self._reader = _Source(self.info.path)
        return _read_array(self._reader, name)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> ImageDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_array(source: _Source, name: str) -> np.ndarray:
    with source.open(name) as handle, Image.open(handle) as image:
        array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def open_dataset(path: str | Path) -> ImageDataset:
    """Validate and open a dataset (zip or folder); use as ``with open_dataset(p) as ds: for name, x, y in ds``."""
    return ImageDataset(path)


# ---------------------------------------------------------------------------------------------------- writing

class DatasetWriter:
    """Writes a dataset under a hidden temporary name and moves it into place only when complete.

    ``out`` ending in ``.zip`` gives a zip (PNGs stored, not re-compressed); any other name gives a folder.
    """

    def __init__(self, out: Path, force: bool = False) -> None:
        self.out = out
        self.as_zip = out.suffix.lower() == ".zip"
        _check_destination(out, force)
        out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
        _remove(self.tmp)
        self.zip = zipfile.ZipFile(self.tmp, "w", compression=zipfile.ZIP_STORED) if self.as_zip else None
        if self.zip is None:
            self.tmp.mkdir(parents=True)
        self.count = 0

    def add(self, image: Image.Image) -> str:
        """Store one image as the next PNG; returns its name inside the dataset."""
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return self.add_png(buffer.getvalue())

    def add_png(self, data: bytes) -> str:
        """Store already-encoded PNG bytes (e.g. encoded in worker processes) as the next image; returns its name."""
        name = image_name(self.count)
        self._write(name, data)
        self.count += 1
        return name

    def _write(self, name: str, data: bytes) -> None:
        if self.zip is not None:
            self.zip.writestr(zipfile.ZipInfo(name, date_time=ZIP_DATE), data)
            return
        target = self.tmp / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def commit(self, labels: dict[str, int] | None = None, class_names: list[str] | None = None,
               extra: dict[str, Any] | None = None) -> Path:
        """Write dataset.json (labels: image name -> class index, or None) and move the dataset to ``out``."""
        meta: dict[str, Any] = {"labels": None if labels is None else [[name, int(labels[name])] for name in
                                                                         sorted(labels)],
                                "class_names": list(class_names or [])}
        meta.update(extra or {})
        self._write(DATASET_JSON, json.dumps(meta, indent=1, ensure_ascii=False).encode("utf-8"))
        if self.zip is not None:
            self.zip.close()
            self.zip = None
        if self.out.is_dir():
            shutil.rmtree(self.out)
        os.replace(self.tmp, self.out)
        return self.out

    def abort(self) -> None:
        if self.zip is not None:
            self.zip.close()
            self.zip = None
        _remove(self.tmp)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None or self.tmp.exists():
            self.abort()


def _check_destination(out: Path, force: bool) -> None:
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not force:
        what = "is a folder that is not empty" if out.is_dir() else "already exists"
        raise AtelierError(f"{out} {what}. Fix: choose another destination, or pass --force to replace it.")
    if out.is_dir() and not (out / DATASET_JSON).exists():
        # --force replaces a dataset, never an unrelated folder that happens to have the destination's name.
        raise AtelierError(f"{out} is a folder that holds files but no {DATASET_JSON}, so it is not a dataset; "
                           "refusing to replace it even with --force. Fix: choose another destination.")


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()
