"""`atelier eval-model` end to end: the demo generator, a conditional generator (classes drawn as the data draws
them) and a conditional generator whose classes are not the synthetic garment kinds (refused)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from model import factors as FA
from model.checkpoint import save_safetensors
from model.cli import app
from model.networks import Generator
from model.render import Renderer

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
    assert set(report["tv"]) == set(FA.FACTORS)
    assert all(0.0 <= v <= 1.0 for v in report["tv"].values())
    assert np.isfinite(report["frechet"]) and report["frechet"] > 0
    assert np.isfinite(report["frechet_real_baseline"]) and report["frechet_real_baseline"] >= 0


def test_conditional_samples_take_the_garment_of_the_matching_real_image(tmp_path):
    from scrape.synth import sample_factors

    renderer = Renderer(conditional_generator(tmp_path / "cond.safetensors", 4), device="cpu")
    classes = FA.synthetic_classes(renderer, 12, FA.REAL_SEED0)
    assert classes == [sample_factors(FA.REAL_SEED0 + i).garment_index for i in range(12)]
    assert len(set(classes)) > 1  # twelve draws of four kinds: more than one kind is present

    predictor = FA.Predictor.load()
    grouped = FA.generated_predictions(predictor, renderer, 12, seed0=7, classes=classes, chunk=5)
    one_by_one = np.concatenate([renderer.render_seeds([7 + i], class_index=c) for i, c in enumerate(classes)])
    np.testing.assert_allclose(grouped.features, predictor.predict(one_by_one).features, atol=1e-4)

    with pytest.raises(FA.AtelierError, match="class-conditional"):
        FA.generated_predictions(predictor, renderer, 12)

    result = runner.invoke(app, ["eval-model", "--network", str(tmp_path / "cond.safetensors"), "--samples", "20",
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout.strip().splitlines()[-1])["tv"]) == set(FA.FACTORS)


def test_eval_model_refuses_classes_that_are_not_the_garment_kinds(tmp_path):
    path = conditional_generator(tmp_path / "three.safetensors", 3)
    result = runner.invoke(app, ["eval-model", "--network", str(path), "--samples", "20"])
    assert result.exit_code == 1
    assert "3 classes" in result.output and "--cond" in result.output
