"""Checks on a network's recorded architecture, made before any module is built.

A network file records its architecture (a pickle's ``_init_kwargs``, the JSON metadata of a ``.safetensors``)
next to its weights. Building a module from those arguments allocates every parameter with random values, so a
372-byte file asking for 20,000 mapping layers or 65,536 channels would exhaust memory before a single weight is
compared. Here every field is checked against bounds, the exact name and shape of every tensor the arguments
imply is worked out without allocating anything, and that list is compared with the tensors actually in the
file. Only a network that passes is built.

The shapes mirror `model.network.networks` (tests build the real modules and compare, so the two cannot drift apart).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from core.errors import AtelierError

MAX_RESOLUTION = 2048
MAX_FEATURES = 4096  # z, w, c, embedding and mapping widths (StyleGAN2 uses 512)
MAX_CHANNELS = 2048  # channel_max (StyleGAN2 uses 512)
MAX_CHANNEL_BASE = 1 << 20  # StyleGAN2 uses 32768
MAX_IMG_CHANNELS = 4
MAX_MAPPING_LAYERS = 32  # StyleGAN2 uses 8
MAX_KERNEL = 7
MAX_FILTER_TAPS = 8
MAX_MBSTD = 1024
# Twice the largest published StyleGAN2 networks (about 30 million parameters each for 1024 px).
MAX_NETWORK_ELEMENTS = 200_000_000

Shapes = dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class Field:
    """Where a value sits in the recorded arguments, for messages that name it exactly."""
    path: str

    def fail(self, problem: str) -> AtelierError:
        return AtelierError(f"the network file records {self.path} = {problem}; a StyleGAN2 network never does. "
                            f"The file is damaged or crafted: it was not loaded. Ask for the original training "
                            f"snapshot or a .safetensors export.")


def _int(kwargs: dict, name: str, where: str, low: int, high: int, default: Any = ...) -> int:
    field = Field(f"{where}{name}")
    value = kwargs.get(name, default)
    if value is ...:
        raise AtelierError(f"the network file does not record {field.path}; it is not a StyleGAN2 network snapshot")
    if isinstance(value, bool) or not isinstance(value, int):
        raise field.fail(f"{value!r} (not a whole number)")
    if not low <= value <= high:
        raise field.fail(f"{value} (allowed: {low} to {high})")
    return value


def _optional_int(kwargs: dict, name: str, where: str, low: int, high: int) -> int | None:
    return None if kwargs.get(name) is None else _int(kwargs, name, where, low, high)


def _number(kwargs: dict, name: str, where: str, low: float, high: float, default: Any) -> float | None:
    value = kwargs.get(name, default)
    if value is None:
        return None
    field = Field(f"{where}{name}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise field.fail(f"{value!r} (not a finite number)")
    if not low <= value <= high:
        raise field.fail(f"{value} (allowed: {low} to {high})")
    return float(value)


def _choice(kwargs: dict, name: str, where: str, allowed: tuple, default: Any) -> Any:
    value = kwargs.get(name, default)
    if value not in allowed or isinstance(value, bool) != isinstance(default, bool):
        raise Field(f"{where}{name}").fail(f"{value!r} (allowed: {', '.join(map(repr, allowed))})")
    return value


def _sub(kwargs: dict, name: str, where: str, allowed: set[str]) -> dict:
    value = kwargs.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Field(f"{where}{name}").fail(f"a {type(value).__name__} (expected a dict)")
    _known_keys(value, f"{where}{name}.", allowed)
    return value


def _known_keys(kwargs: dict, where: str, allowed: set[str]) -> None:
    unknown = sorted(str(k) for k in kwargs if k not in allowed)
    if unknown:
        raise AtelierError(f"the network file records architecture fields Atelier does not know: "
                           f"{', '.join(where + k for k in unknown[:5])}. It is not a StyleGAN2 / StyleGAN2-ADA "
                           f"network, or it is damaged; it was not loaded.")


def _filter_taps(kwargs: dict, where: str) -> int:
    taps = kwargs.get("resample_filter", [1, 3, 3, 1])
    field = Field(f"{where}resample_filter")
    if not isinstance(taps, (list, tuple)) or not 1 <= len(taps) <= MAX_FILTER_TAPS:
        raise field.fail(f"{taps!r} (expected 1 to {MAX_FILTER_TAPS} numbers)")
    if any(isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) for t in taps):
        raise field.fail(f"{taps!r} (expected finite numbers)")
    if sum(taps) == 0:
        raise field.fail(f"{taps!r} (the taps sum to 0, so the filter cannot be normalised)")
    return len(taps)


def _fc(prefix: str, in_features: int, out_features: int, bias: bool = True) -> Shapes:
    shapes = {f"{prefix}weight": (out_features, in_features)}
    if bias:
        shapes[f"{prefix}bias"] = (out_features,)
    return shapes


MAPPING_KEYS = {"num_layers", "embed_features", "layer_features", "activation", "lr_multiplier", "w_avg_beta"}
ACTIVATIONS = ("lrelu", "linear", "relu")


def _mapping(prefix: str, kwargs: dict, where: str, z_dim: int, c_dim: int, w_dim: int, w_avg: bool) -> Shapes:
    num_layers = _int(kwargs, "num_layers", where, 1, MAX_MAPPING_LAYERS, 8)
    embed = _optional_int(kwargs, "embed_features", where, 1, MAX_FEATURES)
    layer = _optional_int(kwargs, "layer_features", where, 1, MAX_FEATURES)
    _choice(kwargs, "activation", where, ACTIVATIONS, "lrelu")
    _number(kwargs, "lr_multiplier", where, 1e-6, 1e6, 0.01)
    beta = _number(kwargs, "w_avg_beta", where, 0.0, 1.0, 0.995)
    embed = 0 if c_dim == 0 else (w_dim if embed is None else embed)
    layer = w_dim if layer is None else layer
    if z_dim + embed == 0:
        raise Field(f"{where}embed_features").fail("0 with no z input (the mapping would have no input)")
    features = [z_dim + embed] + [layer] * (num_layers - 1) + [w_dim]
    shapes: Shapes = {}
    if c_dim > 0:
        shapes.update(_fc(f"{prefix}embed.", c_dim, embed))
    for idx in range(num_layers):
        shapes.update(_fc(f"{prefix}fc{idx}.", features[idx], features[idx + 1]))
    if w_avg and beta is not None:
        shapes[f"{prefix}w_avg"] = (w_dim,)
    return shapes


def _resolution(kwargs: dict, where: str) -> int:
    res = _int(kwargs, "img_resolution", where, 4, MAX_RESOLUTION)
    if res & (res - 1):
        raise Field(f"{where}img_resolution").fail(f"{res} (not a power of two)")
    return res


def _channels(kwargs: dict, where: str, resolution: int) -> dict[int, int]:
    base = _int(kwargs, "channel_base", where, 1, MAX_CHANNEL_BASE, 32768)
    cmax = _int(kwargs, "channel_max", where, 1, MAX_CHANNELS, 512)
    if base // resolution < 1:
        raise Field(f"{where}channel_base").fail(f"{base} (below the resolution {resolution}: no channels left)")
    return {4 << i: min(base // (4 << i), cmax) for i in range(int(math.log2(resolution)) - 1)}


SYNTHESIS_KEYS = {"channel_base", "channel_max", "num_fp16_res", "conv_clamp", "architecture", "resample_filter",
                  "kernel_size", "use_noise", "activation"}
GENERATOR_KEYS = {"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs"}


def _synthesis_layer(prefix: str, cin: int, cout: int, w_dim: int, res: int, kernel: int, taps: int,
                     noise: bool) -> Shapes:
    shapes = _fc(f"{prefix}affine.", w_dim, cin)
    shapes[f"{prefix}weight"] = (cout, cin, kernel, kernel)
    shapes[f"{prefix}resample_filter"] = (taps, taps)
    if noise:
        shapes[f"{prefix}noise_const"] = (res, res)
        shapes[f"{prefix}noise_strength"] = ()
    shapes[f"{prefix}bias"] = (cout,)
    return shapes


def generator_shapes(kwargs: dict) -> Shapes:
    """Every tensor name and shape of `Generator(**kwargs)`'s state dict, or a clear error naming a bad field."""
    _known_keys(kwargs, "", GENERATOR_KEYS)
    z_dim = _int(kwargs, "z_dim", "", 1, MAX_FEATURES)
    c_dim = _int(kwargs, "c_dim", "", 0, MAX_FEATURES)
    w_dim = _int(kwargs, "w_dim", "", 1, MAX_FEATURES)
    res = _resolution(kwargs, "")
    img_channels = _int(kwargs, "img_channels", "", 1, MAX_IMG_CHANNELS)
    syn = _sub(kwargs, "synthesis_kwargs", "", SYNTHESIS_KEYS)
    where = "synthesis_kwargs."
    channels = _channels(syn, where, res)
    _int(syn, "num_fp16_res", where, 0, 16, 0)
    _number(syn, "conv_clamp", where, 1e-6, 1e9, None)
    _choice(syn, "architecture", where, ("skip",), "skip")
    _choice(syn, "activation", where, ACTIVATIONS, "lrelu")
    noise = _choice(syn, "use_noise", where, (True, False), True)
    kernel = _int(syn, "kernel_size", where, 1, MAX_KERNEL, 3)
    taps = _filter_taps(syn, where)
    shapes: Shapes = {}
    num_ws = 0
    for block_res, cout in channels.items():
        prefix = f"synthesis.b{block_res}."
        shapes[f"{prefix}resample_filter"] = (taps, taps)
        if block_res == 4:
            shapes[f"{prefix}const"] = (cout, 4, 4)
        else:
            cin = channels[block_res // 2]
            shapes.update(_synthesis_layer(f"{prefix}conv0.", cin, cout, w_dim, block_res, kernel, taps, noise))
        # conv1 keeps the default filter: the original passes resample_filter to the upsampling conv0 only
        shapes.update(_synthesis_layer(f"{prefix}conv1.", cout, cout, w_dim, block_res, kernel, 4, noise))
        shapes.update(_fc(f"{prefix}torgb.affine.", w_dim, cout))
        shapes[f"{prefix}torgb.weight"] = (img_channels, cout, 1, 1)
        shapes[f"{prefix}torgb.bias"] = (img_channels,)
        num_ws += 1 if block_res == 4 else 2
    num_ws += 1  # the last block's toRGB reads a row of its own
    mapping = _sub(kwargs, "mapping_kwargs", "", MAPPING_KEYS)
    shapes.update(_mapping("mapping.", mapping, "mapping_kwargs.", z_dim, c_dim, w_dim, w_avg=num_ws > 0))
    return shapes


def _conv(prefix: str, cin: int, cout: int, kernel: int, taps: int, bias: bool = True) -> Shapes:
    shapes = {f"{prefix}resample_filter": (taps, taps), f"{prefix}weight": (cout, cin, kernel, kernel)}
    if bias:
        shapes[f"{prefix}bias"] = (cout,)
    return shapes


DISCRIMINATOR_KEYS = {"c_dim", "img_resolution", "img_channels", "architecture", "channel_base", "channel_max",
                      "num_fp16_res", "conv_clamp", "cmap_dim", "block_kwargs", "mapping_kwargs", "epilogue_kwargs"}
DISCRIMINATOR_BLOCK_KEYS = {"activation", "resample_filter"}
EPILOGUE_KEYS = {"mbstd_group_size", "mbstd_num_channels", "activation"}


def discriminator_shapes(kwargs: dict) -> Shapes:
    """Every tensor name and shape of `Discriminator(**kwargs)`'s state dict, or a clear error."""
    _known_keys(kwargs, "", DISCRIMINATOR_KEYS)
    c_dim = _int(kwargs, "c_dim", "", 0, MAX_FEATURES)
    res = _resolution(kwargs, "")
    img_channels = _int(kwargs, "img_channels", "", 1, MAX_IMG_CHANNELS)
    _choice(kwargs, "architecture", "", ("resnet",), "resnet")
    channels = _channels(kwargs, "", res)
    _int(kwargs, "num_fp16_res", "", 0, 16, 0)
    _number(kwargs, "conv_clamp", "", 1e-6, 1e9, None)
    cmap_dim = _optional_int(kwargs, "cmap_dim", "", 1, MAX_FEATURES)
    block = _sub(kwargs, "block_kwargs", "", DISCRIMINATOR_BLOCK_KEYS)
    _choice(block, "activation", "block_kwargs.", ACTIVATIONS, "lrelu")
    taps = _filter_taps(block, "block_kwargs.")
    shapes: Shapes = {}
    for block_res in sorted(channels, reverse=True)[:-1]:  # every resolution but 4, highest first
        prefix = f"b{block_res}."
        tmp, out = channels[block_res], channels[block_res // 2]
        shapes[f"{prefix}resample_filter"] = (taps, taps)
        if block_res == res:
            shapes.update(_conv(f"{prefix}fromrgb.", img_channels, tmp, 1, 4))
        shapes.update(_conv(f"{prefix}conv0.", tmp, tmp, 3, 4))
        shapes.update(_conv(f"{prefix}conv1.", tmp, out, 3, taps))
        shapes.update(_conv(f"{prefix}skip.", tmp, out, 1, taps, bias=False))
    cmap_dim = 0 if c_dim == 0 else (channels[4] if cmap_dim is None else cmap_dim)
    if c_dim > 0:
        mapping = _sub(kwargs, "mapping_kwargs", "", MAPPING_KEYS)
        shapes.update(_mapping("mapping.", mapping, "mapping_kwargs.", 0, c_dim, cmap_dim, w_avg=False))
    epilogue = _sub(kwargs, "epilogue_kwargs", "", EPILOGUE_KEYS)
    _optional_int(epilogue, "mbstd_group_size", "epilogue_kwargs.", 1, MAX_MBSTD)
    mbstd = _int(epilogue, "mbstd_num_channels", "epilogue_kwargs.", 0, MAX_MBSTD, 1)
    _choice(epilogue, "activation", "epilogue_kwargs.", ACTIVATIONS, "lrelu")
    c4 = channels[4]
    shapes.update(_conv("b4.conv.", c4 + mbstd, c4, 3, 4))
    shapes.update(_fc("b4.fc.", c4 * 16, c4))
    shapes.update(_fc("b4.out.", c4, cmap_dim or 1))
    return shapes


def expected_shapes(kind: str, kwargs: dict) -> Shapes:
    """The state-dict shapes a G_ema/G ('Generator') or D ('Discriminator') built from `kwargs` would have,
    after checking every field and the total size; nothing is allocated."""
    if not isinstance(kwargs, dict):
        raise AtelierError(f"the network file records its architecture as a {type(kwargs).__name__}, not a dict; "
                           f"it is damaged or not an Atelier / StyleGAN2 network")
    shapes = discriminator_shapes(kwargs) if kind == "D" else generator_shapes(kwargs)
    total = sum(math.prod(shape) for shape in shapes.values())
    if total > MAX_NETWORK_ELEMENTS:
        raise AtelierError(f"the architecture recorded in the network file asks for {total:,} parameters, more than "
                           f"the {MAX_NETWORK_ELEMENTS:,} Atelier accepts (a 1024-px StyleGAN2 has about 30 million); "
                           f"it was not loaded")
    return shapes


def check_tensors_fit(kind: str, kwargs: dict, tensors: dict, source: str) -> None:
    """Refuse, before anything is built, a file whose tensors are not exactly those its architecture implies."""
    import torch

    expected = expected_shapes(kind, kwargs)
    missing = [name for name in expected if name not in tensors]
    unexpected = [name for name in tensors if name not in expected]
    wrong = [f"{name} is {tuple(tensors[name].shape)}, expected {expected[name]}" for name in expected
             if name in tensors and tuple(tensors[name].shape) != expected[name]]
    not_float = [name for name, t in tensors.items() if name in expected and not torch.is_floating_point(t)]
    problems = ([f"missing {', '.join(missing[:3])}"] if missing else []) + \
        ([f"unexpected {', '.join(unexpected[:3])}"] if unexpected else []) + wrong[:3] + \
        ([f"not floating point: {', '.join(not_float[:3])}"] if not_float else [])
    if problems:
        raise AtelierError(f"{source}: the weights do not fit the recorded architecture ({'; '.join(problems)}). "
                           f"The file is damaged or its architecture was edited; it was not loaded.")
