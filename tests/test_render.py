"""Seeds, batched rendering, per-layer edits, strips and preview resolution."""
from __future__ import annotations

import resource

import numpy as np
import pytest
import torch

from core.errors import AtelierError
from model.network.render import (MAX_SEED, Edit, Renderer, apply_edits, check_seed, image_grid, parse_seeds,
                                  reuse_freed_memory, seed_to_z, strip_ws)


@pytest.fixture(scope="module")
def renderer(reference_dir):
    return Renderer(reference_dir / "sg2ada_tiny32.pkl", device="cpu")


@pytest.fixture(scope="module")
def cond_renderer(reference_dir):
    return Renderer(reference_dir / "sg2ada_tiny32_cond.pkl", device="cpu")


@pytest.mark.parametrize("bad", [-1, MAX_SEED + 1, 1.5, "abc", "", None, True, "12.0"])
def test_bad_seeds_are_clear_errors(bad):
    with pytest.raises(AtelierError, match="whole number from 0 to 4294967295"):
        check_seed(bad)


def test_seed_conventions():
    assert check_seed(" 168 ") == 168 and check_seed(np.int64(3)) == 3 and check_seed(MAX_SEED) == MAX_SEED
    assert np.array_equal(seed_to_z(168, 512), np.random.RandomState(168).randn(512))
    assert parse_seeds("0-3, 7,10-11") == [0, 1, 2, 3, 7, 10, 11]
    with pytest.raises(AtelierError, match="backwards"):
        parse_seeds("5-2")
    with pytest.raises(AtelierError, match="no seeds"):
        parse_seeds(" , ")


def test_batched_rendering_equals_one_by_one(renderer):
    together = renderer.render_seeds([0, 1, 2, 3, 4], psi=0.7)
    alone = np.concatenate([renderer.render_seeds([s], psi=0.7) for s in range(5)])
    assert together.shape == (5, 32, 32, 3) and together.dtype == np.uint8
    assert np.abs(together.astype(int) - alone.astype(int)).max() <= 1


def test_edits_and_layer_ranges(renderer):
    ws = renderer.ws_from_seeds([0, 1])
    d = np.random.default_rng(0).standard_normal(renderer.w_dim)
    edited = apply_edits(ws, [Edit(d, 2.0, 3, 6)])
    assert torch.allclose(edited[:, 3:6] - ws[:, 3:6], torch.as_tensor(2.0 * d, dtype=torch.float32).expand(2, 3, -1))
    assert torch.equal(edited[:, :3], ws[:, :3]) and torch.equal(edited[:, 6:], ws[:, 6:])
    with pytest.raises(AtelierError, match="outside this model's 8 ws rows"):
        apply_edits(ws, [Edit(d, 1.0, 5, 9)])
    with pytest.raises(AtelierError, match="direction has 3 values"):
        apply_edits(ws, [Edit(np.ones(3), 1.0)])


def test_strip_equals_direct_edits(renderer):
    ws = renderer.ws_from_seeds([5, 6], psi=0.7)
    d = np.random.default_rng(1).standard_normal(renderer.w_dim)
    d /= np.linalg.norm(d)
    offsets = [-2.0, 0.0, 2.0]
    strip = renderer.synthesize(strip_ws(ws, d, offsets, 2, 5))
    for s in range(2):
        for t, offset in enumerate(offsets):
            direct = renderer.synthesize(ws[s:s + 1], [Edit(d, offset, 2, 5)])
            # One image and a batch take different (equivalent) arithmetic paths: at most one level apart.
            diff = np.abs(strip[s * 3 + t].astype(int) - direct[0].astype(int))
            assert diff.max() <= 1 and diff.mean() < 0.01


def test_centred_strip_removes_own_projection(renderer):
    ws = renderer.ws_from_seeds([1, 2, 3])
    d = np.zeros(renderer.w_dim)
    d[0] = 1.0
    centred = strip_ws(ws, d, [0.0], centred=True)
    assert torch.allclose(centred[:, :, 0], torch.zeros_like(centred[:, :, 0]), atol=1e-6)


def test_preview_resolution_is_an_earlier_stage(renderer):
    full = renderer.render_seeds([0])
    preview = renderer.render_seeds([0], resolution=16)
    assert full.shape == (1, 32, 32, 3) and preview.shape == (1, 16, 16, 3)
    # The preview is the skip image of an earlier stage: the same composition at lower resolution.
    small = full[0].reshape(16, 2, 16, 2, 3).mean(axis=(1, 3))
    assert np.corrcoef(small.ravel(), preview[0].ravel().astype(float))[0, 1] > 0.5
    with pytest.raises(AtelierError, match="not one of this model's stages"):
        renderer.render_seeds([0], resolution=24)


def test_conditional_classes(cond_renderer):
    with pytest.raises(AtelierError, match="class-conditional"):
        cond_renderer.render_seeds([0])
    with pytest.raises(AtelierError, match="out of range"):
        cond_renderer.render_seeds([0], class_index=3)
    a, b = cond_renderer.render_seeds([0], class_index=0), cond_renderer.render_seeds([0], class_index=1)
    assert not np.array_equal(a, b)


def test_image_grid_layout():
    images = np.stack([np.full((2, 2, 3), i, np.uint8) for i in range(5)])
    grid = image_grid(images, columns=3, pad=1, background=255)
    assert grid.shape == (5, 8, 3) and grid[0, 0, 0] == 0 and grid[3, 0, 0] == 3 and grid[4, 7, 0] == 255


def _page_faults_of_a_filled_tensor(nbytes: int) -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(nbytes // 4)  # allocated, written and freed again
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_a_cpu_renderer_reuses_freed_large_blocks(renderer):
    """A block freed by one layer is reused by the next instead of being faulted in again page by page (glibc gives
    blocks over 32 MiB back to the kernel unless told otherwise; that cost a 256-px network a sixth of its speed)."""
    if not reuse_freed_memory():  # the renderer fixture already asked; False where the C library is not glibc
        pytest.skip("this C library has no mallopt to keep freed blocks (glibc has)")
    nbytes = 96 * 2 ** 20
    for _ in range(3):  # the first blocks are new pages (and small allocations may split the first freed one)
        _page_faults_of_a_filled_tensor(nbytes)
    pages = nbytes // resource.getpagesize()
    faults = [_page_faults_of_a_filled_tensor(nbytes) for _ in range(8)]
    fresh = sum(count > pages // 2 for count in faults)
    assert fresh <= 2, f"{faults}: freed blocks were faulted in again (without reuse: {pages} each time)"
