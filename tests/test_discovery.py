"""Direction discovery: SeFa against an independent computation, PCA against scikit-learn, k-means, σ, storage."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from model.directions import discovery as D
from core.errors import AtelierError
from model.network.render import Renderer


@pytest.fixture(scope="module")
def tiny(reference_dir):
    torch.set_num_threads(1)
    return Renderer(reference_dir / "sg2ada_tiny32.pkl", device="cpu")


def _affines_by_name(G, names):
    modules = dict(G.synthesis.named_modules())
    return np.concatenate([modules[f"{n}.affine"].weight.detach().double().numpy() for n in names])


def _independent_sefa(a):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    _, s, vt = np.linalg.svd(a, full_matrices=True)  # right singular vectors = eigenvectors of AᵀA
    values = np.zeros(a.shape[1])
    values[:len(s)] = s ** 2
    return values, vt


def test_sefa_all_matches_independent_svd(tiny):
    G = tiny.G
    names = [n[:-len(".affine")] for n, _ in G.synthesis.named_modules() if n.endswith(".affine")]
    values, vt = _independent_sefa(_affines_by_name(G, names))
    cs = D.sefa(G, "all")
    assert cs.vectors.shape == (G.w_dim, G.w_dim) and len(cs.values) == G.w_dim
    np.testing.assert_allclose(cs.values, values, rtol=1e-6, atol=1e-8)
    assert np.all(np.diff(cs.values) <= 1e-9)  # descending
    np.testing.assert_allclose(np.linalg.norm(cs.vectors, axis=1), 1, atol=1e-5)
    gaps = np.abs(np.diff(values[:21]))
    for i in range(20):  # well-separated eigenvalues have unique vectors up to sign
        if gaps[i] > 1e-4 and (i == 0 or gaps[i - 1] > 1e-4):
            assert abs(float(cs.vectors[i] @ vt[i])) > 0.999


def test_sefa_coarse_uses_the_layers_reading_rows_0_to_2(tiny):
    # At 32 px: ws row 0 -> b4.conv1; row 1 -> b4.torgb and b8.conv0; row 2 -> b8.conv1 (b8.torgb reads row 3).
    assert D.layer_rows(tiny.G, "coarse") == [0, 1, 2]
    values, _ = _independent_sefa(_affines_by_name(tiny.G, ["b4.conv1", "b4.torgb", "b8.conv0", "b8.conv1"]))
    cs = D.sefa(tiny.G, "coarse")
    np.testing.assert_allclose(cs.values, values, rtol=1e-6, atol=1e-8)
    assert (cs.params["layer_start"], cs.params["layer_stop"]) == (0, 3)
    explicit = D.sefa(tiny.G, "0-2")
    np.testing.assert_allclose(explicit.values, cs.values)


def test_layer_groups_scale_with_resolution():
    stages_1024 = [2 ** i for i in range(2, 11)]
    assert D.group_resolutions(stages_1024, "coarse") == [4, 8]
    assert D.group_resolutions(stages_1024, "middle") == [16, 32]
    assert D.group_resolutions(stages_1024, "fine") == [64, 128, 256, 512, 1024]
    assert D.group_resolutions([4, 8, 16, 32], "fine") == [32]
    assert D.group_resolutions([4, 8, 16, 32], "middle") == [16]
    with pytest.raises(AtelierError):
        D.group_resolutions([4, 8, 16], "middle")
    with pytest.raises(AtelierError):
        D.parse_layers("3-99", 8)
    assert D.parse_layers("2-4", 8) == (2, 5)


def test_pca_matches_sklearn_on_the_same_samples(tiny):
    from sklearn.decomposition import PCA

    n, batch = 2000, 1000
    cs = D.pca(tiny, n=n, seed=7, batch=batch)
    w = np.concatenate([D.sample_w(tiny, batch, seed=7 + s, batch=batch)[0] for s in range(0, n, batch)])
    ref = PCA(n_components=10, svd_solver="full").fit(w.astype(np.float64))
    np.testing.assert_allclose(cs.values[:10], ref.explained_variance_ratio_, rtol=1e-5)
    np.testing.assert_allclose(cs.sigmas[:10] ** 2 * n / (n - 1), ref.explained_variance_, rtol=1e-5)
    cos = np.abs(np.sum(cs.vectors[:10].astype(np.float64) * ref.components_, axis=1))
    assert np.all(cos > 0.9999)
    assert cs.sample_count == n and cs.vectors.shape == (tiny.w_dim, tiny.w_dim)
    # σ of a PCA component is also the std of the samples projected on it.
    np.testing.assert_allclose(D.projection_sigmas(cs.vectors[:5], w), cs.sigmas[:5], rtol=1e-4)


def test_kmeans_directions_run_from_the_mean_to_each_look_and_count_its_samples(tiny):
    w, _ = D.sample_w(tiny, 400, seed=1)
    cs = D.kmeans_looks(tiny, k=5, w=w, seed=1)
    assert cs.vectors.shape == (5, tiny.w_dim)
    centroids = np.asarray(cs.extra["centroids"], dtype=np.float64)
    offsets = centroids - w.mean(axis=0, dtype=np.float64)
    np.testing.assert_allclose(cs.vectors, offsets / np.linalg.norm(offsets, axis=1, keepdims=True), atol=1e-5)
    # Each look's share is the fraction of samples nearest to it (k-means' own assignment), largest first.
    nearest = np.argmin(((w[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_allclose(cs.values, np.bincount(nearest, minlength=5) / len(w))
    assert np.all(np.diff(cs.values) <= 0)
    np.testing.assert_allclose(cs.sigmas, (w @ cs.vectors.T.astype(np.float64)).std(axis=0), rtol=1e-4)


def test_sigma_is_the_std_of_projected_samples():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((200_000, 4)) * np.array([3.0, 1.0, 0.5, 0.0]) + 5.0
    vectors = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [1 / np.sqrt(2), 1 / np.sqrt(2), 0, 0], [0, 0, 0, 1]])
    sigmas = D.projection_sigmas(vectors, w)
    np.testing.assert_allclose(sigmas, [3.0, 1.0, np.sqrt(5.0), 0.0], rtol=0.01, atol=1e-9)
    np.testing.assert_allclose(sigmas, (w @ vectors.T).std(axis=0), rtol=1e-6, atol=1e-9)


def test_layer_presets_are_the_layer_groups_own_rows(tiny):
    # One rule: the app's preset buttons name the same ws rows as the CLI's --layers and as discovery.
    presets = D.layer_presets(tiny.G)
    assert list(presets) == ["coarse", "middle", "fine", "all"]  # the order the Review page offers them in
    assert presets == {"coarse": (0, 3), "middle": (3, 5), "fine": (5, 8), "all": (0, tiny.num_ws)}
    for name in ("coarse", "middle", "fine"):
        assert presets[name] == D.row_span(tiny.G, D.parse_layers(name, tiny.num_ws))


def test_a_model_too_small_for_a_group_is_not_offered_it():
    from model.network.networks import Generator

    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=1), synthesis_kwargs=dict(channel_base=64, channel_max=8))
    presets = D.layer_presets(G)
    assert list(presets) == ["coarse", "fine", "all"]  # 4 and 8 px are coarse, the last (16 px) stage is fine
    assert presets["coarse"] == (0, 3) and presets["fine"] == (3, G.num_ws) and presets["all"] == (0, G.num_ws)


def test_review_seeds_are_distinct_sorted_and_reproducible():
    for rng_seed in range(20):
        seeds = D.choose_review_seeds(rng_seed=rng_seed)
        assert len(seeds) == D.DEFAULT_REVIEW_SEEDS == len(set(seeds)) and seeds == sorted(seeds)
        assert all(0 <= s < D.REVIEW_SEED_RANGE for s in seeds)
        assert D.choose_review_seeds(rng_seed=rng_seed) == seeds
    # Without replacement: even a draw of every seed in the range has no repeat (the app's old integers() draw had).
    assert len(set(D.choose_review_seeds(count=D.REVIEW_SEED_RANGE, rng_seed=1))) == D.REVIEW_SEED_RANGE


def test_renderable_samples_follow_the_seed_convention(tiny):
    w, seeds = D.sample_w(tiny, 4, seed=10, renderable=True)
    assert list(seeds) == [10, 11, 12, 13]
    np.testing.assert_allclose(w, tiny.ws_from_seeds([10, 11, 12, 13])[:, 0].numpy(), atol=1e-6)


def test_set_round_trips_through_file_and_database(tiny, tmp_path):
    from db.engine import read_session
    from db.queries import component_vectors, get_component_set, list_components
    from workflows.components import store_component_set

    w, _ = D.sample_w(tiny, 500)
    cs = D.sefa(tiny.G, "fine", w_samples=w, fingerprint=tiny.fingerprint)
    loaded = D.ComponentSet.load(cs.save(tmp_path / "set.npz"))
    np.testing.assert_array_equal(loaded.vectors, cs.vectors)
    assert loaded.params == cs.params and loaded.fingerprint == tiny.fingerprint
    set_id = store_component_set(cs, tiny, review_seeds=[1, 2, 3]).id
    with read_session() as session:
        info = get_component_set(session, set_id)
        comps = list_components(session, set_id)
        vectors = component_vectors(session, set_id)
    assert info.method == "sefa" and info.review_seeds == [1, 2, 3] and info.params["layers"] == "fine"
    assert len(comps) == tiny.w_dim
    np.testing.assert_allclose([c.sigma for c in comps], cs.sigmas, rtol=1e-6)
    np.testing.assert_allclose(vectors, cs.vectors, atol=1e-6)


def test_umap_map_keeps_clusters_apart_and_each_point_keeps_its_seed(tiny):
    """Two far-apart clouds in w must land apart in the 2-D map; subsampling keeps every point paired with its seed,
    and the map round-trips through its per-model cache file."""
    rng = np.random.default_rng(0)
    w = np.concatenate([rng.standard_normal((150, 16)), rng.standard_normal((150, 16)) + 12.0]).astype(np.float32)
    seeds = np.arange(1000, 1300)
    coords, kept = D.umap_embedding(w, seeds, points=200, random_state=0)
    assert coords.shape == (200, 2) and coords.dtype == np.float32 and np.isfinite(coords).all()
    assert len(set(kept.tolist())) == 200 and set(kept.tolist()) <= set(seeds.tolist())
    cloud = kept >= 1150  # which cloud each kept point came from, read off its seed
    assert 0 < cloud.sum() < 200
    # Every point's nearest neighbour in the map comes from the same cloud.
    d = ((coords[:, None] - coords[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (cloud[d.argmin(axis=1)] == cloud).all()
    gap = np.linalg.norm(coords[cloud].mean(0) - coords[~cloud].mean(0))
    spread = max(coords[cloud].std(0).max(), coords[~cloud].std(0).max())
    assert gap > 3 * spread
    with pytest.raises(AtelierError, match="one seed per sample"):
        D.umap_embedding(w, seeds[:10])
    D.save_map(tiny.fingerprint, coords, kept)
    loaded = D.load_map(tiny.fingerprint)
    assert loaded is not None and np.array_equal(loaded[0], coords) and np.array_equal(loaded[1], kept)
