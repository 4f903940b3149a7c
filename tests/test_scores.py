"""Automatic scores on constructed image stacks with known answers, and on a tiny real generator."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from model import scores as S


def _figures(n=4, size=32, colour=(200, 40, 40)):
    """Grey backdrop with a coloured 'figure' block in the middle."""
    base = np.full((n, size, size, 3), 210, np.uint8)
    base[:, 4:28, 12:20] = colour
    return base


def test_pure_hue_shift_scores_as_colour():
    base = _figures()
    after = _figures(colour=(40, 170, 60))
    changes = S.edit_changes(base, after, 1.0)
    score = S.measure(changes, base)
    assert score.colour_share > 0.8
    assert score.suggested_category == "colour"
    assert score.consistency > 0.99
    assert score.outside_share == 0.0


def test_brightness_only_change_has_low_colour_share():
    base = _figures(colour=(100, 100, 100))
    after = _figures(colour=(160, 160, 160))
    assert S.colour_share(S.edit_changes(base, after, 1.0)) < 0.01


def test_consistency_identical_vs_opposite_vs_unrelated():
    rng = np.random.default_rng(0)
    field = rng.standard_normal((1, 32, 32, 3))
    same = np.repeat(field, 4, axis=0)
    assert S.consistency_score(same) == pytest.approx(1.0)
    opposite = np.concatenate([field, -field, field, -field])
    # pairs: 2 agreeing (+1), 4 opposite (−1) -> mean −1/3, clipped to 0
    assert S.consistency_score(opposite) == 0.0
    two = np.concatenate([field, -field])
    assert S.consistency_score(two) == 0.0
    unrelated = rng.standard_normal((6, 32, 32, 3))
    assert S.consistency_score(unrelated) < 0.1
    with_dead_seed = np.concatenate([field, field, np.zeros_like(field)])
    assert S.consistency_score(with_dead_seed) == pytest.approx(1 / 3)


def test_consistency_reads_the_same_edit_on_differently_coloured_garments_as_consistent():
    """A sleeve growing over the same arm region on garments of different colours: each seed's RGB change is
    (garment colour − skin colour), so plain RGB fields disagree, but the brightness change agrees."""
    skin = np.array([0.80, 0.62, 0.50])
    garments = [np.array(c) for c in ((0.20, 0.25, 0.70), (0.60, 0.15, 0.15), (0.15, 0.55, 0.20), (0.45, 0.40, 0.10))]
    fields = np.zeros((len(garments), 16, 16, 3))
    for i, garment in enumerate(garments):
        fields[i, 4:9, 2:5] = garment - skin  # left sleeve region
        fields[i, 4:9, 11:14] = garment - skin  # right sleeve region
    flat = fields.reshape(len(fields), -1)
    unit = flat / np.linalg.norm(flat, axis=1, keepdims=True)
    rgb_cosine = ((unit @ unit.T).sum() - len(unit)) / (len(unit) * (len(unit) - 1))
    assert S.consistency_score(fields) > 0.8 > rgb_cosine + 0.1
    # A hue shift that is the same on every seed stays fully consistent; a seed-dependent sign does not.
    shift = np.zeros((3, 16, 16, 3))
    shift[:, 3:13, 5:11] = (0.1, -0.05, -0.05)
    assert S.consistency_score(shift) == pytest.approx(1.0)
    assert S.consistency_score(shift * np.array([1, -1, 1])[:, None, None, None]) < 0.35


def test_change_confined_to_bottom_band_is_local_and_at_the_bottom():
    changes = np.zeros((3, 30, 30, 3))
    changes[:, 22:, :, :] = 0.5
    locality, where, vertical, _ = S.locality_score(changes)
    assert locality > 0.6 and where.startswith("bottom") and vertical > 0.8
    everywhere = np.full((3, 30, 30, 3), 0.5)
    assert S.locality_score(everywhere)[0] < 0.01


def test_sides_and_background_and_pattern():
    base = _figures()
    mask = S.figure_mask(base)
    assert mask[10, 15] and not mask[10, 2]
    sides = np.zeros((4, 32, 32, 3))
    sides[:, 8:14, 9:12] = 0.3
    sides[:, 8:14, 20:23] = 0.3
    loc, where, vertical, sideness = S.locality_score(sides, mask)
    assert where == "top-sides" and sideness > 1.15
    backdrop = np.zeros((4, 32, 32, 3))
    backdrop[:, :, :6] = 0.2
    backdrop[:, :, 26:] = 0.2
    assert S.measure(backdrop, base).suggested_category == "background"
    stripes = np.zeros((4, 32, 32, 3))
    stripes[:, 4:28:2, 12:20] = 0.4
    stripes[:, 5:28:2, 12:20] = -0.4
    assert S.high_freq_share(stripes) > 0.9


def test_priority_puts_dead_components_last():
    def make(i, effect, consistency, locality=0.5):
        return S.ComponentScore(i, effect, consistency, locality, "middle-centre", 0.1, None, "other", 0.0, False)

    scores = [make(0, 0.0, 1.0), make(1, 0.1, 0.9), make(2, 0.1, 0.2), make(3, 0.02, 0.95), make(4, 0.1, 0.9, 0.9)]
    S.assign_priority(scores)
    assert scores[0].dead and scores[0].priority == -1.0 and not scores[1].dead
    assert S.priority_order(scores) == [4, 1, 3, 2, 0]


def test_score_set_on_a_tiny_generator(reference_dir):
    from model.render import Renderer

    torch.set_num_threads(1)
    r = Renderer(reference_dir / "sg2ada_tiny32.pkl", device="cpu")
    rng = np.random.default_rng(0)
    v = rng.standard_normal((3, r.w_dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    scores = S.score_set(r, v, np.array([1.0, 1.0, 0.0]), seeds=[1, 2, 3], batch=8)
    assert [s.index for s in scores] == [0, 1, 2]
    assert scores[2].dead and scores[2].effect == 0.0 and scores[2].priority == -1.0
    for s in scores[:2]:
        assert s.effect > 0 and 0 <= s.consistency <= 1 and 0 <= s.locality <= 1 and 0 <= s.colour_share <= 1
        assert s.layer_sensitivity in ("coarse", "middle", "fine") and s.suggested_category in S.CATEGORIES
