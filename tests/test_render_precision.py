"""Rendering devices and precisions: device resolution and its errors, bfloat16 parity with float32, float16 blocks.

No GPU is needed: the CUDA branches are checked through what decides them (the device string, the architecture's
float16 blocks), and where this machine has a GPU the missing-GPU error test is skipped.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import assert_clean_user_error
from model.benchmarks.bench import RandomShape, parse_random_shape, random_network, synthesis_flops
from core.errors import AtelierError
from model.network.render import (DEVICE_ENV, PRECISION_ENV, Renderer, pick_device, render_block_dtypes,
                          resolve_precision)

# The bound bfloat16 rendering is held to against float32 (uint8 pixels). Measured on this project's machine: the
# demo model over 64 seeds, max 6 levels, mean 0.29, PSNR 53 dB; the 256-px / 512-channel random network, max 3,
# PSNR 52–54 dB. The bound leaves room for other CPUs' summation orders, not for a different image.
BF16_MAX_ABS = 10
BF16_MIN_PSNR_DB = 45.0
BF16_MAX_MEAN_ABS = 0.6

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def test_device_strings(monkeypatch):
    assert pick_device("cpu") == CPU and pick_device(" CPU ") == CPU
    assert pick_device("auto") == (torch.device("cuda") if torch.cuda.is_available() else CPU)
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert pick_device(None) == CPU  # None: what `atelier app --device` passed on
    for bad in ("gpu", "cuda:x", "tpu", "cuda0"):
        with pytest.raises(AtelierError, match="auto, cpu, cuda or cuda:N"):
            pick_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the missing-GPU error cannot occur")
def test_cuda_without_a_gpu_is_a_clear_error():
    for asked in ("cuda", "cuda:1"):
        with pytest.raises(AtelierError, match=rf"--device {asked} was asked for, but .*--device cpu"):
            pick_device(asked)
    if torch.version.cuda is None:
        with pytest.raises(AtelierError, match="CPU-only build"):
            pick_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("command", [["generate", "--seeds", "0", "--outdir", "{tmp}"],
                                     ["bench", "render", "--batches", "1", "--repeats", "1"]])
def test_commands_refuse_cuda_without_a_gpu(tmp_path, reference_dir, command):
    from cli.main import app

    args = [part.replace("{tmp}", str(tmp_path)) for part in command]
    args += ["--network", str(reference_dir / "sg2ada_tiny32.pkl"), "--device", "cuda"]
    result = CliRunner().invoke(app, args)
    assert_clean_user_error(result, "--device cuda was asked for")
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_app_refuses_cuda_without_a_gpu_before_starting(monkeypatch):
    from cli.main import app

    monkeypatch.delenv(DEVICE_ENV, raising=False)
    result = CliRunner().invoke(app, ["app", "--headless", "--port", "1", "--device", "cuda"])
    assert_clean_user_error(result, "--device cuda was asked for")
    result = CliRunner().invoke(app, ["app", "--headless", "--port", "1", "--precision", "half"])
    assert_clean_user_error(result, "precision 'half'")


def test_precision_resolution():
    # auto: float16 only on CUDA and only for a network trained with float16 blocks; bfloat16 only on a CPU with it.
    assert resolve_precision("auto", CUDA, trained_fp16=True, bf16_cpu=True) == "float16"
    assert resolve_precision("auto", CUDA, trained_fp16=False, bf16_cpu=True) == "float32"
    assert resolve_precision("auto", CPU, trained_fp16=True, bf16_cpu=True) == "bfloat16"
    assert resolve_precision("auto", CPU, trained_fp16=True, bf16_cpu=False) == "float32"
    assert resolve_precision("bfloat16", CPU, trained_fp16=False, bf16_cpu=False) == "bfloat16"  # asked: emulated
    assert resolve_precision(" Float32 ", CUDA, trained_fp16=True) == "float32"
    with pytest.raises(AtelierError, match="float16 rendering needs a GPU"):
        resolve_precision("float16", CPU, trained_fp16=True)
    with pytest.raises(AtelierError, match="bfloat16 rendering is for CPUs"):
        resolve_precision("bfloat16", CUDA, trained_fp16=True)
    with pytest.raises(AtelierError, match="auto, float32, bfloat16, float16"):
        resolve_precision("half", CPU, trained_fp16=False)


def test_precision_default_reads_the_environment(monkeypatch):
    monkeypatch.delenv(PRECISION_ENV, raising=False)
    assert resolve_precision(None, CPU, trained_fp16=False, bf16_cpu=True) == "float32"  # the exact pixels
    monkeypatch.setenv(PRECISION_ENV, "auto")
    assert resolve_precision(None, CPU, trained_fp16=False, bf16_cpu=True) == "bfloat16"


def test_float16_blocks_are_the_architectures():
    G = random_network(RandomShape(64, 32, num_fp16_res=2)).module
    assert render_block_dtypes(G, "float16") == {32: torch.float16, 64: torch.float16}
    assert render_block_dtypes(G, "bfloat16") == {32: torch.bfloat16, 64: torch.bfloat16}
    assert render_block_dtypes(G, "float32") is None
    assert render_block_dtypes(random_network(RandomShape(64, 32, num_fp16_res=0)).module, "float16") is None


def _parity(network, seeds: list[int], psi: float) -> tuple[np.ndarray, np.ndarray]:
    exact = Renderer(network, device="cpu", precision="float32")
    fast = Renderer(network, device="cpu", precision="bfloat16")
    assert fast.precision == "bfloat16"
    ws = exact.ws_from_seeds(seeds, psi=psi)
    return exact.synthesize(ws), fast.synthesize(ws)


def _check_bound(exact: np.ndarray, fast: np.ndarray) -> None:
    diff = np.abs(exact.astype(int) - fast.astype(int))
    assert diff.max() > 0, "bfloat16 rendered exactly float32's pixels: it did not run in bfloat16"
    assert diff.max() <= BF16_MAX_ABS and diff.mean() <= BF16_MAX_MEAN_ABS, (diff.max(), diff.mean())
    assert psnr(exact, fast) >= BF16_MIN_PSNR_DB


def test_bfloat16_parity_on_the_demo_model():
    exact, fast = _parity(None, list(range(16)), psi=1.0)
    _check_bound(exact, fast)


def test_bfloat16_parity_on_a_256px_512_channel_network():
    network = random_network(parse_random_shape("random:256x512"))
    assert synthesis_flops(network.module, 1) > 25e9  # the real shape, not a toy
    exact, fast = _parity(network, [0, 1], psi=0.7)
    assert exact.shape == (2, 256, 256, 3) and 20 < exact.std() < 100  # drawn in range, not saturated
    _check_bound(exact, fast)


def test_a_single_image_renders_in_float32_in_bfloat16_mode():
    """One image takes the modulated-weight path, where bfloat16 is no faster: it keeps float32's exact pixels."""
    exact, fast = Renderer(None, device="cpu"), Renderer(None, device="cpu", precision="bfloat16")
    assert np.array_equal(exact.render_seeds([7]), fast.render_seeds([7]))
    assert not np.array_equal(exact.render_seeds([7, 8]), fast.render_seeds([7, 8]))


def test_renderers_of_different_precision_share_one_network(reference_dir):
    """The precision travels with each call, not as flags on the network, so a float32 renderer on the same loaded
    network still draws the exact pixels after a bfloat16 one rendered."""
    from model.network.checkpoint import load_network

    network = load_network(reference_dir / "sg2ada_tiny32.pkl")
    exact = Renderer(network, device="cpu")
    before = exact.render_seeds([3, 4])
    Renderer(network, device="cpu", precision="bfloat16").render_seeds([3, 4])
    assert np.array_equal(exact.render_seeds([3, 4]), before)
    assert exact.precision == "float32" and not any(b.cpu_bf16 for b in network.module.synthesis.blocks())


def test_cached_weights_follow_weights_changed_in_place():
    """Rendering keeps weight-derived tensors between calls (model.network.ops.WeightCache); weights changed in place,
    as an EMA update or load_state_dict changes them, must be rendered with their new values."""
    shape = RandomShape(16, 16, channel_base=256)
    network = random_network(shape)
    renderer = Renderer(network, device="cpu")
    before = renderer.render_seeds([1, 2])

    def scale(G) -> None:
        with torch.no_grad():
            for name, param in G.named_parameters():
                if name.endswith("weight"):
                    param.mul_(0.8)

    scale(network.module)
    after = renderer.render_seeds([1, 2])
    fresh = random_network(shape)
    scale(fresh.module)
    assert not np.array_equal(after, before)
    assert np.array_equal(after, Renderer(fresh, device="cpu").render_seeds([1, 2]))


def test_cached_offsets_follow_noise_strength_and_bias_changed_in_place():
    """The bias plus constant noise of each layer is cached too (model.network.ops.conv_offset); a noise strength or
    bias changed in place must be rendered with its new value, in a batch (where the cache is used) as alone."""
    shape = RandomShape(16, 16, channel_base=256)
    network = random_network(shape)
    renderer = Renderer(network, device="cpu")
    before = renderer.render_seeds([1, 2])

    def change(G) -> None:
        with torch.no_grad():
            for name, param in G.named_parameters():
                if name.endswith("noise_strength"):
                    param.fill_(0.5)
                elif name.startswith("synthesis") and name.endswith("conv1.bias"):
                    param.add_(0.3)

    change(network.module)
    after = renderer.render_seeds([1, 2])
    fresh = random_network(shape)
    change(fresh.module)
    assert not np.array_equal(after, before)
    assert np.array_equal(after, Renderer(fresh, device="cpu").render_seeds([1, 2]))
