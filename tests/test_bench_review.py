"""`atelier bench review`: the review loop's waits, reported for a network of any shape (here a small random one)."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from annotator.bench import ScoringTimes, all_scored_seconds
from conftest import assert_clean_user_error
from cli.main import app


def test_bench_review_json_on_a_small_random_network():
    result = CliRunner().invoke(app, ["bench", "review", "--network", "random:32x32", "--components", "36",
                                      "--device", "cpu", "--precision", "float32", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["network"] == "random:32x32" and data["resolution"] == 32 and data["precision"] == "float32"
    assert data["components"] == 512 and data["queue_ready_components"] == 32 and data["scored_components"] == 36
    assert data["refined_components"] == 128  # two passes for a set of 512, as `atelier score` scores it
    assert data["all_scored_estimated"] and data["all_scored_s"] > data["queue_ready_s"] > 0
    strip = data["strip"]
    assert strip["resolution"] == 32 and strip["first_view_s"] is None  # a cheap strip needs no first view
    assert 0 < strip["cached_s"] < strip["cold_s"]
    assert data["generate"]["cold_s"] > 0 and data["generate"]["slider_move_s"] > 0 and data["peak_rss_mb"] > 0


def test_all_scored_extrapolation():
    one_pass = ScoringTimes([(16, 4.0), (32, 8.0), (48, 12.0)])
    assert one_pass.seconds_until(32) == 8.0 and one_pass.seconds_until(20) == 8.0
    assert all_scored_seconds(one_pass, 48, 48, None) == 12.0  # measured, not extrapolated
    assert all_scored_seconds(one_pass, 48, 512, None) == 12.0 * 512 / 48
    # Two passes: 48 quick (12 s), then all 48 refined (12 s: refine 64 covers them); the whole set refines 64.
    two_pass = ScoringTimes([(16, 4.0), (32, 8.0), (48, 12.0), (72, 18.0), (96, 24.0)])
    assert all_scored_seconds(two_pass, 48, 512, 64) == 12.0 * 512 / 48 + 12.0 * 64 / 48


def test_bench_review_refuses_bad_options():
    assert_clean_user_error(CliRunner().invoke(app, ["bench", "review", "--components", "-1"]), "--components")
    assert_clean_user_error(CliRunner().invoke(app, ["bench", "review", "--network", "random:300x16"]),
                            "power of two")


def test_synthesis_flops_are_counted_from_the_shapes():
    from model.benchmarks.bench import RandomShape, heaviest_conv, random_network
    from model.network.render import synthesis_flops

    G = random_network(RandomShape(8, 16, channel_base=128)).module  # 16 channels at 4 and 8 px
    block4 = 2 * 16 * 16 * 9 * 4 * 4 + 2 * 16 * 3 * 4 * 4  # conv1 + toRGB
    block8 = 2 * 16 * 16 * 9 * 4 * 4 + 2 * 16 * 16 * 9 ** 2 + 2 * 16 * 16 * 9 * 8 * 8 + 2 * 16 * 3 * 8 * 8
    assert synthesis_flops(G, 1) == block4 + block8 and synthesis_flops(G, 3) == 3 * (block4 + block8)
    assert synthesis_flops(G, 1, max_resolution=4) == block4
    assert heaviest_conv(G) == (16, 8) and heaviest_conv(G, 4) == (16, 4)


def test_bench_render_reports_the_limit_and_the_share(reference_dir):
    result = CliRunner().invoke(app, ["bench", "render", "--network", "random:16x16", "--batches", "2",
                                      "--repeats", "1", "--device", "cpu", "--precision", "float32", "--json"])
    assert result.exit_code == 0, result.output
    limit = json.loads(result.output)["limit"]
    assert limit["batch"] == 8 and limit["conv_shape"] == [8, 16, 16, 16] and limit["precision"] == "float32"
    assert limit["limit_gflops"] > 0 and limit["renderer_gflops"] > 0
    assert limit["share"] <= 1.5 and abs(limit["share"] - limit["renderer_gflops"] / limit["limit_gflops"]) < 0.01
