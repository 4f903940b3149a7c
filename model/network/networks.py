"""StyleGAN2 generator and discriminator, written for Atelier.

Parameter and buffer names and shapes are those of stylegan2-ada-pytorch's ``G_ema`` / ``D`` state dicts, so a
user's trained weights load one-to-one. Shapes in comments: N batch, C channels, H/W pixels, L = num_ws.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from model.network.ops import (WeightCache, activation_gain, bias_act, conv2d_resample, modulated_conv2d,
                               modulated_pointwise, normalize_2nd_moment, setup_filter, upsample2d)

RESAMPLE_TAPS = (1, 3, 3, 1)
NOISE_MODES = ("const", "random", "none")


class FullyConnectedLayer(nn.Module):
    """Dense layer with equalised learning rate: weights stored at unit scale, scaled at run time."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.cache = WeightCache()  # scaled weights between calls without autograd (not part of the state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.cache.get("scaled", self.weight, x.dtype, lambda: self.weight.to(x.dtype) * self.weight_gain)
        b = None if self.bias is None else self.bias.to(x.dtype) * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)


class MappingNetwork(nn.Module):
    """z (+ class embedding) -> w, broadcast to num_ws rows, with a tracked average for truncation."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int | None, num_layers: int = 8,
                 embed_features: int | None = None, layer_features: int | None = None, activation: str = "lrelu",
                 lr_multiplier: float = 0.01, w_avg_beta: float | None = 0.995):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation=activation,
                                        lr_multiplier=lr_multiplier)
            setattr(self, f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor | None, c: torch.Tensor | None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, update_w_avg: bool | None = None) -> torch.Tensor:
        x = None
        if self.z_dim > 0:
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if update_w_avg is None:
            update_w_avg = self.training
        if update_w_avg and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is None:
            return x
        ws = x.unsqueeze(1).repeat([1, self.num_ws, 1])  # [N, L, w_dim]
        if truncation_psi != 1:
            ws = truncate(ws, self.w_avg, truncation_psi, truncation_cutoff)
        return ws


def truncate(ws: torch.Tensor, w_avg: torch.Tensor, psi: float, cutoff: int | None = None) -> torch.Tensor:
    """w_avg + psi * (w - w_avg) on the first `cutoff` rows of ws (all rows when cutoff is None)."""
    if cutoff is None:
        return w_avg.lerp(ws, psi)
    ws = ws.clone()
    ws[:, :cutoff] = w_avg.lerp(ws[:, :cutoff], psi)
    return ws


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally 2x upsampling) + per-pixel noise + bias + leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, activation: str = "lrelu",
                 resample_filter: tuple[int, ...] = RESAMPLE_TAPS, conv_clamp: float | None = None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        self.activation, self.conv_clamp = activation, conv_clamp
        self.padding = kernel_size // 2
        self.act_gain = activation_gain(activation)
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.cache = WeightCache()

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random", gain: float = 1.0,
                own_input: bool = False) -> torch.Tensor:
        """`own_input`: x is the caller's temporary, which rendering may overwrite (see modulated_conv2d)."""
        styles = self.affine(w)  # [N, in_channels]
        noise = noise_sources = None
        if self.use_noise and noise_mode == "random":
            shape = [x.shape[0], 1, self.resolution, self.resolution]
            noise = torch.randn(shape, device=x.device) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
            noise_sources = (self.noise_const, self.noise_strength)  # the same noise at every call: cacheable
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return modulated_conv2d(x, self.weight, styles, noise=noise, bias=self.bias, activation=self.activation,
                                gain=self.act_gain * gain, clamp=clamp, up=self.up, padding=self.padding,
                                resample_filter=self.resample_filter, cache=self.cache, noise_sources=noise_sources,
                                own_input=own_input)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution to image channels, without demodulation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: float | None = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.cache = WeightCache()

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        if x.device.type == "cpu" and not torch.is_grad_enabled():  # rendering on a CPU (see modulated_pointwise)
            return modulated_pointwise(x, self.weight, styles, bias=self.bias, clamp=self.conv_clamp)
        return modulated_conv2d(x, self.weight, styles, bias=self.bias, clamp=self.conv_clamp, demodulate=False,
                                cache=self.cache)


def lowest_reduced_precision_resolution(img_resolution: int, num_res: int) -> int:
    """Blocks at this resolution and above compute in float16 (GPU) or bfloat16 (CPU training): the `num_res`
    highest resolutions, never below 8 px; above the image size (none) when num_res is 0."""
    return max(img_resolution * 2 // 2 ** max(num_res, 0), 8)


def block_dtype(block: nn.Module, device: torch.device, force_fp32: bool = False) -> torch.dtype:
    """The compute dtype of one synthesis or discriminator block.

    float16 for the blocks the architecture marks (num_fp16_res) on a GPU, as the original does; on a CPU float32,
    unless training asked for bfloat16 (:func:`use_cpu_bfloat16`): CPUs with AVX-512 BF16 or AMX run bfloat16
    convolutions about twice as fast, and bfloat16 keeps float32's range, so it needs no pre-normalisation.
    """
    if force_fp32:
        return torch.float32
    if device.type == "cuda" and block.use_fp16:
        return torch.float16
    if device.type == "cpu" and block.cpu_bf16:
        return torch.bfloat16
    return torch.float32


def use_cpu_bfloat16(network: nn.Module, num_res: int) -> list[int]:
    """Let the `num_res` highest-resolution blocks of a Generator or Discriminator compute in bfloat16 on a CPU.

    Weights, gradients and optimiser state stay float32 (the blocks cast their activations), so snapshots are
    unchanged; mapping, style affines, toRGB sums and D's epilogue stay float32 too. Returns the resolutions set.
    """
    blocks = network.synthesis.blocks() if hasattr(network, "synthesis") else [
        getattr(network, f"b{res}") for res in network.block_resolutions]
    threshold = lowest_reduced_precision_resolution(max(block.resolution for block in blocks), num_res)
    chosen = []
    for block in blocks:
        block.cpu_bf16 = block.resolution >= threshold
        if block.cpu_bf16:
            chosen.append(block.resolution)
    return sorted(chosen)


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: [upsampling conv0,] conv1, toRGB added to the upsampled image."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = "skip", resample_filter: tuple[int, ...] = RESAMPLE_TAPS,
                 conv_clamp: float | None = None, use_fp16: bool = False, **layer_kwargs: Any):
        super().__init__()
        if architecture != "skip":
            raise ValueError(f"generator architecture {architecture!r} is not supported (only 'skip')")
        self.in_channels, self.out_channels, self.w_dim = in_channels, out_channels, w_dim
        self.resolution, self.img_channels, self.is_last = resolution, img_channels, is_last
        self.architecture, self.use_fp16 = architecture, use_fp16
        self.cpu_bf16 = False  # set for training only, by use_cpu_bfloat16; not part of the architecture
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2,
                                        resample_filter=resample_filter, conv_clamp=conv_clamp, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp,
                                    **layer_kwargs)
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_torgb += 1

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, noise_mode: str = "random",
                force_fp32: bool = False, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`dtype` overrides the block's own choice (:func:`block_dtype`); rendering passes it explicitly so that one
        loaded network can be shared by renderers of different precisions without changing its flags."""
        w_rows = iter(ws.unbind(dim=1))
        dtype = dtype or block_dtype(self, ws.device, force_fp32)
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        else:
            # The previous block's x is read by nothing after this (its toRGB already ran): conv0 may overwrite it.
            x = self.conv0(x.to(dtype), next(w_rows), noise_mode=noise_mode, own_input=True)
        x = self.conv1(x, next(w_rows), noise_mode=noise_mode, own_input=True)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w_rows)).to(torch.float32)
        img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws [N, L, w_dim] -> image [N, C, H, W] in about [-1, 1]."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 0, **block_kwargs: Any):
        super().__init__()
        log2 = int(np.log2(img_resolution))
        if img_resolution < 4 or 2 ** log2 != img_resolution:
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = lowest_reduced_precision_resolution(img_resolution, num_fp16_res)
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(channels[res // 2] if res > 4 else 0, channels[res], w_dim=w_dim, resolution=res,
                                   img_channels=img_channels, is_last=res == img_resolution,
                                   use_fp16=res >= fp16_resolution, **block_kwargs)
            self.num_ws += block.num_conv
            if block.is_last:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def block_ws(self, ws: torch.Tensor) -> list[torch.Tensor]:
        """Rows of ws each block reads; a block's toRGB shares its row with the next block's first conv."""
        rows, start = [], 0
        for block in self.blocks():
            rows.append(ws.narrow(1, start, block.num_conv + block.num_torgb))
            start += block.num_conv
        return rows

    def forward(self, ws: torch.Tensor, noise_mode: str = "random", force_fp32: bool = False,
                max_resolution: int | None = None, block_dtypes: dict[int, torch.dtype] | None = None) -> torch.Tensor:
        """Render; `max_resolution` stops early and returns that stage's skip image (a cheap preview).

        `block_dtypes` (resolution -> dtype) sets each block's compute dtype explicitly (a block it leaves out
        computes in float32); without it each block decides by its architecture and `force_fp32`.
        """
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        x = img = None
        for block, rows in zip(self.blocks(), self.block_ws(ws)):
            dtype = None if block_dtypes is None else block_dtypes.get(block.resolution, torch.float32)
            x, img = block(x, img, rows, noise_mode=noise_mode, force_fp32=force_fp32, dtype=dtype)
            if max_resolution is not None and block.resolution >= max_resolution:
                break
        return img


class Generator(nn.Module):
    """z, c -> image, through the mapping and synthesis networks."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: dict | None = None, synthesis_kwargs: dict | None = None):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.init_kwargs = dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution,
                                img_channels=img_channels, mapping_kwargs=dict(mapping_kwargs or {}),
                                synthesis_kwargs=dict(synthesis_kwargs or {}))
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **(synthesis_kwargs or {}))
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **(mapping_kwargs or {}))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: str = "random", **synthesis_kwargs: Any
                ) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, **synthesis_kwargs)


class Conv2dLayer(nn.Module):
    """Equalised-learning-rate convolution with optional 2x FIR resampling, bias and activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, down: int = 1,
                 resample_filter: tuple[int, ...] = RESAMPLE_TAPS, conv_clamp: float | None = None):
        super().__init__()
        self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.act_gain = activation_gain(activation)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = None if self.bias is None else self.bias.to(x.dtype)
        x = conv2d_resample(x, w, f=self.resample_filter, up=self.up, down=self.down, padding=self.padding)
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class MinibatchStdLayer(nn.Module):
    """Appends the standard deviation across groups of samples as extra feature maps (a diversity signal)."""

    def __init__(self, group_size: int | None, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n) if self.group_size is not None else n
        f = self.num_channels
        # Sample i belongs to group i % (n // g): the reshape interleaves groups.
        y = x.reshape(g, -1, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0)
        y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])  # [n/g, F]
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorBlock(nn.Module):
    """Residual block at one resolution: two 3x3 convolutions (the second downsamples) plus a 1x1 skip."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int, img_channels: int,
                 architecture: str = "resnet", activation: str = "lrelu",
                 resample_filter: tuple[int, ...] = RESAMPLE_TAPS, conv_clamp: float | None = None,
                 use_fp16: bool = False):
        super().__init__()
        if architecture != "resnet":
            raise ValueError(f"discriminator architecture {architecture!r} is not supported (only 'resnet')")
        self.in_channels, self.resolution, self.use_fp16 = in_channels, resolution, use_fp16
        self.cpu_bf16 = False  # set for training only, by use_cpu_bfloat16; not part of the architecture
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, activation=activation,
                                       conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, activation=activation,
                                 conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, activation=activation, down=2,
                                 resample_filter=resample_filter, conv_clamp=conv_clamp)
        self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                                resample_filter=resample_filter)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor, force_fp32: bool = False) -> torch.Tensor:
        dtype = block_dtype(self, img.device, force_fp32)
        if self.in_channels == 0:
            x = self.fromrgb(img.to(dtype))
        x = x.to(dtype)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return y + x


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: minibatch-std, conv, dense, output (projected on the class embedding when conditional)."""

    def __init__(self, in_channels: int, cmap_dim: int, resolution: int, img_channels: int,
                 architecture: str = "resnet", mbstd_group_size: int | None = 4, mbstd_num_channels: int = 1,
                 activation: str = "lrelu", conv_clamp: float | None = None):
        super().__init__()
        self.cmap_dim = cmap_dim
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation,
                                conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution ** 2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: torch.Tensor, cmap: torch.Tensor | None) -> torch.Tensor:
        x = x.to(torch.float32)
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.out(self.fc(self.conv(x).flatten(1)))
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x


class Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator; class-conditional through a projection on a mapped class embedding."""

    def __init__(self, c_dim: int, img_resolution: int, img_channels: int, architecture: str = "resnet",
                 channel_base: int = 32768, channel_max: int = 512, num_fp16_res: int = 0,
                 conv_clamp: float | None = None, cmap_dim: int | None = None, block_kwargs: dict | None = None,
                 mapping_kwargs: dict | None = None, epilogue_kwargs: dict | None = None):
        super().__init__()
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        self.init_kwargs = dict(c_dim=c_dim, img_resolution=img_resolution, img_channels=img_channels,
                                architecture=architecture, channel_base=channel_base, channel_max=channel_max,
                                num_fp16_res=num_fp16_res, conv_clamp=conv_clamp, cmap_dim=cmap_dim,
                                block_kwargs=dict(block_kwargs or {}), mapping_kwargs=dict(mapping_kwargs or {}),
                                epilogue_kwargs=dict(epilogue_kwargs or {}))
        log2 = int(np.log2(img_resolution))
        self.block_resolutions = [2 ** i for i in range(log2, 2, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        fp16_resolution = lowest_reduced_precision_resolution(img_resolution, num_fp16_res)
        if cmap_dim is None:
            cmap_dim = channels[4]
        if c_dim == 0:
            cmap_dim = 0
        common = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        for res in self.block_resolutions:
            block = DiscriminatorBlock(channels[res] if res < img_resolution else 0, channels[res], channels[res // 2],
                                       resolution=res, use_fp16=res >= fp16_resolution, **(block_kwargs or {}),
                                       **common)
            setattr(self, f"b{res}", block)
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None,
                                          **(mapping_kwargs or {}))
        self.b4 = DiscriminatorEpilogue(channels[4], cmap_dim=cmap_dim, resolution=4, **(epilogue_kwargs or {}),
                                        **common)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None, force_fp32: bool = False) -> torch.Tensor:
        x = None
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            x = block(x, img, force_fp32=force_fp32)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, cmap)
