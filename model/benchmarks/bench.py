"""Rendering benchmark: throughput per batch size at full and preview resolution, peak memory, strip latency."""
from __future__ import annotations

import re
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from core.errors import AtelierError
from model.network.render import Renderer, strip_ws, synthesis_flops

if TYPE_CHECKING:
    from model.network.checkpoint import LoadedNetwork


RANDOM_PREFIX = "random:"


@dataclass(frozen=True)
class RandomShape:
    """A generator of a real network's shape with random weights: what a benchmark needs, without the file."""
    resolution: int
    channel_max: int
    channel_base: int | None = None  # None: stylegan2-ada's `--cfg auto` (16384 below 512 px, 32768 from 512 px)
    num_fp16_res: int = 4  # `--cfg auto` trains the 4 highest resolutions in float16
    map_layers: int = 2

    @property
    def base(self) -> int:
        return self.channel_base or (32768 if self.resolution >= 512 else 16384)

    @property
    def name(self) -> str:
        return f"{RANDOM_PREFIX}{self.resolution}x{self.channel_max}"


def parse_random_shape(text: str) -> RandomShape:
    """'random:256x512' -> a 256-px generator with at most 512 channels (`--cfg auto`'s channel base)."""
    match = re.fullmatch(r"random:(\d+)x(\d+)", text.strip())
    if match is None:
        raise AtelierError(f"{text!r}: write a random network as random:RESOLUTIONxCHANNELS, e.g. random:256x512")
    resolution, channels = int(match.group(1)), int(match.group(2))
    if resolution < 8 or resolution & (resolution - 1) or not 8 <= channels <= 1024:
        raise AtelierError(f"{text!r}: the resolution must be a power of two from 8 and the channels 8 … 1024")
    return RandomShape(resolution, channels)


def random_network(shape: RandomShape, seed: int = 0) -> LoadedNetwork:
    """A generator of `shape` with random weights (torch's initialisation under a fixed seed), scaled so that it
    draws images in range rather than saturated colour: noise strengths small, toRGB weights reduced."""
    from model.network.checkpoint import LoadedNetwork
    from model.network.networks import Generator

    kwargs = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=shape.resolution, img_channels=3,
                  mapping_kwargs=dict(num_layers=shape.map_layers),
                  synthesis_kwargs=dict(channel_base=shape.base, channel_max=shape.channel_max,
                                        num_fp16_res=shape.num_fp16_res, conv_clamp=256))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        G = Generator(**kwargs)
        with torch.no_grad():
            for name, param in G.named_parameters():
                if name.endswith("noise_strength"):
                    param.fill_(0.05)
                elif name.endswith("torgb.weight"):
                    param.mul_(0.25)
    return LoadedNetwork(module=G.eval().requires_grad_(False), kind="G_ema", kwargs=kwargs, source=shape.name,
                         source_sha256="")


def bench_network(network: str | Path | None):
    """A network option of a benchmark: a file, the demo model (None), or random:RESxCH (see parse_random_shape)."""
    if network is not None and str(network).startswith(RANDOM_PREFIX):
        return random_network(parse_random_shape(str(network)))
    return network


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux: the process's peak resident memory so far.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _time(fn, repeats: int) -> float:
    fn()  # warm-up: allocator, kernel selection
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def preview_resolution(renderer: Renderer) -> int:
    """Half the model's size (a 4x cheaper last stage), at least 32 px, or full size for tiny models."""
    stages = renderer.stage_resolutions()
    candidates = [r for r in stages if 32 <= r < renderer.resolution]
    return candidates[-1] if candidates else renderer.resolution


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
LIMIT_BATCH = 8  # the batch the renderer's share of the limit is measured at (a strip's chunk is larger)


def heaviest_conv(G, max_resolution: int | None = None) -> tuple[int, int]:
    """(channels, resolution) of the 3×3 convolution that costs the network most: the shape its limit is measured on."""
    best, shape = -1.0, (0, 0)
    for block in G.synthesis.blocks():
        cost = block.out_channels ** 2 * block.resolution ** 2
        if cost > best:
            best, shape = cost, (block.out_channels, block.resolution)
        if max_resolution is not None and block.resolution >= max_resolution:
            break
    return shape


def conv_limit(channels: int, resolution: int, batch: int = LIMIT_BATCH, dtype: torch.dtype = torch.float32,
               device: torch.device | str = "cpu"):
    """The machine's limit as a callable: one dense 3×3 convolution [batch, C, R, R] -> [batch, C, R, R],
    channels-last on a CPU (the layout the renderer uses). Returns (run, FLOPs of one run)."""
    device = torch.device(device)
    x = torch.randn([batch, channels, resolution, resolution], device=device).to(dtype)
    if device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn([channels, channels, 3, 3], device=device).to(dtype)

    def run() -> None:
        with torch.inference_mode():
            torch.nn.functional.conv2d(x, w, padding=1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return run, 2.0 * batch * channels * channels * 9 * resolution * resolution


def best_interleaved(functions: list, repeats: int) -> list[float]:
    """Best time of each function over `repeats` rounds that run them in turn, after one warm-up each: on a shared
    machine every function then sees the same spells of load, so their ratio is steadier than separate runs'."""
    for fn in functions:
        fn()
    best = [float("inf")] * len(functions)
    for _ in range(repeats):
        for i, fn in enumerate(functions):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def renderer_share(renderer: Renderer, repeats: int = 3, resolution: int | None = None) -> dict:
    """The renderer's GFLOP/s at batch 8 and its share of the 3×3-conv limit measured in the same precision (and
    of the float32 limit, which bfloat16 or float16 may exceed), timed interleaved."""
    channels, conv_res = heaviest_conv(renderer.G, resolution)
    ws = renderer.ws_from_seeds(list(range(LIMIT_BATCH)), psi=0.7)

    def render() -> None:
        renderer.synthesize(ws, resolution=resolution, chunk=LIMIT_BATCH)
        if renderer.device.type == "cuda":
            torch.cuda.synchronize(renderer.device)

    conv, conv_flops = conv_limit(channels, conv_res, dtype=DTYPES[renderer.precision], device=renderer.device)
    conv32, _ = conv_limit(channels, conv_res, device=renderer.device)
    render_s, conv_s, conv32_s = best_interleaved([render, conv, conv32], repeats)
    achieved = synthesis_flops(renderer.G, LIMIT_BATCH, resolution) / render_s / 1e9
    limit, limit32 = conv_flops / conv_s / 1e9, conv_flops / conv32_s / 1e9
    return {"resolution": resolution or renderer.resolution, "batch": LIMIT_BATCH, "precision": renderer.precision,
            "conv_shape": [LIMIT_BATCH, channels, conv_res, conv_res],
            "gflop_per_image": round(synthesis_flops(renderer.G, 1, resolution) / 1e9, 3),
            "renderer_gflops": round(achieved, 3), "limit_gflops": round(limit, 1),
            "share": round(achieved / limit, 3), "limit_float32_gflops": round(limit32, 1),
            "share_of_float32_limit": round(achieved / limit32, 3)}


def bench_render(network: str | Path | None, batches: list[int], repeats: int = 3, device: str | None = "cpu",
                 precision: str | None = "float32") -> dict:
    renderer = Renderer(bench_network(network), device=device, precision=precision)
    rows = []
    seeds = list(range(max(batches)))
    ws_all = renderer.ws_from_seeds(seeds, psi=0.7)
    preview = preview_resolution(renderer)
    for resolution in sorted({renderer.resolution, preview}, reverse=True):
        for batch in batches:
            ws = ws_all[:batch]
            seconds = _time(lambda ws=ws, resolution=resolution, batch=batch:
                            renderer.synthesize(ws, resolution=resolution, chunk=batch), repeats)
            rows.append({"resolution": resolution, "batch": batch, "images_per_s": round(batch / seconds, 2),
                         "peak_rss_mb": round(peak_rss_mb(), 1)})
    direction = np.random.default_rng(0).standard_normal(renderer.w_dim)
    direction /= np.linalg.norm(direction)

    def strip() -> None:
        ws = renderer.ws_from_seeds(list(range(6)), psi=0.7)
        renderer.synthesize(strip_ws(ws, direction, np.linspace(-3, 3, 7)), resolution=preview, chunk=42)

    strip_seconds = _time(strip, repeats)
    return {"network": str(renderer.network.source), "device": str(renderer.device),
            "precision": renderer.precision, "threads": torch.get_num_threads(),
            "full_resolution": renderer.resolution, "preview_resolution": preview, "rows": rows,
            "strip_seconds": round(strip_seconds, 4), "limit": renderer_share(renderer, repeats),
            "peak_rss_mb": round(peak_rss_mb(), 1)}


def format_render_table(result: dict) -> str:
    lines = [f"network {result['network']} on {result['device']} ({result['threads']} threads), "
             f"{result['precision']}",
             f"{'resolution':>10} {'batch':>6} {'images/s':>10} {'peak MB':>9}"]
    for row in result["rows"]:
        lines.append(f"{row['resolution']:>10} {row['batch']:>6} {row['images_per_s']:>10.2f} "
                     f"{row['peak_rss_mb']:>9.1f}")
    lines.append(f"review strip 6 seeds x 7 steps at {result['preview_resolution']} px: "
                 f"{result['strip_seconds'] * 1000:.0f} ms")
    limit = result["limit"]
    shape = "×".join(str(v) for v in limit["conv_shape"])
    line = (f"limit: a 3×3 conv [{shape}] in {limit['precision']} runs at {limit['limit_gflops']:.0f} GFLOP/s; the "
            f"renderer at batch {limit['batch']} ({limit['gflop_per_image']:.2f} GFLOP per image) reaches "
            f"{limit['renderer_gflops']:.0f} GFLOP/s = {limit['share']:.0%} of it")
    if limit["precision"] != "float32":
        line += (f" ({limit['share_of_float32_limit']:.0%} of the float32 limit, "
                 f"{limit['limit_float32_gflops']:.0f} GFLOP/s)")
    lines.append(line)
    return "\n".join(lines)


# --- training ------------------------------------------------------------------------------------------------------

def bench_train(cfg, warmup_kimg: float = 0.25, measure_kimg: float = 1.0) -> dict:
    """Train a fresh network of config `cfg` in a temporary run folder and time it.

    The first `warmup_kimg` (allocator, first R1 step, thread pools) is left out; the rest is timed as the trainer
    itself times it (its log entries), so the figure includes data generation, every regulariser on its
    interval, augmentation and EMA: what a real run sees. Returns images/s, s/kimg and peak memory.
    """
    import dataclasses
    import tempfile

    from core.errors import AtelierError
    from model.training.train import train

    if warmup_kimg <= 0 or measure_kimg <= 0:
        raise AtelierError("--warmup and --kimg must both be above 0 (thousands of images)")
    run_cfg = dataclasses.replace(cfg, kimg=warmup_kimg + measure_kimg, snap_kimg=warmup_kimg, snap_minutes=1e9,
                                  keep_snapshots=1, grid_seeds=tuple(range(4)))
    entries: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="atelier-bench-train-") as tmp:
        started = time.perf_counter()
        train(run_cfg, Path(tmp), progress=False, on_log=entries.append)
        wall = time.perf_counter() - started
    if len(entries) < 2:
        raise AtelierError("the run was too short to time: raise --kimg above one batch")
    timed = entries[1:]  # entries[0] closes the warm-up
    images = (timed[-1]["kimg"] - entries[0]["kimg"]) * 1000
    seconds = 0.0
    previous = entries[0]["kimg"]
    for entry in timed:
        seconds += (entry["kimg"] - previous) * entry["sec_per_kimg"]
        previous = entry["kimg"]
    from model.network.render import pick_device

    device = pick_device(cfg.device)  # the trainer's own choice
    on_gpu = device.type == "cuda"
    result = {"device": torch.cuda.get_device_name(device) if on_gpu else "cpu",
              "threads": torch.get_num_threads(), "resolution": cfg.resolution, "batch": cfg.batch,
              "channel_base": cfg.channel_base, "channel_max": cfg.channel_max, "map_layers": cfg.map_layers,
              "fp16_res": cfg.num_fp16_res, "bf16_res": cfg.cpu_bf16_res, "augment": cfg.augment,
              "gamma": cfg.gamma, "pl_weight": cfg.pl_weight,
              "timed_images": int(round(images)),
              "images_per_s": round(images / seconds, 2), "sec_per_kimg": round(seconds / images * 1000, 2),
              "wall_seconds": round(wall, 1), "peak_rss_mb": round(peak_rss_mb(), 1)}
    if "pl_penalty" in timed[-1]:  # evidence that the regulariser ran inside the timed steps
        result["pl_penalty"] = timed[-1]["pl_penalty"]
    if on_gpu:
        result["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
    return result


def format_train_table(result: dict) -> str:
    memory = f"peak RSS {result['peak_rss_mb']:.0f} MB"
    if "peak_cuda_mb" in result:
        memory += f", peak GPU {result['peak_cuda_mb']:.0f} MB"
    return (f"training on {result['device']} ({result['threads']} threads): {result['resolution']} px, batch "
            f"{result['batch']}, channels min({result['channel_base']} / r, {result['channel_max']}), "
            f"{result['map_layers']} mapping layers, augment {result['augment']}, R1 γ {result['gamma']:g}"
            f"{', path-length weight %g' % result['pl_weight'] if result['pl_weight'] else ''}"
            f"{', bfloat16 in the top %d resolutions' % result['bf16_res'] if result['bf16_res'] else ''}\n"
            f"{result['images_per_s']:.2f} images/s, {result['sec_per_kimg']:.1f} s per kimg "
            f"(timed over {result['timed_images']} images after warm-up); {memory}")
