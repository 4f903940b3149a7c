"""Review strips: equal to direct rendering with apply_edits, cached on disk, cache hits render nothing."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import require_service
from core.errors import AtelierError
from model.network.render import Edit, Renderer, apply_edits
from model.directions.drawing import SEED_MARGIN, STEP_MARGIN, strip_grid
from model.directions.strips import (StripCache, StripSpec, change_heatmap, range_steps, render_strip, sigma_steps,
                          strip_offsets)


@pytest.fixture(scope="module")
def tiny(reference_dir):
    torch.set_num_threads(1)
    return Renderer(reference_dir / "sg2ada_tiny32.pkl", device="cpu")


@pytest.fixture(scope="module")
def direction(tiny):
    v = np.random.default_rng(3).standard_normal(tiny.w_dim).astype(np.float32)
    return v / np.linalg.norm(v)


def _direct(renderer, seeds, vector, sigma, steps, start, stop, centred):
    ws = renderer.ws_from_seeds(seeds)
    if centred:
        d = torch.as_tensor(vector)
        ws = ws.clone()
        ws[:, start:stop] -= (ws[:, start:stop] @ d).unsqueeze(-1) * d
    rows = [apply_edits(ws[i:i + 1], [Edit(vector, off, start, stop)])
            for i in range(len(seeds)) for off in strip_offsets(sigma, steps)]
    return renderer.synthesize(torch.cat(rows), chunk=len(rows))


@pytest.mark.parametrize("centred,start,stop", [(False, 0, None), (False, 2, 5), (True, 0, 8)])
def test_strip_equals_direct_rendering(tiny, direction, centred, start, stop):
    steps = sigma_steps(3, 2.0)
    spec = StripSpec("t", 0, (4, 9), steps, start, stop, centred)
    result = render_strip(tiny, direction, 1.7, spec)
    assert result.images.shape == (2, 3, 32, 32, 3)
    expected = _direct(tiny, [4, 9], direction, 1.7, steps, start, stop or tiny.num_ws, centred)
    diff = np.abs(result.images.reshape(-1, 32, 32, 3).astype(int) - expected.astype(int))
    assert diff.max() == 0  # pixel-exact: the same latents in the same batch layout
    assert result.heatmap.shape == (32, 32) and 0 <= result.heatmap.min() and result.heatmap.max() == 1.0


def test_heatmap_is_zero_without_change_and_marks_the_changed_place():
    images = np.full((2, 3, 8, 8, 3), 100, np.uint8)
    assert change_heatmap(images).max() == 0
    images[:, 2, 6:, :] = 200
    heat = change_heatmap(images)
    assert heat[7, 0] == 1.0 and heat[:6].max() == 0


def test_cache_hit_returns_the_same_files_without_rendering(tiny, direction, tmp_path):
    calls = []
    original = tiny.synthesize

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    tiny.synthesize = counting
    try:
        cache = StripCache(tmp_path / "strips")
        spec = StripSpec("7", 3, (1, 2), sigma_steps(7, 3.0))
        first = cache.get_or_render(tiny, direction, 1.0, spec)
        assert not first.cached and len(calls) == 1 and first.image.exists() and first.heatmap.exists()
        second = cache.get_or_render(tiny, direction, 1.0, spec)
        assert second.cached and second.image == first.image and len(calls) == 1
        assert cache.lookup(tiny.fingerprint, spec) == second
        other = StripSpec("7", 3, (1, 2), sigma_steps(5, 3.0))
        assert cache.lookup(tiny.fingerprint, other) is None
        assert spec.key(tiny.fingerprint) != spec.key("0" * 64)
        third = cache.get_or_render(tiny, direction, 1.0, other)
        assert not third.cached and len(calls) == 2 and third.image != first.image
    finally:
        del tiny.synthesize
    with Image.open(first.image) as img:
        assert img.format == "JPEG"
        # model.directions.drawing's grid, as on the Review page: 7 cells of 128 px with 4-px gaps after the seed
        # labels,
        # 2 rows above the σ labels.
        assert img.size == (SEED_MARGIN + 7 * 128 + 6 * 4, 2 * 128 + 4 + STEP_MARGIN)
    assert not list((tmp_path / "strips").rglob("*.tmp*"))


def test_strip_grid_layout():
    images = np.zeros((2, 3, 4, 4, 3), np.uint8)
    images[1, 2] = 255
    grid = np.asarray(strip_grid(images, seeds=(5, 6), steps=(-1.0, 0.0, 1.0), cell=8, gap=1))
    assert grid.shape == (2 * 8 + 1 + STEP_MARGIN, SEED_MARGIN + 3 * 8 + 2, 3)
    x0 = SEED_MARGIN
    assert grid[9:17, x0 + 18:x0 + 26].min() == 255  # seed 6, step +1: scaled up by a whole factor, crisp
    assert grid[0:8, x0:x0 + 8].max() == 0 and grid[9:17, x0:x0 + 8].max() == 0
    assert grid[:17, :x0 - 8].min() < 200  # the seed labels are drawn left of the rows
    with pytest.raises(ValueError, match="2 seeds × 2 steps"):
        strip_grid(images, seeds=(5, 6), steps=(-1.0, 1.0))


def test_sigma_steps_are_one_rule_for_the_cli_and_the_review_page():
    assert sigma_steps(7, 3.0) == (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
    assert sigma_steps(7, 5.0) == (-5.0, -3.333, -1.667, 0.0, 1.667, 3.333, 5.0)  # labels read "+1.667σ"
    # A slider's preview across its strength range (publishing, exported previews) steps by the same rule.
    assert range_steps(-2.0, 2.0, 5) == sigma_steps(5, 2.0)
    assert range_steps(-1.0, 2.0, 4) == (-1.0, 0.0, 1.0, 2.0) and range_steps(0.0, 1.0, 4) == (0.0, 0.333, 0.667, 1.0)
    for count, span in ((1, 3.0), (7, 0.0), (7, float("nan"))):
        with pytest.raises(AtelierError):
            sigma_steps(count, span)


def test_sigma_labels_are_drawn_with_a_font_that_has_sigma():
    from pathlib import Path

    from PIL import ImageFont

    from model.network.render import FONT_FILES, can_draw, label_font, sigma_label

    builtin = ImageFont.load_default(size=12)  # Pillow's own font has no σ and no − (U+2212)
    assert not can_draw(builtin, "σ") and can_draw(builtin, "+3")
    assert [sigma_label(v, builtin) for v in (-3, 1.5, 0)] == ["-3 sd", "+1.5 sd", "0 sd"]
    require_service(any(Path(f).is_file() for f in FONT_FILES),
                    "DejaVu Sans is not installed here (Debian: fonts-dejavu-core), so σ labels read 'sd'")
    font = label_font(12)
    assert can_draw(font, "σ−") and [sigma_label(v, font) for v in (-3, 1.5, 0)] == ["−3σ", "+1.5σ", "0σ"]


def test_a_strip_rendered_in_bfloat16_is_cached_apart_from_the_float32_one(tiny, direction, tmp_path):
    """bfloat16 pixels differ from float32 ones by a few levels: a strip cached by one precision is never shown
    for the other, and float32 keeps the keys that caches already hold."""
    assert tiny.precision == "float32" and tiny.picture_identity == tiny.fingerprint
    cache = StripCache(tmp_path / "strips")
    spec = StripSpec("7", 3, (1, 2), sigma_steps(5, 2.0))
    assert not cache.get_or_render(tiny, direction, 1.0, spec).cached
    assert cache.lookup(tiny.picture_identity, spec) is not None
    # The same weights rendering in bfloat16 (read through the same property; no bfloat16 hardware needed).
    in_bfloat16 = SimpleNamespace(fingerprint=tiny.fingerprint, precision="bfloat16")
    identity = type(tiny).picture_identity.fget(in_bfloat16)
    assert identity != tiny.picture_identity and cache.lookup(identity, spec) is None
