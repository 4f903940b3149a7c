"""Turn scraped runway images into a training dataset: filter, frame the figure, resize, label, write.

Input is a folder written by ``atelier scrape`` (its ``metadata.jsonl`` gives paths and fields, so class labels
can come from a field such as season or category) or any folder of images (then without labels).

Output is the stylegan2-ada layout (see ``scrape/dataset.py``): ``DST`` ending in ``.zip`` gives a zip, any
other name a folder. Beside it go ``<name>.contact_sheet.png`` (a random sample) and ``<name>.report.json``
(every dropped file and why). They sit outside the dataset because the trainer treats every PNG inside as data.
"""
from __future__ import annotations

import json
import math
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageOps
from tqdm import tqdm

from core.errors import AtelierError
from core.files import atomic_write_bytes, write_image
from scrape.dataset import DatasetWriter, is_power_of_two, validate_dataset
from scrape.images import ImageRejected, decode_image
from scrape.scraper import METADATA_FILE
from scrape.state import reason_category

FRAMINGS = ("pad", "crop")
SOURCE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
# Channel difference from the border colour above which a pixel counts as "figure", on a 0..255 scale.
BACKGROUND_TOLERANCE = 28
CROP_MARGIN = 0.08  # keep a little air around the figure: StyleGAN learns framing, and tight crops clip hems


@dataclass(frozen=True)
class PrepareOptions:
    resolution: int = 256
    framing: str = "pad"
    whiten_background: bool = False
    label_field: str | None = None
    min_size: int = 128
    max_aspect: float = 3.0
    sample: int = 64
    seed: int = 0
    max_pixels: int = 80_000_000
    force: bool = False

    def validate(self) -> None:
        if not is_power_of_two(self.resolution) or not 4 <= self.resolution <= 4096:
            raise AtelierError(f"--resolution {self.resolution} is not a power of two between 4 and 4096. "
                               "Fix: use 64, 128, 256, 512 or 1024.")
        if self.framing not in FRAMINGS:
            raise AtelierError(f"--framing {self.framing!r} is unknown. Fix: use one of {', '.join(FRAMINGS)}.")
        if self.min_size < 1:
            raise AtelierError(f"--min-size must be at least 1, not {self.min_size}.")
        if self.max_aspect < 1:
            raise AtelierError(f"--max-aspect is long side / short side, so at least 1.0, not {self.max_aspect}.")
        if self.sample < 0:
            raise AtelierError(f"--sample must be 0 or more, not {self.sample}.")


@dataclass(frozen=True)
class SourceImage:
    path: Path
    name: str  # as shown in the report: the path relative to SRC
    fields: dict[str, str] = field(default_factory=dict)
    url: str | None = None


@dataclass
class PrepareReport:
    source: str
    destination: str
    options: dict[str, Any]
    kept: int = 0
    dropped: list[dict[str, str]] = field(default_factory=list)
    classes: list[dict[str, Any]] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    contact_sheet: str | None = None
    report_path: str | None = None

    def drop(self, source: SourceImage, reason: str) -> None:
        self.dropped.append({"source": source.name, "url": source.url or "", "reason": reason})

    def dropped_by_reason(self) -> dict[str, int]:
        return dict(Counter(reason_category(d["reason"]) for d in self.dropped).most_common())

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["dropped_by_reason"] = self.dropped_by_reason()
        return data

    def lines(self) -> list[str]:
        lines = [f"Prepared {self.kept} images at {self.options['resolution']}px into {self.destination} "
                 f"({len(self.dropped)} dropped)."]
        for reason, count in self.dropped_by_reason().items():
            lines.append(f"  dropped ({reason}): {count}")
        if self.classes:
            field_name = self.options["label_field"]
            listing = ", ".join(f"{c['index']}={c['name']} ({c['count']})" for c in self.classes)
            lines.append(f"  classes from '{field_name}': {listing}")
            if len(self.classes) < 2:
                lines.append("  note: only one class, so a conditional model learns nothing from the label")
        lines.append(f"  contact sheet: {self.contact_sheet}")
        lines.append(f"  report: {self.report_path}")
        return lines


# ---------------------------------------------------------------------------------------------------- sources

def find_sources(src: Path, label_field: str | None, report: PrepareReport | None = None) -> list[SourceImage]:
    """The images to prepare: from metadata.jsonl when SRC is a scrape folder, else every image file under SRC."""
    if not src.is_dir():
        raise AtelierError(f"{src} is not a folder. Fix: pass the --out folder of `atelier scrape`, or a folder of "
                           "images, as SRC.")
    metadata = src / METADATA_FILE
    if not metadata.is_file():
        if label_field:
            raise AtelierError(f"--label-field {label_field} needs {METADATA_FILE} in {src}, which `atelier scrape` "
                               "writes. Fix: point SRC at a scrape folder, or leave out --label-field.")
        paths = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in SOURCE_EXTENSIONS
                       and not any(part.startswith(".") for part in p.relative_to(src).parts))
        return [SourceImage(path=p, name=p.relative_to(src).as_posix()) for p in paths]
    sources = []
    for number, line in enumerate(metadata.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            relative = str(record["path"])
            fields = {str(k): str(v) for k, v in (record.get("fields") or {}).items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            if report is not None:
                report.dropped.append({"source": f"{METADATA_FILE}:{number}", "url": "",
                                       "reason": f"unreadable metadata line: {exc}"})
            continue
        sources.append(SourceImage(path=src / relative, name=relative, fields=fields, url=record.get("url")))
    return sources


# ---------------------------------------------------------------------------------------------------- pixels

def to_rgb(image: Image.Image) -> Image.Image:
    """RGB on white: transparent areas become white (a backdrop), not black, and camera rotation is applied."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def border_colour(image: Image.Image) -> tuple[int, int, int]:
    """Median colour of a thin frame around the image: the backdrop, on runway and studio photos."""
    pixels = np.asarray(image)
    strip = max(1, min(image.size) // 100)
    frame = np.concatenate([pixels[:strip].reshape(-1, 3), pixels[-strip:].reshape(-1, 3),
                            pixels[:, :strip].reshape(-1, 3), pixels[:, -strip:].reshape(-1, 3)])
    r, g, b = (int(v) for v in np.median(frame, axis=0))
    return r, g, b


def _difference(pixels: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return np.abs(pixels.astype(np.int16) - np.array(colour, dtype=np.int16)).max(axis=2)


def figure_box(image: Image.Image, colour: tuple[int, int, int],
               tolerance: int = BACKGROUND_TOLERANCE) -> tuple[int, int, int, int] | None:
    """Bounding box (left, top, right, bottom) of the pixels that differ from the backdrop, or None if none do.

    A row or column needs a few such pixels to count, so JPEG noise and dust do not stretch the box.
    """
    mask = _difference(np.asarray(image), colour) > tolerance
    height, width = mask.shape
    rows = np.flatnonzero(mask.sum(axis=1) >= max(2, width // 200))
    cols = np.flatnonzero(mask.sum(axis=0) >= max(2, height // 200))
    if rows.size == 0 or cols.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def square_around(image: Image.Image, centre: tuple[float, float], side: int,
                  fill: tuple[int, int, int]) -> Image.Image:
    """A side x side square centred on ``centre``; whatever falls outside the photo is filled with ``fill``."""
    left = int(round(centre[0] - side / 2))
    top = int(round(centre[1] - side / 2))
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(image.crop((max(left, 0), max(top, 0), min(left + side, image.width), min(top + side, image.height))),
                 (max(-left, 0), max(-top, 0)))
    return canvas


def frame(image: Image.Image, framing: str, colour: tuple[int, int, int]) -> Image.Image | None:
    """Square the picture: 'pad' keeps all of it on the backdrop colour; 'crop' centres on the figure."""
    if framing == "pad":
        return square_around(image, (image.width / 2, image.height / 2), max(image.size), colour)
    box = figure_box(image, colour)
    if box is None:
        return None
    left, top, right, bottom = box
    side = max(right - left, bottom - top)
    side = int(math.ceil(side * (1 + 2 * CROP_MARGIN)))
    return square_around(image, ((left + right) / 2, (top + bottom) / 2), side, colour)


def whiten(image: Image.Image, colour: tuple[int, int, int], tolerance: int = BACKGROUND_TOLERANCE) -> Image.Image:
    """Push backdrop-coloured pixels to white, blending over a band so the figure's edge stays smooth."""
    pixels = np.asarray(image).astype(np.float32)
    distance = _difference(np.asarray(image), colour).astype(np.float32)
    keep = np.clip((distance - tolerance) / tolerance, 0.0, 1.0)[:, :, None]
    result = pixels * keep + 255.0 * (1.0 - keep)
    return Image.fromarray(np.clip(result + 0.5, 0, 255).astype(np.uint8), "RGB")


def prepare_image(source: SourceImage, options: PrepareOptions) -> Image.Image:
    """One source file to one square RGB image at the target resolution; ImageRejected says why not."""
    if not source.path.is_file():
        raise ImageRejected("missing file: listed in metadata but not on disk")
    try:
        decoded = decode_image(source.path, options.max_pixels)
    except ImageRejected as exc:
        raise ImageRejected(f"unreadable: {exc.reason}") from None
    with decoded:
        image = to_rgb(decoded)
    width, height = image.size
    if min(width, height) < options.min_size:
        raise ImageRejected(f"too small: {width}x{height}, shortest side under --min-size {options.min_size}")
    aspect = max(width, height) / min(width, height)
    if aspect > options.max_aspect:
        raise ImageRejected(f"extreme aspect: {width}x{height} is {aspect:.1f}:1, over --max-aspect "
                            f"{options.max_aspect:g}")
    colour = border_colour(image)
    framed = frame(image, options.framing, colour)
    if framed is None:
        raise ImageRejected("no figure found: every pixel is close to the border colour")
    resized = framed.resize((options.resolution, options.resolution), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return whiten(resized, colour) if options.whiten_background else resized


# ---------------------------------------------------------------------------------------------------- contact sheet

def contact_sheet(samples: list[tuple[Image.Image, str]], thumb: int) -> Image.Image:
    """A grid of thumbnails, each captioned (class name or source) so the sample can be checked at a glance."""
    count = max(1, len(samples))
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    caption = 14
    sheet = Image.new("RGB", (columns * thumb, rows * (thumb + caption)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for index, (image, text) in enumerate(samples):
        x, y = (index % columns) * thumb, (index // columns) * (thumb + caption)
        sheet.paste(image.resize((thumb, thumb), Image.Resampling.LANCZOS), (x, y))
        draw.text((x + 2, y + thumb + 1), text[: max(4, thumb // 6)], fill=(0, 0, 0))
    return sheet


class _Reservoir:
    """A uniform random sample of fixed size from a stream, so the contact sheet never holds every image."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.rng = random.Random(seed)
        self.items: list[tuple[int, Image.Image, str]] = []
        self.seen = 0

    def offer(self, image: Image.Image, text: str, thumb: int) -> None:
        self.seen += 1
        slot = len(self.items) if len(self.items) < self.size else self.rng.randrange(self.seen)
        if slot < self.size:
            item = (self.seen, image.resize((thumb, thumb), Image.Resampling.LANCZOS), text)
            if slot == len(self.items):
                self.items.append(item)
            else:
                self.items[slot] = item

    def sample(self) -> list[tuple[Image.Image, str]]:
        return [(image, text) for _, image, text in sorted(self.items, key=lambda item: item[0])]


# ---------------------------------------------------------------------------------------------------- pipeline

def side_files(dst: Path) -> tuple[Path, Path]:
    """Where the contact sheet and report of dataset ``dst`` go: beside it, named after it."""
    stem = dst.name[:-4] if dst.name.lower().endswith(".zip") else dst.name
    return dst.with_name(f"{stem}.contact_sheet.png"), dst.with_name(f"{stem}.report.json")


def prepare(src: str | Path, dst: str | Path, options: PrepareOptions | None = None,
            progress: bool = True) -> PrepareReport:
    options = options or PrepareOptions()
    options.validate()
    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    report = PrepareReport(source=str(src), destination=str(dst), options=asdict(options))
    sources = find_sources(src, options.label_field, report)
    if not sources:
        raise AtelierError(f"{src} holds no images. Fix: run `atelier scrape` into it first, or point SRC at a folder "
                           "of .jpg/.png files.")
    thumb = min(options.resolution, 128)
    reservoir = _Reservoir(options.sample, options.seed)
    values: dict[str, str] = {}  # dataset image name -> label value (mapped to indices once all are known)
    with DatasetWriter(dst, force=options.force) as writer:
        for source in tqdm(sources, unit="img", desc="prepare", disable=not progress):
            value = None
            if options.label_field:
                value = source.fields.get(options.label_field, "").strip()
                if not value:
                    report.drop(source, f"no label: metadata has no '{options.label_field}' field")
                    continue
            try:
                image = prepare_image(source, options)
            except ImageRejected as exc:
                report.drop(source, exc.reason)
                continue
            name = writer.add(image)
            report.images.append({"name": name, "source": source.name, "url": source.url, "label": value})
            if value is not None:
                values[name] = value
            if options.sample:
                reservoir.offer(image, value or Path(source.name).stem, thumb)
        if writer.count == 0:
            reasons = ", ".join(f"{r}: {n}" for r, n in report.dropped_by_reason().items())
            raise AtelierError(f"No image of {src} survived the filters ({reasons}). Fix: check SRC, or loosen "
                               "--min-size / --max-aspect.")
        labels = class_names = None
        if options.label_field:
            class_names = sorted(set(values.values()))
            index = {name: i for i, name in enumerate(class_names)}
            labels = {name: index[value] for name, value in values.items()}
            counts = Counter(values.values())
            report.classes = [{"index": i, "name": c, "count": counts[c]} for i, c in enumerate(class_names)]
            for entry in report.images:
                entry["class"] = index[entry["label"]]
        writer.commit(labels, class_names, extra={"label_field": options.label_field, "source": str(src),
                                                  "tool": "atelier prepare"})
    report.kept = writer.count
    sheet_path, report_path = side_files(dst)
    if options.sample:
        write_image(sheet_path, contact_sheet(reservoir.sample(), thumb))
        report.contact_sheet = str(sheet_path)
    report.report_path = str(report_path)
    atomic_write_bytes(report_path, json.dumps(report.to_json(), indent=1, ensure_ascii=False).encode("utf-8"))
    validate_dataset(dst)  # what the trainer will check first; failing here means a bug in this module
    return report
