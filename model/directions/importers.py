"""Readers for the direction files teams already have: GANSpace, InterFaceGAN and the old notebooks' SeFa.

Each reader turns a file's bytes into :class:`RawDirections` (vectors, σ when the file has it, a method name and
JSON parameters); :func:`workflows.imports.plan_import` makes them a new component set to review (or, with
``publish``, published directions). Nothing here executes code from a file:
- ``.npy`` / ``.npz`` are parsed by hand from their header (no ``np.load``, so no pickle and no allocation
  bigger than the file);
- SeFa factor files are ``torch.save`` pickles, read with ``torch.load(weights_only=True)``, which refuses any
  global other than tensors and plain containers.

Formats:
- GANSpace (``.npz``): ``lat_comp`` [n, 1, w_dim] or [n, w_dim], ``lat_mean`` [1, w_dim] or [w_dim],
  ``lat_stdev`` [n] (σ of each component; the eigenvalue is stored as its square).
- InterFaceGAN (``.npy``): a boundary normal [1, w_dim] (or [w_dim]); normalised to unit length.
- Old SeFa (``torch.save({"ckpt": str, "eigvec": tensor [w_dim, n]})``): eigenvectors are the COLUMNS, in the
  file's order; component i is column i.
"""
from __future__ import annotations

import hashlib
import io
import math
import pickle
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model.directions.set_format import MAX_DIRECTIONS, MAX_W_DIM, REQUIRED_MEMBERS, DirectionSetError
from model.directions.zip_safety import check_zip_members, open_zip, read_member

KINDS = ("atelier", "ganspace", "interfacegan", "sefa-legacy")
METHODS = {"ganspace": "ganspace", "interfacegan": "interfacegan", "sefa-legacy": "sefa-legacy"}
SIGMA_SAMPLES = 10_000
NPY_MAGIC = b"\x93NUMPY"
UNIT_TOLERANCE = 1e-3


class ImportFormatError(DirectionSetError):
    """A foreign direction file that cannot be read; the message says what is wrong and what was expected."""


@dataclass
class RawDirections:
    kind: str
    method: str
    params: dict[str, Any]  # JSON-safe; goes into the component set's params
    vectors: np.ndarray  # float32 [n, w_dim]
    sigmas: np.ndarray | None  # float64 [n]; None when the file does not carry σ
    eigenvalues: np.ndarray | None
    default_names: list[str]
    notes: list[str] = field(default_factory=list)  # shown as warnings in the import plan


EXPECTED = ("expected an Atelier direction set (.zip), GANSpace components (.npz with lat_comp, lat_mean, "
            "lat_stdev), an InterFaceGAN boundary (.npy, shape [1, w_dim]) or an old SeFa factor file (torch.save "
            "of {'ckpt', 'eigvec'})")


def detect_kind(data: bytes, label: str) -> str:
    """Which format the bytes are, by content (uploads may have any name)."""
    if data[:2] == b"PK":
        with open_zip(data, label, what="file") as zf:
            names = zf.namelist()
        if any(n in REQUIRED_MEMBERS for n in names):
            return "atelier"
        if names and all(n.endswith(".npy") for n in names):
            return "ganspace"
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "sefa-legacy"
        raise ImportFormatError(f"{label} is a zip file but not one Atelier can import; {EXPECTED}")
    if data.startswith(NPY_MAGIC):
        return "interfacegan"
    if data[:1] == b"\x80":  # a pickle: torch.save's legacy (non-zip) format
        return "sefa-legacy"
    if not data:
        raise ImportFormatError(f"{label} is empty")
    raise ImportFormatError(f"{label} is not a file Atelier recognises; {EXPECTED}")


def read_raw(data: bytes, kind: str, label: str) -> RawDirections:
    readers = {"ganspace": read_ganspace, "interfacegan": read_interfacegan, "sefa-legacy": read_sefa_legacy}
    if kind not in readers:
        raise ImportFormatError(f"unknown import format {kind!r}; use one of {', '.join(readers)}")
    return readers[kind](data, label)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_npy(raw: bytes, where: str) -> np.ndarray:
    """A numeric .npy array from bytes, checking the header against the data before allocating anything."""
    from numpy.lib import format as npformat

    handle = io.BytesIO(raw)
    try:
        version = npformat.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(handle, max_header_size=10_000)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npformat.read_array_header_2_0(handle, max_header_size=10_000)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except ValueError as exc:
        raise ImportFormatError(f"{where} is not a readable .npy array ({exc})") from None
    if dtype.hasobject or dtype.kind not in "fiu":
        raise ImportFormatError(f"{where} holds {dtype} values; only plain numbers are accepted (object arrays "
                                f"would need pickle, which Atelier never loads)")
    if any(not isinstance(n, int) or n < 0 for n in shape):
        raise ImportFormatError(f"{where} declares shape {list(shape)}: array dimensions cannot be negative; the file "
                                f"is damaged or crafted")
    count = math.prod(shape)  # Python integers: a crafted shape cannot wrap around to a small count
    body = raw[handle.tell():]
    if count * dtype.itemsize != len(body):
        raise ImportFormatError(f"{where} declares shape {list(shape)} ({count * dtype.itemsize:,} bytes) but holds "
                                f"{len(body):,} bytes; the file is truncated or damaged")
    array = np.frombuffer(body, dtype=dtype, count=count)
    return array.reshape(shape, order="F" if fortran else "C").astype(np.float64)


def _finite(array: np.ndarray, where: str) -> np.ndarray:
    if not np.all(np.isfinite(array)):
        raise ImportFormatError(f"{where} contains NaN or infinite values; recompute it")
    return array


def _check_count(n: int, w_dim: int, label: str) -> None:
    if n < 1:
        raise ImportFormatError(f"{label} holds no directions")
    if n > MAX_DIRECTIONS or not 1 <= w_dim <= MAX_W_DIM:
        raise ImportFormatError(f"{label} holds {n} vectors of length {w_dim}; at most {MAX_DIRECTIONS} vectors "
                                f"of length up to {MAX_W_DIM} are accepted")


def _unit_note(vectors: np.ndarray, label: str) -> list[str]:
    norms = np.linalg.norm(vectors, axis=1)
    if np.any(norms == 0):
        raise ImportFormatError(f"{label} contains an all-zero direction; it would change nothing")
    off = int(np.sum(np.abs(norms - 1.0) > UNIT_TOLERANCE))
    if off:
        return [f"{off} vector(s) in {label} are not unit length (norms {norms.min():.4g}–{norms.max():.4g}); they "
                f"are kept as they are, so σ stays in the file's units"]
    return []


def read_ganspace(data: bytes, label: str) -> RawDirections:
    with open_zip(data, label, what="GANSpace file") as zf:
        infos = {i.filename: i for i in check_zip_members(zf, label)}
        arrays = {}
        for key in ("lat_comp", "lat_mean", "lat_stdev"):
            info = infos.get(f"{key}.npy")
            if info is None:
                found = ", ".join(sorted(n[:-4] for n in infos)) or "nothing"
                raise ImportFormatError(f"{label} lacks {key!r}; a GANSpace component file has lat_comp, lat_mean "
                                        f"and lat_stdev (found {found})")
            arrays[key] = _finite(load_npy(read_member(zf, info, label, info.file_size), f"{label}:{key}"),
                                  f"{label}: {key}")
    comp, mean, stdev = arrays["lat_comp"], arrays["lat_mean"], arrays["lat_stdev"]
    if comp.ndim == 3 and comp.shape[1] == 1:
        comp = comp[:, 0, :]
    if comp.ndim != 2:
        raise ImportFormatError(f"{label}: lat_comp has shape {list(arrays['lat_comp'].shape)}; expected "
                                f"[n, 1, w_dim] or [n, w_dim]")
    n, w_dim = comp.shape
    _check_count(n, w_dim, label)
    if mean.reshape(-1).shape != (w_dim,):
        raise ImportFormatError(f"{label}: lat_mean has shape {list(mean.shape)}; expected [1, {w_dim}] or [{w_dim}]")
    stdev = stdev.reshape(-1)
    if stdev.shape != (n,):
        raise ImportFormatError(f"{label}: lat_stdev has {stdev.size} values for {n} components; expected one each")
    if np.any(stdev < 0):
        raise ImportFormatError(f"{label}: lat_stdev has negative values; a standard deviation is >= 0")
    vectors = comp.astype(np.float32)
    return RawDirections(
        kind="ganspace", method="ganspace",
        params={"source_format": "ganspace", "sha256": _sha256(data), "components": n,
                "lat_mean_norm": float(np.linalg.norm(mean))},
        vectors=vectors, sigmas=stdev.astype(np.float64), eigenvalues=(stdev.astype(np.float64) ** 2),
        default_names=[f"ganspace_{i:03d}" for i in range(n)], notes=_unit_note(vectors, label),
    )


def _default_name(label: str, fallback: str) -> str:
    stem = re.sub(r"\.[A-Za-z0-9]+$", "", label.rsplit("/", 1)[-1])
    stem = re.sub(r"[^A-Za-z0-9_ -]+", "_", stem).strip(" _-")[:80]
    return stem or fallback


def read_interfacegan(data: bytes, label: str) -> RawDirections:
    boundary = _finite(load_npy(data, label), label)
    if boundary.ndim == 2 and boundary.shape[0] == 1:
        boundary = boundary[0]
    if boundary.ndim != 1:
        raise ImportFormatError(f"{label} has shape {list(boundary.shape)}; an InterFaceGAN boundary is [1, w_dim]")
    _check_count(1, boundary.shape[0], label)
    norm = float(np.linalg.norm(boundary))
    if norm == 0:
        raise ImportFormatError(f"{label} is an all-zero boundary; it would change nothing")
    vector = (boundary / norm).astype(np.float32)[None, :]
    return RawDirections(
        kind="interfacegan", method="interfacegan",
        params={"source_format": "interfacegan", "sha256": _sha256(data), "original_norm": norm},
        vectors=vector, sigmas=None, eigenvalues=None, default_names=[_default_name(label, "interfacegan_000")],
    )


def weights_only_refusal(exc: Exception) -> str:
    """What torch's weights-only loader refused, without the rest of its message.

    torch's text goes on to suggest re-running with weights_only=False, which would run whatever the file holds:
    the one thing a user handed an untrusted file must not do, so it is never quoted.
    """
    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL ([\w.<>]+)", text)
    if found:
        return f"it names {found.group(1)}, which is not a tensor or a plain value"
    found = re.search(r"WeightsUnpickler error: ([^\n]{1,200}?)(?:\.\s|\n|$)", text)
    return found.group(1) if found else "an object torch's safe loader does not accept"


def read_sefa_legacy(data: bytes, label: str) -> RawDirections:
    import torch

    if data[:2] == b"PK":
        with open_zip(data, label, what="SeFa file") as zf:
            check_zip_members(zf, label)
    try:
        obj = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        raise ImportFormatError(
            f"{label} was refused: it holds Python objects other than tensors and plain values "
            f"({weights_only_refusal(exc)}). Atelier "
            f"loads SeFa files with torch.load(weights_only=True), so nothing in the file was run. Re-save it as "
            f"torch.save({{'ckpt': path, 'eigvec': tensor}})") from None
    except Exception as exc:  # torch raises RuntimeError, EOFError, ... on damaged files
        raise ImportFormatError(f"{label} cannot be read as a torch.save file ({type(exc).__name__}: "
                                f"{str(exc)[:200]}); it may be truncated") from None
    if not isinstance(obj, dict) or "eigvec" not in obj:
        found = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
        raise ImportFormatError(f"{label} is a torch file but not a SeFa factor file: expected a dict with 'ckpt' "
                                f"and 'eigvec', found {found}")
    eigvec = obj["eigvec"]
    if not isinstance(eigvec, torch.Tensor) or eigvec.ndim != 2 or not eigvec.is_floating_point():
        raise ImportFormatError(f"{label}: 'eigvec' must be a 2-D float tensor [w_dim, n] (eigenvectors as columns)")
    matrix = _finite(eigvec.detach().to(torch.float64).numpy(), f"{label}: eigvec")
    vectors = matrix.T.astype(np.float32)  # columns are the eigenvectors
    n, w_dim = vectors.shape
    _check_count(n, w_dim, label)
    ckpt = obj.get("ckpt")
    notes = _unit_note(vectors, label)
    if ckpt is not None and not isinstance(ckpt, str):
        notes.append(f"{label}: 'ckpt' is not a path string; ignored")
        ckpt = None
    if ckpt:
        notes.append(f"{label} was computed for checkpoint {ckpt[:200]!r}, which Atelier cannot verify: make sure "
                     f"that is the target model")
    extra = sorted(map(str, set(obj) - {"ckpt", "eigvec"}))
    if extra:
        notes.append(f"{label} also holds {extra}; ignored")
    return RawDirections(
        kind="sefa-legacy", method="sefa-legacy",
        params={"source_format": "sefa-legacy", "sha256": _sha256(data), "ckpt": (ckpt or "")[:500],
                "components": n},
        vectors=vectors, sigmas=None, eigenvalues=None, default_names=[f"sefa_{i:03d}" for i in range(n)],
        notes=notes,
    )


def sigmas_from_model(renderer: Any, vectors: np.ndarray, samples: int | None = None, seed: int = 0) -> np.ndarray:
    """σ of each vector: the standard deviation (ddof 0) of mapped w projected on it, from ``samples`` z draws
    (default ``SIGMA_SAMPLES``) of ``numpy.random.default_rng(seed)``."""
    import torch

    samples = samples or SIGMA_SAMPLES
    rng = np.random.default_rng(seed)
    ws = []
    for start in range(0, samples, 4096):
        z = rng.standard_normal((min(4096, samples - start), renderer.z_dim))
        class_index = 0 if renderer.c_dim else None
        ws.append(renderer.ws_from_z(z, class_index=class_index)[:, 0].to(torch.float64).cpu().numpy())
    w = np.concatenate(ws)
    projections = (w - w.mean(axis=0)) @ np.asarray(vectors, np.float64).T
    return projections.std(axis=0)
