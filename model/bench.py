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
            seconds = _time(lambda: renderer.synthesize(ws, resolution=resolution, chunk=batch), repeats)
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
        lines.append(f"{row['resolution']:>10} {row['batch']:>6} {row['images_per_s']:>10.2f} {row['peak_rss_mb']:>9.1f}")
    lines.append(f"review strip 6 seeds x 7 steps at {result['preview_resolution']} px: "
                 f"{result['strip_seconds'] * 1000:.0f} ms")
    return "\n".join(lines)
