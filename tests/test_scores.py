"""Automatic scores on constructed image stacks with known answers, and on a tiny real generator."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from model.directions import scores as S


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


def _component(index, base, plus, minus, layers="all"):
    """Score one constructed component from its two edited image stacks (the edit at +2σ and at −2σ)."""
    variants = {S.Variant(layers, 0, 1, 1, len(base)): plus, S.Variant(layers, 0, 1, -1, len(base)): minus}
    return S.score_edits(index, base, variants, S.DEFAULT_SPAN, S.figure_mask(base))


def _shift(images, levels):
    return np.clip(images.astype(int) + levels, 0, 255).astype(np.uint8)


def _coat(base, colours):
    """Each figure gains a wide coat over its lower half, in its own colour: a big, visible garment change."""
    out = base.copy()
    for i, colour in enumerate(colours):
        out[i, 14:30, 8:24] = colour
    return out


def _ghosts(base):
    """The figures fade towards the backdrop: what an edit does when it leaves the image manifold."""
    return (0.2 * base.astype(float) + 0.8 * 210).astype(np.uint8)


def test_an_invisible_uniform_change_ranks_below_a_strong_one_sided_garment_change():
    base = _figures(n=4)
    # Invisible but perfectly consistent: every pixel of every look brightens by 4 levels of 255.
    invisible = _component(0, base, _shift(base, 4), _shift(base, -4))
    # Strong and one-sided: + grows a coat (its colour differs per look), − turns the figures into pale ghosts.
    coat = _coat(base, [(30, 30, 120), (120, 30, 30), (30, 110, 40), (90, 80, 20)])
    strong = _component(1, base, coat, _ghosts(base))
    assert invisible.consistency > 0.99 and strong.consistency < invisible.consistency
    assert strong.priority > 0.5 > invisible.priority
    assert S.priority_order([invisible, strong]) == [1, 0]
    assert strong.best.side == 1 and strong.layer_sensitivity == "all"
    ghost_side = next(r for r in strong.readings if r.side == -1)
    assert ghost_side.fade > 0.5 and strong.best.fade < 0.05
    assert "the other side fades figures" in strong.reason
    assert invisible.dead or invisible.priority < 0, invisible.reason
    assert "visible" in invisible.reason


def test_a_visible_edit_always_ranks_above_a_barely_visible_one():
    base = _figures(n=4)
    faint = base.copy()
    faint[:, 10, 14] = _shift(base[:, 10, 14], 40)  # one pixel per look, clearly changed
    barely = _component(0, base, faint, base)
    bold = _component(1, base, _coat(base, [(100, 100, 100)] * 4), base)
    assert not barely.dead and barely.priority < 0 < bold.priority
    assert "barely visible" in barely.reason


def test_background_and_lighting_edits_rank_after_an_equally_strong_garment_edit():
    base = _figures(n=4)
    backdrop = base.copy()
    backdrop[:, :, :8] = (170, 190, 230)
    backdrop[:, :, 24:] = (170, 190, 230)
    background = _component(0, base, backdrop, base)
    assert background.kind == "background" and background.suggested_category == "background"
    assert "background change" in background.reason
    garment = _component(1, base, _coat(base, [(60, 60, 160)] * 4), base)
    assert garment.kind == "garment"
    assert background.priority == pytest.approx(background.best.value * S.BACKDROP_WEIGHT)
    assert background.best.value >= 0.99 * garment.best.value  # as strong, and still second
    assert S.priority_order([background, garment]) == [1, 0]


def test_a_sleeve_edit_is_suggested_sleeve():
    base = _figures(n=4)
    sleeves = base.copy()
    sleeves[:, 6:16, 8:12] = (200, 40, 40)  # the garment's colour grows down both arms
    sleeves[:, 6:16, 20:24] = (200, 40, 40)
    score = _component(0, base, sleeves, base)
    assert score.suggested_category == "sleeve", (score.locality_where, score.sideness, score.vertical)


def test_the_chosen_layers_are_the_best_reading_and_the_details_say_why():
    base = _figures(n=4)
    coat = _coat(base, [(60, 60, 160)] * 4)
    variants = {S.Variant("all", 0, 1, 1, 4): _shift(base, 3), S.Variant("all", 0, 1, -1, 4): _shift(base, -3),
                S.Variant("fine", 0, 1, 1, 2): coat[:2], S.Variant("fine", 0, 1, -1, 2): base[:2]}
    score = S.score_edits(7, base, variants, S.DEFAULT_SPAN, S.figure_mask(base))
    assert score.layer_sensitivity == "fine" and score.best.layers == "fine" and score.best.seeds == 2
    details = score.details()
    assert details["best"]["layers"] == "fine" and len(details["readings"]) == 4
    assert details["reason"] == score.reason and "fine layers" in score.reason
    assert score.db_fields()["score_details"] == details


def _tiny_generator_and_directions(reference_dir, count: int, seed: int):
    """The 32-px reference generator and `count` random unit directions in its W."""
    from model.network.render import Renderer

    torch.set_num_threads(1)
    r = Renderer(reference_dir / "sg2ada_tiny32.pkl", device="cpu")
    v = np.random.default_rng(seed).standard_normal((count, r.w_dim)).astype(np.float32)
    return r, v / np.linalg.norm(v, axis=1, keepdims=True)


def test_score_set_on_a_tiny_generator(reference_dir):
    r, v = _tiny_generator_and_directions(reference_dir, 3, seed=0)
    batches = []
    scores = S.score_set(r, v, np.array([1.0, 1.0, 0.0]), seeds=[1, 2, 3], batch=8, on_batch=batches.append)
    assert [s.index for s in scores] == [0, 1, 2]
    assert [s.index for batch in batches for s in batch] == [0, 1, 2] and len(batches) > 1  # stored as they come
    assert scores[2].dead and scores[2].effect == 0.0 and scores[2].priority == -1.0
    assert "invisible" in scores[2].reason
    groups = ["coarse", "middle", "fine"]  # 4–8 px, 16 px, 32 px on this 32-px model
    for s in scores[:2]:
        assert s.effect > 0 and 0 <= s.consistency <= 1 and 0 <= s.locality <= 1 and 0 <= s.colour_share <= 1
        assert s.layer_sensitivity in ("all", *groups) and s.suggested_category in S.CATEGORIES
        # both sides on every row with 3 seeds, both sides of each group with 2
        assert sorted((x.layers, x.side, x.seeds) for x in s.readings) == sorted(
            [("all", 1, 3), ("all", -1, 3)] + [(g, side, 2) for g in groups for side in (1, -1)])
        assert s.best in s.readings and s.reason


def test_two_pass_scoring_refines_the_top_of_the_quick_queue(reference_dir):
    r, v = _tiny_generator_and_directions(reference_dir, 4, seed=1)
    sigmas = np.array([2.0, 0.0, 2.0, 2.0])
    steps, stored = [], []
    scores = S.score_set(r, v, sigmas, seeds=[1, 2, 3], batch=8, refine=1, progress=steps.append,
                         on_batch=stored.extend)
    assert sum(steps) == 4 + 1 and [s.index for s in scores] == [0, 1, 2, 3]
    full = [s for s in scores if any(x.layers != "all" for x in s.readings)]
    assert len(full) == 1  # the quick pass's best, scored again with every reading and all three seeds
    quick_best = max((s for s in stored[:4]), key=lambda s: (s.priority, -s.index))
    assert full[0].index == quick_best.index and stored[-1] is full[0]
    assert all(x.seeds == S.QUICK_SEEDS and x.layers == "all" for s in scores if s is not full[0] for x in s.readings)
    assert scores[1].dead  # σ 0: nothing moves, in either pass


def test_scoring_renders_at_the_size_a_reviewer_judges():
    class Shape:
        def __init__(self, stages):
            self._stages, self.resolution = stages, stages[-1]

        def stage_resolutions(self):
            return self._stages

    assert S.scoring_resolution(Shape([4, 8, 16, 32, 64, 128, 256])) == S.VIEW_SIZE == 64
    assert S.scoring_resolution(Shape([4, 8, 16, 32, 64])) is None  # the demo model: its own size
    assert S.scoring_resolution(Shape([4, 8, 16, 32])) is None
    assert S.default_refine(Shape([4, 8, 16, 32, 64, 128, 256])) == S.REFINE_TOP
    assert S.default_refine(Shape([4, 8, 16, 32, 64])) == S.REFINE_TOP  # the demo model too (half the time)
