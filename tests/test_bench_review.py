"""`atelier bench review`: the review loop's waits, reported for a network of any shape (here a small random one)."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from annotator.bench import _all_scored_seconds
from conftest import assert_clean_user_error
from model.cli import app


def test_bench_review_json_on_a_small_random_network():
    result = CliRunner().invoke(app, ["bench", "review", "--network", "random:32x32", "--components", "36",
                                      "--device", "cpu", "--precision", "float32", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["network"] == "random:32x32" and data["resolution"] == 32 and data["precision"] == "float32"
    assert data["components"] == 512 and data["queue_ready_components"] == 32 and data["scored_components"] == 36
    assert data["all_scored_estimated"] and data["all_scored_s"] > data["queue_ready_s"] > 0
    strip = data["strip"]
    assert strip["resolution"] == 32 and strip["first_view_s"] is None  # a cheap strip needs no first view
    assert 0 < strip["cached_s"] < strip["cold_s"]
    assert data["generate"]["cold_s"] > 0 and data["generate"]["slider_move_s"] > 0 and data["peak_rss_mb"] > 0


def test_all_scored_extrapolation():
    assert _all_scored_seconds(10.0, 90.0, 32, 512, 512) == 100.0  # measured, not extrapolated
    assert _all_scored_seconds(10.0, 4.0, 32, 64, 512) == 10.0 + 4.0 / 32 * 480  # at the later components' rate
    assert _all_scored_seconds(8.0, 0.0, 16, 16, 512) == 8.0 / 16 * 512


def test_bench_review_refuses_bad_options():
    assert_clean_user_error(CliRunner().invoke(app, ["bench", "review", "--components", "-1"]), "--components")
    assert_clean_user_error(CliRunner().invoke(app, ["bench", "review", "--network", "random:300x16"]),
                            "power of two")
