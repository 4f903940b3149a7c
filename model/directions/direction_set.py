"""The labelled direction set as a file: export, validation, the Python API and import.

One ``.zip`` (format "atelier-direction-set", see ``docs/direction-set.md``) holds
- ``directions.json``: the model, the component sets, and per direction its name, category, source, layer and
  strength ranges, σ, the reviews summary and who published it when;
- ``directions.safetensors``: one float32 ``[w_dim]`` vector per direction, keyed by name;
- ``labels.csv``: one row per direction for spreadsheets;
- optionally ``previews/NNN.jpg``: one review strip per direction.

Exports are deterministic (no timestamps of their own, fixed zip dates), so the same database state gives the same
bytes. Import is two steps, so a page or the CLI can show what will happen before anything is written:
:func:`plan_import` reads and validates the file and compares it with the database, :func:`apply_import` writes
it in one transaction. Files from GANSpace, InterFaceGAN and the old notebooks' SeFa go through the same two
steps (readers in :mod:`model.directions.importers`).

Sliders: a value ``v`` in σ on a direction with vector ``d`` and σ ``s`` moves the ws rows of its layer range by
``float32(v * s) * d``: :func:`edit_for`. The Generate page and :meth:`DirectionSet.edits` both use it, so a
direction renders the same pixels in the app and from a file.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
import zipfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from core.errors import AtelierError, InvalidInput
from core.names import MAX_DIRECTION_NAME_LENGTH, check_direction_name
from core.files import atomic_write_bytes
from model.network.render import Edit

FORMAT_NAME = "atelier-direction-set"
FORMAT_VERSION = 1

JSON_MEMBER = "directions.json"
VECTORS_MEMBER = "directions.safetensors"
LABELS_MEMBER = "labels.csv"
PREVIEW_DIR = "previews/"
REQUIRED_MEMBERS = (JSON_MEMBER, VECTORS_MEMBER, LABELS_MEMBER)
_PREVIEW_NAME = re.compile(r"^previews/[0-9]{3,6}\.jpg$")

MiB = 1 << 20
MAX_FILE_BYTES = 200 * MiB  # the file as uploaded
MAX_UNPACKED_BYTES = 200 * MiB  # everything inside, uncompressed, as declared and as actually read
MAX_MEMBER_BYTES = {JSON_MEMBER: 64 * MiB, VECTORS_MEMBER: 200 * MiB, LABELS_MEMBER: 64 * MiB}
MAX_PREVIEW_BYTES = 8 * MiB
# Deflate reaches ~1000:1 on crafted input; real members (JSON, CSV, float32, JPEG) stay far below this.
MAX_RATIO = 100
RATIO_CHECK_FROM = 1 * MiB
MAX_MEMBERS = 20_000
MAX_DIRECTIONS = 10_000
MAX_W_DIM = 16_384
# Direction names follow one rule, db.queries.check_direction_name (publishing checks it too).
MAX_NAME_LENGTH = MAX_DIRECTION_NAME_LENGTH
ZIP_DATE = (1980, 1, 1, 0, 0, 0)

# Component-set params key under which an import records where the set came from (file, original component
# indices). It is bookkeeping, not a discovery parameter: the export leaves it out and uses the indices.
IMPORT_KEY = "atelier_import"
# σ of a supervised direction published without one (σ NULL in the database): its vector is in its own units.
SUPERVISED_SIGMA = 1.0

STATUSES = ("published", "approved", "rejected", "conflict", "unsure", "in_review", "unreviewed")
REVIEW_STATUSES = STATUSES[1:]
VOTES = ("approve", "reject", "unsure")
SCORE_KEYS = ("eigenvalue", "effect", "consistency", "locality", "locality_where", "colour_share",
              "layer_sensitivity", "suggested_category", "priority", "dead")
_TEXT_SCORES = ("locality_where", "layer_sensitivity", "suggested_category")
_CSV_COLUMNS = ("name", "status", "category", "label", "source", "set_method", "component_index", "layer_start",
                "layer_end", "strength_min", "strength_max", "sigma", "approvals", "rejections", "unsure",
                "reviewers", "agreement", "mean_consistency", "published_by", "published_at", "preview")


class DirectionSetError(AtelierError):
    """A direction-set file (or an export request) that cannot be used; the message names the problem and fix."""


# --------------------------------------------------------------------------------------------------------------
# Sliders: σ values -> edits (one arithmetic for the app and for files)


def edit_for(vector: np.ndarray | Sequence[float], sigma: float, value: float, layer_start: int = 0,
             layer_stop: int | None = None) -> Edit:
    """The edit a slider at ``value`` σ makes: rows [layer_start, layer_stop) move by ``float32(value * σ) * vector``.

    The product is rounded to float32 once, as the review strips do (``model.directions.strips.strip_offsets``), so a
    slider
    and a strip step at the same σ add identical numbers to w.
    """
    strength = float(np.float32(float(value) * float(sigma)))
    return Edit(direction=np.asarray(vector, dtype=np.float32), strength=strength, layer_start=int(layer_start),
                layer_stop=None if layer_stop is None else int(layer_stop))


def _stored_sigma(direction: Any, component: Any = None) -> float:
    """σ of a published direction from what is at hand: its own σ, else its component's, else 1.0."""
    if direction.sigma is not None:
        return float(direction.sigma)
    return SUPERVISED_SIGMA if component is None else float(component.sigma)


def direction_sigma(session: Any, direction: Any) -> float:
    """σ of a published direction (``db.queries.DirectionInfo``): the σ stored with it; for rows without one, its
    component's σ, or 1.0 without a component (vector units)."""
    if direction.sigma is not None or direction.component_id is None:
        return _stored_sigma(direction)
    from db import queries

    return _stored_sigma(direction, queries.get_component(session, direction.component_id))


def direction_edit(session: Any, direction: Any, value: float) -> Edit:
    """The edit for a published direction (``DirectionInfo``) at ``value`` σ: what the Generate page applies."""
    start, stop = direction.layer_range
    return edit_for(direction.vector, direction_sigma(session, direction), value, start, stop)


# --------------------------------------------------------------------------------------------------------------
# The Python API


@dataclass(frozen=True)
class DirectionMeta:
    """One direction's entry in ``directions.json`` (see docs/direction-set.md for every field)."""

    name: str
    status: str  # "published", or the review status of an unpublished component (--all-reviewed)
    category: str | None
    source: dict[str, Any]  # {"kind": "component", "set", "method", "index"} or {"kind": "supervised"}
    layer_range: tuple[int, int] | None  # end-exclusive; None (unpublished) = every layer
    strength_range: tuple[float, float] | None  # in σ; None (unpublished) = no range chosen yet
    sigma: float
    reviews: dict[str, Any] | None = field(default=None, compare=False)
    scores: dict[str, Any] | None = field(default=None, compare=False)
    published_by: str | None = None
    published_at: str | None = None  # ISO 8601, UTC
    preview: str | None = None  # member name of the strip, e.g. "previews/000.jpg"

    @property
    def published(self) -> bool:
        return self.status == "published"


@dataclass(frozen=True)
class DirectionSet:
    """A loaded direction set: ``names[i]`` goes with ``vectors[i]`` and ``directions[i]``."""

    names: list[str]
    vectors: np.ndarray  # float32 [n, w_dim]
    metadata: dict[str, Any]  # directions.json as read
    directions: list[DirectionMeta]
    previews: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def fingerprint(self) -> str | None:
        return self.metadata["model"].get("fingerprint")

    @property
    def architecture(self) -> dict[str, int]:
        return dict(self.metadata["model"]["architecture"])

    @property
    def w_dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def num_ws(self) -> int:
        return int(self.metadata["model"]["architecture"]["num_ws"])

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            known = ", ".join(repr(n) for n in self.names[:20])
            raise DirectionSetError(f"no direction named {name!r} in this set; it has {known}"
                                    f"{' …' if len(self.names) > 20 else ''}") from None

    def direction(self, name: str) -> DirectionMeta:
        return self.directions[self.index(name)]

    def vector(self, name: str) -> np.ndarray:
        return self.vectors[self.index(name)]

    def edit(self, name: str, value: float) -> Edit:
        meta = self.direction(name)
        start, stop = meta.layer_range if meta.layer_range is not None else (0, self.num_ws)
        return edit_for(self.vector(name), meta.sigma, value, start, stop)

    def edits(self, values: Mapping[str, float]) -> list[Edit]:
        """Slider values in σ by direction name -> edits for ``Renderer.render_seeds(..., edits=...)``."""
        return [self.edit(name, value) for name, value in values.items()]


def load_direction_set(source: str | Path | bytes | bytearray | memoryview | BinaryIO) -> DirectionSet:
    """Read and fully validate a direction-set ``.zip`` from a path, bytes, or an upload (``.getvalue()``)."""
    data, label = read_source(source)
    return parse_direction_set(data, label)


def read_source(source: Any, label: str | None = None) -> tuple[bytes, str]:
    """The bytes of a path, bytes-like object or file-like upload, refusing anything over ``MAX_FILE_BYTES``."""
    limit = f"{MAX_FILE_BYTES // MiB} MB"
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise DirectionSetError(f"file not found: {path}")
        if path.stat().st_size > MAX_FILE_BYTES:
            size = path.stat().st_size // MiB
            raise DirectionSetError(f"{path.name} is {size} MB; direction files are at most {limit}")
        return path.read_bytes(), label or path.name
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "getvalue"):
        data = bytes(source.getvalue())
    elif hasattr(source, "read"):
        data = source.read(MAX_FILE_BYTES + 1)
    else:
        raise DirectionSetError(f"cannot read a direction set from a {type(source).__name__}; pass a path or bytes")
    if len(data) > MAX_FILE_BYTES:
        raise DirectionSetError(f"the upload is larger than {limit}, the most a direction file may be")
    return data, label or str(getattr(source, "name", "") or "upload")


# --------------------------------------------------------------------------------------------------------------
# Zip safety (also used for GANSpace .npz and torch files by model.directions.importers)


def open_zip(data: bytes, label: str, what: str = "direction set") -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise DirectionSetError(f"{label} is not a complete zip file (truncated or damaged download?); "
                                f"export or copy the {what} again") from None


def check_member_name(name: str, label: str) -> None:
    if (not name or name.startswith(("/", "\\")) or "\\" in name or "\x00" in name or re.match(r"^[A-Za-z]:", name)
            or any(part == ".." for part in name.split("/"))):
        raise DirectionSetError(f"{label} contains a member with an unsafe path {name!r} (absolute, '..', or "
                                f"backslashes); it was refused. Export the file again from Atelier")


def check_zip_members(zf: zipfile.ZipFile, label: str, limits: Mapping[str, int] | None = None,
                      default_limit: int = MAX_UNPACKED_BYTES) -> list[zipfile.ZipInfo]:
    """Refuse unsafe names, duplicates, encryption, odd compression and zip bombs before reading anything."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise DirectionSetError(f"{label} has {len(infos)} members; at most {MAX_MEMBERS} are allowed")
    seen: set[str] = set()
    total = 0
    for info in infos:
        check_member_name(info.filename, label)
        if info.filename in seen:
            raise DirectionSetError(f"{label} contains {info.filename!r} twice; refused (which one is meant?)")
        seen.add(info.filename)
        if info.flag_bits & 0x1:
            raise DirectionSetError(f"{label}: member {info.filename!r} is encrypted; Atelier reads only plain zips")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise DirectionSetError(f"{label}: member {info.filename!r} uses an unsupported compression "
                                    f"(method {info.compress_type}); use stored or deflate")
        limit = (limits or {}).get(info.filename, default_limit)
        if info.file_size > limit:
            raise DirectionSetError(f"{label}: member {info.filename!r} unpacks to {info.file_size:,} bytes, more "
                                    f"than the {limit:,} allowed; refused as a possible zip bomb")
        if info.file_size > RATIO_CHECK_FROM and info.file_size > MAX_RATIO * max(1, info.compress_size):
            raise DirectionSetError(f"{label}: member {info.filename!r} is compressed more than {MAX_RATIO}:1 "
                                    f"({info.compress_size:,} -> {info.file_size:,} bytes); refused as a zip bomb")
        total += info.file_size
    if total > MAX_UNPACKED_BYTES:
        raise DirectionSetError(f"{label} unpacks to {total:,} bytes, more than the {MAX_UNPACKED_BYTES:,} allowed; "
                                f"refused as a possible zip bomb")
    return infos


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, label: str, limit: int) -> bytes:
    """A member's bytes, reading at most ``limit`` (whatever its header claims) and checking its CRC."""
    chunks, size = [], 0
    try:
        with zf.open(info) as handle:
            while True:
                chunk = handle.read(1 << 16)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit or size > info.file_size:
                    raise DirectionSetError(f"{label}: member {info.filename!r} unpacks to more than it declares "
                                            f"or than {limit:,} bytes; refused as a zip bomb")
                chunks.append(chunk)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
        if isinstance(exc, DirectionSetError):
            raise
        raise DirectionSetError(f"{label}: member {info.filename!r} is damaged ({exc}); export or copy the file "
                                f"again") from None
    return b"".join(chunks)


# --------------------------------------------------------------------------------------------------------------
# Reading and validating a file


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    dupes = sorted(k for k, n in Counter(keys).items() if n > 1)
    if dupes:
        raise DirectionSetError(f"{JSON_MEMBER} repeats the key(s) {dupes} in one object; keep one of each")
    return dict(pairs)


def _no_constants(token: str) -> Any:
    raise DirectionSetError(f"{JSON_MEMBER} contains {token}, which is not a number; every number must be finite")


class _Doc:
    """Validation of directions.json with messages that point at the field: 'directions[3].layer_range ...'."""

    def __init__(self, label: str):
        self.label = label

    def fail(self, where: str, message: str) -> None:
        raise DirectionSetError(f"{self.label}: {JSON_MEMBER}: {where} {message}")

    def obj(self, value: Any, where: str, required: Sequence[str], optional: Sequence[str] = ()) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, f"must be an object, got {type(value).__name__}")
        missing = [k for k in required if k not in value]
        if missing:
            self.fail(where, f"lacks {', '.join(repr(k) for k in missing)}")
        unknown = sorted(set(value) - set(required) - set(optional))
        if unknown:
            self.fail(where, f"has unknown field(s) {unknown}; this Atelier reads format {FORMAT_VERSION}")
        return value

    def integer(self, value: Any, where: str, low: int | None = None, high: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(where, f"must be a whole number, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            self.fail(where, f"must be between {low} and {high}, got {value}")
        return value

    def number(self, value: Any, where: str, low: float | None = None, high: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(where, f"must be a finite number, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            self.fail(where, f"must be between {low} and {high}, got {value}")
        return float(value)

    def text(self, value: Any, where: str, nullable: bool = False, max_length: int = 100_000) -> str | None:
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            self.fail(where, f"must be text{' or null' if nullable else ''}, got {value!r}")
        if len(value) > max_length:
            self.fail(where, f"is {len(value)} characters long; at most {max_length}")
        return value

    def name(self, value: Any, where: str, max_length: int, nullable: bool = False) -> str | None:
        if value is None and nullable:
            return None
        text = self.text(value, where, max_length=max_length)
        if not text.strip() or text != text.strip():
            self.fail(where, f"must be a non-empty name without surrounding spaces, got {value!r}")
        return text

    def choice(self, value: Any, where: str, allowed: Sequence[str]) -> str:
        if value not in allowed:
            self.fail(where, f"must be one of {', '.join(allowed)}; got {value!r}")
        return value

    def pair(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list) or len(value) != 2:
            self.fail(where, f"must be a list of two numbers, got {value!r}")
        return value

    def layer_range(self, value: Any, where: str, num_ws: int, nullable: bool = True) -> tuple[int, int] | None:
        if value is None and nullable:
            return None
        start, stop = self.pair(value, where)
        start, stop = self.integer(start, where + "[0]"), self.integer(stop, where + "[1]")
        if not 0 <= start < stop <= num_ws:
            self.fail(where, f"must be [start, end] with 0 <= start < end <= num_ws ({num_ws}; end is exclusive), "
                             f"got [{start}, {stop}]")
        return start, stop

    def strength_range(self, value: Any, where: str, nullable: bool = True) -> tuple[float, float] | None:
        if value is None and nullable:
            return None
        low, high = self.pair(value, where)
        low, high = self.number(low, where + "[0]"), self.number(high, where + "[1]")
        if high < low:
            self.fail(where, f"has max below min ({low}, {high}); swap them")
        return low, high

    def timestamp(self, value: Any, where: str) -> str | None:
        if value is None:
            return None
        text = self.text(value, where, max_length=64)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            self.fail(where, "must be an ISO 8601 time with a UTC offset, e.g. 2025-01-31T12:00:00+00:00; "
                             f"got {text!r}")
        return text


def _validate_document(doc: Any, label: str) -> tuple[dict[str, Any], list[DirectionMeta]]:
    v = _Doc(label)
    if not isinstance(doc, dict):
        v.fail("the top level", "must be an object")
    if doc.get("format") != FORMAT_NAME:
        raise DirectionSetError(f"{label} is not an Atelier direction set ({JSON_MEMBER} says format "
                                f"{doc.get('format')!r}, expected {FORMAT_NAME!r})")
    version = doc.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        v.fail("format_version", f"must be a whole number >= 1, got {version!r}")
    if version > FORMAT_VERSION:
        raise DirectionSetError(f"{label} uses direction-set format version {version}, but this Atelier reads up to "
                                f"version {FORMAT_VERSION}: upgrade Atelier to import it")
    v.obj(doc, "the top level", ("format", "format_version", "selection", "model", "component_sets", "directions"))
    v.choice(doc["selection"], "selection", ("published", "all-reviewed"))
    model = v.obj(doc["model"], "model", ("name", "fingerprint", "architecture"))
    v.text(model["name"], "model.name", nullable=True, max_length=200)
    if model["fingerprint"] is not None and not (isinstance(model["fingerprint"], str)
                                                 and re.fullmatch(r"[0-9a-f]{64}", model["fingerprint"])):
        v.fail("model.fingerprint", f"must be 64 lowercase hex digits (sha256) or null, got {model['fingerprint']!r}")
    arch = v.obj(model["architecture"], "model.architecture", ("z_dim", "w_dim", "num_ws", "resolution"), ("c_dim",))
    for key in ("z_dim", "w_dim", "num_ws", "resolution"):
        v.integer(arch[key], f"model.architecture.{key}", 1, MAX_W_DIM if key != "resolution" else 1 << 16)
    if "c_dim" in arch:
        v.integer(arch["c_dim"], "model.architecture.c_dim", 0, 1 << 20)
    num_ws = arch["num_ws"]

    if not isinstance(doc["component_sets"], list):
        v.fail("component_sets", "must be a list")
    sets: dict[str, dict[str, Any]] = {}
    for i, entry in enumerate(doc["component_sets"]):
        where = f"component_sets[{i}]"
        v.obj(entry, where, ("key", "method", "params", "sample_count", "review_seeds", "agreement"))
        key = v.name(entry["key"], where + ".key", 40)
        if key in sets:
            v.fail(where + ".key", f"{key!r} is used twice")
        v.name(entry["method"], where + ".method", 40)
        if not isinstance(entry["params"], dict):
            v.fail(where + ".params", "must be an object")
        v.integer(entry["sample_count"], where + ".sample_count", 0)
        if not isinstance(entry["review_seeds"], list):
            v.fail(where + ".review_seeds", "must be a list of seeds")
        for j, seed in enumerate(entry["review_seeds"]):
            v.integer(seed, f"{where}.review_seeds[{j}]", 0, 2**32 - 1)
        agreement = v.obj(entry["agreement"], where + ".agreement",
                          ("decision_alpha", "category_alpha", "decision_units", "category_units"))
        for key2 in ("decision_alpha", "category_alpha"):
            if agreement[key2] is not None:
                v.number(agreement[key2], f"{where}.agreement.{key2}", -1e9, 1.0)
        for key2 in ("decision_units", "category_units"):
            v.integer(agreement[key2], f"{where}.agreement.{key2}", 0)
        sets[key] = entry

    if not isinstance(doc["directions"], list):
        v.fail("directions", "must be a list")
    if not doc["directions"]:
        raise DirectionSetError(f"{label} holds no directions; nothing to import")
    if len(doc["directions"]) > MAX_DIRECTIONS:
        v.fail("directions", f"has {len(doc['directions'])} entries; at most {MAX_DIRECTIONS}")
    metas: list[DirectionMeta] = []
    seen: set[str] = set()
    for i, entry in enumerate(doc["directions"]):
        where = f"directions[{i}]"
        v.obj(entry, where, ("name", "status", "category", "source", "layer_range", "strength_range", "sigma",
                             "reviews", "scores", "published_by", "published_at", "preview"))
        try:
            name = check_direction_name(entry["name"], f"{where}.name")
        except InvalidInput as exc:
            raise DirectionSetError(f"{label}: {JSON_MEMBER}: {exc}; rename it in the file") from None
        if name in seen:
            v.fail(f"{where}.name", f"{name!r} is used by two directions; names must be unique")
        seen.add(name)
        status = v.choice(entry["status"], where + ".status", STATUSES)
        v.name(entry["category"], where + ".category", 60, nullable=True)
        source = entry["source"]
        if not isinstance(source, dict) or source.get("kind") not in ("component", "supervised"):
            v.fail(where + ".source", "must be {\"kind\": \"component\", ...} or {\"kind\": \"supervised\"}")
        if source["kind"] == "component":
            v.obj(source, where + ".source", ("kind", "set", "method", "index"))
            if source["set"] not in sets:
                v.fail(where + ".source.set", f"names component set {source['set']!r}, which is not in component_sets")
            if source["method"] != sets[source["set"]]["method"]:
                v.fail(where + ".source.method", f"is {source['method']!r} but set {source['set']!r} says "
                                                 f"{sets[source['set']]['method']!r}")
            v.integer(source["index"], where + ".source.index", 0, 10**9)
        else:
            v.obj(source, where + ".source", ("kind",))
            if status != "published":
                v.fail(where + ".status", "must be 'published' for a supervised direction (it has no reviews)")
        published = status == "published"
        layers = v.layer_range(entry["layer_range"], where + ".layer_range", num_ws, nullable=not published)
        strengths = v.strength_range(entry["strength_range"], where + ".strength_range", nullable=not published)
        sigma = v.number(entry["sigma"], where + ".sigma", 0.0)
        reviews = _validate_reviews(v, entry["reviews"], where + ".reviews", num_ws)
        if source["kind"] == "supervised" and reviews is not None:
            v.fail(where + ".reviews", "must be null for a supervised direction")
        scores = _validate_scores(v, entry["scores"], where + ".scores")
        if published:
            v.name(entry["published_by"], where + ".published_by", 100, nullable=True)
        elif entry["published_by"] is not None or entry["published_at"] is not None:
            v.fail(where, "is not published, so published_by and published_at must be null")
        published_at = v.timestamp(entry["published_at"], where + ".published_at")
        preview = entry["preview"]
        if preview is not None and not (isinstance(preview, str) and _PREVIEW_NAME.match(preview)):
            v.fail(where + ".preview", f"must be null or 'previews/NNN.jpg', got {preview!r}")
        metas.append(DirectionMeta(
            name=name, status=status, category=entry["category"], source=dict(source), layer_range=layers,
            strength_range=strengths, sigma=sigma, reviews=reviews, scores=scores,
            published_by=entry["published_by"], published_at=published_at, preview=preview,
        ))
    previews = [m.preview for m in metas if m.preview is not None]
    if len(previews) != len(set(previews)):
        v.fail("directions", "point two directions at the same preview file")
    return doc, metas


def _validate_reviews(v: _Doc, value: Any, where: str, num_ws: int) -> dict[str, Any] | None:
    if value is None:
        return None
    keys = ("status", "reviewers", "decisions", "approvals", "rejections", "unsure", "agreement", "mean_consistency",
            "label", "category", "conflicts", "by_reviewer")
    v.obj(value, where, keys)
    v.choice(value["status"], where + ".status", REVIEW_STATUSES)
    for key in ("approvals", "rejections", "unsure"):
        v.integer(value[key], f"{where}.{key}", 0)
    if value["agreement"] is not None:
        v.number(value["agreement"], where + ".agreement", 0.0, 1.0)
    if value["mean_consistency"] is not None:
        v.number(value["mean_consistency"], where + ".mean_consistency", 1.0, 5.0)
    v.text(value["label"], where + ".label", nullable=True)
    v.text(value["category"], where + ".category", nullable=True, max_length=60)
    if not isinstance(value["conflicts"], list) or not all(isinstance(c, str) for c in value["conflicts"]):
        v.fail(where + ".conflicts", "must be a list of text")
    if not isinstance(value["by_reviewer"], list):
        v.fail(where + ".by_reviewer", "must be a list")
    decisions: dict[str, str] = {}
    for j, review in enumerate(value["by_reviewer"]):
        at = f"{where}.by_reviewer[{j}]"
        v.obj(review, at, ("reviewer", "decision", "label", "category", "consistency", "layer_range",
                           "strength_range", "note"))
        who = v.name(review["reviewer"], at + ".reviewer", 100)
        if who in decisions:
            v.fail(at + ".reviewer", f"{who!r} appears twice; keep their latest review only")
        decisions[who] = v.choice(review["decision"], at + ".decision", VOTES)
        v.text(review["label"], at + ".label")
        if review["decision"] == "approve" and not review["label"].strip():
            v.fail(at + ".label", "is empty, but an approval needs a label")
        v.name(review["category"], at + ".category", 60, nullable=True)
        if review["consistency"] is not None:
            v.integer(review["consistency"], at + ".consistency", 1, 5)
        v.layer_range(review["layer_range"], at + ".layer_range", num_ws)
        v.strength_range(review["strength_range"], at + ".strength_range")
        v.text(review["note"], at + ".note")
    if not isinstance(value["decisions"], dict) or value["decisions"] != decisions:
        v.fail(where + ".decisions", "does not match by_reviewer (was the file edited by hand?)")
    if value["reviewers"] != sorted(decisions):
        v.fail(where + ".reviewers", "must list the reviewers of by_reviewer, sorted")
    return value


def _validate_scores(v: _Doc, value: Any, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    v.obj(value, where, SCORE_KEYS)
    for key in SCORE_KEYS:
        item = value[key]
        if item is None:
            continue
        if key in _TEXT_SCORES:
            v.text(item, f"{where}.{key}", max_length=60 if key == "suggested_category" else 10_000)
        elif key == "dead":
            if not isinstance(item, bool):
                v.fail(f"{where}.dead", f"must be true, false or null, got {item!r}")
        else:
            v.number(item, f"{where}.{key}")
    return value


def _read_vectors(data: bytes, label: str, names: list[str], w_dim: int) -> np.ndarray:
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        tensors = load(data)
    except (SafetensorError, ValueError, OSError) as exc:
        raise DirectionSetError(f"{label}: {VECTORS_MEMBER} cannot be read ({exc}); export the file again") from None
    missing = [n for n in names if n not in tensors]
    extra = sorted(set(tensors) - set(names))
    if missing:
        raise DirectionSetError(f"{label}: {VECTORS_MEMBER} has no vector for {missing[:5]} (named in {JSON_MEMBER})")
    if extra:
        raise DirectionSetError(f"{label}: {VECTORS_MEMBER} has vectors {extra[:5]} that {JSON_MEMBER} does not list")
    rows = []
    for name in names:
        array = tensors[name]
        if array.dtype != np.float32:
            raise DirectionSetError(f"{label}: vector {name!r} is {array.dtype}, expected float32")
        if array.shape != (w_dim,):
            raise DirectionSetError(f"{label}: vector {name!r} has shape {list(array.shape)}; this set's model has "
                                    f"w_dim {w_dim}, so each vector must be [{w_dim}]")
        if not np.all(np.isfinite(array)):
            raise DirectionSetError(f"{label}: vector {name!r} contains NaN or infinite values; the direction is "
                                    f"broken: recompute it or leave it out")
        if not np.any(array):
            raise DirectionSetError(f"{label}: vector {name!r} is all zeros; it would change nothing")
        rows.append(array)
    return np.stack(rows).astype(np.float32, copy=False)


def _safetensors_names(data: bytes) -> list[str] | None:
    """The name order recorded in the safetensors metadata, if any (the tensors themselves are unordered)."""
    if len(data) < 8:
        return None
    size = int.from_bytes(data[:8], "little")
    if size <= 0 or size > len(data) - 8:
        return None
    try:
        header = json.loads(data[8:8 + size])
        names = json.loads(header.get("__metadata__", {}).get("atelier", "{}")).get("names")
    except (ValueError, AttributeError, TypeError):
        return None
    return names if isinstance(names, list) else None


def parse_direction_set(data: bytes, label: str = "the file") -> DirectionSet:
    """Validate every member of a direction-set zip and return it; any problem raises DirectionSetError."""
    if len(data) > MAX_FILE_BYTES:
        raise DirectionSetError(f"{label} is larger than {MAX_FILE_BYTES // MiB} MB, the most a direction file may be")
    with open_zip(data, label) as zf:
        infos = check_zip_members(zf, label, limits=MAX_MEMBER_BYTES, default_limit=MAX_PREVIEW_BYTES)
        by_name = {info.filename: info for info in infos if not info.is_dir()}
        for info in infos:
            if info.is_dir():
                if info.filename != PREVIEW_DIR:
                    raise DirectionSetError(f"{label} contains an unexpected folder {info.filename!r}")
            elif info.filename not in REQUIRED_MEMBERS and not _PREVIEW_NAME.match(info.filename):
                raise DirectionSetError(f"{label} contains an unexpected member {info.filename!r}; a direction set "
                                        f"holds only {', '.join(REQUIRED_MEMBERS)} and previews/NNN.jpg")
        missing = [m for m in REQUIRED_MEMBERS if m not in by_name]
        if missing:
            raise DirectionSetError(f"{label} lacks {', '.join(missing)}; it is not a complete Atelier direction set "
                                    f"(export it again)")
        raw_json = read_member(zf, by_name[JSON_MEMBER], label, MAX_MEMBER_BYTES[JSON_MEMBER])
        try:
            doc = json.loads(raw_json.decode("utf-8"), object_pairs_hook=_no_duplicate_keys,
                             parse_constant=_no_constants)
        except UnicodeDecodeError:
            raise DirectionSetError(f"{label}: {JSON_MEMBER} is not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise DirectionSetError(f"{label}: {JSON_MEMBER} is not valid JSON ({exc}); "
                                    "export the file again") from None
        except RecursionError:
            raise DirectionSetError(f"{label}: {JSON_MEMBER} is nested too deeply to be a direction set") from None
        doc, metas = _validate_document(doc, label)
        names = [m.name for m in metas]
        raw_vectors = read_member(zf, by_name[VECTORS_MEMBER], label, MAX_MEMBER_BYTES[VECTORS_MEMBER])
        vectors = _read_vectors(raw_vectors, label, names, doc["model"]["architecture"]["w_dim"])
        recorded = _safetensors_names(raw_vectors)
        if recorded is not None and recorded != names:
            raise DirectionSetError(f"{label}: the name order in {VECTORS_MEMBER} differs from {JSON_MEMBER}; the "
                                    f"two members do not belong together (export the file again)")
        try:
            read_member(zf, by_name[LABELS_MEMBER], label, MAX_MEMBER_BYTES[LABELS_MEMBER]).decode("utf-8")
        except UnicodeDecodeError:
            raise DirectionSetError(f"{label}: {LABELS_MEMBER} is not UTF-8 text") from None
        referenced = {m.preview for m in metas if m.preview is not None}
        stray = sorted(n for n in by_name if n.startswith(PREVIEW_DIR) and n not in referenced)
        if stray:
            raise DirectionSetError(f"{label} contains previews no direction refers to: {stray[:5]}")
        previews: dict[str, bytes] = {}
        for name in sorted(referenced):
            if name not in by_name:
                raise DirectionSetError(f"{label} lacks {name}, the preview {JSON_MEMBER} refers to")
            previews[name] = read_member(zf, by_name[name], label, MAX_PREVIEW_BYTES)
    return DirectionSet(names=names, vectors=vectors, metadata=doc, directions=metas, previews=previews)


# --------------------------------------------------------------------------------------------------------------
# Export


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(timezone.utc).isoformat()


def _strip_import(params: Mapping[str, Any]) -> dict[str, Any]:
    """Params without the import bookkeeping, keys sorted (so the file does not depend on how a backend stores JSON)."""
    return json.loads(json.dumps({k: v for k, v in params.items() if k != IMPORT_KEY}, sort_keys=True))


def _original_indices(set_info: Any) -> dict[int, int]:
    """Database component index -> the index the component had where it was discovered (differs after import)."""
    recorded = (set_info.params.get(IMPORT_KEY) or {}).get("indices") if isinstance(set_info.params, dict) else None
    if isinstance(recorded, list) and len(recorded) == set_info.component_count:
        return {i: int(original) for i, original in enumerate(recorded)}
    return {i: i for i in range(set_info.component_count)}


def _majority_share(decisions: Sequence[str]) -> float | None:
    """Per-direction agreement: the share of voting reviewers who made the most common decision (None below 2)."""
    if len(decisions) < 2:
        return None
    return Counter(decisions).most_common(1)[0][1] / len(decisions)


def _pair(value: tuple[Any, Any] | None, kind: type) -> list[Any] | None:
    return None if value is None else [kind(value[0]), kind(value[1])]


@dataclass
class _Entry:
    name: str
    status: str
    vector: np.ndarray
    direction: Any = None  # DirectionInfo when published
    component: Any = None  # ComponentInfo when from a component
    set_id: int | None = None


def _collect(session: Any, model_id: int, all_reviewed: bool) -> tuple[Any, dict[str, Any], np.ndarray]:
    from db import queries
    from db.agreement import nominal_alpha

    model = queries.get_model(session, model_id)
    entries: list[_Entry] = []
    published_components: set[int] = set()
    for info in queries.active_directions(session, model.id):
        component = None if info.component_id is None else queries.get_component(session, info.component_id)
        entries.append(_Entry(info.name, "published", info.vector, direction=info, component=component,
                              set_id=None if component is None else component.set_id))
        if component is not None:
            published_components.add(component.id)
    sets = {s.id: s for s in queries.list_component_sets(session, model.id)}
    statuses: dict[int, dict[int, Any]] = {}
    votes_by_set: dict[int, dict[int, list[Any]]] = {}

    def status_of(set_id: int, component_id: int) -> Any:
        if set_id not in statuses:
            statuses[set_id] = {s.component_id: s for s in queries.component_statuses(session, set_id)}
        return statuses[set_id][component_id]

    def votes_of(set_id: int, component_id: int) -> list[Any]:
        """Each reviewer's latest review when it is a vote, oldest first (import replays this order)."""
        if set_id not in votes_by_set:
            votes_by_set[set_id] = queries.latest_votes(session, set_id)
        return votes_by_set[set_id].get(component_id, [])

    if all_reviewed:
        for set_id in sorted(sets):
            for component in queries.list_components(session, set_id):
                status = status_of(set_id, component.id)
                if component.id in published_components or not status.reviewers:
                    continue
                entries.append(_Entry("", status.status, queries.component_vector(session, component.id),
                                      component=component, set_id=set_id))
    if not entries:
        what = "reviewed components or published directions" if all_reviewed else "published directions"
        hint = "" if all_reviewed else ", or export with --all-reviewed to include reviewed components"
        raise DirectionSetError(f"nothing to export: model {model.name!r} has no {what}. Publish directions on the "
                                f"Directions page{hint}")

    used_sets = sorted({e.set_id for e in entries if e.set_id is not None})
    keys = {set_id: f"s{i + 1}" for i, set_id in enumerate(used_sets)}
    originals = {set_id: _original_indices(sets[set_id]) for set_id in used_sets}
    for entry in entries:
        if not entry.name:
            method = re.sub(r"[^A-Za-z0-9_-]+", "-", sets[entry.set_id].method)
            entry.name = f"{method}_{keys[entry.set_id]}_{originals[entry.set_id][entry.component.index]:03d}"
        try:
            check_direction_name(entry.name)
        except InvalidInput as exc:
            raise DirectionSetError(f"cannot export: {exc}. Unpublish it and publish it again under another "
                                    f"name") from None
    counts = Counter(e.name for e in entries)
    clash = sorted(n for n, c in counts.items() if c > 1)
    if clash:
        raise DirectionSetError(f"cannot export: the name(s) {clash} are used twice (a published direction has the "
                                f"name Atelier gives an unpublished component); rename the published one")
    entries.sort(key=lambda e: e.name)

    directions: list[dict[str, Any]] = []
    units: dict[int, dict[int, list[Any]]] = {set_id: {} for set_id in used_sets}
    for entry in entries:
        d = entry.direction
        record: dict[str, Any] = {"name": entry.name, "status": entry.status,
                                  "category": None if d is None else d.category}
        reviews = scores = None
        sigma = float(entry.component.sigma) if d is None else _stored_sigma(d, entry.component)
        if entry.component is None:
            record["source"] = {"kind": "supervised"}
        else:
            c = entry.component
            original = originals[entry.set_id][c.index]
            record["source"] = {"kind": "component", "set": keys[entry.set_id], "method": sets[entry.set_id].method,
                                "index": original}
            status = status_of(entry.set_id, c.id)
            votes = votes_of(entry.set_id, c.id)
            units[entry.set_id].setdefault(original, votes)
            reviews = {
                "status": status.status, "reviewers": sorted(r.reviewer for r in votes),
                "decisions": {r.reviewer: r.decision for r in sorted(votes, key=lambda r: r.reviewer)},
                "approvals": status.approvals, "rejections": status.rejections, "unsure": status.unsure,
                "agreement": _majority_share([r.decision for r in votes]),
                "mean_consistency": status.mean_consistency, "label": status.latest_label,
                "category": status.latest_category, "conflicts": list(status.conflicts),
                "by_reviewer": [
                    {"reviewer": r.reviewer, "decision": r.decision, "label": r.label, "category": r.category,
                     "consistency": r.consistency, "layer_range": _pair(r.layer_range, int),
                     "strength_range": _pair(r.strength_range, float), "note": r.note}
                    for r in votes
                ],
            }
            scores = {"eigenvalue": c.eigenvalue, "effect": c.effect, "consistency": c.consistency,
                      "locality": c.locality, "locality_where": c.locality_where, "colour_share": c.colour_share,
                      "layer_sensitivity": c.layer_sensitivity, "suggested_category": c.suggested_category,
                      "priority": c.priority, "dead": bool(c.dead)}
        record.update({
            "layer_range": None if d is None else _pair(d.layer_range, int),
            "strength_range": None if d is None else _pair(d.strength_range, float),
            "sigma": sigma, "reviews": reviews, "scores": scores,
            "published_by": None if d is None else d.published_by,
            "published_at": None if d is None else _iso(d.published_at), "preview": None,
        })
        directions.append(record)

    component_sets = []
    for set_id in used_sets:
        info = sets[set_id]
        ordered = [units[set_id][i] for i in sorted(units[set_id])]
        decision_units = [[r.decision for r in votes] for votes in ordered]
        category_units = [[r.category for r in votes if r.category is not None] for votes in ordered]
        component_sets.append({
            "key": keys[set_id], "method": info.method, "params": _strip_import(info.params),
            "sample_count": info.sample_count, "review_seeds": list(info.review_seeds),
            "agreement": {"decision_alpha": nominal_alpha(decision_units),
                          "category_alpha": nominal_alpha(category_units),
                          "decision_units": sum(1 for u in decision_units if len(u) >= 2),
                          "category_units": sum(1 for u in category_units if len(u) >= 2)},
        })
    arch = model.architecture
    doc = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "selection": "all-reviewed" if all_reviewed else "published",
        "model": {"name": model.name, "fingerprint": model.fingerprint,
                  "architecture": {"z_dim": int(arch.get("z_dim", 0) or 0), "w_dim": int(arch["w_dim"]),
                                   "num_ws": int(arch["num_ws"]),
                                   "resolution": int(arch.get("img_resolution", arch.get("resolution", 0)) or 0),
                                   "c_dim": int(arch.get("c_dim", 0) or 0)}},
        "component_sets": component_sets,
        "directions": directions,
    }
    vectors = np.stack([np.asarray(e.vector, dtype=np.float32) for e in entries])
    return model, doc, vectors


def _csv_text(value: Any) -> str:
    """Text for a spreadsheet cell; a leading = + - @ would make spreadsheets run it as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_number(value: Any) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


def labels_csv(doc: Mapping[str, Any]) -> bytes:
    """labels.csv: one row per direction (informational; import reads directions.json)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(_CSV_COLUMNS)
    sets = {s["key"]: s for s in doc["component_sets"]}
    for d in doc["directions"]:
        reviews = d["reviews"] or {}
        source = d["source"]
        layers = d["layer_range"] or [None, None]
        strengths = d["strength_range"] or [None, None]
        writer.writerow([
            _csv_text(d["name"]), d["status"], _csv_text(d["category"]), _csv_text(reviews.get("label")),
            source["kind"], _csv_text(sets[source["set"]]["method"]) if source["kind"] == "component" else "",
            _csv_number(source.get("index")), _csv_number(layers[0]), _csv_number(layers[1]),
            _csv_number(strengths[0]), _csv_number(strengths[1]), _csv_number(d["sigma"]),
            _csv_number(reviews.get("approvals")), _csv_number(reviews.get("rejections")),
            _csv_number(reviews.get("unsure")),
            _csv_text("; ".join(f"{r['reviewer']}: {r['decision']}" for r in reviews.get("by_reviewer", []))),
            _csv_number(reviews.get("agreement")), _csv_number(reviews.get("mean_consistency")),
            _csv_text(d["published_by"]), d["published_at"] or "", d["preview"] or "",
        ])
    # A BOM so Excel opens the UTF-8 correctly (labels are often not ASCII).
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def pack_direction_set(doc: Mapping[str, Any], vectors: np.ndarray,
                       previews: Mapping[str, bytes] | None = None) -> bytes:
    """The zip bytes for a document and its vectors (deterministic: fixed dates and member order)."""
    from safetensors.numpy import save

    names = [d["name"] for d in doc["directions"]]
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.shape != (len(names), doc["model"]["architecture"]["w_dim"]):
        raise DirectionSetError(f"vectors have shape {list(vectors.shape)}, expected "
                                f"[{len(names)}, {doc['model']['architecture']['w_dim']}]")
    tensors = {name: np.ascontiguousarray(vectors[i]) for i, name in enumerate(names)}
    # One metadata key: safetensors keeps metadata in a hash map, so several keys come out in random order.
    meta = {"atelier": json.dumps({"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "names": names})}
    members = [
        (JSON_MEMBER, (json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")),
        (VECTORS_MEMBER, save(tensors, metadata=meta)),
        (LABELS_MEMBER, labels_csv(doc)),
    ]
    members += sorted((previews or {}).items())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, payload in members:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED if name.endswith(".jpg") else zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, payload)
    return buffer.getvalue()


def _preview_jpeg(renderer: Any, vector: np.ndarray, sigma: float, meta: Mapping[str, Any], seeds: Sequence[int],
                  num_ws: int) -> bytes:
    """One strip (rows: seeds, columns: 5 steps across the strength range) as JPEG, drawn as everywhere else."""
    from model.directions.drawing import strip_grid
    from model.directions.strips import StripSpec, range_steps, render_strip

    low, high = meta["strength_range"] or (-3.0, 3.0)
    steps = range_steps(low, high, 5)
    start, stop = meta["layer_range"] or (0, num_ws)
    spec = StripSpec(set_key=str(meta["source"].get("set", "supervised")),
                     component=int(meta["source"].get("index", 0)),
                     seeds=tuple(int(s) for s in seeds), steps=steps, layer_start=start, layer_stop=stop)
    grid = strip_grid(render_strip(renderer, vector, sigma, spec).images, spec.seeds, steps,
                      cell=max(96, renderer.resolution))
    buffer = io.BytesIO()
    grid.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def export_direction_set(session_or_url: Any, model_id: int, out_path: str | Path | None = None,
                         all_reviewed: bool = False, include_previews: bool = False,
                         renderer: Any = None) -> bytes | Path:
    """Export a model's published directions (with ``all_reviewed``, also every reviewed component).

    ``session_or_url``: an open SQLAlchemy session, a database URL, or None for the configured database. Returns
    the zip bytes (for a download button) or, with ``out_path``, writes them there atomically and returns the
    path. ``include_previews`` renders one strip per direction with ``renderer`` (default: the model's file, which
    must have the registered fingerprint).
    """
    from sqlalchemy.orm import Session

    if isinstance(session_or_url, Session):
        model, doc, vectors = _collect(session_or_url, model_id, all_reviewed)
    else:
        from db.engine import read_session

        with read_session(session_or_url) as session:
            model, doc, vectors = _collect(session, model_id, all_reviewed)
    previews: dict[str, bytes] = {}
    if include_previews:
        if renderer is None:
            from model.network.render import Renderer

            renderer = Renderer(model.path)
        if renderer.fingerprint != model.fingerprint:
            raise DirectionSetError(f"the network given for previews has other weights than model {model.name!r}; "
                                    f"pass the model's own file (registered from {model.path})")
        seeds_by_set = {s["key"]: s["review_seeds"] for s in doc["component_sets"]}
        for i, meta in enumerate(doc["directions"]):
            seeds = (seeds_by_set.get(meta["source"].get("set")) or [0, 1, 2])[:3]
            name = f"{PREVIEW_DIR}{i:03d}.jpg"
            previews[name] = _preview_jpeg(renderer, vectors[i], meta["sigma"], meta, seeds,
                                           doc["model"]["architecture"]["num_ws"])
            meta["preview"] = name
    data = pack_direction_set(doc, vectors, previews)
    if out_path is None:
        return data

    path = Path(out_path)
    atomic_write_bytes(path, data)
    return path


# --------------------------------------------------------------------------------------------------------------
# Import: plan (read-only) and apply (one transaction)


@dataclass(frozen=True)
class PlanItem:
    """One line of an import plan. action: add-category, add-reviewer, add-set, reuse-set, add-reviews, publish,
    replace (unpublish the current direction of that name, publish the file's), unchanged, provenance (team mode:
    the file's people, kept beside the importer's rows)."""

    action: str
    name: str
    detail: str = ""


@dataclass
class ImportPlan:
    """What an import would do; show :meth:`summary` (or the items) and call :func:`apply_import` to write it."""

    source: str
    kind: str  # "atelier", "ganspace", "interfacegan", "sefa-legacy", or "unknown" when unreadable
    target_fingerprint: str | None
    force: bool = False
    publish: bool = False
    direction_set: DirectionSet | None = field(default=None, repr=False)
    items: list[PlanItem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    model_name: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def counts(self) -> dict[str, int]:
        return dict(Counter(item.action for item in self.items))

    def summary(self, include_errors: bool = True) -> str:
        kinds = {"atelier": "Atelier direction set", "ganspace": "GANSpace components",
                 "interfacegan": "InterFaceGAN boundary", "sefa-legacy": "SeFa factors (old notebooks)"}
        target = f"model {self.model_name!r}" if self.model_name else "the model"
        lines = [f"Import {self.source} ({kinds.get(self.kind, 'unrecognised file')}) into {target}:"]
        marks = {"unchanged": "=", "replace": "~", "reuse-set": "="}
        lines += [f"  {marks.get(i.action, '+')} {i.action} {i.name}{': ' + i.detail if i.detail else ''}"
                  for i in self.items]
        if not self.items and self.ok:
            lines.append("  nothing to do")
        lines += [f"warning: {w}" for w in self.warnings]
        if include_errors:
            lines += [f"error: {e}" for e in self.errors]
        return "\n".join(lines)


@dataclass
class ImportResult:
    component_set_ids: list[int]
    published: list[str]
    replaced: list[str]
    reviews: int
    unchanged: int


@dataclass
class _NewComponent:
    original_index: int
    vector: np.ndarray
    sigma: float
    scores: dict[str, Any] | None
    reviews: list[dict[str, Any]]


@dataclass
class _SetAction:
    key: str
    method: str
    params: dict[str, Any]
    sample_count: int
    review_seeds: list[int]
    components: list[_NewComponent]
    existing_id: int | None = None  # a set already in the database holding these components
    component_ids: dict[int, int] = field(default_factory=dict)  # original index -> component id


@dataclass
class _Resolution:
    categories: list[str] = field(default_factory=list)
    reviewers: list[str] = field(default_factory=list)
    sets: list[_SetAction] = field(default_factory=list)
    publishes: list[tuple[int, int | None]] = field(default_factory=list)  # (direction index, id to replace)
    items: list[PlanItem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unchanged: int = 0


def _describe(meta: DirectionMeta) -> str:
    parts = [meta.category or "no category"]
    if meta.layer_range is not None:
        parts.append(f"layers {meta.layer_range[0]}–{meta.layer_range[1]}")
    if meta.strength_range is not None:
        parts.append(f"{meta.strength_range[0]:g} to {meta.strength_range[1]:g} σ")
    parts.append(f"σ {meta.sigma:.4g}")
    return ", ".join(parts)


def _resolve(session: Any, ds: DirectionSet, model: Any, source: str) -> _Resolution:
    """Compare a validated set with the database: what to add, reuse, publish, replace. Reads only."""
    from db import queries

    res = _Resolution()
    # Component sets: reuse one that already holds exactly these vectors (re-importing is then a no-op).
    sets_in_file = {s["key"]: s for s in ds.metadata["component_sets"]}
    by_set: dict[str, list[int]] = {}
    for i, meta in enumerate(ds.directions):
        if meta.source["kind"] == "component":
            by_set.setdefault(meta.source["set"], []).append(i)
    candidates = queries.list_component_sets(session, model.id)
    for key, entry in sets_in_file.items():
        members = by_set.get(key, [])
        if not members:
            continue
        components: dict[int, _NewComponent] = {}
        for i in members:
            meta = ds.directions[i]
            index = meta.source["index"]
            if index in components:
                if not np.array_equal(components[index].vector, ds.vectors[i]):
                    res.warnings.append(f"{ds.names[i]!r} and another direction share component {index} of set "
                                        f"{key} but have different vectors; the component keeps the first")
                continue
            components[index] = _NewComponent(index, ds.vectors[i], meta.sigma, meta.scores,
                                              list((meta.reviews or {}).get("by_reviewer", [])))
        ordered = [components[i] for i in sorted(components)]
        action = _SetAction(key, entry["method"], dict(entry["params"]), entry["sample_count"],
                            list(entry["review_seeds"]), ordered)
        for candidate in sorted(candidates, key=lambda s: s.id):
            if (candidate.method != action.method or _strip_import(candidate.params) != _strip_import(action.params)
                    or candidate.sample_count != action.sample_count):
                continue
            originals = {o: i for i, o in _original_indices(candidate).items()}
            db_components = {c.index: c for c in queries.list_components(session, candidate.id)}
            matched: dict[int, int] = {}
            for comp in ordered:
                db_index = originals.get(comp.original_index)
                if db_index is None or db_index not in db_components:
                    break
                stored = queries.component_vector(session, db_components[db_index].id)
                if stored.tobytes() != np.asarray(comp.vector, np.float32).tobytes():
                    break
                matched[comp.original_index] = db_components[db_index].id
            else:
                action.existing_id, action.component_ids = candidate.id, matched
                break
        reviews = sum(len(c.reviews) for c in ordered)
        if action.existing_id is not None:
            res.items.append(PlanItem("reuse-set", key, f"{action.method}: its {len(ordered)} component(s) are "
                                                        f"already in set {action.existing_id}"))
            votes = queries.latest_votes(session, action.existing_id)
            for comp in ordered:
                current = {r.reviewer: r for r in votes.get(action.component_ids[comp.original_index], [])}
                for review in comp.reviews:
                    mine = current.get(review["reviewer"])
                    if mine is None or mine.decision != review["decision"] or mine.label != review["label"]:
                        res.warnings.append(
                            f"{review['reviewer']}'s review of component {comp.original_index} ({key}) in the file "
                            f"({review['decision']}) differs from the database's "
                            f"({'none' if mine is None else mine.decision}); the database's is kept")
        else:
            detail = f"{action.method}, {len(ordered)} component(s)"
            detail += f", {reviews} review(s)" if reviews else ", to review"
            res.items.append(PlanItem("add-set", key, detail))
        res.sets.append(action)

    # Publications.
    current = {d.name: d for d in queries.active_directions(session, model.id)}
    set_actions = {a.key: a for a in res.sets}
    for i, meta in enumerate(ds.directions):
        if not meta.published:
            continue
        existing = current.get(meta.name)
        if existing is not None:
            component_id = None
            if meta.source["kind"] == "component":
                component_id = set_actions[meta.source["set"]].component_ids.get(meta.source["index"])
            layers = meta.layer_range
            same = (existing.vector.tobytes() == ds.vectors[i].tobytes() and existing.layer_range == layers
                    and existing.strength_range == meta.strength_range and existing.category == meta.category
                    and existing.component_id == component_id
                    and direction_sigma(session, existing) == meta.sigma)
            if same:
                res.items.append(PlanItem("unchanged", repr(meta.name), "already published as in the file"))
                res.unchanged += 1
                continue
            res.items.append(PlanItem("replace", repr(meta.name), "unpublish the current one (it differs) and "
                                                                  "publish the file's: " + _describe(meta)))
            res.publishes.append((i, existing.id))
        else:
            res.items.append(PlanItem("publish", repr(meta.name), _describe(meta)))
            res.publishes.append((i, None))

    # Categories and reviewers that the new reviews and publications need and the database lacks.
    categories: list[str] = []
    reviewers: list[str] = []
    for action in res.sets:
        if action.existing_id is None:
            for review in (r for comp in action.components for r in comp.reviews):
                reviewers.append(review["reviewer"])
                categories += [review["category"]] if review["category"] else []
    for i, _ in res.publishes:
        meta = ds.directions[i]
        categories += [meta.category] if meta.category else []
        reviewers += [meta.published_by] if meta.published_by else []
    active = {c.name for c in queries.list_categories(session)}
    retired = {c.name for c in queries.list_categories(session, include_retired=True)} - active
    known = {r.name for r in queries.list_reviewers(session)}
    res.categories = [name for name in dict.fromkeys(categories) if name not in active]
    from db.accounts import team_mode

    # A team database makes no names for the file's people: the importer's rows keep them as provenance.
    team = team_mode(session)
    res.reviewers = [] if team else [name for name in dict.fromkeys(reviewers) if name not in known]
    res.items[:0] = (
        [PlanItem("add-category", repr(name), "restore the retired category" if name in retired
                  else "not in this database's taxonomy yet") for name in res.categories]
        + [PlanItem("add-reviewer", repr(name)) for name in res.reviewers]
        + ([PlanItem("provenance", ", ".join(repr(n) for n in dict.fromkeys(reviewers)),
                     "kept as who reviewed or published originally; the rows are the importer's, dated now")]
           if team and reviewers else [])
    )
    return res


def _check_model(ds: DirectionSet, model: Any, force: bool, plan: ImportPlan) -> None:
    arch = model.architecture
    for key in ("w_dim", "num_ws"):
        mine, theirs = int(arch[key]), ds.architecture.get(key)
        if theirs is not None and mine != theirs:
            plan.errors.append(f"the file is for a model with {key} {theirs}, but {model.name!r} has {key} {mine}; "
                               f"its directions cannot apply to this model")
    if ds.fingerprint is None:
        return
    if ds.fingerprint != model.fingerprint:
        other = ds.metadata["model"].get("name")
        message = (f"the file was exported from a different model ({other!r}, fingerprint {ds.fingerprint[:12]}…) "
                   f"than {model.name!r} ({model.fingerprint[:12]}…)")
        if force:
            plan.warnings.append(message + "; importing anyway (--force): check the directions look right")
        else:
            plan.errors.append(message + ". If it is a fine-tuned copy whose directions still apply, import again "
                                         "with --force")
        for key in ("z_dim", "resolution"):
            mine = int(arch.get(key if key != "resolution" else "img_resolution", 0) or 0)
            theirs = ds.architecture.get(key)
            if theirs and mine and mine != theirs:
                plan.warnings.append(f"the file's model has {key} {theirs}, this one {mine}")


def plan_import(source: Any, target_model_fingerprint: str | None = None, force: bool = False, *,
                url: str | None = None, publish: bool = False, names: Sequence[str] | None = None,
                renderer: Any = None, filename: str | None = None) -> ImportPlan:
    """Read and validate a file (path, bytes or upload) and say what importing it into the target model would do.

    Atelier ``.zip`` sets, GANSpace ``.npz``, InterFaceGAN ``.npy`` and old SeFa ``torch.save`` files are
    recognised by content. Foreign files become a new component set to review; with ``publish`` their
    directions are also published (named ``names`` or ``<method>_000``…). ``renderer`` (the target model) gives
    σ for InterFaceGAN and SeFa files, which do not carry it. ``target_model_fingerprint`` defaults to the
    file's model. Nothing is written; problems are in ``plan.errors`` rather than raised.
    """
    from db import queries
    from db.engine import read_session
    from model.directions import importers

    label = filename or (Path(source).name if isinstance(source, (str, Path)) else None)
    plan = ImportPlan(source=label or "upload", kind="unknown", target_fingerprint=target_model_fingerprint,
                      force=force, publish=publish)
    try:
        data, plan.source = read_source(source, label)
        plan.kind = importers.detect_kind(data, plan.source)
        if plan.kind == "atelier":
            ds = parse_direction_set(data, plan.source)
            if publish or names:
                plan.warnings.append("--publish and --names apply to GANSpace, InterFaceGAN and SeFa files; an "
                                     "Atelier set publishes what it says is published")
            raw = None
        else:
            raw = importers.read_raw(data, plan.kind, plan.source)
            ds = None
        fingerprint = target_model_fingerprint or (ds.fingerprint if ds is not None else None)
        if fingerprint is None:
            raise DirectionSetError(f"{plan.source} does not say which model it belongs to: choose the target "
                                    f"model (--model)")
        plan.target_fingerprint = fingerprint
        with read_session(url) as session:
            model = queries.model_by_fingerprint(session, fingerprint)
            if model is None:
                raise DirectionSetError(f"no model with fingerprint {fingerprint[:12]}… is registered in this "
                                        f"database: register it first (atelier import --network FILE, or run "
                                        f"discovery on it)")
            plan.model_name = model.name
            if raw is not None:
                ds = _raw_to_set(raw, model, publish, names, renderer, plan)
            _check_model(ds, model, force, plan)
            plan.direction_set = ds
            if plan.errors:
                return plan
            resolution = _resolve(session, ds, model, plan.source)
    except AtelierError as exc:
        plan.errors.append(str(exc))
        return plan
    plan.items, plan.warnings = resolution.items, plan.warnings + resolution.warnings
    plan.errors += resolution.errors
    return plan


def _raw_to_set(raw: Any, model: Any, publish: bool, names: Sequence[str] | None, renderer: Any,
                plan: ImportPlan) -> DirectionSet:
    """A foreign file's vectors as a one-set DirectionSet for the target model (validated like a file)."""
    from model.directions.importers import sigmas_from_model

    arch = model.architecture
    w_dim, num_ws = int(arch["w_dim"]), int(arch["num_ws"])
    n = raw.vectors.shape[0]
    if raw.vectors.shape[1] != w_dim:
        raise DirectionSetError(f"{plan.source} has vectors of length {raw.vectors.shape[1]}, but model "
                                f"{model.name!r} has w_dim {w_dim}; the file is for another model")
    plan.warnings.extend(raw.notes)
    sigmas = raw.sigmas
    if sigmas is None:
        if renderer is not None and renderer.fingerprint == model.fingerprint:
            sigmas = sigmas_from_model(renderer, raw.vectors)
            raw.params["sigma_source"] = "model samples"
        else:
            sigmas = np.ones(n)
            raw.params["sigma_source"] = "none (1.0)"
            plan.warnings.append(f"{plan.source} does not carry σ and the model file is not available, so σ is 1.0: "
                                 f"a slider step of 1 moves w by one unit, not one standard deviation")
    if names:
        names = [str(x).strip() for x in names]
        if len(names) != n:
            raise DirectionSetError(f"{len(names)} name(s) given for {n} direction(s) in {plan.source}; give one "
                                    f"name per direction")
    else:
        names = list(raw.default_names)
    if len(set(names)) != len(names):
        raise DirectionSetError("the names given are not unique")
    for name in names:
        check_direction_name(name)
    metas = [
        DirectionMeta(
            name=names[i], status="published" if publish else "unreviewed", category=None,
            source={"kind": "component", "set": "s1", "method": raw.method, "index": i},
            layer_range=(0, num_ws) if publish else None,
            strength_range=(-3.0, 3.0) if publish else None, sigma=float(sigmas[i]),
            reviews=None,
            scores=None if raw.eigenvalues is None else {**{k: None for k in SCORE_KEYS}, "dead": None,
                                                          "eigenvalue": float(raw.eigenvalues[i])},
        )
        for i in range(n)
    ]
    for meta in metas:
        if not math.isfinite(meta.sigma) or meta.sigma < 0:
            raise DirectionSetError(f"{plan.source}: σ of {meta.name!r} is {meta.sigma}; it must be a finite "
                                    f"number >= 0")
    doc = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "selection": "published",
        "model": {"name": None, "fingerprint": None,
                  "architecture": {"z_dim": int(arch.get("z_dim", 0) or 0), "w_dim": w_dim, "num_ws": num_ws,
                                   "resolution": int(arch.get("img_resolution", 0) or 0)}},
        "component_sets": [{"key": "s1", "method": raw.method, "params": raw.params, "sample_count": 0,
                            "review_seeds": [], "agreement": {"decision_alpha": None, "category_alpha": None,
                                                              "decision_units": 0, "category_units": 0}}],
        "directions": [
            {"name": m.name, "status": m.status, "category": None, "source": dict(m.source),
             "layer_range": _pair(m.layer_range, int), "strength_range": _pair(m.strength_range, float),
             "sigma": m.sigma, "reviews": None, "scores": m.scores, "published_by": None, "published_at": None,
             "preview": None}
            for m in metas
        ],
    }
    return DirectionSet(names=names, vectors=raw.vectors.astype(np.float32), metadata=doc, directions=metas)


def apply_import(plan: ImportPlan, url: str | None = None, reviewer: str = "import") -> ImportResult:
    """Write a plan in one transaction: if anything fails, nothing is written.

    ``reviewer`` is the person importing: they unpublish replaced directions and publish directions whose file
    does not say who published them (foreign files with ``publish``). The database is compared again here, so a
    plan made a while ago still applies correctly.
    """
    from db import queries
    from db.engine import write_session

    if not plan.ok or plan.direction_set is None:
        raise DirectionSetError("the import has problems; nothing was written:\n- " + "\n- ".join(plan.errors))
    ds = plan.direction_set
    result = ImportResult([], [], [], 0, 0)
    with write_session(url) as session:
        model = queries.model_by_fingerprint(session, plan.target_fingerprint or "")
        if model is None:
            raise DirectionSetError("the target model is no longer registered; nothing was written")
        check = ImportPlan(plan.source, plan.kind, plan.target_fingerprint, plan.force)
        _check_model(ds, model, plan.force, check)
        if check.errors:
            raise DirectionSetError("; ".join(check.errors) + "; nothing was written")
        res = _resolve(session, ds, model, plan.source)
        if res.errors:
            raise DirectionSetError("; ".join(res.errors) + "; nothing was written")
        # In team mode the importer must be an admin account, and the file's reviewers and publishers are kept only
        # as provenance: no accounts are made for them, their reviews and publications become the importer's, dated
        # now (a file can claim any name and any date). On one person's machine names are only labels, as before.
        from db import accounts

        team = accounts.team_mode(session)
        if team:
            accounts.require_admin(session, reviewer, "import directions")
        importer = queries.ensure_reviewer(session, reviewer).name
        for name in res.categories:
            queries.add_category(session, name)
        for name in [] if team else res.reviewers:
            queries.ensure_reviewer(session, name)
        imported_at = _iso(datetime.now(timezone.utc))
        for action in res.sets:
            if action.existing_id is not None:
                continue
            comps = action.components
            eigen = [None if c.scores is None else c.scores.get("eigenvalue") for c in comps]
            if any(e is None for e in eigen) and any(e is not None for e in eigen):
                raise DirectionSetError(f"set {action.key}: some components have an eigenvalue and some do not; "
                                        f"the database stores all or none. Nothing was written")
            params = {**_strip_import(action.params),
                      IMPORT_KEY: {"file": plan.source, "kind": plan.kind, "indices": [c.original_index for c in comps],
                                   "source_fingerprint": ds.fingerprint, "imported_by": importer,
                                   "imported_at": imported_at}}
            info = queries.add_component_set(
                session, model.id, action.method, params, action.sample_count, np.stack([c.vector for c in comps]),
                [c.sigma for c in comps], eigenvalues=None if eigen[0] is None else eigen,
                review_seeds=action.review_seeds)
            result.component_set_ids.append(info.id)
            ids = {c.index: c.id for c in queries.list_components(session, info.id)}
            action.component_ids = {c.original_index: ids[i] for i, c in enumerate(comps)}
            rows = []
            for i, comp in enumerate(comps):
                scores = {k: v for k, v in (comp.scores or {}).items() if k != "eigenvalue" and v is not None}
                if scores:
                    rows.append({"index": i, **scores})
            if rows:
                queries.update_scores(session, info.id, rows)
            for comp in comps:
                for review in comp.reviews:
                    queries.record_review(
                        session, importer if team else review["reviewer"], action.component_ids[comp.original_index],
                        review["decision"],
                        label=review["label"], category=review["category"], consistency=review["consistency"],
                        layer_range=None if review["layer_range"] is None else tuple(review["layer_range"]),
                        strength_range=None if review["strength_range"] is None else tuple(review["strength_range"]),
                        note=review["note"],
                        provenance={"reviewer": review["reviewer"], "file": plan.source} if team else None)
                    result.reviews += 1
        set_actions = {a.key: a for a in res.sets}
        for i, replace_id in res.publishes:
            meta = ds.directions[i]
            if replace_id is not None:
                queries.unpublish_direction(session, replace_id, importer)
                result.replaced.append(meta.name)
            component_id = None
            if meta.source["kind"] == "component":
                component_id = set_actions[meta.source["set"]].component_ids[meta.source["index"]]
            # A restored direction keeps its σ and, on one person's machine, when it was really published (not
            # "now"); in team mode the importer publishes it now and the file's claims are provenance.
            original_at = None if meta.published_at is None else datetime.fromisoformat(meta.published_at)
            queries.publish_direction(
                session, model.id, meta.name, importer if team else (meta.published_by or importer),
                component_id=component_id, vector=ds.vectors[i], category=meta.category,
                layer_range=meta.layer_range, strength_range=meta.strength_range, sigma=meta.sigma,
                published_at=None if team else original_at,
                provenance={"published_by": meta.published_by, "published_at": meta.published_at,
                            "file": plan.source} if team else None)
            result.published.append(meta.name)
        result.unchanged = res.unchanged
    return result
