"""Training on tiny configurations: runs, resumes exactly, fine-tunes, conditions, DDP, and refuses bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from model.network.checkpoint import load_network
from core.errors import AtelierError
from model.training.config import TrainConfig
from model.training.snapshots import snapshot_paths
from model.training.train import train

REPO = Path(__file__).resolve().parents[1]


def tiny(**overrides) -> TrainConfig:
    base = dict(resolution=16, batch=8, channel_base=128, channel_max=16, z_dim=16, w_dim=16, r1_interval=2,
                grid_seeds=(0, 1, 2, 3), threads=1, ada_interval=2, ada_kimg=0.5, snap_kimg=1, keep_snapshots=10,
                quality_samples=0)
    base.update(overrides)
    return TrainConfig(**base)


def _weights(path: Path, key: str) -> dict[str, torch.Tensor]:
    return load_network(path, key).module.state_dict()


def test_training_writes_snapshot_grid_and_log(tmp_path):
    entries = []
    snap = train(tiny(kimg=0.048, snap_kimg=0.024), tmp_path / "run", progress=False, on_log=entries.append)
    run = tmp_path / "run"
    assert snap.exists() and list(run.glob("samples-*.png")) and (run / "config.json").exists()
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [e["kimg"] for e in log] == [0.024, 0.048] and log == entries
    for key in ("loss_G", "loss_D", "r1", "augment_p", "sec_per_kimg", "images_per_s"):
        assert key in log[-1]
    assert np.isfinite(log[-1]["loss_G"]) and np.isfinite(log[-1]["loss_D"])
    # G_ema, G and D all saved; G_ema differs from G (it is an average).
    fingerprints = {k: load_network(snap, k).fingerprint for k in ("G_ema", "G", "D")}
    assert len(set(fingerprints.values())) == 3


def test_resume_continues_the_same_run(tmp_path):
    straight = train(tiny(kimg=0.048, snap_kimg=0.024), tmp_path / "a", progress=False)
    half = train(tiny(kimg=0.024, snap_kimg=0.024), tmp_path / "b", progress=False)
    log_before = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    resumed = train(tiny(kimg=0.048, snap_kimg=0.024), tmp_path / "b", resume=half, progress=False)
    log_after = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    # The resumed process only trained the second half ...
    assert len(log_after) == len(log_before) + 1 and json.loads(log_after[-1])["kimg"] == 0.048
    # ... and ended bit-identical to the uninterrupted run: weights, optimiser-driven updates, RNG, data order.
    for key in ("G_ema", "G", "D"):
        a, b = _weights(straight, key), _weights(resumed, key)
        assert all(torch.equal(a[name], b[name]) for name in a), key


def test_resume_refuses_a_pair_whose_weights_and_state_disagree(tmp_path):
    snap = train(tiny(kimg=0.016), tmp_path / "a", progress=False)
    later = train(tiny(kimg=0.032), tmp_path / "b", progress=False)
    state = snap.with_name(snap.name.replace("network-snapshot", "training-state").replace(".safetensors", ".pt"))
    state.write_bytes(later.with_name(state.name).read_bytes())  # as if a save stopped between the two files
    with pytest.raises(AtelierError, match="a save was interrupted"):
        train(tiny(kimg=0.048), tmp_path / "a", resume=snap, progress=False)


def test_resume_auto_prefers_the_run_in_outdir(tmp_path):
    from model.training.snapshots import find_resume

    mine = train(tiny(kimg=0.016), tmp_path / "runs" / "mine", progress=False)
    newer = train(tiny(kimg=0.016), tmp_path / "runs" / "other", progress=False)
    os.utime(newer, (newer.stat().st_mtime + 60,) * 2)
    assert find_resume(tmp_path / "runs", "auto", tmp_path / "runs" / "mine") == mine
    assert find_resume(tmp_path / "runs", "auto") == newer  # no run folder given: the newest run anywhere
    assert find_resume(tmp_path / "runs", "auto", tmp_path / "runs" / "fresh") == newer


def test_cli_refuses_resume_with_finetune(tmp_path):
    from typer.testing import CliRunner

    from conftest import assert_clean_user_error
    from cli.main import app

    result = CliRunner().invoke(app, ["train", "--resume", "auto", "--finetune", str(tmp_path / "x.pkl"),
                                      "--outdir", str(tmp_path / "run")])
    assert_clean_user_error(result, "--finetune would be ignored")
    assert not (tmp_path / "run").exists()


def test_cli_refuses_an_unknown_augmentation_pipeline(tmp_path):
    from typer.testing import CliRunner

    from conftest import assert_clean_user_error
    from cli.main import app

    result = CliRunner().invoke(app, ["train", "--augpipe", "bgcfnc", "--outdir", str(tmp_path / "run")])
    assert_clean_user_error(result, "--augpipe must be one of", "bgc")
    assert not (tmp_path / "run").exists()


def test_resume_may_change_the_augmentation_pipeline(tmp_path):
    """A run can continue with other augmentations (p carries over); the config records which were used."""
    run = tmp_path / "run"
    snap = train(tiny(kimg=0.016, augment="fixed", augment_p=0.5), run, progress=False)
    train(tiny(kimg=0.032, augment="fixed", augment_p=0.5, augpipe="color"), run, resume=snap, progress=False)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [e["kimg"] for e in log] == [0.016, 0.032] and log[-1]["augment_p"] == 0.5
    assert json.loads((run / "config.json").read_text())["augpipe"] == "color"


def test_resume_refuses_other_architecture(tmp_path):
    snap = train(tiny(kimg=0.016), tmp_path / "run", progress=False)
    with pytest.raises(AtelierError, match="cannot resume"):
        train(tiny(kimg=0.032, channel_max=32), tmp_path / "run", resume=snap, progress=False)


def test_resume_may_change_the_float16_and_bfloat16_settings(tmp_path):
    # Which blocks run in reduced precision is a speed setting: a CPU run can go on on a GPU with --fp16-res,
    # or switch to --bf16-res, and it stays the same network.
    snap = train(tiny(kimg=0.016), tmp_path / "run", progress=False)
    resumed = train(tiny(kimg=0.032, num_fp16_res=2, cpu_bf16_res=1), tmp_path / "run", resume=snap, progress=False)
    loaded = load_network(resumed, "G")
    assert loaded.kwargs["synthesis_kwargs"]["num_fp16_res"] == 2 and loaded.kimg == pytest.approx(0.032)


def test_resume_uses_this_runs_learning_rate_and_keeps_the_moments(tmp_path):
    from model.training.snapshots import training_state_path

    snap = train(tiny(kimg=0.016), tmp_path / "run", progress=False)
    before = torch.load(training_state_path(snap), weights_only=True)["opt_G"]
    resumed = train(tiny(kimg=0.032, glr=0.001, dlr=0.0005), tmp_path / "run", resume=snap, progress=False)
    after = torch.load(training_state_path(resumed), weights_only=True)
    assert after["opt_G"]["param_groups"][0]["lr"] == pytest.approx(0.001)  # no path-length reg: no lazy ratio
    assert after["opt_D"]["param_groups"][0]["lr"] == pytest.approx(0.0005 * 2 / 3)  # r1_interval 2: × 2/3
    # The Adam moments were carried over (and updated), not restarted: the step counts went on from the snapshot.
    first = next(iter(before["state"]))
    assert after["opt_G"]["state"][first]["step"] > before["state"][first]["step"]


def test_more_minibatch_std_channels_train_and_reload(tmp_path):
    snap = train(tiny(kimg=0.016, mbstd_channels=4), tmp_path / "run", progress=False)
    D = load_network(snap, "D").module
    assert D.b4.mbstd.num_channels == 4 and D.b4.conv.weight.shape[1] == 16 + 4
    resumed = train(tiny(kimg=0.032, mbstd_channels=4), tmp_path / "run", resume=snap, progress=False)
    assert load_network(resumed, "D").kimg == pytest.approx(0.032)
    with pytest.raises(AtelierError, match="mbstd-channels must divide"):
        train(tiny(kimg=0.016, mbstd_channels=3), tmp_path / "bad", progress=False)


def test_conditional_training_uses_labels(tmp_path, monkeypatch):
    from model.network.networks import Discriminator

    seen: list[torch.Tensor] = []  # every class vector D is shown, real and generated
    plain_forward = Discriminator.forward

    def recording_forward(self, img, c, *args, **kwargs):
        seen.append(c.detach().clone())
        return plain_forward(self, img, c, *args, **kwargs)

    monkeypatch.setattr(Discriminator, "forward", recording_forward)
    entries = []
    snap = train(tiny(kimg=0.016, conditional=True, pl_weight=2.0, pl_interval=1), tmp_path / "run", progress=False,
                 on_log=entries.append)
    G, D = load_network(snap).module, load_network(snap, "D").module
    assert G.c_dim == 4 and D.c_dim == 4  # four garment kinds in the synthetic stream
    # D saw one-hot garment labels, and more than one kind of garment: the labels reached the loss.
    shown = torch.cat(seen)
    assert shown.shape[1] == 4 and torch.equal(shown.sum(dim=1), torch.ones(len(shown)))
    assert set(shown.argmax(dim=1).tolist()) >= {0, 1, 2}
    assert entries[-1]["pl_penalty"] > 0  # path-length regularisation ran (and stayed finite)


def test_finetune_from_stylegan2_ada_pickle(tmp_path, reference_dir):
    source = reference_dir / "sg2ada_tiny32.pkl"
    cfg = tiny(resolution=32, z_dim=512, w_dim=512, channel_base=1024, channel_max=64, kimg=0.008, batch=4,
               mbstd_group=4)
    before = load_network(source, "G").module.state_dict()
    snap = train(cfg, tmp_path / "ft", finetune=source, progress=False)
    after = load_network(snap, "G").module.state_dict()
    # Started from the pickle's weights (mapping barely moves at lr multiplier 0.01) and then trained.
    assert torch.allclose(before["mapping.fc0.weight"], after["mapping.fc0.weight"], atol=1e-2)
    assert not torch.equal(before["synthesis.b32.conv1.weight"], after["synthesis.b32.conv1.weight"])


def test_finetune_refuses_mismatched_architecture(tmp_path, reference_dir):
    with pytest.raises(AtelierError, match="cannot fine-tune"):
        train(tiny(resolution=32, kimg=0.008), tmp_path / "ft", finetune=reference_dir / "sg2ada_tiny32.pkl",
              progress=False)


def test_bad_batch_for_minibatch_std(tmp_path):
    with pytest.raises(AtelierError, match="minibatch-std"):
        train(tiny(batch=6), tmp_path / "run", progress=False)
    with pytest.raises(AtelierError, match="mbstd-group must be at least 1"):
        train(tiny(mbstd_group=0), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # refused before the run folder was made


def test_ddp_two_processes_hold_identical_weights(tmp_path):
    """torchrun with the gloo backend: two CPU ranks train a few steps and end with the same weights."""
    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    result = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", str(REPO / "tests" / "ddp_worker.py"),
                             str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    assert rank0["nimg"] == rank1["nimg"] == 32
    assert rank0["G"] == rank1["G"] and rank0["D"] == rank1["D"] and rank0["G_ema"] == rank1["G_ema"]
    assert rank0["p"] == rank1["p"]
    assert snapshot_paths(tmp_path / "run")  # rank 0 wrote the snapshot


def test_ddp_a_stop_on_one_rank_stops_both_at_the_same_step(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    result = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", str(REPO / "tests" / "ddp_worker.py"),
                             str(tmp_path), "stop-rank-1"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    assert 0 < rank0["nimg"] == rank1["nimg"] < 50_000  # stopped early, both at the same step
    assert rank0["G"] == rank1["G"] and rank0["D"] == rank1["D"]
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["stopped"] is True and log[-1]["kimg"] == rank0["nimg"] / 1000  # rank 0 wrote the snapshot


# --- bfloat16 on CPU -------------------------------------------------------------------------------------------


def _tiny_nets(seed: int = 0):
    from model.network.networks import Discriminator, Generator

    cfg = tiny(resolution=32, channel_base=512, channel_max=32)
    torch.manual_seed(seed)
    return cfg, Generator(**cfg.generator_kwargs(32, 0)), Discriminator(**cfg.discriminator_kwargs(32, 0))


def _flat_grads(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in module.parameters() if p.grad is not None])


def test_cpu_bfloat16_blocks_compute_in_bfloat16_and_keep_float32_weights():
    from model.network.networks import use_cpu_bfloat16

    _, G, D = _tiny_nets()
    ws = G.mapping(torch.randn(4, 16), None)
    state_before = {k: v.clone() for k, v in G.state_dict().items()}
    reference = G.synthesis(ws, noise_mode="const")
    assert use_cpu_bfloat16(G, 2) == [16, 32] and use_cpu_bfloat16(D, 1) == [32]
    seen = {}

    def record(name):
        def hook(module, inputs, output) -> None:  # returns None: the output is left as it is
            seen[name] = output.dtype
        return hook

    layers = {"g32": G.synthesis.b32.conv1, "g8": G.synthesis.b8.conv1, "d32": D.b32.conv0, "d16": D.b16.conv0}
    hooks = [layer.register_forward_hook(record(name)) for name, layer in layers.items()]
    image = G.synthesis(ws, noise_mode="const")
    logits = D(image, None)
    for hook in hooks:
        hook.remove()
    assert seen == {"g32": torch.bfloat16, "g8": torch.float32, "d32": torch.bfloat16, "d16": torch.float32}
    assert image.dtype == torch.float32 and logits.dtype == torch.float32
    # bfloat16 keeps ~3 significant digits: the image moves by under 1 % of its own scale.
    relative = float(((image - reference).norm() / reference.norm()).detach())
    assert 0 < relative < 0.01
    # Nothing about the weights changed: same keys, dtypes and values, so snapshots are unaffected.
    after = G.state_dict()
    assert after.keys() == state_before.keys()
    assert all(after[k].dtype == state_before[k].dtype and torch.equal(after[k], state_before[k]) for k in after)
    assert use_cpu_bfloat16(G, 0) == [] and torch.equal(G.synthesis(ws, noise_mode="const"), reference)


def test_cpu_bfloat16_gradients_point_where_float32_gradients_do():
    """The generator loss and the discriminator loss with R1 (a double backward through bfloat16 convolutions)."""
    from model.network.networks import use_cpu_bfloat16

    z, real = torch.randn(8, 16), torch.rand(8, 3, 32, 32) * 2 - 1
    grads = {}
    for name, res in (("fp32", 0), ("bf16", 2)):
        _, G, D = _tiny_nets(seed=1)
        use_cpu_bfloat16(G, res)
        use_cpu_bfloat16(D, res)
        torch.manual_seed(5)
        torch.nn.functional.softplus(-D(G(z, None, noise_mode="const"), None)).mean().backward()
        real_in = real.clone().requires_grad_(True)
        logits = D(real_in, None)
        r1_grad, = torch.autograd.grad(logits.sum(), real_in, create_graph=True)
        D.zero_grad()
        (torch.nn.functional.softplus(-logits).mean() + r1_grad.square().sum([1, 2, 3]).mean()).backward()
        grads[name] = (_flat_grads(G), _flat_grads(D))
    for a, b in zip(grads["fp32"], grads["bf16"]):
        assert torch.isfinite(b).all()
        assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.99


def test_training_with_cpu_bfloat16(tmp_path):
    entries = []
    snap = train(tiny(kimg=0.032, snap_kimg=0.032, cpu_bf16_res=1), tmp_path / "run", progress=False,
                 on_log=entries.append)
    assert np.isfinite(entries[-1]["loss_G"]) and np.isfinite(entries[-1]["loss_D"]) and "r1" in entries[-1]
    for key in ("G", "D", "G_ema"):
        weights = _weights(snap, key)
        assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in weights.values())


def test_each_snapshot_is_measured_and_the_best_generator_is_kept(tmp_path):
    from model.training.quality import BEST_NETWORK, read_best

    run = tmp_path / "run"
    train(tiny(kimg=0.064, snap_kimg=0.016, quality_samples=40, keep_snapshots=1), run, progress=False)
    entries = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert len(entries) == 4 and all(e["frechet"] > 0 for e in entries)
    best = min(entries, key=lambda e: e["frechet"])
    assert read_best(run) == {"kimg": best["kimg"], "frechet": best["frechet"]}
    assert [e["best"] for e in entries] == [e["frechet"] == min(x["frechet"] for x in entries[:i + 1])
                                            for i, e in enumerate(entries)]
    kept = load_network(run / BEST_NETWORK)  # survives pruning (keep_snapshots=1), generator only
    assert kept.kimg == best["kimg"] and kept.metadata["frechet"] == best["frechet"]
    assert len(snapshot_paths(run)) == 1


def test_a_better_snapshot_replaces_the_best_and_a_worse_one_does_not(tmp_path):
    from model.training.quality import BEST_NETWORK, keep_if_best, read_best

    saved = []

    def save(path: Path) -> None:
        path.write_bytes(b"weights")
        saved.append(path)

    assert keep_if_best(tmp_path, 50.0, 1.0, save) and read_best(tmp_path) == {"kimg": 1.0, "frechet": 50.0}
    assert not keep_if_best(tmp_path, 60.0, 2.0, save) and read_best(tmp_path)["kimg"] == 1.0
    assert keep_if_best(tmp_path, 40.0, 3.0, save) and read_best(tmp_path)["kimg"] == 3.0
    assert len(saved) == 2
    (tmp_path / BEST_NETWORK).unlink()  # a record without its weights does not count
    assert keep_if_best(tmp_path, 45.0, 4.0, save) and read_best(tmp_path)["kimg"] == 4.0


# --- stopping -------------------------------------------------------------------------------------------------


STOP_ARGS = ["train", "--data", "synthetic", "--resolution", "16", "--cbase", "128", "--cmax", "16", "--batch", "8",
             "--snap-kimg", "1000", "--snap-minutes", "1000", "--quality-samples", "0", "--threads", "1",
             "--no-progress"]


def _start_trainer(run: Path, sigint: object) -> subprocess.Popen:
    """A real `atelier train` process; SIGINT starts as `sigint` in it (SIG_DFL: a foreground program at a terminal;
    SIG_IGN: a shell's background job)."""
    atelier = Path(sys.executable).with_name("atelier")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([str(atelier), *STOP_ARGS, "--outdir", str(run), "--kimg", "1000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))


def _wait_until_training(proc: subprocess.Popen) -> list[str]:
    """Block until the trainer says its loop has started (and that Ctrl-C is safe), then let it take a few steps."""
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "Ctrl-C writes a snapshot" in line:
            break
    time.sleep(1.0)
    return seen


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stop_signal_writes_a_snapshot_and_the_run_resumes_from_it(tmp_path, signum):
    """Ctrl-C, or the SIGTERM a session or job manager sends, must not throw away the work since the last snapshot."""
    from typer.testing import CliRunner

    from cli.main import app

    run = tmp_path / "run"
    handlers_before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    proc = _start_trainer(run, signal.SIG_DFL)
    watchdog = threading.Timer(240, proc.kill)  # a hung trainer fails the test instead of hanging the suite
    watchdog.start()
    try:
        seen = _wait_until_training(proc)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=200)
    finally:
        watchdog.cancel()
    assert proc.returncode == 0, "".join(seen) + err[-3000:]
    assert "finishing this step and writing a snapshot" in err
    assert "stopped at" in out and f"--resume auto --outdir {run}" in out
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and log[0]["stopped"] is True and 0 < log[0]["kimg"] < 1000
    (_, snapshot), = snapshot_paths(run)
    stopped_at = log[0]["kimg"]
    assert load_network(snapshot, "G").kimg == pytest.approx(stopped_at)

    target = round(stopped_at + 0.016, 3)
    result = CliRunner().invoke(app, [*STOP_ARGS, "--outdir", str(run), "--kimg", str(target), "--resume", "auto"])
    assert result.exit_code == 0, result.output
    assert f"resuming from {snapshot}" in result.output and "stopped at" not in result.output
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [entry["kimg"] for entry in log] == [stopped_at, target] and "stopped" not in log[1]
    # The in-process run gave back the handlers it found (whatever they were: CI may start pytest in the background).
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers_before


def test_a_background_trainer_keeps_ignoring_ctrl_c_as_its_shell_asked(tmp_path):
    """A shell starts background jobs with SIGINT ignored, so a Ctrl-C meant for the foreground does not reach
    them; the trainer must not undo that. SIGTERM still stops it cleanly."""
    proc = _start_trainer(tmp_path / "run", signal.SIG_IGN)
    watchdog = threading.Timer(240, proc.kill)
    watchdog.start()
    try:
        seen = _wait_until_training(proc)
        proc.send_signal(signal.SIGINT)
        time.sleep(2.0)
        still_training = proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=200)
    finally:
        watchdog.cancel()
    assert still_training, "".join(seen) + err[-3000:]
    assert proc.returncode == 0 and "SIGINT" not in err and "SIGTERM: finishing this step" in err
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and log[0]["stopped"] is True
