"""`atelier bench gpu` (and scripts/gpu-check.sh): one prepared check for a machine with a GPU.

On the demo model and on a 256-px / 512-channel network with random weights (stylegan2-ada's `--cfg auto` shape,
float16 in its 4 highest resolutions), it renders the same latents on the CPU in float32 (the reference) and on
CUDA in float32 and in float16, and reports how far the GPU's pixels are from the reference (max and mean absolute
difference in uint8 levels, PSNR) against the bound bfloat16 is held to on CPUs, then the GPU's throughput (images/s
at batch 8 and 32, a 6 × 7 review strip, and the share of its own 3×3-convolution limit). Everything goes into one
JSON file. Where there is no GPU it says so, writes that into the file, and stops.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from model.benchmarks.bench import parse_random_shape, random_network, renderer_share
from core.files import atomic_write_bytes
from model.network.render import Renderer, cuda_missing_reason, strip_ws

# The same bound as bfloat16 on a CPU (tests/test_render_precision.py): uint8 levels and dB against CPU float32.
MAX_ABS = 10
MIN_PSNR_DB = 45.0
NETWORKS = ("demo", "random:256x512")
PARITY_SEEDS = {"demo": 16, "random:256x512": 4}


def parity(reference: np.ndarray, images: np.ndarray) -> dict:
    """How far `images` are from `reference` (uint8 arrays of one shape), and whether that is within the bound."""
    diff = np.abs(reference.astype(np.int64) - images.astype(np.int64))
    mse = float((diff.astype(np.float64) ** 2).mean())
    psnr = float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)
    return {"max_abs": int(diff.max()), "mean_abs": round(float(diff.mean()), 4),
            "psnr_db": None if mse == 0 else round(psnr, 2),  # None: identical (JSON has no infinity)
            "within_bound": bool(diff.max() <= MAX_ABS and psnr >= MIN_PSNR_DB)}


def _network(name: str):
    return None if name == "demo" else random_network(parse_random_shape(name))


def _throughput(renderer: Renderer, batch: int, repeats: int = 5) -> float:
    ws = renderer.ws_from_seeds(list(range(batch)), psi=0.7)
    renderer.synthesize(ws, chunk=batch)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        renderer.synthesize(ws, chunk=batch)  # ends in a copy to the CPU, so the GPU has finished
        best = min(best, time.perf_counter() - start)
    return round(batch / best, 2)


def _strip_seconds(renderer: Renderer) -> float:
    direction = np.random.default_rng(0).standard_normal(renderer.w_dim)
    direction /= np.linalg.norm(direction)
    ws = strip_ws(renderer.ws_from_seeds(list(range(6)), psi=0.7), direction, np.linspace(-3, 3, 7))
    renderer.synthesize(ws, chunk=42)
    start = time.perf_counter()
    renderer.synthesize(ws, chunk=42)
    return round(time.perf_counter() - start, 4)


def check_network(name: str, device: torch.device, repeats: int = 5) -> dict:
    """One network's parity and speed on `device` (CUDA: float32 and float16; the same code on a CPU checks
    float32 and bfloat16, which is how it is tested without a GPU)."""
    network = _network(name)
    cpu = Renderer(network, device="cpu", precision="float32")
    ws = cpu.ws_from_seeds(list(range(PARITY_SEEDS.get(name, 4))), psi=0.7)
    reference = cpu.synthesize(ws)
    out: dict = {"network": name, "resolution": cpu.resolution,
                 "fp16_blocks": [b.resolution for b in cpu.G.synthesis.blocks() if b.use_fp16], "precisions": {}}
    for precision in ("float32", "float16" if device.type == "cuda" else "bfloat16"):
        # A network of its own: a renderer moves its network to its device.
        gpu = Renderer(_network(name), device=str(device), precision=precision)
        images = gpu.synthesize(ws.to(device))
        out["precisions"][precision] = {
            "computed_in": gpu.precision,  # float32 where the network has no float16 blocks
            "parity_vs_cpu_float32": parity(reference, images),
            "images_per_s": {f"batch_{b}": _throughput(gpu, b, repeats) for b in (8, 32)},
            "strip_6x7_s": _strip_seconds(gpu),
            "limit": renderer_share(gpu, repeats=repeats),
        }
    return out


def run_gpu_check(out: Path | None) -> dict:
    """The whole check (see the module's docstring); writes the JSON to `out` (a file, or a folder for
    gpu-check.json) when given. Returns what it wrote."""
    result: dict = {"torch": torch.__version__, "cuda_build": torch.version.cuda, "host": platform.node(),
                    "cpu_threads": torch.get_num_threads(), "bound": {"max_abs": MAX_ABS, "min_psnr_db": MIN_PSNR_DB}}
    if not torch.cuda.is_available():
        result.update(gpu=None, ok=None, message=f"no GPU here: {cuda_missing_reason()}. Nothing was checked.")
    else:
        device = torch.device("cuda", 0)
        result["gpu"] = torch.cuda.get_device_name(device)
        result["tf32_convolutions"] = bool(torch.backends.cudnn.allow_tf32)
        started = time.perf_counter()
        result["networks"] = [check_network(name, device) for name in NETWORKS]
        result["seconds"] = round(time.perf_counter() - started, 1)
        result["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)
        result["ok"] = all(p["parity_vs_cpu_float32"]["within_bound"]
                           for n in result["networks"] for p in n["precisions"].values())
        result["message"] = ("GPU rendering matches the CPU within the bound" if result["ok"] else
                             "GPU rendering differs from the CPU by more than the bound: see parity_vs_cpu_float32")
    if out is not None:
        path = Path(out)
        if path.is_dir():
            path = path / "gpu-check.json"
        atomic_write_bytes(path, (json.dumps(result, indent=2) + "\n").encode())
        result["written_to"] = str(path)
    return result


def format_gpu_check(result: dict) -> str:
    lines = [result["message"]]
    for net in result.get("networks", []):
        for precision, figures in net["precisions"].items():
            p, speed = figures["parity_vs_cpu_float32"], figures["images_per_s"]
            lines.append(f"{net['network']} ({net['resolution']} px) {precision}: max {p['max_abs']} levels, mean "
                         f"{p['mean_abs']:.3f}, PSNR {p['psnr_db']} dB; {speed['batch_8']} images/s at batch 8, "
                         f"{speed['batch_32']} at 32; strip {figures['strip_6x7_s'] * 1000:.0f} ms; "
                         f"{figures['limit']['share']:.0%} of the GPU's conv limit")
    if "written_to" in result:
        lines.append(f"wrote {result['written_to']}")
    return "\n".join(lines)
