"""Loading and saving networks without ever executing code from the file.

Two formats:
- stylegan2-ada-pytorch pickles (``network-snapshot-*.pkl``), read by a restricted unpickler that resolves only
  the handful of globals such files need. Their "persistent objects" become inert `PersistentRecord`s (class name
  + recorded state); the embedded module source is never imported or run. Atelier's own modules are then built
  from the recorded init arguments and filled with the recorded tensors.
- Atelier's ``.safetensors``: tensors plus JSON metadata (architecture, provenance); no pickle at all.
"""
from __future__ import annotations

import hashlib
import io
import json
import pickle
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.errors import AtelierError
from model.files import atomic_write_bytes
from model.networks import Discriminator, Generator

FORMAT_NAME = "atelier-network"
FORMAT_VERSION = 1
NETWORK_KEYS = ("G_ema", "G", "D")
# Init kwargs that only affect speed or training in the original; they change nothing we compute.
IGNORED_KWARGS = {"fp16_channels_last", "fused_modconv_default", "freeze_layers", "channels_last"}


class UnsafePickleError(AtelierError):
    """The pickle names something a network file never needs; it was not loaded and nothing in it ran."""


class EasyDict(dict):
    """Stand-in for dnnlib.util.EasyDict: a plain dict (attribute access is not needed to read a file)."""


@dataclass
class PersistentRecord:
    """What a stylegan2-ada 'persistent object' holds: its class name and its recorded module state."""
    class_name: str
    state: dict = field(repr=False)

    @property
    def init_kwargs(self) -> dict:
        kwargs = self.state.get("_init_kwargs") or {}
        if not isinstance(kwargs, dict):
            raise AtelierError(f"the {self.class_name} in the pickle records its init arguments as a "
                               f"{type(kwargs).__name__}; this is not a stylegan2-ada-pytorch network snapshot")
        return dict(kwargs)

    @property
    def init_args(self) -> tuple:
        args = self.state.get("_init_args") or ()
        if not isinstance(args, (list, tuple)):
            raise AtelierError(f"the {self.class_name} in the pickle records its positional init arguments as a "
                               f"{type(args).__name__}; this is not a stylegan2-ada-pytorch network snapshot")
        return tuple(args)


def _reconstruct_persistent_obj(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
        raise AtelierError("the pickle holds a persistent object in an unknown layout; it is not a "
                           "stylegan2-ada-pytorch network snapshot")
    return PersistentRecord(class_name=str(meta.get("class_name")), state=meta["state"])


def _load_storage_bytes(data: bytes) -> Any:
    # Each tensor storage is its own legacy torch.save stream; torch's weights-only unpickler reads it safely.
    return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


def _numpy_scalar(dtype: np.dtype, data: bytes | None = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError("the pickle builds a numpy scalar of an object type; refused")
    return np.frombuffer(data or b"", dtype=dtype, count=1)[0] if data else dtype.type()


def _numpy_reconstruct(cls: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    if cls is not np.ndarray:
        raise UnsafePickleError("the pickle reconstructs a numpy array of an unexpected class; refused")
    # numpy always pickles an empty placeholder here and fills it from the data that follows; a crafted shape
    # would make this call allocate whatever the file asks for, before any data is read.
    if shape != (0,) or dtype_code not in (b"b", "b"):
        raise UnsafePickleError("the pickle reconstructs a numpy array in a way numpy never writes; refused")
    return np.ndarray.__new__(np.ndarray, shape, dtype_code)


SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only SAFE_GLOBALS; any other global is refused by name before it can be imported."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused to load: the file references '{module}.{name}', which a StyleGAN2-ADA network pickle "
                f"never needs. It may be crafted to run code; nothing in it was executed. Only load network files "
                f"from people you trust, or ask for a .safetensors export.") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refused to load: the pickle uses persistent ids, which network snapshots do not")


def read_pickle(path: str | Path) -> Any:
    """Unpickle a network snapshot with the restricted unpickler; clear errors for empty/truncated/foreign files."""
    path = Path(path)
    if not path.is_file():
        raise AtelierError(f"network file not found: {path}. Check the path, or omit --network to use the "
                           f"built-in demo model.")
    data = path.read_bytes()
    if not data:
        raise AtelierError(f"{path} is empty (0 bytes). Copy the network snapshot again; the transfer may have "
                           f"failed.")
    if data[:1] != b"\x80":
        raise AtelierError(f"{path} is not a pickle file (it does not start with a pickle header). Expected a "
                           f"stylegan2-ada-pytorch network-snapshot-*.pkl or an Atelier .safetensors file.")
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except UnsafePickleError:
        raise
    except (EOFError, pickle.UnpicklingError, ValueError, RuntimeError, TypeError, AttributeError, KeyError,
            IndexError, MemoryError, OverflowError) as exc:
        raise AtelierError(f"{path} could not be read as a network pickle ({type(exc).__name__}: {exc}). The file "
                           f"is probably truncated or damaged: copy it again from the training run.") from None


def record_state_dict(record: PersistentRecord, prefix: str = "") -> "OrderedDict[str, torch.Tensor]":
    """Flatten a persistent module record into a state dict (parameters, persistent buffers, children)."""
    state = record.state
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for kind in ("_parameters", "_buffers", "_modules"):
        if not isinstance(state.get(kind) or {}, dict):
            raise AtelierError(f"'{prefix or 'the network'}' in the pickle has {kind} of type "
                               f"{type(state[kind]).__name__}; this is not a stylegan2-ada-pytorch network snapshot")
    skip = set(state.get("_non_persistent_buffers_set") or ())
    tensors = [*(state.get("_parameters") or {}).items(),
               *((n, v) for n, v in (state.get("_buffers") or {}).items() if n not in skip)]
    for name, value in tensors:
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            raise AtelierError(f"'{prefix + name}' in the pickle is a {type(value).__name__}, not a tensor; this is "
                               f"not a stylegan2-ada-pytorch network snapshot")
        out[prefix + name] = value.detach()
    for name, child in (state.get("_modules") or {}).items():
        if isinstance(child, PersistentRecord):
            out.update(record_state_dict(child, prefix + name + "."))
        elif child is not None:
            raise AtelierError(f"module '{prefix + name}' in the pickle is not a persistent object; unsupported file")
    return out


def _plain(value: Any) -> Any:
    """Numpy scalars, EasyDicts and tuples -> JSON-friendly Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if str(k) not in IGNORED_KWARGS}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def generator_kwargs_from_record(record: PersistentRecord) -> dict:
    if record.class_name != "Generator":
        raise AtelierError(f"expected a Generator, found {record.class_name}")
    kwargs = _plain(record.init_kwargs)
    names = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
    for idx, value in enumerate(record.init_args):
        kwargs.setdefault(names[idx], _plain(value))
    missing = [n for n in names if n not in kwargs]
    if missing:
        raise AtelierError(f"the Generator in the pickle lacks init arguments {missing}; unsupported file")
    synthesis = kwargs.get("synthesis_kwargs") or {}
    if "SynthesisInput" in json.dumps(_module_classes(record)):
        raise AtelierError("this is a StyleGAN3 network; Atelier reads StyleGAN2 / StyleGAN2-ADA networks only")
    if synthesis.get("architecture", "skip") != "skip":
        raise AtelierError(f"generator architecture '{synthesis['architecture']}' is not supported; Atelier reads "
                           f"StyleGAN2 'skip' generators (the stylegan2-ada default)")
    return kwargs


def discriminator_kwargs_from_record(record: PersistentRecord) -> dict:
    if record.class_name != "Discriminator":
        raise AtelierError(f"expected a Discriminator, found {record.class_name}")
    kwargs = _plain(record.init_kwargs)
    names = ("c_dim", "img_resolution", "img_channels")
    for idx, value in enumerate(record.init_args):
        kwargs.setdefault(names[idx], _plain(value))
    return kwargs


def _module_classes(record: PersistentRecord) -> list[str]:
    names = [record.class_name]
    for child in (record.state.get("_modules") or {}).values():
        if isinstance(child, PersistentRecord):
            names.extend(_module_classes(child))
    return names


def _build(cls: type, kwargs: dict, state: dict, source: str) -> torch.nn.Module:
    try:
        module = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise AtelierError(f"{source}: unsupported network architecture ({exc})") from None
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise AtelierError(f"{source}: the weights do not fit the recorded architecture: {' '.join(first)}") from None
    return module.eval().requires_grad_(False)


@dataclass
class LoadedNetwork:
    """A network ready to use plus what we know about where it came from."""
    module: torch.nn.Module
    kind: str  # "G_ema", "G" or "D"
    kwargs: dict
    source: str
    source_sha256: str
    kimg: float | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.module)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_pickle_network(path: str | Path, which: str = "G_ema") -> LoadedNetwork:
    if which not in NETWORK_KEYS:
        raise AtelierError(f"unknown network '{which}'; choose one of {', '.join(NETWORK_KEYS)}")
    snapshot = read_pickle(path)
    if not isinstance(snapshot, dict) or which not in snapshot:
        found = sorted(snapshot) if isinstance(snapshot, dict) else type(snapshot).__name__
        raise AtelierError(f"{path} is not a stylegan2-ada-pytorch network snapshot: no '{which}' network in it "
                           f"(found {found}).")
    record = snapshot[which]
    if not isinstance(record, PersistentRecord):
        raise AtelierError(f"'{which}' in {path} is not a network object")
    state = record_state_dict(record)
    if which == "D":
        kwargs = discriminator_kwargs_from_record(record)
        module = _build(Discriminator, kwargs, state, str(path))
    else:
        kwargs = generator_kwargs_from_record(record)
        module = _build(Generator, kwargs, state, str(path))
    return LoadedNetwork(module=module, kind=which, kwargs=kwargs, source=str(path), source_sha256=file_sha256(path))


def fingerprint(module: torch.nn.Module) -> str:
    """sha256 over every tensor's name, shape, dtype and bytes, in name order: ties results to exact weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tuple(t.shape)}|{t.dtype}\n".encode())
        digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return digest.hexdigest()


def save_safetensors(path: str | Path, networks: dict[str, torch.nn.Module], provenance: dict | None = None) -> Path:
    """Save networks (e.g. {'G_ema': G}) with their architecture and provenance in the metadata."""
    from safetensors.torch import save

    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    architecture: dict[str, dict] = {}
    for key, module in networks.items():
        if key not in NETWORK_KEYS:
            raise ValueError(f"network key must be one of {NETWORK_KEYS}")
        architecture[key] = module.init_kwargs
        for name, tensor in module.state_dict().items():
            tensors[f"{key}.{name}"] = tensor.detach().to("cpu").contiguous()
    meta = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "architecture": json.dumps(architecture, sort_keys=True),
        "fingerprints": json.dumps({key: fingerprint(m) for key, m in networks.items()}, sort_keys=True),
        "provenance": json.dumps(provenance or {}, sort_keys=True, default=str),
    }
    atomic_write_bytes(path, save(tensors, metadata=meta))
    return path


def read_safetensors_metadata(path: str | Path) -> dict:
    """The JSON metadata header of a safetensors file, read without loading the tensors."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise AtelierError(f"{path} is too short to be a safetensors file; it is truncated or empty")
        size = int.from_bytes(head, "little")
        if size <= 0 or size > 100_000_000 or size > path.stat().st_size - 8:
            raise AtelierError(f"{path} is not a valid safetensors file (bad header length); copy it again")
        try:
            header = json.loads(handle.read(size))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise AtelierError(f"{path} has a damaged safetensors header; copy it again") from None
    return dict(header.get("__metadata__") or {})


def load_safetensors_network(path: str | Path, which: str = "G_ema") -> LoadedNetwork:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_safetensors_metadata(path)
    if meta.get("format") != FORMAT_NAME:
        raise AtelierError(f"{path} is a safetensors file but not an Atelier network (no '{FORMAT_NAME}' "
                           f"metadata). Convert a stylegan2-ada pickle with `atelier convert`.")
    if int(meta.get("format_version", "0")) > FORMAT_VERSION:
        raise AtelierError(f"{path} was written by a newer Atelier (format {meta['format_version']}); upgrade Atelier")
    architecture = json.loads(meta["architecture"])
    if which == "G_ema" and which not in architecture and "G" in architecture:
        which = "G"
    if which not in architecture:
        raise AtelierError(f"{path} holds no '{which}' network (it has {', '.join(architecture)})")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise AtelierError(f"{path} could not be read ({exc}); the file is probably truncated") from None
    prefix = which + "."
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    cls = Discriminator if which == "D" else Generator
    module = _build(cls, architecture[which], state, str(path))
    provenance = json.loads(meta.get("provenance", "{}"))
    return LoadedNetwork(module=module, kind=which, kwargs=architecture[which], source=str(path),
                         source_sha256=file_sha256(path), kimg=provenance.get("kimg"), metadata=provenance)


def load_network(path: str | Path, which: str = "G_ema") -> LoadedNetwork:
    """Load a generator (default G_ema) or discriminator from a .pkl or Atelier .safetensors file."""
    path = Path(path)
    if not path.exists():
        raise AtelierError(f"network file not found: {path}. Check the path, or omit --network to use the "
                           f"built-in demo model.")
    if path.suffix == ".safetensors":
        return load_safetensors_network(path, which)
    return load_pickle_network(path, which)


def convert(src: str | Path, dst: str | Path, generator_only: bool = False) -> Path:
    """Convert a stylegan2-ada pickle, or slim an Atelier training snapshot, into an Atelier .safetensors file.

    From a pickle: G_ema, plus D when present (fine-tuning needs it). `generator_only` keeps just G_ema, the
    smallest file that renders (what a shipped or shared model needs).
    """
    src, dst = Path(src), Path(dst)
    g_ema = load_network(src, "G_ema")
    networks: dict[str, torch.nn.Module] = {"G_ema": g_ema.module}
    if not generator_only:
        try:
            networks["D"] = load_network(src, "D").module
        except AtelierError:
            pass  # inference-only files may carry just the generator
    provenance = dict(g_ema.metadata)
    if generator_only:
        provenance.pop("config", None)  # training settings belong with the run, not with a shipped generator
    provenance.update({"source_file": src.name, "source_sha256": g_ema.source_sha256,
                       "converted_from": "stylegan2-ada-pkl" if src.suffix != ".safetensors" else "atelier-snapshot"})
    if g_ema.kimg is not None:
        provenance["kimg"] = g_ema.kimg
    return save_safetensors(dst, networks, provenance)
