"""The prepared GPU check: its parity measure, its answer on a machine without a GPU, and its per-network check run
on the CPU (float32 and bfloat16 there), so the code a GPU session runs has run before it gets there."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from model.benchmarks.gpu_check import MAX_ABS, check_network, parity

ROOT = Path(__file__).resolve().parent.parent


def test_parity_measure():
    a = np.full((2, 4, 4, 3), 100, np.uint8)
    assert parity(a, a) == {"max_abs": 0, "mean_abs": 0.0, "psnr_db": None, "within_bound": True}
    b = a.copy()
    b[0, 0, 0, 0] = 100 + MAX_ABS + 1
    far = parity(a, b)
    assert far["max_abs"] == MAX_ABS + 1 and not far["within_bound"] and far["psnr_db"] > 45
    c = a + 3  # every pixel 3 levels off: within the max, PSNR 38.6 dB is not
    assert parity(a, c)["max_abs"] == 3 and not parity(a, c)["within_bound"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_script_says_there_is_no_gpu(tmp_path):
    result = subprocess.run([str(ROOT / "scripts" / "gpu-check.sh"), str(tmp_path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("no GPU here:") and "Nothing was checked" in result.stdout
    written = json.loads((tmp_path / "gpu-check.json").read_text())
    assert written["gpu"] is None and written["ok"] is None and "no GPU here" in written["message"]


def test_network_check_runs_on_the_cpu():
    result = check_network("random:32x32", torch.device("cpu"), repeats=1)
    assert result["resolution"] == 32 and set(result["precisions"]) == {"float32", "bfloat16"}
    exact, fast = result["precisions"]["float32"], result["precisions"]["bfloat16"]
    assert exact["parity_vs_cpu_float32"]["max_abs"] == 0  # the same device and precision as the reference
    assert fast["computed_in"] == "bfloat16" and fast["parity_vs_cpu_float32"]["within_bound"]
    assert fast["parity_vs_cpu_float32"]["max_abs"] > 0
    for figures in (exact, fast):
        assert figures["images_per_s"]["batch_8"] > 0 and figures["strip_6x7_s"] > 0
        assert 0 < figures["limit"]["share"] and figures["limit"]["limit_gflops"] > 0
