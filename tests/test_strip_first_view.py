"""A strip that starts at low resolution and sharpens: the first view's resolution, the two views, the cache."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from model.benchmarks.bench import RandomShape, parse_random_shape, random_network
from model.network.render import Renderer, synthesis_flops
from model.directions.strips import (FIRST_VIEW_SHARE, StripCache, StripSpec, draw_strip, first_view_resolution,
                          render_strip, sigma_steps)

SPEC = StripSpec("first-view", 0, (1, 2), sigma_steps(3, 2.0))


@pytest.fixture(scope="module")
def small():
    """64 px, 32 channels: cheap to render, with stages 4 … 64 to choose a first view from."""
    return Renderer(random_network(RandomShape(64, 32)), device="cpu")


@pytest.fixture(scope="module")
def direction(small):
    v = np.random.default_rng(5).standard_normal(small.w_dim).astype(np.float32)
    return v / np.linalg.norm(v)


def test_first_view_resolution_follows_the_cost():
    # A real-size network (built, not rendered): a 6 × 7 strip at the 64-px preview costs hundreds of GFLOP, and
    # the largest stage within a fifth of that work is 16 px.
    big = Renderer(random_network(parse_random_shape("random:256x512")), device="cpu")
    spec = StripSpec("s", 0, tuple(range(6)), sigma_steps(7, 3.0), resolution=64)
    assert first_view_resolution(big, spec) == 16
    assert synthesis_flops(big.G, 1, 16) <= FIRST_VIEW_SHARE * synthesis_flops(big.G, 1, 64)
    assert synthesis_flops(big.G, 1, 32) > FIRST_VIEW_SHARE * synthesis_flops(big.G, 1, 64)
    # The demo model's strip is cheap: no first view.
    assert first_view_resolution(Renderer(None, device="cpu"), spec) is None


def test_strip_sharpens_from_a_first_view(tmp_path, small, direction):
    cache = StripCache(tmp_path)
    views = list(cache.render_progressively(small, direction, 1.5, SPEC, min_gflop=0))
    assert len(views) == 2 and not any(v.cached for v in views)
    # The full view is the strip itself; the first view is the same strip at a lower stage (16 px here), drawn at
    # the same display size, so its cells are blocks of 8 × 8 equal pixels (nearest-neighbour scaling).
    assert views[1].key == SPEC.key(small.fingerprint)
    assert first_view_resolution(small, SPEC, min_gflop=0) == 16
    quick_spec = replace(SPEC, resolution=16)
    assert views[0].key == quick_spec.key(small.fingerprint)
    # Each file is exactly that spec's strip, rendered and drawn directly.
    for view, spec in zip(views, (quick_spec, SPEC)):
        result = render_strip(small, direction, 1.5, spec)
        assert view.image.read_bytes() == draw_strip(result, spec)[0]
    assert render_strip(small, direction, 1.5, quick_spec).images.shape[2:4] == (16, 16)
    # Once the full strip is cached, it comes at once, with no first view.
    again = list(cache.render_progressively(small, direction, 1.5, SPEC, min_gflop=0))
    assert len(again) == 1 and again[0].cached and again[0].image == views[1].image


def test_cheap_strips_go_straight_to_the_full_view(tmp_path, small, direction):
    views = list(StripCache(tmp_path).render_progressively(small, direction, 1.5, SPEC))  # default: 50 GFLOP
    assert len(views) == 1 and views[0].key == SPEC.key(small.fingerprint)


def test_review_page_strip_hands_over_the_first_view(monkeypatch, small, direction):
    from annotator import strips as page_strips
    from model.directions import strips as model_strips

    monkeypatch.setattr(model_strips, "FIRST_VIEW_MIN_GFLOP", 0.0)  # the small network as if it were a real one
    request = page_strips.StripRequest(small.fingerprint, SPEC, 1.5, direction)
    seen: list = []
    shown = page_strips.get_strip(request, small, on_first_view=seen.append)
    assert len(seen) == 1 and seen[0].grid[:2] == b"\xff\xd8" and seen[0].grid != shown.grid
    assert shown.grid_path.name.startswith(SPEC.key(small.fingerprint))
    seen.clear()
    assert page_strips.get_strip(request, small, on_first_view=seen.append).grid == shown.grid and not seen
