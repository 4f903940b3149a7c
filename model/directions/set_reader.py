"""Reading a direction-set file: every member validated, with messages that name the field and the fix.

:func:`load_direction_set` (a path, bytes or an upload) and :func:`parse_direction_set` (bytes) return a
:class:`~model.directions.set_format.DirectionSet` or raise :class:`~model.directions.set_format.DirectionSetError`.
The zip itself is checked by :mod:`model.directions.zip_safety` before anything in it is read.
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from core.errors import InvalidInput
from core.names import check_direction_name
from model.directions.set_format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    JSON_MEMBER,
    LABELS_MEMBER,
    MAX_DIRECTIONS,
    MAX_FILE_BYTES,
    MAX_MEMBER_BYTES,
    MAX_PREVIEW_BYTES,
    MAX_W_DIM,
    PREVIEW_DIR,
    PREVIEW_NAME,
    REQUIRED_MEMBERS,
    REVIEW_STATUSES,
    SCORE_KEYS,
    STATUSES,
    VECTORS_MEMBER,
    VOTES,
    DirectionMeta,
    DirectionSet,
    DirectionSetError,
    MiB,
)
from model.directions.zip_safety import check_zip_members, open_zip, read_member

_TEXT_SCORES = ("locality_where", "layer_sensitivity", "suggested_category")


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
        if preview is not None and not (isinstance(preview, str) and PREVIEW_NAME.match(preview)):
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
            elif info.filename not in REQUIRED_MEMBERS and not PREVIEW_NAME.match(info.filename):
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

