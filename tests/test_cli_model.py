"""The `atelier` command line for model jobs: exit codes and messages, files written."""
from __future__ import annotations

import json

from PIL import Image
from typer.testing import CliRunner

from conftest import assert_clean_user_error
from model.benchmarks.bench import format_train_table
from cli.main import app

runner = CliRunner()


def test_generate_writes_seed_files(tmp_path, reference_dir):
    result = runner.invoke(app, ["generate", "--network", str(reference_dir / "sg2ada_tiny32.pkl"), "--seeds", "0-2,7",
                                 "--trunc", "0.7", "--outdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["seed0000.png", "seed0001.png", "seed0002.png",
                                                              "seed0007.png"]
    assert Image.open(tmp_path / "seed0007.png").size == (32, 32)


def test_generate_conditional_needs_class(tmp_path, reference_dir):
    args = ["generate", "--network", str(reference_dir / "sg2ada_tiny32_cond.pkl"), "--seeds", "0", "--outdir",
            str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "class-conditional" in result.output
    assert runner.invoke(app, args + ["--class", "2"]).exit_code == 0


def test_bad_seed_and_missing_network(tmp_path, reference_dir):
    result = runner.invoke(app, ["generate", "--network", str(reference_dir / "sg2ada_tiny32.pkl"), "--seeds", "x",
                                 "--outdir", str(tmp_path)])
    assert_clean_user_error(result, "whole number")
    result = runner.invoke(app, ["generate", "--network", str(tmp_path / "nope.pkl"), "--outdir", str(tmp_path)])
    assert result.exit_code == 1 and "not found" in result.output


def test_convert_and_info(tmp_path, reference_dir):
    out = tmp_path / "tiny.safetensors"
    assert runner.invoke(app, ["convert", str(reference_dir / "sg2ada_tiny32.pkl"), str(out)]).exit_code == 0
    result = runner.invoke(app, ["info", str(out)])
    assert result.exit_code == 0
    info = json.loads(result.output)
    assert info["num_ws"] == 8 and info["w_dim"] == 512 and len(info["fingerprint"]) == 64
    bad = runner.invoke(app, ["convert", str(reference_dir / "sg2ada_tiny32.pkl"), str(tmp_path / "x.pt")])
    assert bad.exit_code == 1 and ".safetensors" in bad.output


def test_bench_render_json(reference_dir):
    result = runner.invoke(app, ["bench", "render", "--network", str(reference_dir / "sg2ada_tiny32.pkl"),
                                 "--batches", "1,4", "--repeats", "1", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert {(r["resolution"], r["batch"]) for r in data["rows"]} == {(32, 1), (32, 4)}
    assert all(r["images_per_s"] > 0 and r["peak_rss_mb"] > 0 for r in data["rows"]) and data["strip_seconds"] > 0


BENCH_TINY = ["bench", "train", "--resolution", "16", "--batch", "4", "--cbase", "128", "--cmax", "16",
              "--warmup", "0.016", "--kimg", "0.032", "--threads", "1", "--device", "cpu"]


def test_bench_train_times_the_steps_after_the_warm_up():
    # 4 warm-up steps (batch 4) are left out; 8 steps = 32 images are timed, whatever their order of snapshots.
    result = runner.invoke(app, [*BENCH_TINY, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["timed_images"] == 32 and data["device"] == "cpu" and data["resolution"] == 16
    assert data["images_per_s"] > 0 and data["peak_rss_mb"] > 0
    assert abs(data["sec_per_kimg"] * data["images_per_s"] - 1000) < 1  # one figure, two units
    assert data["wall_seconds"] >= data["timed_images"] / data["images_per_s"] * 0.9
    assert data["pl_weight"] == 0 and data["gamma"] == 0.05  # the demo architecture, as the original's figures
    assert "pl_penalty" not in data
    bad = runner.invoke(app, ["bench", "train", "--kimg", "0"])
    assert bad.exit_code == 1 and "--kimg" in bad.output
    negative = runner.invoke(app, ["bench", "train", "--pl-weight", "-1"])
    assert negative.exit_code == 1 and "--pl-weight" in negative.output


def test_bench_train_can_time_path_length_regularisation():
    result = runner.invoke(app, [*BENCH_TINY, "--pl-weight", "2", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["pl_weight"] == 2 and data["pl_penalty"] > 0  # the regulariser ran inside the timed steps
    assert "path-length weight 2" in format_train_table(data) and "R1 γ 0.05" in format_train_table(data)


def test_train_refuses_missing_dataset(tmp_path):
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "none.zip"), "--outdir", str(tmp_path / "r"),
                                 "--kimg", "1"])
    assert result.exit_code == 1 and "error:" in result.output


def test_train_refuses_bad_minibatch_std_group(tmp_path):
    zero = runner.invoke(app, ["train", "--outdir", str(tmp_path / "r"), "--kimg", "1", "--mbstd-group", "0"])
    assert zero.exit_code == 1 and "--mbstd-group" in zero.output
    uneven = runner.invoke(app, ["train", "--outdir", str(tmp_path / "r"), "--kimg", "1", "--batch", "16",
                                 "--mbstd-group", "3", "--threads", "1"])
    assert uneven.exit_code == 1 and "minibatch-std" in uneven.output
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").glob("network-snapshot-*"))


def test_train_refuses_a_learning_rate_outside_zero_to_one(tmp_path):
    for bad in ("0", "-0.1", "2"):
        result = runner.invoke(app, ["train", "--outdir", str(tmp_path / "r"), "--kimg", "1", "--lr", bad])
        assert result.exit_code == 1 and "--lr" in result.output and "0.0025" in result.output
    assert not (tmp_path / "r").exists()


def test_convert_slims_a_training_snapshot(tmp_path):
    from model.network.checkpoint import load_network, read_safetensors_metadata
    from model.training.config import TrainConfig
    from model.training.train import train

    cfg = TrainConfig(resolution=16, batch=8, channel_base=128, channel_max=16, z_dim=16, w_dim=16, kimg=0.016,
                      grid_seeds=(0,), threads=1)
    snap = train(cfg, tmp_path / "run", progress=False)
    slim = tmp_path / "demo.safetensors"
    result = runner.invoke(app, ["convert", str(snap), str(slim), "--generator-only"])
    assert result.exit_code == 0, result.output
    assert slim.stat().st_size < snap.stat().st_size / 2
    meta = read_safetensors_metadata(slim)
    assert '"kimg": 0.016' in meta["provenance"] and '"G"' not in meta["architecture"]
    assert load_network(slim).fingerprint == load_network(snap).fingerprint
    same = runner.invoke(app, ["convert", str(slim), str(slim)])
    assert same.exit_code == 1 and "overwrite" in same.output


def _dataset_folder(path, sizes, labels=None):
    import json as _json

    path.mkdir()
    names = []
    for idx, (w, h) in enumerate(sizes):
        name = f"00000/img{idx:08d}.png"
        (path / "00000").mkdir(exist_ok=True)
        Image.new("RGB", (w, h), (200, 190, 180)).save(path / name)
        names.append(name)
    (path / "dataset.json").write_text(_json.dumps({"labels": labels(names) if labels else None}))
    return path


def test_train_refuses_bad_datasets_before_training(tmp_path):
    cases = {
        "mixed": _dataset_folder(tmp_path / "mixed", [(32, 32), (64, 64)]),
        "nonsquare": _dataset_folder(tmp_path / "nonsquare", [(32, 48), (32, 48)]),
        "labels": _dataset_folder(tmp_path / "labels", [(32, 32), (32, 32)],
                                  labels=lambda names: [[names[0], 0], ["00000/missing.png", 1]]),
    }
    empty = tmp_path / "empty"
    empty.mkdir()
    cases["empty"] = empty
    for kind, data in cases.items():
        run = tmp_path / f"run-{kind}"
        result = runner.invoke(app, ["train", "--data", str(data), "--outdir", str(run), "--kimg", "1"])
        assert result.exit_code == 1, (kind, result.output)
        assert_clean_user_error(result, "error:")
        assert not run.exists(), kind  # nothing started, nothing written


def test_train_refuses_bad_options_before_training(tmp_path):
    for option, value, named in (("--ada-kimg", "0", "--ada-kimg"), ("--lr", "2", "--lr"), ("--aug", "some", "--aug")):
        run = tmp_path / f"run{option}"
        result = runner.invoke(app, ["train", option, value, "--outdir", str(run), "--kimg", "1"])
        assert result.exit_code == 1, (option, result.output)
        assert_clean_user_error(result, named)
        assert not run.exists(), option


def test_bench_discovery_json_on_a_few_components(reference_dir):
    net = str(reference_dir / "sg2ada_tiny32.pkl")
    result = runner.invoke(app, ["bench", "discovery", "--network", net, "--components", "4", "--pca-samples", "2000",
                                 "--varied-samples", "32", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    assert data["components"] == 4 and data["method"] == "sefa"
    assert [row["factor"] for row in data["factors"]][:2] == ["garment", "sleeve"]
    assert all(0 <= row["component"] < 4 and 1 <= row["rank"] <= 4 for row in data["factors"])
    assert all(0 <= row["move"] <= row["strongest_move"] for row in data["factors"])
    assert {"sefa_s", "pca_s", "strip_uncached_s", "strip_cached_s", "scoring_s", "peak_rss_mb"} <= set(data["speed"])
    bad = runner.invoke(app, ["bench", "discovery", "--network", net, "--method", "kmeans"])
    assert bad.exit_code == 1 and "sefa or pca" in bad.output
