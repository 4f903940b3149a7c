"""`atelier eval-model` end to end: the demo generator, a conditional generator (classes drawn as the data draws
them) and a conditional generator whose classes are not the synthetic garment kinds (refused)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from core.errors import AtelierError
from model.evaluation.distributions import SPREAD_FACTORS, spread_ratios, tv_distance
from model.evaluation.evaluate import eval_model
from model.evaluation.predictor import FACTORS, REAL_SEED0, Predictor
from model.evaluation.samples import generated_predictions, synthetic_classes
from model.network.checkpoint import save_safetensors
from cli.main import app
from model.network.networks import Generator
from model.network.render import Renderer

runner = CliRunner()


def conditional_generator(path, classes: int):
    torch.manual_seed(0)
    G = Generator(z_dim=32, c_dim=classes, w_dim=32, img_resolution=32, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=16))
    return save_safetensors(path, {"G_ema": G.eval()})


def test_eval_model_json_on_the_demo_generator():
    result = runner.invoke(app, ["eval-model", "--samples", "40", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(report) == {"tv", "frechet", "frechet_real_baseline"}
    assert set(report["tv"]) == set(FACTORS)
    assert all(0.0 <= v <= 1.0 for v in report["tv"].values())
    assert np.isfinite(report["frechet"]) and report["frechet"] > 0
    assert np.isfinite(report["frechet_real_baseline"]) and report["frechet_real_baseline"] >= 0


def test_conditional_samples_take_the_garment_of_the_matching_real_image(tmp_path):
    from scrape.synth import sample_factors

    renderer = Renderer(conditional_generator(tmp_path / "cond.safetensors", 4), device="cpu")
    classes = synthetic_classes(renderer, 12, REAL_SEED0)
    assert classes == [sample_factors(REAL_SEED0 + i).garment_index for i in range(12)]
    assert len(set(classes)) > 1  # twelve draws of four kinds: more than one kind is present

    predictor = Predictor.load()
    grouped = generated_predictions(predictor, renderer, 12, seed0=7, classes=classes, chunk=5)
    one_by_one = np.concatenate([renderer.render_seeds([7 + i], class_index=c) for i, c in enumerate(classes)])
    np.testing.assert_allclose(grouped.features, predictor.predict(one_by_one).features, atol=1e-4)

    with pytest.raises(AtelierError, match="class-conditional"):
        generated_predictions(predictor, renderer, 12)

    result = runner.invoke(app, ["eval-model", "--network", str(tmp_path / "cond.safetensors"), "--samples", "20",
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout.strip().splitlines()[-1])["tv"]) == set(FACTORS)


def test_eval_model_refuses_classes_that_are_not_the_garment_kinds(tmp_path):
    path = conditional_generator(tmp_path / "three.safetensors", 3)
    result = runner.invoke(app, ["eval-model", "--network", str(path), "--samples", "20"])
    assert result.exit_code == 1
    assert "3 classes" in result.output and "--cond" in result.output


def test_spread_ratio_tells_a_narrow_distribution_from_a_shifted_one():
    rng = np.random.default_rng(0)
    real = {name: rng.uniform(0, 1, 4000) for name in SPREAD_FACTORS}
    narrow = {name: 0.5 + 0.3 * (v - 0.5) for name, v in real.items()}
    shifted = {name: v + 0.2 for name, v in real.items()}
    assert all(abs(r - 0.3) < 0.01 for r in spread_ratios(narrow, real).values())
    assert all(abs(r - 1.0) < 0.01 for r in spread_ratios(shifted, real).values())
    assert "hue" not in spread_ratios(real, real)  # circular: a standard deviation would mislead


def test_eval_model_plot_and_text_report(tmp_path):
    from PIL import Image

    plot = tmp_path / "report" / "eval.png"
    result = runner.invoke(app, ["eval-model", "--samples", "30", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert "spread" in result.stdout and f"wrote {plot}" in result.stdout
    for name in FACTORS:
        assert any(line.startswith(name) for line in result.stdout.splitlines()), name
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.width == 4 * 260 and image.height > 3 * 150
        pixels = np.asarray(image.convert("RGB"))
    from model.evaluation.eval_plot import GENERATED_COLOUR, REAL_COLOUR
    for colour in (GENERATED_COLOUR, REAL_COLOUR):  # both distributions are drawn
        assert (pixels == colour).all(axis=-1).sum() > 500, colour


def test_eval_model_histograms_count_every_sample():
    renderer = Renderer(device="cpu")
    report = eval_model(renderer, Predictor.load(), samples=25)
    assert set(report["histograms"]) == set(FACTORS)
    for name, pair in report["histograms"].items():
        assert sum(pair["generated"]) == 25 and sum(pair["real"]) == 25, name
        assert tv_distance(pair["generated"], pair["real"]) == pytest.approx(report["tv"][name], abs=1e-4)
    assert set(report["spread"]) == set(SPREAD_FACTORS)
    assert all(value > 0 for value in report["spread"].values())


def test_eval_model_refuses_a_plot_name_it_cannot_write_before_rendering(tmp_path):
    result = runner.invoke(app, ["eval-model", "--samples", "20", "--plot", str(tmp_path / "eval.gif")])
    assert result.exit_code == 1
    assert "--plot" in result.output and ".png" in result.output
    assert not (tmp_path / "eval.gif").exists()
