"""Rendering: seeds -> z -> w -> (per-layer edits) -> images, batched, on CPU or CUDA.

Seeds follow the original tooling exactly (``numpy.random.RandomState(seed).randn(z_dim)``), so a seed a team
used in its old notebooks shows the same look here.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import io
import os
import re
import sys
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from model.network.checkpoint import LoadedNetwork, load_network
from core.errors import AtelierError
from core.files import atomic_write_bytes
from core.settings import default_model_path

MAX_SEED = 2 ** 32 - 1
DEFAULT_CHUNK = 32


def check_seed(seed: object) -> int:
    """A seed is an integer 0 … 2**32-1 (what numpy's RandomState accepts); anything else is a clear error."""
    if isinstance(seed, bool) or seed is None:
        raise AtelierError(f"seed must be a whole number from 0 to {MAX_SEED}, got {seed!r}")
    if isinstance(seed, str):
        text = seed.strip()
        if not re.fullmatch(r"\d+", text):
            raise AtelierError(f"seed must be a whole number from 0 to {MAX_SEED}, got {seed!r}")
        seed = int(text)
    if isinstance(seed, (np.integer,)):
        seed = int(seed)
    if not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise AtelierError(f"seed must be a whole number from 0 to {MAX_SEED}, got {seed!r}")
    return seed


MAX_SEEDS = 100_000  # per command: more would take days to render and the list alone gigabytes


def parse_seeds(text: str) -> list[int]:
    """'0-7,12,20-22' -> [0..7, 12, 20, 21, 22] (inclusive ranges, like stylegan2-ada's --seeds)."""
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        match = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if match:
            lo, hi = check_seed(match.group(1)), check_seed(match.group(2))
            if hi < lo:
                raise AtelierError(f"seed range '{part}' runs backwards; write it as {hi}-{lo}")
            if hi - lo + 1 > MAX_SEEDS:
                raise AtelierError(f"seed range '{part}' has more than {MAX_SEEDS:,} seeds; use a smaller range")
            seeds.extend(range(lo, hi + 1))
        else:
            seeds.append(check_seed(part))
        if len(seeds) > MAX_SEEDS:  # many ranges together must not get round the limit on one
            raise AtelierError(f"more than {MAX_SEEDS:,} seeds in all; ask for fewer at once")
    if not seeds:
        raise AtelierError("no seeds given; write them like '0-7' or '3,14,15'")
    return seeds


def seed_to_z(seed: int, z_dim: int) -> np.ndarray:
    return np.random.RandomState(check_seed(seed)).randn(z_dim)


def seeds_to_z(seeds: Sequence[int], z_dim: int) -> np.ndarray:
    return np.stack([seed_to_z(s, z_dim) for s in seeds]) if len(seeds) else np.zeros((0, z_dim))


@dataclass(frozen=True)
class Edit:
    """Move ws rows [layer_start, layer_stop) along `direction` (a w_dim vector) by `strength` units.

    Strength is in the direction's own units: pass ``value_in_sigma * sigma`` with a unit vector for σ steps.
    `layer_stop=None` means through the last row.
    """
    direction: np.ndarray
    strength: float
    layer_start: int = 0
    layer_stop: int | None = None


def apply_edits(ws: torch.Tensor, edits: Iterable[Edit]) -> torch.Tensor:
    """Return ws [N, L, w_dim] with every edit added to its rows (the input is not modified)."""
    edits = list(edits)
    if not edits:
        return ws
    ws = ws.clone()
    num_ws = ws.shape[1]
    for edit in edits:
        stop = num_ws if edit.layer_stop is None else edit.layer_stop
        if not 0 <= edit.layer_start < stop <= num_ws:
            raise AtelierError(f"layer range {edit.layer_start}–{stop} is outside this model's {num_ws} ws rows "
                               f"(valid: start 0…{num_ws - 1}, stop up to {num_ws})")
        direction = torch.as_tensor(np.asarray(edit.direction), dtype=ws.dtype, device=ws.device).reshape(-1)
        if direction.shape[0] != ws.shape[2]:
            raise AtelierError(f"direction has {direction.shape[0]} values but this model's w has {ws.shape[2]}")
        ws[:, edit.layer_start:stop] += float(edit.strength) * direction
    return ws


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] in about [-1, 1] -> uint8 [N, H, W, C], rounding exactly like the original tooling."""
    return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


DEVICE_ENV = "ATELIER_DEVICE"  # how `atelier app --device` reaches the Streamlit process
PRECISION_ENV = "ATELIER_PRECISION"
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs with bfloat16 arithmetic in hardware


def cuda_missing_reason() -> str:
    """Why CUDA cannot be used here, in words (the PyTorch build, or no GPU visible)."""
    if torch.version.cuda is None:
        return (f"this PyTorch ({torch.__version__}) is a CPU-only build; install a CUDA build of torch "
                f"(https://pytorch.org/get-started/locally/) to use a GPU")
    return "PyTorch has CUDA support but sees no GPU (check nvidia-smi and CUDA_VISIBLE_DEVICES)"


def pick_device(device: str | None = "auto") -> torch.device:
    """auto | cpu | cuda | cuda:N -> a torch device; None reads ATELIER_DEVICE (default auto).

    Asking for CUDA where there is none is an error that says why, never a silent fallback to the CPU.
    """
    text = (device if device is not None else os.environ.get(DEVICE_ENV, "auto")).strip().lower() or "auto"
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if match is None:
        raise AtelierError(f"device {device!r} is not one Atelier knows: use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise AtelierError(f"--device {text} was asked for, but {cuda_missing_reason()}; or use --device cpu")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise AtelierError(f"--device {text}: there is no GPU {index}; this machine has "
                           f"{torch.cuda.device_count()} (cuda:0 … cuda:{torch.cuda.device_count() - 1})")
    return torch.device("cuda", index)


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cpu_has_bfloat16() -> bool:
    """Whether the CPU computes bfloat16 in hardware (AVX-512 BF16 or AMX). Elsewhere oneDNN emulates it, which is
    slower than float32, so `auto` precision never chooses it there."""
    return any(flag in cpu_flags() for flag in CPU_BF16_FLAGS)


def check_precision(precision: str) -> str:
    text = str(precision).strip().lower()
    if text not in PRECISIONS:
        raise AtelierError(f"precision {precision!r} is not one Atelier knows: use {', '.join(PRECISIONS)}")
    return text


def resolve_precision(precision: str | None, device: torch.device, trained_fp16: bool,
                      bf16_cpu: bool | None = None) -> str:
    """The compute precision a renderer uses: float32, bfloat16 (CPU) or float16 (CUDA).

    `auto`: float16 on CUDA where the network was trained with float16 blocks (as the original tooling renders
    it), bfloat16 on a CPU with bfloat16 in hardware, float32 otherwise. None reads ATELIER_PRECISION (default
    float32: the exact pixels). An explicit choice the device cannot honour is an error.
    """
    text = check_precision(precision if precision is not None else os.environ.get(PRECISION_ENV, "float32"))
    bf16_cpu = cpu_has_bfloat16() if bf16_cpu is None else bf16_cpu
    if text == "auto":
        if device.type == "cuda":
            return "float16" if trained_fp16 else "float32"
        return "bfloat16" if device.type == "cpu" and bf16_cpu else "float32"
    if text == "float16" and device.type != "cuda":
        raise AtelierError("float16 rendering needs a GPU (--device cuda); on a CPU use bfloat16 or float32")
    if text == "bfloat16" and device.type != "cpu":
        raise AtelierError("bfloat16 rendering is for CPUs; on a GPU use float16 (or float32)")
    return text


# bfloat16 on a CPU: only the blocks at or above this resolution. The small early blocks cost little (a 16-px
# block of a 256-px network is 1/16 of a 64-px one) and are where every later pixel starts, so they stay float32.
BF16_MIN_RESOLUTION = 32


def render_block_dtypes(G: torch.nn.Module, precision: str) -> dict[int, torch.dtype] | None:
    """Per-resolution compute dtypes for :meth:`SynthesisNetwork.forward`; None means float32 everywhere."""
    blocks = G.synthesis.blocks()
    if precision == "float16":  # exactly the blocks the architecture trained in float16 (num_fp16_res)
        chosen = {b.resolution: torch.float16 for b in blocks if b.use_fp16}
    elif precision == "bfloat16":
        lowest = min(BF16_MIN_RESOLUTION, G.img_resolution)
        chosen = {b.resolution: torch.bfloat16 for b in blocks if b.resolution >= lowest}
    else:
        chosen = {}
    return chosen or None


def synthesis_flops(G, batch: int, max_resolution: int | None = None) -> float:
    """Multiply-adds × 2 of the synthesis network for `batch` images, counted from its shapes: every 3×3
    convolution (the upsampling one computes at its input's size, as a transposed convolution does), the 4×4 FIR
    filter after it, and toRGB. Style affines and the image's own upsampling are left out (well under 1 %)."""
    total = 0.0
    for block in G.synthesis.blocks():
        r, out = block.resolution, block.out_channels
        if block.in_channels:
            total += 2 * block.in_channels * out * 9 * (r // 2) ** 2  # transposed 3×3 conv, stride 2
            total += 2 * 16 * out * (r + 1) ** 2  # its FIR smoothing, depthwise
        total += 2 * out * out * 9 * r * r  # conv1
        total += 2 * out * block.img_channels * r * r  # toRGB (1×1)
        if max_resolution is not None and r >= max_resolution:
            break
    return total * batch


# glibc's malloc gives every block above 32 MiB (the most M_MMAP_THRESHOLD may be raised to) straight back to the
# kernel when it is freed, so each large activation of a high-resolution block is faulted in again, page by page, at
# every layer: on a 2-core machine a fresh [8, 64, 256, 256] product took 178 ms, the same product into an existing
# tensor 36 ms, and a 256-px / 512-channel network at batch 8 reached 72 % of `atelier bench render`'s 3×3-conv limit
# instead of 85 %. Serving large blocks from the heap and keeping freed memory there lets the next layer reuse it;
# the process keeps what it freed instead of returning it. Peak memory measured 3–24 % above before (a batch size's
# freed blocks do not always fit the next size's: `atelier bench render` 1, 8, 32 at 256 px, float32: 3.2 GB, was 2.6).
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt parameters (malloc.h)
KEEP_FREED_BYTES = 2 ** 31 - 1  # the most mallopt takes; more free memory than this at the heap's top is returned


@lru_cache(maxsize=1)
def reuse_freed_memory() -> bool:
    """Let the process reuse freed large blocks instead of mapping fresh pages for each (glibc only; True when it
    took). Another thread's arena still maps each block over 64 MiB (its heaps' size) afresh."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # another C library, or none found: keep its own policy
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # musl's mallopt does nothing and answers 0; glibc answers 1 for each setting it took.
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES))


class Renderer:
    """A generator loaded once, with batched mapping and synthesis helpers. Thread-safe for rendering."""

    def __init__(self, network: LoadedNetwork | str | Path | None = None, device: str | None = "auto",
                 precision: str | None = "float32"):
        if network is None:
            network = default_model_path()
        if not isinstance(network, LoadedNetwork):
            path = Path(network)
            if not path.exists() and path == default_model_path():
                raise AtelierError(f"the default model {path} is missing. Reinstall Atelier, or pass --network "
                                   f"with a .pkl or .safetensors generator.")
            network = load_network(path)
        if network.kind == "D":
            raise AtelierError("that is a discriminator; rendering needs a generator (G_ema or G)")
        self.network = network
        self.device = pick_device(device)
        if self.device.type == "cpu":
            reuse_freed_memory()
        self.G = network.module.to(self.device).eval()
        trained_fp16 = any(block.use_fp16 for block in self.G.synthesis.blocks())
        self.precision = resolve_precision(precision, self.device, trained_fp16)
        self._block_dtypes = render_block_dtypes(self.G, self.precision)
        if self._block_dtypes is None:
            self.precision = "float32"  # e.g. float16 asked for a network without float16 blocks: say what it is
        self._lock = threading.Lock()
        self.fingerprint = network.fingerprint

    @property
    def picture_identity(self) -> str:
        """What a cached picture of this generator depends on besides what was asked: its weights and, unless
        float32, the precision it renders in (bfloat16 pixels differ from float32 ones by a few levels)."""
        return self.fingerprint if self.precision == "float32" else f"{self.fingerprint}-{self.precision}"

    # Architecture facts pages and commands need.
    @property
    def z_dim(self) -> int:
        return self.G.z_dim

    @property
    def w_dim(self) -> int:
        return self.G.w_dim

    @property
    def c_dim(self) -> int:
        return self.G.c_dim

    @property
    def num_ws(self) -> int:
        return self.G.num_ws

    @property
    def resolution(self) -> int:
        return self.G.img_resolution

    @property
    def w_avg(self) -> np.ndarray:
        return self.G.mapping.w_avg.detach().cpu().numpy()

    def stage_resolutions(self) -> list[int]:
        return list(self.G.synthesis.block_resolutions)

    def class_vector(self, class_index: int | None, count: int) -> torch.Tensor:
        if self.c_dim == 0:
            if class_index is not None:
                raise AtelierError("this model is not class-conditional; leave the class empty")
            return torch.zeros([count, 0], device=self.device)
        if class_index is None:
            raise AtelierError(f"this model is class-conditional: choose a class from 0 to {self.c_dim - 1}")
        if not 0 <= int(class_index) < self.c_dim:
            raise AtelierError(f"class {class_index} is out of range: choose 0 to {self.c_dim - 1}")
        c = torch.zeros([count, self.c_dim], device=self.device)
        c[:, int(class_index)] = 1
        return c

    @torch.inference_mode()
    def ws_from_z(self, z: np.ndarray | torch.Tensor, psi: float = 1.0, cutoff: int | None = None,
                  class_index: int | None = None) -> torch.Tensor:
        z = torch.as_tensor(np.asarray(z), dtype=torch.float32, device=self.device).reshape(-1, self.z_dim)
        c = self.class_vector(class_index, z.shape[0])
        out = [self.G.mapping(z[i:i + 256], c[i:i + 256], truncation_psi=psi, truncation_cutoff=cutoff,
                              update_w_avg=False) for i in range(0, z.shape[0], 256)]
        return torch.cat(out) if out else torch.zeros([0, self.num_ws, self.w_dim], device=self.device)

    def ws_from_seeds(self, seeds: Sequence[int], psi: float = 1.0, cutoff: int | None = None,
                      class_index: int | None = None) -> torch.Tensor:
        return self.ws_from_z(seeds_to_z([check_seed(s) for s in seeds], self.z_dim), psi, cutoff, class_index)

    def _dtypes_for(self, batch: int) -> dict[int, torch.dtype] | None:
        """A single image renders in float32 on a CPU even in bfloat16 mode: it takes the modulated-weight path
        (ops.modulated_conv2d), where bfloat16 measured no faster (the demo model: 0.4×), so it keeps exact pixels."""
        if batch == 1 and self.precision == "bfloat16":
            return None
        return self._block_dtypes

    @torch.inference_mode()
    def synthesize(self, ws: torch.Tensor, edits: Iterable[Edit] = (), noise_mode: str = "const",
                   resolution: int | None = None, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
        """ws [N, L, w_dim] (+ edits) -> uint8 [N, H, W, 3]. `resolution` below the model's gives a cheap preview."""
        if resolution is not None and resolution not in self.stage_resolutions():
            raise AtelierError(f"preview resolution {resolution} is not one of this model's stages "
                               f"{self.stage_resolutions()}")
        ws = apply_edits(torch.as_tensor(ws, device=self.device, dtype=torch.float32), edits)
        images = []
        with self._lock:  # one render at a time per model: threads would only fight over the same cores
            for start in range(0, ws.shape[0], chunk):
                part = ws[start:start + chunk]
                img = self.G.synthesis(part, noise_mode=noise_mode, force_fp32=True, max_resolution=resolution,
                                       block_dtypes=self._dtypes_for(part.shape[0]))
                images.append(to_uint8(img))
        if not images:
            res = resolution or self.resolution
            return np.zeros((0, res, res, 3), dtype=np.uint8)
        return np.concatenate(images)

    def render_seeds(self, seeds: Sequence[int], psi: float = 1.0, cutoff: int | None = None,
                     class_index: int | None = None, edits: Iterable[Edit] = (), noise_mode: str = "const",
                     resolution: int | None = None) -> np.ndarray:
        ws = self.ws_from_seeds(seeds, psi, cutoff, class_index)
        return self.synthesize(ws, edits, noise_mode=noise_mode, resolution=resolution)


def image_grid(images: np.ndarray, columns: int, pad: int = 0, background: int = 255) -> np.ndarray:
    """uint8 [N, H, W, C] -> one grid image, row-major."""
    n, h, w, c = images.shape
    rows = max(1, -(-n // columns))
    grid = np.full((rows * h + (rows - 1) * pad, columns * w + (columns - 1) * pad, c), background, np.uint8)
    for idx in range(n):
        r, col = divmod(idx, columns)
        grid[r * (h + pad): r * (h + pad) + h, col * (w + pad): col * (w + pad) + w] = images[idx]
    return grid


# DejaVu Sans draws σ and − (U+2212); Pillow's built-in font, the fallback, draws neither.
FONT_FILES = ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
              "/usr/share/fonts/dejavu/DejaVuSans.ttf", "/Library/Fonts/DejaVuSans.ttf")


@lru_cache(maxsize=8)
def label_font(size: int):
    from PIL import ImageFont

    for name in FONT_FILES:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


@lru_cache(maxsize=64)
def can_draw(font, text: str) -> bool:
    """Whether `font` has a glyph for every character of `text`: a missing glyph draws the same box as U+E000, a
    private-use character no text font defines."""
    from PIL import Image, ImageDraw

    size = int(getattr(font, "size", 16))  # Pillow built without FreeType falls back to a bitmap font without one

    def drawn(ch: str) -> bytes:
        canvas = Image.new("L", (4 * size + 8, 2 * size + 8))
        ImageDraw.Draw(canvas).text((4, 4), ch, font=font, fill=255)
        return canvas.tobytes()

    missing = drawn("\ue000")
    return all(drawn(ch) != missing for ch in set(text) if not ch.isspace())


def sigma_label(value: float, font) -> str:
    """A step in σ units for a picture: "+1.5σ", "−3σ", "0σ"; "-3 sd" where the font cannot draw σ or −."""
    text = "0σ" if abs(value) < 1e-9 else f"{value:+g}σ".replace("-", "−")
    return text if can_draw(font, text) else text.replace("σ", " sd").replace("−", "-")


def save_png(array: np.ndarray, path: str | Path) -> Path:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def configure_threads() -> None:
    """Use every core for intra-op parallelism unless the user already chose (OMP_NUM_THREADS)."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, os.cpu_count() or 1))


def strip_ws(ws: torch.Tensor, direction: np.ndarray, offsets: Sequence[float], layer_start: int = 0,
             layer_stop: int | None = None, centred: bool = False) -> torch.Tensor:
    """Review-strip latents: for each seed's ws [S, L, D] and each offset t, ws + t * direction on the given rows.

    Returns [S * T, L, D] in seed-major order (row s holds its T steps side by side). `centred` first removes
    each seed's own projection on the direction, so step 0 is the same "neutral" point for every seed.
    """
    d = torch.as_tensor(np.asarray(direction), dtype=ws.dtype, device=ws.device).reshape(-1)
    d_unit = d / d.norm().clamp_min(1e-12)
    stop = ws.shape[1] if layer_stop is None else layer_stop
    if not 0 <= layer_start < stop <= ws.shape[1]:
        raise AtelierError(f"layer range {layer_start}–{stop} is outside this model's {ws.shape[1]} ws rows")
    base = ws.clone()
    if centred:
        proj = (base[:, layer_start:stop] @ d_unit).unsqueeze(-1)  # [S, rows, 1]
        base[:, layer_start:stop] -= proj * d_unit
    t = torch.as_tensor(list(offsets), dtype=ws.dtype, device=ws.device)
    out = base.unsqueeze(1).repeat(1, len(t), 1, 1)  # [S, T, L, D]
    out[:, :, layer_start:stop] += t.reshape(1, -1, 1, 1) * d
    return out.reshape(-1, ws.shape[1], ws.shape[2])
