"""The labelled direction set as a file: what it holds, its Python API, and how it is written.

One ``.zip`` (format "atelier-direction-set", see ``docs/direction-set.md``) holds
- ``directions.json``: the model, the component sets, and per direction its name, category, source, layer and
  strength ranges, σ, the reviews summary and who published it when;
- ``directions.safetensors``: one float32 ``[w_dim]`` vector per direction, keyed by name;
- ``labels.csv``: one row per direction for spreadsheets;
- optionally ``previews/NNN.jpg``: one review strip per direction.

This module is pure (no database): the document's constants, :class:`DirectionSet`, :func:`pack_direction_set`
(deterministic bytes: fixed zip dates and member order) and the previews. Reading and validating a file is
:mod:`model.directions.set_reader`; exporting from and importing into the database are the use cases in
:mod:`workflows.export` and :mod:`workflows.imports`.

Sliders: a value ``v`` in σ on a direction with vector ``d`` and σ ``s`` moves the ws rows of its layer range by
``float32(v * s) * d``: :func:`edit_for`. The Generate page and :meth:`DirectionSet.edits` both use it, so a
direction renders the same pixels in the app and from a file.
"""
from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from core.errors import AtelierError
from model.network.render import Edit

FORMAT_NAME = "atelier-direction-set"
FORMAT_VERSION = 1

JSON_MEMBER = "directions.json"
VECTORS_MEMBER = "directions.safetensors"
LABELS_MEMBER = "labels.csv"
PREVIEW_DIR = "previews/"
REQUIRED_MEMBERS = (JSON_MEMBER, VECTORS_MEMBER, LABELS_MEMBER)
PREVIEW_NAME = re.compile(r"^previews/[0-9]{3,6}\.jpg$")

MiB = 1 << 20
MAX_FILE_BYTES = 200 * MiB  # the file as uploaded
MAX_MEMBER_BYTES = {JSON_MEMBER: 64 * MiB, VECTORS_MEMBER: 200 * MiB, LABELS_MEMBER: 64 * MiB}
MAX_PREVIEW_BYTES = 8 * MiB
MAX_DIRECTIONS = 10_000
MAX_W_DIM = 16_384
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

    The product is rounded to float32 once, as the review strips do (``model.directions.strips.strip_offsets``), so
    a slider and a strip step at the same σ add identical numbers to w.
    """
    strength = float(np.float32(float(value) * float(sigma)))
    return Edit(direction=np.asarray(vector, dtype=np.float32), strength=strength, layer_start=int(layer_start),
                layer_stop=None if layer_stop is None else int(layer_stop))


def stored_sigma(direction: Any, component: Any = None) -> float:
    """σ of a published direction from what is at hand: its own σ, else its component's, else 1.0."""
    if direction.sigma is not None:
        return float(direction.sigma)
    return SUPERVISED_SIGMA if component is None else float(component.sigma)


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


# --------------------------------------------------------------------------------------------------------------
# Fields as the document writes them (the export and the import both build documents)


def iso_utc(moment: datetime | None) -> str | None:
    """A time as the document writes it: ISO 8601 in UTC, or null."""
    return None if moment is None else moment.astimezone(timezone.utc).isoformat()


def strip_import(params: Mapping[str, Any]) -> dict[str, Any]:
    """Params without the import bookkeeping, keys sorted (so the file does not depend on how a backend stores JSON)."""
    return json.loads(json.dumps({k: v for k, v in params.items() if k != IMPORT_KEY}, sort_keys=True))


def original_indices(set_info: Any) -> dict[int, int]:
    """Database component index -> the index the component had where it was discovered (differs after import)."""
    recorded = (set_info.params.get(IMPORT_KEY) or {}).get("indices") if isinstance(set_info.params, dict) else None
    if isinstance(recorded, list) and len(recorded) == set_info.component_count:
        return {i: int(original) for i, original in enumerate(recorded)}
    return {i: i for i in range(set_info.component_count)}


def json_pair(value: tuple[Any, Any] | None, kind: type) -> list[Any] | None:
    """A (start, end) or (min, max) range as the document's two-element list, or null."""
    return None if value is None else [kind(value[0]), kind(value[1])]


# --------------------------------------------------------------------------------------------------------------
# Writing a file


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


def render_previews(renderer: Any, doc: Mapping[str, Any], vectors: np.ndarray) -> dict[str, bytes]:
    """One strip per direction on the first three review seeds of its set (0, 1, 2 without any), named
    ``previews/NNN.jpg`` in the document's order; each direction's ``preview`` field is set to its member name."""
    seeds_by_set = {s["key"]: s["review_seeds"] for s in doc["component_sets"]}
    previews: dict[str, bytes] = {}
    for i, meta in enumerate(doc["directions"]):
        seeds = (seeds_by_set.get(meta["source"].get("set")) or [0, 1, 2])[:3]
        name = f"{PREVIEW_DIR}{i:03d}.jpg"
        previews[name] = _preview_jpeg(renderer, vectors[i], meta["sigma"], meta, seeds,
                                       doc["model"]["architecture"]["num_ws"])
        meta["preview"] = name
    return previews
