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
import math
import pickle
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.network.architecture import check_tensors_fit, expected_shapes
from core.errors import AtelierError
from core.files import atomic_write_bytes
from model.network.networks import Discriminator, Generator

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


# The storage classes a legacy torch.save stream names, and the element type each holds.
STORAGE_DTYPES: dict[str, torch.dtype] = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
MAX_TENSOR_DIMS = 8


@dataclass
class FlatStorage:
    """One tensor storage read from the file: exactly the elements the file holds, as a flat tensor."""
    values: torch.Tensor


@dataclass
class _StorageRef:
    dtype: torch.dtype
    key: str
    numel: int


class _LegacyStorageUnpickler(pickle.Unpickler):
    """Reads the small pickles of a legacy torch.save stream: only storage class names resolve."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        raise UnsafePickleError(f"refused to load: a tensor storage in the file references '{module}.{name}', "
                                f"which a network snapshot never needs. Nothing in it was executed.")

    def persistent_load(self, pid: Any) -> Any:
        ok = (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
              and isinstance(pid[1], torch.dtype) and isinstance(pid[2], str) and isinstance(pid[3], str)
              and type(pid[4]) is int and pid[4] >= 0 and (len(pid) == 5 or pid[5] is None))
        if not ok:
            raise UnsafePickleError("refused to load: a tensor storage in the file is described in a way torch.save "
                                    "never writes (a storage view or an unknown record)")
        return _StorageRef(dtype=pid[1], key=pid[2], numel=pid[4])


def _damaged_storage(problem: str) -> UnsafePickleError:
    return UnsafePickleError(f"refused to load: {problem}. A file written by torch never does this, so it is "
                             f"crafted or corrupted; nothing in it was used.")


def _load_storage_bytes(data: bytes) -> FlatStorage:
    """Parse one storage's legacy torch.save stream ourselves rather than with torch.load.

    torch allocates a storage of the element count the stream *claims* before reading its bytes, so a few bytes
    could ask for terabytes. Here the claim is compared with the bytes actually present first, and both must match
    exactly (a storage smaller than the bytes that follow it hides data; a larger one would read uninitialised
    memory).
    """
    if not isinstance(data, (bytes, bytearray)):
        raise _damaged_storage("a tensor storage is not a byte string")
    stream = io.BytesIO(data)
    try:
        magic, protocol = _LegacyStorageUnpickler(stream).load(), _LegacyStorageUnpickler(stream).load()
        sys_info = _LegacyStorageUnpickler(stream).load()
        ref = _LegacyStorageUnpickler(stream).load()
        keys = _LegacyStorageUnpickler(stream).load()
    except UnsafePickleError:
        raise
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, KeyError, IndexError,
            MemoryError, OverflowError, RecursionError):
        raise _damaged_storage("a tensor storage's header cannot be read") from None
    if magic != LEGACY_MAGIC or protocol != LEGACY_PROTOCOL:
        raise _damaged_storage("a tensor storage is not in torch's legacy format")
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        raise _damaged_storage("a tensor storage is not little-endian or lacks its system header")
    if not isinstance(ref, _StorageRef) or keys != [ref.key]:
        raise _damaged_storage("a tensor storage record holds something other than exactly one storage")
    count = int.from_bytes(stream.read(8).ljust(8, b"\xff"), "little")
    payload = data[stream.tell():]
    nbytes = ref.numel * torch.empty((), dtype=ref.dtype).element_size()
    if count != ref.numel or len(payload) != nbytes:
        raise _damaged_storage(f"a tensor storage claims {ref.numel} elements ({count} in its data header) but "
                               f"{len(payload)} bytes follow it")
    values = torch.frombuffer(bytearray(payload), dtype=ref.dtype) if nbytes else torch.empty(0, dtype=ref.dtype)
    return FlatStorage(values)


def _is_index_list(value: Any) -> bool:
    return isinstance(value, (tuple, list, torch.Size)) and len(value) <= MAX_TENSOR_DIMS and all(
        type(v) is int for v in value)


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                    backward_hooks: Any = None, metadata: Any = None) -> torch.Tensor:
    """torch._utils._rebuild_tensor_v2, with the checks torch leaves out.

    torch's `set_` silently grows a storage that is too small with uninitialised memory, so a crafted file could
    leak process memory into the weights. Every element the tensor reads must lie inside the storage the file holds.
    """
    if not isinstance(storage, FlatStorage):
        raise _damaged_storage("a tensor is built on something other than a storage from the file")
    if type(storage_offset) is not int or not _is_index_list(size) or not _is_index_list(stride) \
            or len(size) != len(stride):
        raise _damaged_storage("a tensor's offset, shape or strides are not lists of whole numbers of equal length")
    if storage_offset < 0 or min(size, default=0) < 0 or min(stride, default=0) < 0:
        raise _damaged_storage(f"a tensor has a negative offset, size or stride ({storage_offset}, {tuple(size)}, "
                               f"{tuple(stride)})")
    available = storage.values.numel()
    numel = math.prod(size)
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
    if numel > available or (numel > 0 and last >= available) or storage_offset > available:
        raise _damaged_storage(f"a tensor of shape {tuple(size)} claims more elements than its storage holds "
                               f"({available})")
    return storage.values.as_strided(tuple(size), tuple(stride), storage_offset).clone()


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise _damaged_storage("a parameter holds something other than a tensor")
    return data


def _numpy_scalar(dtype: np.dtype, data: bytes | None = None) -> Any:
    # Recorded init arguments are plain numbers; anything else (objects, records, huge sub-arrays) is refused.
    if not isinstance(dtype, np.dtype) or dtype.hasobject or dtype.kind not in "biufc" or dtype.itemsize > 16 \
            or dtype.subdtype is not None:
        raise UnsafePickleError("the pickle builds a numpy scalar of a type other than a plain number; refused")
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
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
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
    except (MemoryError, OverflowError, RecursionError) as exc:
        raise UnsafePickleError(f"refused to load {path}: it asks for more memory or deeper nesting than any network "
                                f"snapshot ({type(exc).__name__}). It is crafted or corrupted; nothing in it was "
                                f"executed.") from None
    except (EOFError, pickle.UnpicklingError, ValueError, RuntimeError, TypeError, AttributeError, KeyError,
            IndexError) as exc:
        if isinstance(exc, EOFError) or "truncated" in str(exc):
            raise AtelierError(f"{path} ends before its pickle does ({type(exc).__name__}: {exc}): the file is "
                               f"truncated. Copy it again from the training run.") from None
        raise AtelierError(f"{path} is damaged or is not a stylegan2-ada-pytorch network snapshot "
                           f"({type(exc).__name__}: {str(exc)[:200]}); it was not loaded.") from None


# A StyleGAN2 network nests modules about 5 deep and holds a few hundred of them; a pickle can reference the same
# object many times at no cost in bytes, so unbounded walks over its records could take exponential time.
MAX_NESTING = 32
MAX_RECORDS = 20_000


def _too_nested(what: str) -> UnsafePickleError:
    return UnsafePickleError(f"refused to load: {what} nests deeper or repeats more often than any network "
                             f"snapshot; the file is crafted or corrupted. Nothing in it was executed.")


def record_state_dict(record: PersistentRecord, prefix: str = "", budget: list[int] | None = None
                      ) -> "OrderedDict[str, torch.Tensor]":
    """Flatten a persistent module record into a state dict (parameters, persistent buffers, children)."""
    budget = [MAX_RECORDS] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0 or prefix.count(".") > MAX_NESTING:
        raise _too_nested("the network's module tree")
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
            out.update(record_state_dict(child, f"{prefix}{name}.", budget))
        elif child is not None:
            raise AtelierError(f"module '{prefix + name}' in the pickle is not a persistent object; unsupported file")
    return out


def _plain(value: Any, depth: int = 0, budget: list[int] | None = None) -> Any:
    """Numpy scalars, EasyDicts and tuples -> JSON-friendly Python values (bounded: see MAX_NESTING)."""
    budget = [MAX_RECORDS] if budget is None else budget
    budget[0] -= 1
    if depth > MAX_NESTING or budget[0] < 0:
        raise _too_nested("the network's recorded init arguments")
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1, budget) for k, v in value.items() if str(k) not in IGNORED_KWARGS}
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1, budget) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def generator_kwargs_from_record(record: PersistentRecord) -> dict:
    if record.class_name != "Generator":
        raise AtelierError(f"expected a Generator, found {record.class_name}")
    kwargs = _plain(record.init_kwargs)
    names = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
    if len(record.init_args) > len(names):
        raise AtelierError(f"the {record.class_name} in the pickle records {len(record.init_args)} positional init "
                           f"arguments (at most {len(names)}); unsupported file")
    for idx, value in enumerate(record.init_args):
        kwargs.setdefault(names[idx], _plain(value))
    missing = [n for n in names if n not in kwargs]
    if missing:
        raise AtelierError(f"the Generator in the pickle lacks init arguments {missing}; unsupported file")
    synthesis = kwargs.get("synthesis_kwargs") or {}
    if not isinstance(synthesis, dict):
        raise AtelierError("the Generator in the pickle records synthesis_kwargs that are not a dict; unsupported file")
    if "SynthesisInput" in _module_classes(record):
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
    if len(record.init_args) > len(names):
        raise AtelierError(f"the {record.class_name} in the pickle records {len(record.init_args)} positional init "
                           f"arguments (at most {len(names)}); unsupported file")
    for idx, value in enumerate(record.init_args):
        kwargs.setdefault(names[idx], _plain(value))
    return kwargs


def _module_classes(record: PersistentRecord) -> set[str]:
    """Class names of a record and its children, each distinct record visited once (shared ones too)."""
    names: set[str] = set()
    seen: set[int] = set()
    pending = [record]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if len(seen) > MAX_RECORDS:
            raise _too_nested("the network's module tree")
        names.add(current.class_name)
        children = current.state.get("_modules") or {}
        pending.extend(c for c in (children.values() if isinstance(children, dict) else ())
                       if isinstance(c, PersistentRecord))
    return names


def _build(cls: type, kwargs: dict, state: dict, source: str) -> torch.nn.Module:
    # Bounds and exact tensor shapes first: building allocates whatever the recorded arguments ask for.
    check_tensors_fit("D" if cls is Discriminator else "G", kwargs, state, source)
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
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise AtelierError(f"{path} has a damaged safetensors header; copy it again") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(header, dict) or not isinstance(meta or {}, dict) or any(
            not isinstance(v, str) for v in (meta or {}).values()):
        raise AtelierError(f"{path} has a safetensors header that is not laid out as the format requires (a JSON "
                           f"object whose __metadata__ maps names to strings); it is damaged or crafted")
    return dict(meta or {})


def _metadata_object(meta: dict, key: str, path: Path, default: str = "{}") -> dict:
    """One JSON-encoded entry of Atelier's safetensors metadata, which must decode to a JSON object."""
    try:
        value = json.loads(meta.get(key, default))
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise AtelierError(f"{path}: the '{key}' entry of its metadata is not a JSON object; the file is damaged or "
                           f"was edited by hand. Export it again with `atelier convert`.")
    return value


def _format_version(meta: dict, path: Path) -> int:
    raw = meta.get("format_version", "0")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6:
        raise AtelierError(f"{path}: its metadata gives format_version {raw[:20]!r}, not a whole number; the file is "
                           f"damaged or was edited by hand")
    return int(raw)


def load_safetensors_network(path: str | Path, which: str = "G_ema") -> LoadedNetwork:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_safetensors_metadata(path)
    if meta.get("format") != FORMAT_NAME:
        raise AtelierError(f"{path} is a safetensors file but not an Atelier network (no '{FORMAT_NAME}' "
                           f"metadata). Convert a stylegan2-ada pickle with `atelier convert`.")
    if _format_version(meta, path) > FORMAT_VERSION:
        raise AtelierError(f"{path} was written by a newer Atelier (format {meta['format_version']}); upgrade Atelier")
    architecture = _metadata_object(meta, "architecture", path, default="")
    if which == "G_ema" and which not in architecture and "G" in architecture:
        which = "G"
    if which not in architecture:
        raise AtelierError(f"{path} holds no '{which}' network (it has {', '.join(map(str, architecture))[:200]})")
    expected_shapes("D" if which == "D" else "G", architecture[which])  # bounds checked before reading tensors
    provenance = _metadata_object(meta, "provenance", path)
    kimg = provenance.get("kimg")
    if isinstance(kimg, bool) or not isinstance(kimg, (int, float)) or not math.isfinite(kimg):
        kimg = None
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise AtelierError(f"{path} could not be read ({exc}); the file is probably truncated") from None
    prefix = which + "."
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    cls = Discriminator if which == "D" else Generator
    module = _build(cls, architecture[which], state, str(path))
    return LoadedNetwork(module=module, kind=which, kwargs=architecture[which], source=str(path),
                         source_sha256=file_sha256(path), kimg=kimg, metadata=provenance)


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
