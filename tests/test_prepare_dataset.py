"""The dataset layout check the trainer relies on: what it accepts, and what it refuses with a fix."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import AtelierError
from scrape.dataset import DatasetWriter, image_name, open_dataset, validate_dataset


def png(size: int | tuple[int, int], mode: str = "RGB", value: int = 90) -> bytes:
    size = (size, size) if isinstance(size, int) else size
    buffer = io.BytesIO()
    Image.new(mode, size, value if mode in ("L", "P") else (value,) * len(mode)).save(buffer, "PNG")
    return buffer.getvalue()


def make(root: Path, files: dict[str, bytes], meta: object = None, as_zip: bool = True) -> Path:
    if meta is not None:
        files = {**files, "dataset.json": json.dumps(meta).encode()}
    root.mkdir(parents=True, exist_ok=True)
    if as_zip:
        path = root / "ds.zip"
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in files.items():
                archive.writestr(name, data)
        return path
    path = root / "ds"
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return path


NAMES = [image_name(i) for i in range(3)]


@pytest.mark.parametrize("as_zip", [True, False])
def test_labelled_dataset_as_zip_or_folder(tmp_path, as_zip):
    files = {name: png(8, value=10 * i) for i, name in enumerate(NAMES)}
    meta = {"labels": [[NAMES[0], 0], [NAMES[1], 2], [NAMES[2], 2]], "class_names": ["a", "b", "c"], "extra": 1}
    path = make(tmp_path, files, meta, as_zip)
    info = validate_dataset(path, decode=True)
    assert (info.num_images, info.resolution, info.channels, info.labels) == (3, 8, 3, True)
    assert (info.num_classes, info.class_names) == (3, ("a", "b", "c"))
    rows = list(open_dataset(path))  # how the trainer reads it: no `with`, nothing left open
    assert [(name, label) for name, _, label in rows] == [(NAMES[0], 0), (NAMES[1], 2), (NAMES[2], 2)]
    assert rows[1][1].shape == (8, 8, 3) and rows[1][1].dtype == np.uint8 and rows[1][1][0, 0, 0] == 10


def test_unlabelled_and_greyscale_datasets(tmp_path):
    path = make(tmp_path, {name: png(4, "L") for name in NAMES}, {"labels": None})
    info = validate_dataset(path)
    assert (info.channels, info.labels, info.num_classes, info.class_names) == (1, False, 0, None)
    with open_dataset(path) as dataset:
        assert len(dataset) == 3
        assert dataset.read(NAMES[0]).shape == (4, 4, 1)
        assert all(label is None for _, _, label in dataset)
    # No dataset.json at all is an unlabelled dataset too; unrelated files are ignored as stylegan2-ada does.
    bare = make(tmp_path / "bare", {NAMES[0]: png(4), "README.txt": b"hi"})
    assert validate_dataset(bare).num_images == 1


@pytest.mark.parametrize("files, meta, message", [
    ({}, None, "holds no images"),
    ({NAMES[0]: png((8, 4))}, None, "is 8x4, not square"),
    ({NAMES[0]: png(12)}, None, "the side must be a power of two"),
    ({NAMES[0]: png(8), NAMES[1]: png(16)}, None, "all images must share one size and mode"),
    ({NAMES[0]: png(8), NAMES[1]: png(8, "L")}, None, "all images must share one size and mode"),
    ({NAMES[0]: png(8, "RGBA")}, None, "has mode RGBA"),
    ({NAMES[0]: b"not a png"}, None, "is unreadable"),
    ({NAMES[0]: png(8)}, {"classes": []}, 'must be an object with a "labels" key'),
    ({NAMES[0]: png(8)}, {"labels": {"a": 1}}, 'must be null or a list'),
    ({NAMES[0]: png(8)}, {"labels": [[NAMES[0], 1.5]]}, "is not [image name, class index >= 0]"),
    ({NAMES[0]: png(8)}, {"labels": [[NAMES[0], True]]}, "is not [image name, class index >= 0]"),
    ({NAMES[0]: png(8)}, {"labels": [[NAMES[0], -1]]}, "is not [image name, class index >= 0]"),
    ({NAMES[0]: png(8), NAMES[1]: png(8)}, {"labels": [[NAMES[0], 0]]}, "have no label"),
    ({NAMES[0]: png(8)}, {"labels": [[NAMES[0], 0], ["00000/x.png", 1]]}, "that are not in the dataset"),
    ({NAMES[0]: png(8)}, {"labels": [[NAMES[0], 0], [NAMES[0], 1]]}, "labelled twice"),
    ({NAMES[0]: png(8)}, {"labels": [[NAMES[0], 3]], "class_names": ["a"]}, '"class_names" has 1 names'),
])
def test_layout_problems_are_named_with_a_fix(tmp_path, files, meta, message):
    path = make(tmp_path, files, meta)
    with pytest.raises(AtelierError) as info:
        validate_dataset(path)
    assert message in str(info.value) and "Fix:" in str(info.value)


def test_missing_or_corrupt_dataset_paths(tmp_path):
    with pytest.raises(AtelierError, match="does not exist.*atelier prepare"):
        validate_dataset(tmp_path / "nope.zip")
    (tmp_path / "bad.zip").write_bytes(b"PK not really")
    with pytest.raises(AtelierError, match="not a readable zip"):
        validate_dataset(tmp_path / "bad.zip")
    truncated = make(tmp_path, {NAMES[0]: png(64)[:-40]})
    validate_dataset(truncated)  # headers alone look fine...
    with pytest.raises(AtelierError, match="unreadable"):
        validate_dataset(truncated, decode=True)  # ...decoding finds the damage


def test_writer_is_atomic(tmp_path):
    out = tmp_path / "ds.zip"
    with pytest.raises(RuntimeError):
        with DatasetWriter(out) as writer:
            writer.add(Image.new("RGB", (8, 8)))
            raise RuntimeError("crash half-way")
    assert list(tmp_path.iterdir()) == []  # neither a dataset nor a leftover temporary file
    with DatasetWriter(out) as writer:
        names = [writer.add(Image.new("RGB", (8, 8), (i, i, i))) for i in range(2)]
        writer.commit({names[0]: 1, names[1]: 0}, ["x", "y"])
    assert validate_dataset(out).num_classes == 2
    assert [p.name for p in tmp_path.iterdir()] == ["ds.zip"]
