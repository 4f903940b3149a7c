"""A snapshot laid out like a real training run's: fp16-marked blocks, a saved AugmentPipe, training-set settings
as a dict, numpy 1.x global names. Built by re-pickling the fixture's records the way stylegan2-ada writes them."""
from __future__ import annotations

import copy
import io
import pickle
import sys
import types
from collections import OrderedDict

import numpy as np
import torch

from model.network.checkpoint import EasyDict, PersistentRecord, load_network, read_pickle
from model.network.render import Renderer


def _fake_module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    for key, value in attrs.items():
        value.__module__ = name
        setattr(module, key, value)
    return module


def _reconstruct_persistent_obj(meta):  # stands in for torch_utils.persistence's function while dumping
    raise AssertionError("never called: only its name is written")


class _EasyDictOut(dict):
    pass


_EasyDictOut.__name__ = _EasyDictOut.__qualname__ = "EasyDict"


class _SnapshotPickler(pickle.Pickler):
    """Writes PersistentRecords and EasyDicts under the names the original tooling uses."""

    def reducer_override(self, obj):
        if isinstance(obj, PersistentRecord):
            meta = {"type": "class", "version": 6, "module_src": "# source removed; a loader must never execute this",
                    "class_name": obj.class_name, "state": obj.state}
            return _reconstruct_persistent_obj, (meta,)
        if type(obj) is EasyDict:
            return _EasyDictOut, (), None, None, iter(obj.items())
        if isinstance(obj, np.generic):
            # numpy 1.x spelling of scalars, as older training runs wrote them
            return _np1_scalar, (obj.dtype, obj.tobytes())
        return NotImplemented


def _np1_scalar(dtype, data):
    raise AssertionError("never called")


_np1_scalar.__name__ = _np1_scalar.__qualname__ = "scalar"


def _with_fp16(record: PersistentRecord, resolutions: set[int]) -> None:
    if record.class_name == "SynthesisBlock" and record.state.get("resolution") in resolutions:
        record.state["use_fp16"] = True
    for child in (record.state.get("_modules") or {}).values():
        if isinstance(child, PersistentRecord):
            _with_fp16(child, resolutions)


def test_realistic_snapshot_loads_and_renders_in_float32(tmp_path, reference_dir, monkeypatch):
    snapshot = read_pickle(reference_dir / "sg2ada_tiny32.pkl")
    g_ema = copy.deepcopy(snapshot["G_ema"])
    g_ema.state["_init_kwargs"]["synthesis_kwargs"]["num_fp16_res"] = 4
    g_ema.state["_init_kwargs"]["synthesis_kwargs"]["fp16_channels_last"] = False  # speed-only kwarg, ignored
    g_ema.state["_init_kwargs"]["mapping_kwargs"]["w_avg_beta"] = np.float64(0.995)  # a numpy scalar, as written
    _with_fp16(g_ema, {8, 16, 32})
    augment = PersistentRecord("AugmentPipe", {
        "training": True, "_parameters": OrderedDict(), "_modules": OrderedDict(),
        "_buffers": OrderedDict(p=torch.tensor(0.23), Hz_geom=torch.randn(12)), "_non_persistent_buffers_set": set(),
        "_init_args": (), "_init_kwargs": EasyDict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1),
    })
    realistic = {"training_set_kwargs": {"class_name": "training.dataset.ImageFolderDataset", "path": "runway.zip",
                                         "use_labels": False, "max_size": 1700, "xflip": True, "resolution": 32},
                 "G": snapshot["G"], "D": snapshot["D"], "G_ema": g_ema, "augment_pipe": augment}
    monkeypatch.setitem(sys.modules, "torch_utils", types.ModuleType("torch_utils"))
    monkeypatch.setitem(sys.modules, "torch_utils.persistence",
                        _fake_module("torch_utils.persistence",
                                     _reconstruct_persistent_obj=_reconstruct_persistent_obj))
    monkeypatch.setitem(sys.modules, "dnnlib", types.ModuleType("dnnlib"))
    monkeypatch.setitem(sys.modules, "dnnlib.util", _fake_module("dnnlib.util", EasyDict=_EasyDictOut))
    monkeypatch.setitem(sys.modules, "numpy.core.multiarray",
                        _fake_module("numpy.core.multiarray", scalar=_np1_scalar))
    buffer = io.BytesIO()
    _SnapshotPickler(buffer, protocol=4).dump(realistic)
    data = buffer.getvalue()
    for name in (b"numpy.core.multiarray", b"AugmentPipe", b"training_set_kwargs", b"_load_from_bytes"):
        assert name in data
    path = tmp_path / "network-snapshot-000120.pkl"
    path.write_bytes(data)
    # Loading needs none of the fake modules: take them away first.
    monkeypatch.undo()
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules

    loaded = load_network(path)
    G = loaded.module
    assert [b.use_fp16 for b in G.synthesis.blocks()] == [False, True, True, True]
    assert loaded.fingerprint == load_network(reference_dir / "sg2ada_tiny32.pkl").fingerprint
    ref = np.load(reference_dir / "sg2ada_tiny32_ref.npz")
    with torch.no_grad():
        img = G.synthesis(torch.from_numpy(ref["w_psi07"]), noise_mode="const")
    assert img.dtype == torch.float32
    assert float((img - torch.from_numpy(ref["img_const"])).abs().max()) <= 1e-4
    images = Renderer(path, device="cpu").render_seeds([0, 1], psi=0.7)
    assert images.shape == (2, 32, 32, 3)
    assert load_network(path, "D").module.img_resolution == 32
