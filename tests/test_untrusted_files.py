"""Crafted network files: each class of attack is built here, in the test, and must be refused with a message
that says what is wrong, before any module is built and before anything large is allocated.

No payload here does harm: the "bombs" only *claim* sizes, and the loader must refuse the claim.
"""
from __future__ import annotations

import io
import json
import pickle
import warnings
from collections import OrderedDict
from pathlib import Path

import pytest

from conftest import stand_in_persistence
import torch

from model.network.architecture import MAX_NETWORK_ELEMENTS, discriminator_shapes, expected_shapes, generator_shapes
from model.network.checkpoint import (UnsafePickleError, load_network, read_pickle, read_safetensors_metadata,
                              save_safetensors)
from core.errors import AtelierError
from model.network.networks import Discriminator, Generator


class _Reduce:
    """Pickles as `func(*args)`: how the tests write the globals a real snapshot uses, with arguments of our own."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def legacy_storage(values: torch.Tensor) -> bytes:
    """The bytes torch itself writes for one storage inside a network pickle (a legacy torch.save stream)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage is deprecated, but it is what old snapshots hold
        torch.save(values.contiguous().storage(), buffer, _use_new_zipfile_serialization=False)
    return buffer.getvalue()


def crafted_tensor(storage: bytes, offset, size, stride) -> _Reduce:
    load = _Reduce(torch.storage._load_from_bytes, (storage,))
    return _Reduce(torch._utils._rebuild_tensor_v2, (load, offset, size, stride, False, OrderedDict()))


def write_pickle(path: Path, obj) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=4))
    return path


def refused(path: Path, *phrases: str) -> str:
    with pytest.raises(AtelierError) as info:
        load_network(path)
    text = str(info.value)
    for phrase in phrases:
        assert phrase in text, (phrase, text)
    for misleading in ("copy it again", "probably truncated", "weights_only=False", "set to `False`"):
        assert misleading not in text, text
    return text


@pytest.fixture
def no_module_is_built(monkeypatch):
    """Fail the test if a Generator or Discriminator is constructed (the refusal must come first)."""
    def forbidden(self, *args, **kwargs):
        raise AssertionError("a module was built before the file was checked")
    monkeypatch.setattr(Generator, "__init__", forbidden)
    monkeypatch.setattr(Discriminator, "__init__", forbidden)


# ---- tensors that claim more than their storage holds (pickle) ----------------------------------------------------

def test_a_crafted_tensor_that_fits_its_storage_loads_exactly(tmp_path):
    """Control: the crafting helpers write what torch writes, so the refusals below are about the claims alone."""
    values = torch.arange(12, dtype=torch.float32)
    obj = crafted_tensor(legacy_storage(values), 2, (2, 3), (4, 1))
    expected = pickle.loads(pickle.dumps(obj))  # torch's own, unrestricted loader
    loaded = read_pickle(write_pickle(tmp_path / "ok.pkl", {"t": obj}))["t"]
    assert torch.equal(loaded, expected)
    assert loaded.tolist() == [[2.0, 3.0, 4.0], [6.0, 7.0, 8.0]]


@pytest.mark.parametrize("offset, size, stride, phrase", [
    (0, (512, 512), (512, 1), "claims more elements than its storage holds (4)"),  # the leak the issue found
    (3, (2,), (1,), "claims more elements than its storage holds"),  # last element one past the end
    (0, (4,), (2,), "claims more elements than its storage holds"),  # strides walk off the end
    (0, (10 ** 6, 10 ** 6), (0, 0), "claims more elements than its storage holds"),  # one value, a trillion times
    (-1, (2,), (1,), "negative offset, size or stride"),
    (0, (2, -1), (1, 1), "negative offset, size or stride"),
    (0, (2,), (-1,), "negative offset, size or stride"),
    (0, (2, 2), (1,), "equal length"),
    (0.5, (2,), (1,), "whole numbers"),
])
def test_tensor_claims_beyond_its_storage_are_refused(tmp_path, offset, size, stride, phrase):
    storage = legacy_storage(torch.ones(4))
    path = write_pickle(tmp_path / "leak.pkl", {"G_ema": crafted_tensor(storage, offset, size, stride)})
    assert isinstance(pytest.raises(UnsafePickleError, read_pickle, path).value, UnsafePickleError)
    refused(path, phrase)


def test_storage_that_claims_terabytes_is_refused_before_allocating(tmp_path):
    values = torch.ones(300)
    storage = legacy_storage(values)
    header = (300).to_bytes(8, "little")
    assert storage.count(header) == 1
    # The storage record pickles its count as a BININT2 (M) opcode for 300; rewrite it as a BININT (J) of 2**31 - 1
    # and the data header as 10**12: a loader that trusted either would allocate before reading any data.
    record = b"M" + (300).to_bytes(2, "little")
    assert storage.count(record) == 1
    bomb = storage.replace(record, b"J" + (2 ** 31 - 1).to_bytes(4, "little"))
    bomb = bomb.replace(header, (10 ** 12).to_bytes(8, "little"))
    path = write_pickle(tmp_path / "bomb.pkl", {"G_ema": crafted_tensor(bomb, 0, (300,), (1,))})
    refused(path, "claims 2147483647 elements", "1200 bytes follow it")


@pytest.mark.parametrize("extra, phrase", [(b"\0" * 64, "1264 bytes follow it"), (None, "1196 bytes follow it")])
def test_storage_smaller_or_larger_than_its_bytes_is_refused(tmp_path, extra, phrase):
    storage = legacy_storage(torch.ones(300))
    crafted = storage + extra if extra is not None else storage[:-4]
    path = write_pickle(tmp_path / "odd.pkl", {"G_ema": crafted_tensor(crafted, 0, (300,), (1,))})
    refused(path, "claims 300 elements", phrase)


def test_code_hidden_inside_a_storage_stream_is_refused_by_name(tmp_path):
    """The inner stream is a pickle too: a global in it is refused by name, and nothing suggests weights_only=False."""
    import os

    marker = tmp_path / "ran"
    inner = pickle.dumps(_Reduce(os.system, (f"touch {marker}",)), protocol=2)
    path = write_pickle(tmp_path / "nested.pkl", {"G_ema": crafted_tensor(inner, 0, (1,), (1,))})
    text = refused(path, "refused to load")
    assert "system" in text or "legacy format" in text
    assert not marker.exists()


# ---- nesting and repetition bombs --------------------------------------------------------------------------------

@pytest.fixture
def persistent_record(monkeypatch):
    """Pickle objects as stylegan2-ada 'persistent objects' holding a state the test gives."""
    _reconstruct_persistent_obj = stand_in_persistence(monkeypatch)

    def make(state: dict, class_name: str = "Generator") -> _Reduce:
        meta = {"type": "class", "version": 6, "module_src": "", "class_name": class_name, "state": state}
        return _Reduce(_reconstruct_persistent_obj, (meta,))
    return make


def _generator_state(init_kwargs) -> dict:
    return {"_init_kwargs": init_kwargs, "_parameters": {}, "_buffers": {}, "_modules": {}}


def test_deeply_nested_init_arguments_are_refused_as_crafted(tmp_path, persistent_record, no_module_is_built):
    nested: list = []
    for _ in range(200):
        nested = [nested]
    kwargs = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=4, img_channels=3, mapping_kwargs={"x": nested})
    path = write_pickle(tmp_path / "deep.pkl", {"G_ema": persistent_record(_generator_state(kwargs))})
    refused(path, "nests deeper or repeats more often than any network snapshot")


def test_repeated_references_cannot_blow_up(tmp_path, persistent_record, no_module_is_built):
    """30 levels of [x, x]: a few hundred bytes in the file (pickle memoises x), 2**30 items if walked naively."""
    laughs: list = []
    for _ in range(30):
        laughs = [laughs, laughs]
    kwargs = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=4, img_channels=3, synthesis_kwargs={"x": laughs})
    path = write_pickle(tmp_path / "laughs.pkl", {"G_ema": persistent_record(_generator_state(kwargs))})
    assert path.stat().st_size < 2000
    refused(path, "nests deeper or repeats more often")


def test_shared_child_modules_cannot_blow_up(tmp_path, persistent_record, no_module_is_built):
    child = persistent_record(_generator_state({}), "FullyConnectedLayer")
    for _ in range(40):
        child = persistent_record({"_parameters": {}, "_buffers": {}, "_modules": {"a": child, "b": child}},
                                  "SynthesisBlock")
    kwargs = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=4, img_channels=3)
    root = persistent_record({**_generator_state(kwargs), "_modules": {"synthesis": child}})
    path = write_pickle(tmp_path / "tree.pkl", {"G_ema": root})
    refused(path, "nests deeper or repeats more often")


# ---- architecture bombs (safetensors metadata and pickled init arguments) ---------------------------------------

@pytest.fixture
def small_safetensors(tmp_path, reference_dir) -> Path:
    snap = load_network(reference_dir / "sg2ada_tiny32.pkl")
    return save_safetensors(tmp_path / "small.safetensors", {"G_ema": snap.module})


def with_architecture(path: Path, change) -> Path:
    """Rewrite the G_ema architecture recorded in an Atelier .safetensors file (the tensors stay as they are)."""
    from safetensors.torch import load_file, save_file

    meta = read_safetensors_metadata(path)
    architecture = json.loads(meta["architecture"])
    change(architecture["G_ema"])
    meta["architecture"] = json.dumps(architecture)
    out = path.with_name("edited.safetensors")
    save_file(load_file(str(path)), str(out), metadata=meta)
    return out


@pytest.mark.parametrize("field, value, phrase", [
    ("mapping_kwargs.num_layers", 20000, "mapping_kwargs.num_layers = 20000 (allowed: 1 to 32)"),
    ("synthesis_kwargs.channel_max", 65536, "synthesis_kwargs.channel_max = 65536 (allowed: 1 to 2048)"),
    ("img_resolution", 2 ** 20, "img_resolution = 1048576 (allowed: 4 to 2048)"),
    ("img_resolution", 48, "img_resolution = 48 (not a power of two)"),
    ("z_dim", 10 ** 9, "z_dim = 1000000000"),
    ("w_dim", 0, "w_dim = 0"),
    ("c_dim", -3, "c_dim = -3"),
    ("img_channels", 4000, "img_channels = 4000"),
    ("synthesis_kwargs.channel_base", 2, "below the resolution 32"),
    ("synthesis_kwargs.conv_clamp", float("inf"), "not a finite number"),
    ("synthesis_kwargs.kernel_size", 101, "kernel_size = 101"),
    ("synthesis_kwargs.resample_filter", [1] * 5000, "expected 1 to 8 numbers"),
    ("synthesis_kwargs.architecture", "resnet", "allowed: 'skip'"),
    ("mapping_kwargs.layer_features", "512", "not a whole number"),
    ("mapping_kwargs.num_layers", True, "not a whole number"),
    ("synthesis_kwargs.block_size", 4, "fields Atelier does not know: synthesis_kwargs.block_size"),
])
def test_out_of_bounds_architecture_is_refused_before_building(small_safetensors, no_module_is_built, field, value,
                                                               phrase):
    def change(kwargs):
        *parents, name = field.split(".")
        target = kwargs
        for parent in parents:
            target = target.setdefault(parent, {})
        target[name] = value
    refused(with_architecture(small_safetensors, change), phrase, "not loaded")


def test_architecture_within_bounds_but_too_large_in_total_is_refused(small_safetensors, no_module_is_built):
    def change(kwargs):
        kwargs.update(img_resolution=2048, w_dim=4096, z_dim=4096)
        kwargs["synthesis_kwargs"].update(channel_base=1 << 20, channel_max=2048)
    text = refused(with_architecture(small_safetensors, change), "parameters, more than")
    asked = int(text.split("asks for ")[1].split(" ")[0].replace(",", ""))
    assert asked > MAX_NETWORK_ELEMENTS
    assert asked == sum(torch.Size(s).numel() for s in generator_shapes(
        json.loads(read_safetensors_metadata(with_architecture(small_safetensors, change))["architecture"])["G_ema"]
    ).values())


def test_plausible_architecture_that_the_tensors_do_not_match_is_refused_before_building(small_safetensors,
                                                                                        no_module_is_built):
    """Within every bound (a 1024-px StyleGAN2) yet a 372-byte-scale claim: the file's tensors are the 32-px ones."""
    def change(kwargs):
        kwargs.update(img_resolution=1024)
        kwargs["synthesis_kwargs"].update(channel_base=32768, channel_max=512)
        kwargs["mapping_kwargs"].update(num_layers=8)
    refused(with_architecture(small_safetensors, change), "do not fit the recorded architecture",
            "synthesis.b4.const is (64, 4, 4), expected (512, 4, 4)")


def test_pickled_init_arguments_are_bounded_too(tmp_path, persistent_record, no_module_is_built):
    kwargs = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=32, img_channels=3,
                  mapping_kwargs={"num_layers": 20000})
    path = write_pickle(tmp_path / "arch.pkl", {"G_ema": persistent_record(_generator_state(kwargs))})
    refused(path, "mapping_kwargs.num_layers = 20000")


@pytest.mark.parametrize("meta_change, phrase", [
    ({"architecture": "{not json"}, "'architecture' entry of its metadata is not a JSON object"),
    ({"architecture": "[1, 2]"}, "'architecture' entry of its metadata is not a JSON object"),
    ({"architecture": json.dumps({"G_ema": "big"})}, "records its architecture as a str"),
    ({"architecture": "[" * 100000 + "]" * 100000}, "not a JSON object"),
    ({"provenance": "nope"}, "'provenance' entry of its metadata is not a JSON object"),
    ({"format_version": "one"}, "format_version 'one', not a whole number"),
])
def test_malformed_safetensors_metadata_gets_a_clear_message(small_safetensors, meta_change, phrase):
    from safetensors.torch import load_file, save_file

    meta = {**read_safetensors_metadata(small_safetensors), **meta_change}
    out = small_safetensors.with_name("meta.safetensors")
    save_file(load_file(str(small_safetensors)), str(out), metadata=meta)
    refused(out, phrase)


def test_safetensors_header_of_the_wrong_json_type(tmp_path):
    path = tmp_path / "list.safetensors"
    header = b"[1, 2, 3]"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    refused(path, "not laid out as the format requires")


# ---- the shape calculation agrees with the real modules ---------------------------------------------------------

GENERATOR_CASES = [
    dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=32, img_channels=3, mapping_kwargs=dict(num_layers=2),
         synthesis_kwargs=dict(channel_base=1024, channel_max=64, num_fp16_res=0, conv_clamp=256)),
    dict(z_dim=16, c_dim=5, w_dim=24, img_resolution=16, img_channels=1,
         mapping_kwargs=dict(num_layers=3, embed_features=7, layer_features=9, w_avg_beta=None),
         synthesis_kwargs=dict(channel_base=256, channel_max=32, use_noise=False, kernel_size=1,
                               resample_filter=[1, 2, 1])),
    dict(z_dim=0, c_dim=4, w_dim=8, img_resolution=8, img_channels=4, mapping_kwargs=dict(num_layers=1),
         synthesis_kwargs=dict(channel_base=64, channel_max=16, activation="relu")),
]
DISCRIMINATOR_CASES = [
    dict(c_dim=0, img_resolution=32, img_channels=3, channel_base=1024, channel_max=64,
         epilogue_kwargs=dict(mbstd_group_size=4)),
    dict(c_dim=5, img_resolution=16, img_channels=1, channel_base=256, channel_max=32, cmap_dim=11,
         mapping_kwargs=dict(num_layers=3, layer_features=6), block_kwargs=dict(resample_filter=[1, 2, 1]),
         epilogue_kwargs=dict(mbstd_num_channels=2, mbstd_group_size=2)),
    dict(c_dim=2, img_resolution=8, img_channels=3, channel_base=64, channel_max=8),
]


def _real_shapes(module: torch.nn.Module) -> dict:
    return {name: tuple(t.shape) for name, t in module.state_dict().items()}


@pytest.mark.parametrize("kwargs", GENERATOR_CASES)
def test_generator_shapes_match_the_built_module(kwargs):
    if kwargs["z_dim"] == 0:
        pytest.raises(AtelierError, generator_shapes, kwargs)  # a generator needs a z input
        return
    assert generator_shapes(kwargs) == _real_shapes(Generator(**kwargs))


@pytest.mark.parametrize("kwargs", DISCRIMINATOR_CASES)
def test_discriminator_shapes_match_the_built_module(kwargs):
    assert expected_shapes("D", kwargs) == _real_shapes(Discriminator(**kwargs))
    assert discriminator_shapes(kwargs) == expected_shapes("D", kwargs)


# ---- training-state files (.pt) -----------------------------------------------------------------------------------

class _NotATensor:
    """A class torch's weights-only loader refuses."""


@pytest.mark.parametrize("content, phrase", [
    ({"cur_nimg": _NotATensor()}, "it names"),
    ([1, 2, 3], "not an Atelier training-state file"),
    ({"cur_nimg": -4}, "not an Atelier training-state file"),
    (None, "cannot be read"),
])
def test_a_refused_training_state_never_suggests_weights_only_false(tmp_path, content, phrase):
    from model.training.snapshots import resumed_nimg

    snapshot = tmp_path / "network-snapshot-000004.safetensors"
    state = tmp_path / "training-state-000004.pt"
    if content is None:
        state.write_bytes(b"PK\x03\x04 not really a zip")
    else:
        torch.save(content, state)
    with pytest.raises(AtelierError) as info:
        resumed_nimg(snapshot)
    text = str(info.value)
    assert phrase in text and str(state) in text
    for misleading in ("weights_only=False", "set to `False`", "trust the source"):
        assert misleading not in text, text


@pytest.mark.parametrize("dtype", ["V8", "U2", "M8[s]"])
def test_numpy_scalars_other_than_plain_numbers_are_refused(tmp_path, dtype):
    import numpy as np
    from numpy._core.multiarray import scalar

    value = np.zeros(1, dtype=dtype)[0]
    obj = _Reduce(scalar, (value.dtype, value.tobytes()))
    path = write_pickle(tmp_path / "scalar.pkl", {"G_ema": obj})
    refused(path, "a type other than a plain number")
    plain = write_pickle(tmp_path / "plain.pkl", {"x": _Reduce(scalar, (np.dtype("f8"), np.float64(2.5).tobytes()))})
    assert read_pickle(plain)["x"] == 2.5
