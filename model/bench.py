"""Rendering benchmark: throughput per batch size at full and preview resolution, peak memory, strip latency."""
from __future__ import annotations

import resource
import time
from pathlib import Path

import numpy as np
import torch

from model.render import Renderer, strip_ws


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


def bench_render(network: str | Path | None, batches: list[int], repeats: int = 3, device: str = "cpu") -> dict:
    renderer = Renderer(network, device=device)
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
            "threads": torch.get_num_threads(), "full_resolution": renderer.resolution,
            "preview_resolution": preview, "rows": rows, "strip_seconds": round(strip_seconds, 4),
            "peak_rss_mb": round(peak_rss_mb(), 1)}


def format_render_table(result: dict) -> str:
    lines = [f"network {result['network']} on {result['device']} ({result['threads']} threads)",
             f"{'resolution':>10} {'batch':>6} {'images/s':>10} {'peak MB':>9}"]
    for row in result["rows"]:
        lines.append(f"{row['resolution']:>10} {row['batch']:>6} {row['images_per_s']:>10.2f} "
                     f"{row['peak_rss_mb']:>9.1f}")
    lines.append(f"review strip 6 seeds x 7 steps at {result['preview_resolution']} px: "
                 f"{result['strip_seconds'] * 1000:.0f} ms")
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

    from model.errors import AtelierError
    from model.train import train

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
    from model.render import pick_device

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
