"""Safe loading of network pickles, Atelier's safetensors format, fingerprints, and clear errors for bad files."""
from __future__ import annotations

import os
import pickle
import pickletools
from pathlib import Path

import numpy as np
import pytest

from conftest import stand_in_persistence
import torch

from model.network.checkpoint import (UnsafePickleError, convert, fingerprint, load_network, read_safetensors_metadata,
                              save_safetensors)
from core.errors import AtelierError
from model.network.render import Renderer


def rename_global_module(data: bytes, old: str, new: str) -> bytes:
    """Rewrite a protocol-4 pickle so a global's module has another name (as numpy 1.x files spell it).

    FRAME opcodes are optional hints; they are dropped so the changed string length does not break them.
    """
    out = bytearray()
    ops = list(pickletools.genops(data))
    for idx, (op, arg, pos) in enumerate(ops):
        end = ops[idx + 1][2] if idx + 1 < len(ops) else len(data)
        if op.name == "FRAME":
            continue
        if op.name == "SHORT_BINUNICODE" and arg == old:
            encoded = new.encode()
            out += bytes([0x8C, len(encoded)]) + encoded
            continue
        out += data[pos:end]
    return bytes(out)


class _Evil:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _write(path: Path, obj) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=4))
    return path


@pytest.mark.parametrize("func,args,named", [
    (os.system, ("touch {marker}",), "system"),
    (eval, ("open({marker!r}, 'w').write('x')",), "builtins.eval"),
    (__import__("subprocess").call, (["touch", "{marker}"],), "subprocess"),
])
def test_crafted_pickle_is_refused_and_runs_nothing(tmp_path, func, args, named):
    marker = tmp_path / "pwned"
    args = tuple(a.format(marker=str(marker)) if isinstance(a, str) else [x.format(marker=str(marker)) for x in a]
                 for a in args)
    # Hide the payload inside an otherwise plausible snapshot dict.
    path = _write(tmp_path / "evil.pkl", {"G_ema": _Evil(func, args), "D": None})
    with pytest.raises(UnsafePickleError) as info:
        load_network(path)
    assert named in str(info.value)
    assert "nothing in it was executed" in str(info.value)
    assert not marker.exists()


def test_embedded_module_source_is_never_executed(tmp_path, reference_dir):
    """A persistent object's module_src is only a string to us, even if it would create a file."""
    marker = tmp_path / "from_module_src"
    data = (reference_dir / "sg2ada_tiny32.pkl").read_bytes()
    payload = f"open({str(marker)!r}, 'w').write('ran')"
    placeholder = "# source removed; a loader must never execute this"
    assert placeholder.encode() in data
    ops = list(pickletools.genops(data))
    out = bytearray()
    for idx, (op, arg, pos) in enumerate(ops):
        end = ops[idx + 1][2] if idx + 1 < len(ops) else len(data)
        if op.name == "FRAME":
            continue
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE") and arg == placeholder:
            encoded = payload.encode()
            out += b"X" + len(encoded).to_bytes(4, "little") + encoded
            continue
        out += data[pos:end]
    path = tmp_path / "src.pkl"
    path.write_bytes(bytes(out))
    G = load_network(path).module
    assert G.img_resolution == 32
    assert not marker.exists()


def test_numpy1_spelling_loads(tmp_path, reference_dir):
    data = (reference_dir / "sg2ada_tiny32.pkl").read_bytes()
    old = rename_global_module(data, "numpy._core.multiarray", "numpy.core.multiarray")
    assert b"numpy.core.multiarray" in old and b"numpy._core.multiarray" not in old
    path = tmp_path / "np1.pkl"
    path.write_bytes(old)
    assert load_network(path).fingerprint == load_network(reference_dir / "sg2ada_tiny32.pkl").fingerprint


def test_empty_truncated_and_non_pickle_files(tmp_path, reference_dir):
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    with pytest.raises(AtelierError, match="empty"):
        load_network(empty)
    truncated = tmp_path / "trunc.pkl"
    truncated.write_bytes((reference_dir / "sg2ada_tiny32.pkl").read_bytes()[:100_000])
    with pytest.raises(AtelierError, match="truncated"):
        load_network(truncated)
    text = tmp_path / "notes.pkl"
    text.write_text("this is not a network")
    with pytest.raises(AtelierError, match="not a pickle"):
        load_network(text)
    with pytest.raises(AtelierError, match="not found"):
        load_network(tmp_path / "missing.pkl")


def test_wrong_content_and_architecture(tmp_path, reference_dir):
    with pytest.raises(AtelierError, match="no 'G_ema'"):
        load_network(_write(tmp_path / "list.pkl", {"weights": [1, 2, 3]}))
    # Weights of the 32-px network under a 64-px architecture: refused with a clear message.
    snap = load_network(reference_dir / "sg2ada_tiny32.pkl")
    kwargs = dict(snap.kwargs, img_resolution=64)
    path = tmp_path / "wrong.safetensors"
    save_safetensors(path, {"G_ema": snap.module})
    from safetensors.torch import load_file, save_file
    import json
    meta = read_safetensors_metadata(path)
    meta["architecture"] = json.dumps({"G_ema": kwargs})
    save_file(load_file(str(path)), str(path), metadata=meta)
    with pytest.raises(AtelierError, match="do not fit"):
        load_network(path)


def test_discriminator_and_G_selection(reference_dir):
    assert load_network(reference_dir / "sg2ada_tiny32_cond.pkl", "D").module.c_dim == 3
    with pytest.raises(AtelierError, match="unknown network"):
        load_network(reference_dir / "sg2ada_tiny32.pkl", "E")


def test_convert_renders_identical_images(tmp_path, reference_dir):
    src = reference_dir / "sg2ada_tiny32_cond.pkl"
    dst = convert(src, tmp_path / "cond.safetensors")
    with open(dst, "rb") as handle:
        assert b"module_src" not in handle.read()
    meta = read_safetensors_metadata(dst)
    assert meta["format"] == "atelier-network"
    original, converted = Renderer(src, device="cpu"), Renderer(dst, device="cpu")
    assert original.fingerprint == converted.fingerprint
    a = original.render_seeds([0, 1, 2], psi=0.7, class_index=1)
    b = converted.render_seeds([0, 1, 2], psi=0.7, class_index=1)
    assert np.array_equal(a, b)
    assert load_network(dst, "D").module.c_dim == 3


def test_fingerprint_depends_on_every_weight(reference_dir):
    G = load_network(reference_dir / "sg2ada_tiny32.pkl").module
    before = fingerprint(G)
    assert before == fingerprint(G)
    with torch.no_grad():
        G.synthesis.b32.torgb.bias[0] += 1e-6
    assert fingerprint(G) != before


def test_safetensors_truncated(tmp_path, reference_dir):
    dst = convert(reference_dir / "sg2ada_tiny32.pkl", tmp_path / "a.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(dst.read_bytes()[: dst.stat().st_size // 2])
    with pytest.raises(AtelierError, match="could not be read .*probably truncated"):
        load_network(cut)


def test_crafted_numpy_shape_is_refused_before_allocating(tmp_path):
    from numpy._core.multiarray import _reconstruct

    # 10**13 bytes: if the loader passed this shape on, numpy would try to allocate 10 TB before reading any data.
    path = _write(tmp_path / "huge.pkl", {"G_ema": _Evil(_reconstruct, (np.ndarray, (10 ** 13,), b"b"))})
    with pytest.raises(UnsafePickleError, match="numpy never writes"):
        load_network(path)


@pytest.fixture
def persistent_pickle(tmp_path, monkeypatch):
    """Write pickles whose objects load as stylegan2-ada 'persistent objects' holding whatever state a test gives."""
    _reconstruct_persistent_obj = stand_in_persistence(monkeypatch)

    def write(state, class_name="Generator") -> Path:
        meta = {"type": "class", "version": 4, "module_src": "placeholder", "class_name": class_name,
                "state": state}
        return _write(tmp_path / "net.pkl", {"G_ema": _Evil(_reconstruct_persistent_obj, (meta,))})
    return write


@pytest.mark.parametrize("state, message", [
    ("not a dict", "unknown layout"),
    ({"_init_kwargs": "z_dim=512", "_parameters": {}, "_buffers": {}, "_modules": {}}, "init arguments as a str"),
    ({"_init_kwargs": {}, "_parameters": {"weight": [1.0, 2.0]}, "_buffers": {}, "_modules": {}}, "not a tensor"),
    ({"_init_kwargs": {}, "_parameters": ["weight"], "_buffers": {}, "_modules": {}}, "_parameters of type list"),
])
def test_malformed_persistent_objects_get_a_clear_error(persistent_pickle, state, message):
    with pytest.raises(AtelierError, match=message):
        load_network(persistent_pickle(state))
