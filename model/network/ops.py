"""Low-level operations of StyleGAN2: FIR resampling, bias + activation, modulated convolution.

Plain PyTorch, no custom kernels, so the same code runs on CPU and CUDA and its gradients come from autograd.
Padding and filter conventions follow stylegan2-ada-pytorch exactly so that its weights reproduce its images.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Activation name -> (function, in-place function, default gain). The sqrt(2) gain keeps the signal variance of
# leaky ReLU at 1.
ACTIVATIONS = {
    "linear": (lambda x: x, lambda x: x, 1.0),
    "relu": (F.relu, F.relu_, math.sqrt(2)),
    "lrelu": (lambda x: F.leaky_relu(x, 0.2), lambda x: F.leaky_relu_(x, 0.2), math.sqrt(2)),
}


def activation_gain(name: str) -> float:
    return ACTIVATIONS[name][2]


def setup_filter(taps: list[float] | tuple[float, ...]) -> torch.Tensor:
    """1-D taps -> normalised 2-D FIR filter [k, k] (outer product, sums to 1)."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def bias_act(x: torch.Tensor, b: torch.Tensor | None = None, act: str = "linear", gain: float | None = None,
             clamp: float | None = None, dim: int = 1, inplace: bool = False) -> torch.Tensor:
    """Add bias along `dim`, apply the activation, scale by gain, clamp to [-clamp, clamp].

    `inplace` overwrites x (only where autograd is off and x is a temporary the caller owns).
    """
    fn, fn_, default_gain = ACTIVATIONS[act]
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x.add_(b.reshape(shape)) if inplace else x + b.reshape(shape)
    x = fn_(x) if inplace else fn(x)
    gain = default_gain if gain is None else gain
    if gain != 1:
        x = x.mul_(gain) if inplace else x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp_(-clamp, clamp) if inplace else x.clamp(-clamp, clamp)
    return x


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1,
              padding: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Upsample by zero insertion, pad (x0, x1, y0, y1; negative crops), filter with f, keep every `down`-th pixel.

    The filter is applied as a true convolution (flipped); all filters Atelier uses are symmetric anyway.
    """
    batch, channels, height, width = x.shape
    if up > 1:
        x = x.reshape(batch, channels, height, 1, width, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(batch, channels, height * up, width * up)
    px0, px1, py0, py1 = padding
    conv_padding = (0, 0)
    if px0 == px1 >= 0 and py0 == py1 >= 0:
        # Even zero padding (every resampling StyleGAN2's networks do): the convolution pads as it reads, which is
        # the same sum without writing a padded copy of x first (about half the time of this filter on a CPU).
        conv_padding = (py0, px0)
    else:
        x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
        x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype).flip([0, 1])
    # Depthwise convolution: every channel filtered independently with the same kernel.
    weight = f[None, None].expand(channels, 1, *f.shape)
    x = F.conv2d(x, weight, groups=channels, padding=conv_padding)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """upfirdn2d(x, f, up, padding=((taps + up - 1) // 2, (taps - up) // 2), gain=up²).

    For a filter of even length (StyleGAN2's [1, 3, 3, 1]) it runs as a depthwise transposed convolution with
    stride `up`: the same sums without the zeros that upsampling inserts (a quarter of the multiply-adds at up=2,
    and no zero-filled copy of x; about half the time on a CPU). out[up·i + k - pad] += x[i] · f[k] is the
    zero-insertion form's true convolution term for term when pad = taps - 1 - (its left padding).
    """
    taps = f.shape[-1]
    pad = ((taps + up - 1) // 2, (taps - up) // 2)
    if taps % 2 or up % 2 or pad[0] >= taps:  # the two forms agree in size for even filters and factors only
        return upfirdn2d(x, f, up=up, padding=(pad[0], pad[1], pad[0], pad[1]), gain=up * up)
    kernel = (f * (up * up)).to(x.dtype)
    weight = kernel[None, None].expand(x.shape[1], 1, *kernel.shape)
    return F.conv_transpose2d(x, weight, stride=up, padding=taps - 1 - pad[0], groups=x.shape[1])


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2) -> torch.Tensor:
    taps = f.shape[-1]
    pad = ((taps - down + 1) // 2, (taps - down) // 2)
    return upfirdn2d(x, f, down=down, padding=(pad[0], pad[1], pad[0], pad[1]))


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1, down: int = 1,
                    padding: int = 0) -> torch.Tensor:
    """Convolution (cross-correlation, as torch does) fused with 2x FIR up- or downsampling.

    Upsampling: transposed convolution with stride 2, then the FIR filter (gain 4) smooths the result.
    Downsampling: FIR filter first, then a strided convolution. Mixed up/down is not needed by StyleGAN2.
    """
    if up > 1 and down > 1:
        raise ValueError("conv2d_resample: combined up- and downsampling is not supported")
    kernel = w.shape[-1]
    if up > 1:
        assert f is not None
        taps = f.shape[-1]
        p0 = padding + (taps + up - 1) // 2 - (kernel - 1)
        p1 = padding + (taps - up) // 2 - (kernel - up)
        trim = max(min(-p0, -p1), 0)
        # conv_transpose2d expects [in, out, k, k]; the weight is used unflipped (that is the original's choice).
        x = F.conv_transpose2d(x, w.transpose(0, 1), stride=up, padding=trim)
        return upfirdn2d(x, f, padding=(p0 + trim, p1 + trim, p0 + trim, p1 + trim), gain=up * up)
    if down > 1:
        assert f is not None
        taps = f.shape[-1]
        p0 = padding + (taps - down + 1) // 2
        p1 = padding + (taps - down) // 2
        x = upfirdn2d(x, f, padding=(p0, p1, p0, p1))
        return F.conv2d(x, w, stride=down)
    return F.conv2d(x, w, padding=padding)


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class WeightCache:
    """Tensors derived from parameters alone (a weight's cast to the compute dtype and layout, its demodulation
    sums; the bias plus constant noise), kept between calls without autograd: rendering otherwise recomputes them for
    every batch, and on a busy CPU these small operations cost more than their size. An entry is remade when one of
    its parameters changes (its version counter moves, as with an EMA update or load_state_dict), the dtype or the
    device; one entry per name, so nothing piles up."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[tuple, torch.Tensor]] = {}

    def get(self, name: str, weight: torch.Tensor | tuple[torch.Tensor, ...], dtype: torch.dtype,
            make) -> torch.Tensor:
        if torch.is_grad_enabled():
            return make()
        sources = weight if isinstance(weight, tuple) else (weight,)
        key = (tuple((t.data_ptr(), t._version, t.device) for t in sources), dtype)
        found = self._entries.get(name)
        if found is None or found[0] != key:
            found = self._entries[name] = (key, make())
        return found[1]


def cached(cache: WeightCache | None, name: str, weight: torch.Tensor | tuple[torch.Tensor, ...], dtype: torch.dtype,
           make) -> torch.Tensor:
    return make() if cache is None else cache.get(name, weight, dtype, make)


def conv_layout(weight: torch.Tensor, up: int, device: torch.device) -> torch.Tensor:
    """A convolution weight [O, I, k, k] laid out as oneDNN reads it beside channels-last activations (on a CPU),
    so that the convolution does not copy it at every call: channels-last itself, or for the transposed convolution
    of upsampling, which reads weight.transpose(0, 1), channels-last [I, O, k, k] seen through that transpose."""
    if device.type != "cpu":
        return weight
    if up > 1:
        return weight.transpose(0, 1).contiguous(memory_format=torch.channels_last).transpose(0, 1)
    return weight.contiguous(memory_format=torch.channels_last)


def conv_offset(bias: torch.Tensor | None, noise: torch.Tensor | None, gain: float, dtype: torch.dtype,
                channels_last: bool) -> torch.Tensor | None:
    """(bias + noise) × gain, what a modulated convolution adds to its output. A per-image offset [O, H, W] added to
    channels-last activations is laid out as they are, so that the broadcast over the batch reads it in order."""
    offset = None if bias is None else bias.to(dtype).reshape(-1, 1, 1)
    if noise is not None:
        noise = noise.to(dtype)
        offset = noise if offset is None else offset + noise
    if offset is not None and gain != 1:
        offset = offset * gain
    if offset is not None and offset.dim() == 3 and channels_last:
        offset = offset.unsqueeze(0).contiguous(memory_format=torch.channels_last)
    return offset


def modulated_pointwise(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, bias: torch.Tensor | None = None,
                        clamp: float | None = None) -> torch.Tensor:
    """A modulated 1×1 convolution without demodulation (toRGB): x [N, I, H, W], weight [O, I, 1, 1], styles [N, I].

    Each image's own weight (weight × its styles, O × I numbers) is applied to its pixels as one batched matrix
    product, as the original does when it renders (fused modulation). Modulating the activations instead costs a
    full pass and a copy of x, and a 1×1 convolution to 3 channels runs far below a CPU's speed.
    """
    batch, channels, height, width = x.shape
    w = (weight.reshape(1, -1, channels) * styles.reshape(batch, 1, channels)).to(x.dtype)  # [N, O, I]
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        pixels = x.permute(0, 2, 3, 1).reshape(batch, height * width, channels)  # a view of channels-last x
        y = torch.bmm(pixels, w.transpose(1, 2)).reshape(batch, height, width, -1).permute(0, 3, 1, 2)
    else:
        y = torch.bmm(w, x.reshape(batch, channels, height * width)).reshape(batch, -1, height, width)
    inplace = not torch.is_grad_enabled()  # y is this function's own temporary
    return bias_act(y, None if bias is None else bias.to(x.dtype), clamp=clamp, inplace=inplace)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, noise: torch.Tensor | None = None,
                     bias: torch.Tensor | None = None, activation: str = "linear", gain: float = 1.0,
                     clamp: float | None = None, up: int = 1, padding: int = 0,
                     resample_filter: torch.Tensor | None = None, demodulate: bool = True,
                     cache: WeightCache | None = None, noise_sources: tuple[torch.Tensor, ...] | None = None,
                     own_input: bool = False) -> torch.Tensor:
    """StyleGAN2 modulated convolution followed by noise, bias, activation, gain and clamp.

    x: [N, I, H, W], weight: [O, I, k, k], styles: [N, I], noise: broadcastable to [N, O, H', W'], bias: [O].
    `noise_sources`: the parameters a constant `noise` is made of (noise mode const); with a cache, the bias plus
    that noise is then kept between calls, laid out as the batch reads it. `own_input`: x is the caller's temporary,
    which a batch without autograd may modulate in place (one fewer large allocation).
    One sample: the style and demodulation scale the small weight tensor. Several samples: they scale the
    activations around one dense convolution that the whole batch shares, which stays fast as the batch grows
    (a grouped per-sample convolution gets slower per image). Both are the same arithmetic.
    Every activation used is positively homogeneous (act(a * x) = a * act(x) for a > 0), so the output gain is
    folded into the demodulation and the bias, and without autograd the tail runs in place: four passes over
    the output instead of seven, and no temporaries.
    """
    batch = x.shape[0]
    source = weight  # what the cache's entries derive from
    if x.dtype == torch.float16 and demodulate:
        # Pre-normalise so float16 intermediates stay in range (the demodulation undoes the scale).
        weight = cached(cache, "prenormalised", source, x.dtype, lambda: weight * (
            1 / math.sqrt(weight[0].numel()) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True)))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    out_scale = torch.full([batch, weight.shape[0]], float(gain), dtype=styles.dtype, device=styles.device)
    if demodulate:
        # sum_{i,k} (w[o,i,k] * s[n,i])^2 = sum_i s[n,i]^2 * sum_k w[o,i,k]^2
        squares = cached(cache, "squares", source, x.dtype, lambda: weight.square().sum(dim=[2, 3]).t())
        out_scale = out_scale * (styles.square() @ squares + 1e-8).rsqrt()
    if batch == 1:
        w = weight * styles.reshape(1, -1, 1, 1) * out_scale.reshape(-1, 1, 1, 1)
        x = conv2d_resample(x, w.to(x.dtype), f=resample_filter, up=up, padding=padding)
    else:
        modulation = styles.to(x.dtype).reshape(batch, -1, 1, 1)
        x = x.mul_(modulation) if own_input and not torch.is_grad_enabled() else x * modulation
        if x.device.type == "cpu":
            # oneDNN's CPU convolutions run ~20% faster on channels-last batches (no layout reorders).
            x = x.contiguous(memory_format=torch.channels_last)
        w = cached(cache, "cast", source, x.dtype, lambda: conv_layout(weight.to(x.dtype), up, x.device))
        x = conv2d_resample(x, w, f=resample_filter, up=up, padding=padding)
    inplace = not torch.is_grad_enabled()
    channels_last = batch != 1 and x.is_contiguous(memory_format=torch.channels_last)

    def make_offset() -> torch.Tensor | None:
        return conv_offset(bias, noise, gain, x.dtype, channels_last)

    if noise_sources is not None and bias is not None:
        offset = cached(cache, f"offset {gain} {channels_last}", (bias, *noise_sources), x.dtype, make_offset)
    else:
        offset = make_offset()
    fits = offset is not None and torch.broadcast_shapes(x.shape, offset.shape) == x.shape  # x keeps its shape
    if batch != 1:
        scale = out_scale.to(x.dtype).reshape(batch, -1, 1, 1)
        if inplace and fits:
            # x * scale + offset in one pass over x instead of two.
            x, offset = torch.addcmul(offset, x, scale, out=x), None
        else:
            x = x.mul_(scale) if inplace else x * scale
    if offset is not None:
        x = x.add_(offset) if inplace and fits else x + offset
    # The gain is already folded in above, so the activation runs with gain 1.
    return bias_act(x, act=activation, gain=1.0, clamp=clamp, inplace=inplace)
