"""Training runs as the Training page reads them (model.training.runs), the command that continues one, and registering
a run's generator as a model (annotator.registry.register_run_generator)."""
from __future__ import annotations

import json
import os
import shlex

import pytest
from typer.testing import CliRunner

from cli.main import app
from workflows import registry
from core.errors import AtelierError
from model.training.runs import list_runs, read_run, resume_command, snapshot_rows
from model.training.config import TrainConfig
from model.training.train import train

runner = CliRunner()
CLI_TINY = ["--data", "synthetic", "--resolution", "16", "--cbase", "128", "--cmax", "16", "--batch", "8",
            "--snap-kimg", "0.008", "--threads", "1", "--no-progress", "--lr", "0.002", "--gamma", "0.5",
            "--aug", "fixed", "--p", "0.3", "--pl-weight", "2"]


def tiny_run(run_dir, kimg: float = 0.032, quality_samples: int = 0):
    cfg = TrainConfig(resolution=16, batch=8, channel_base=128, channel_max=16, z_dim=16, w_dim=16, r1_interval=2,
                      grid_seeds=(0, 1, 2, 3), threads=1, ada_interval=2, ada_kimg=0.5, snap_kimg=0.016,
                      keep_snapshots=10, quality_samples=quality_samples, kimg=kimg)
    return train(cfg, run_dir, progress=False)


@pytest.fixture(scope="module")
def measured_run(tmp_path_factory):
    """A real run with the per-snapshot Fréchet distance on, so it keeps a best generator."""
    run = tmp_path_factory.mktemp("runs") / "measured"
    tiny_run(run, quality_samples=16)
    return run


def test_a_run_folder_reads_back_as_the_trainer_wrote_it(measured_run):
    run = read_run(measured_run)
    assert run.name == "measured" and run.kimg == 0.032 and run.target_kimg == 0.032
    assert [e["kimg"] for e in run.log] == [0.016, 0.032]
    assert [k for k, _ in run.snapshots] == [0.0]  # snapshots are named by whole kimg: the second replaced the first
    assert all(path.exists() for _, path in run.snapshots)
    assert run.best is not None and run.best_path == measured_run / "network-best.safetensors"
    assert run.best["frechet"] == min(e["frechet"] for e in run.log)
    assert run.samples is not None and run.samples.name.startswith("samples-")
    losses = run.series("loss_G")
    assert [k for k, _ in losses] == [0.016, 0.032] and all(isinstance(v, float) for _, v in losses)
    assert run.series("best") == []  # true/false flags are not a series to draw
    rows = snapshot_rows(run)
    assert [r["file"] for r in rows] == [path.name for _, path in reversed(run.snapshots)]
    assert all(r["MB"] > 0 for r in rows)


def test_a_snapshot_pruned_while_reading_is_left_out(measured_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(measured_run, copy)
    run = read_run(copy)
    run.snapshots[-1][1].unlink()  # the trainer keeps only the newest few
    assert snapshot_rows(run) == []


def test_a_half_written_log_line_is_skipped_and_other_folders_are_refused(measured_run, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    text = (measured_run / "log.jsonl").read_text()
    (copy / "log.jsonl").write_text(text + '{"kimg": 0.048, "loss_G": 1.')  # the trainer is mid-write
    assert [e["kimg"] for e in read_run(copy).log] == [0.016, 0.032]
    with pytest.raises(AtelierError, match="neither config.json nor log.jsonl"):
        read_run(tmp_path)
    with pytest.raises(AtelierError, match="not a folder"):
        read_run(tmp_path / "missing")


def test_runs_are_listed_newest_first_and_other_folders_are_left_out(tmp_path):
    for name, stamp in (("older", 1_000_000), ("newer", 2_000_000)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"kimg": 10}))
        os.utime(folder / "config.json", (stamp, stamp))
    (tmp_path / "not-a-run").mkdir()
    assert [run.name for run in list_runs(tmp_path)] == ["newer", "older"]
    assert list_runs(tmp_path / "absent") == []


def test_the_resume_command_continues_the_run_with_its_own_settings(tmp_path):
    run_dir = tmp_path / "cli-run"
    first = runner.invoke(app, ["train", *CLI_TINY, "--kimg", "0.008", "--ada-kimg", "50", "--outdir", str(run_dir)])
    assert first.exit_code == 0, first.output
    command = resume_command(read_run(run_dir))
    parts = shlex.split(command)
    assert parts[:6] == ["atelier", "train", "--resume", "auto", "--outdir", str(run_dir)]
    settings = dict(zip(parts[6::2], parts[7::2]))
    assert settings["--lr"] == "0.002" and settings["--gamma"] == "0.5" and settings["--aug"] == "fixed"
    assert settings["--p"] == "0.3" and settings["--pl-weight"] == "2" and settings["--resolution"] == "16"
    assert settings["--ada-kimg"] == "50"

    parts[parts.index("--kimg") + 1] = "0.016"  # continue a little further
    resumed = runner.invoke(app, parts[1:])
    assert resumed.exit_code == 0, resumed.output
    assert "resuming from" in resumed.output
    assert [e["kimg"] for e in read_run(run_dir).log] == [0.008, 0.016]


def test_runs_under_home_are_shown_with_a_tilde_that_a_shell_expands(measured_run, tmp_path, monkeypatch):
    import shutil
    import subprocess

    from core.settings import shown_path

    home = tmp_path / "home"
    run_dir = home / ".cache" / "atelier" / "runs" / "spring looks"
    shutil.copytree(measured_run, run_dir)
    monkeypatch.setenv("HOME", str(home))
    assert shown_path(run_dir) == "~/.cache/atelier/runs/spring looks"
    assert shown_path(home) == "~"
    assert shown_path(tmp_path / "elsewhere") == str(tmp_path / "elsewhere")  # outside home: stays absolute

    command = resume_command(read_run(run_dir))
    assert command.startswith("atelier train --resume auto --outdir ~/")
    # A real shell reads the command: the tilde expands to the home folder, the space stays inside one word.
    echoed = subprocess.run(["bash", "-c", 'atelier() { printf "%s\\n" "$@"; }; ' + command],
                            env=dict(os.environ, HOME=str(home)), capture_output=True, text=True, check=True)
    words = echoed.stdout.splitlines()
    assert words[:5] == ["train", "--resume", "auto", "--outdir", str(run_dir)]
    assert words[5:] == shlex.split(command)[6:]

    listing = runner.invoke(app, ["runs", "--root", str(run_dir.parent)])
    assert listing.exit_code == 0, listing.output
    assert "(~/.cache/atelier/runs/spring looks)" in listing.output


def test_register_a_runs_best_generator_or_newest_snapshot(measured_run, tmp_path, monkeypatch):
    import shutil

    from annotator import services
    from db import queries as q
    from db.engine import read_session
    from model.network.checkpoint import load_network

    monkeypatch.setenv("ATELIER_HOME", str(tmp_path / "home"))
    url = f"sqlite:///{tmp_path / 'atelier.db'}"
    services.migrate_once(url)
    run_dir = tmp_path / "measured"
    shutil.copytree(measured_run, run_dir)
    run = read_run(run_dir)
    best = registry.register_run_generator(run_dir, "best", url)
    newest = registry.register_run_generator(run_dir, "newest", url)
    assert best.name == "measured · 0 kimg"
    assert best.fingerprint == load_network(run_dir / "network-best.safetensors").fingerprint
    assert newest.fingerprint == load_network(run.snapshots[-1][1], "G_ema").fingerprint
    with read_session(url) as session:
        assert {m.fingerprint for m in q.list_models(session)} == {best.fingerprint, newest.fingerprint}
    # Copies under ATELIER_HOME: the trainer replaces network-best and prunes snapshots; the models must not change.
    shutil.rmtree(run_dir)
    for info in (best, newest):
        assert info.path.startswith(str(tmp_path / "home" / "uploads"))
        assert registry.get_renderer(info.path).fingerprint == info.fingerprint

    empty = tmp_path / "fresh-run"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    with pytest.raises(AtelierError, match="no best generator yet"):
        registry.register_run_generator(empty, "best", url)
    with pytest.raises(AtelierError, match="no snapshot yet"):
        registry.register_run_generator(empty, "newest", url)


def test_atelier_runs_lists_and_shows_runs(measured_run):
    root = measured_run.parent
    listed = runner.invoke(app, ["runs", "--root", str(root)])
    assert listed.exit_code == 0, listed.output
    assert "measured: 0.032 of 0.032 kimg, best" in listed.output

    records = json.loads(runner.invoke(app, ["runs", "--root", str(root), "--json"]).output)
    record = next(r for r in records if r["name"] == "measured")
    assert record["kimg"] == 0.032 and record["best"]["path"].endswith("network-best.safetensors")
    assert record["stopped"] is False and record["resume_command"].startswith("atelier train --resume auto")

    shown = runner.invoke(app, ["runs", "measured", "--root", str(root)])  # a name under --root
    assert shown.exit_code == 0, shown.output
    assert f"path: {measured_run}" in shown.output and "continue with:" in shown.output

    missing = runner.invoke(app, ["runs", str(root / "nope")])
    assert missing.exit_code == 1 and "not a folder" in missing.output
    empty = runner.invoke(app, ["runs", "--root", str(root / "nothing-here")])
    assert empty.exit_code == 0 and "no training runs" in empty.output


def test_a_run_shipped_in_the_checkout_is_continued_in_a_copy(tmp_path, monkeypatch):
    """runs/ in the checkout is read, never written: its continue command copies it to the runs folder first, and
    looking for runs creates no folder."""
    import subprocess

    from core.settings import runs_dir, shipped_runs_dir

    shipped = shipped_runs_dir()
    assert shipped is not None and (shipped / "demo64").is_dir()
    mine = tmp_path / "my-runs"
    monkeypatch.setenv("ATELIER_RUNS", str(mine))
    assert runs_dir() == mine and not mine.exists()  # asking where runs live creates nothing
    command = resume_command(read_run(shipped / "demo64"))
    assert str(shipped) not in command.split("&&")[-1]  # the training itself runs in the copy
    assert command.split("&&")[-1].strip().startswith(f"atelier train --resume auto --outdir {mine / 'demo64'}")
    # Run the copy part in a real shell (the training part is echoed, not run).
    script = 'atelier() { printf "%s\\n" "$@"; }; ' + command
    subprocess.run(["bash", "-c", script], check=True, capture_output=True, cwd=tmp_path)
    copied = mine / "demo64"
    assert (copied / "config.json").read_bytes() == (shipped / "demo64" / "config.json").read_bytes()
    assert read_run(copied).kimg == read_run(shipped / "demo64").kimg


def test_atelier_runs_lists_the_shipped_runs_too(tmp_path, monkeypatch):
    monkeypatch.setenv("ATELIER_RUNS", str(tmp_path / "none-yet"))
    listed = runner.invoke(app, ["runs"])
    assert listed.exit_code == 0 and "demo64:" in listed.output, listed.output
    shown = runner.invoke(app, ["runs", "demo64"])
    assert shown.exit_code == 0, shown.output
    assert "continue with:\n  mkdir -p " in shown.output and str(tmp_path / "none-yet" / "demo64") in shown.output
    assert not (tmp_path / "none-yet").exists()
