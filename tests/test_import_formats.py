"""Import from GANSpace (.npz), InterFaceGAN (.npy) and the old notebooks' SeFa files (torch.save)."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch

from conftest import assert_clean_user_error
from db import queries, review_queue
from db.engine import read_session
from direction_fixtures import (  # noqa: F401
    FINGERPRINT,
    NUM_WS,
    W_DIM,
    _close_engines,
    architecture,
    fresh_db,
    runner,
    target,
    untouched,
)
from model.directions.importers import detect_kind, load_npy, read_raw
from model.directions.set_reader import load_direction_set
from workflows.export import export_direction_set
from workflows.imports import apply_import, plan_import


def unit_rows(n: int, w_dim: int = W_DIM, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, w_dim))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def npy_bytes(array, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def torch_bytes(obj, legacy: bool = False) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


def ganspace(n: int = 5) -> bytes:
    return npz_bytes(lat_comp=unit_rows(n)[:, None, :].astype(np.float32), lat_mean=np.ones((1, W_DIM), np.float32),
                     lat_stdev=np.linspace(3.0, 1.0, n).astype(np.float32), var_ratio=np.ones(n))


def state(url: str, model_id: int = 1):
    with read_session(url) as s:
        sets = queries.list_component_sets(s, model_id)
        return sets, {d.name: d for d in queries.active_directions(s, model_id)}, s


def test_ganspace_components_become_a_set_to_review(target):
    url, model_id = target
    data = ganspace()
    assert detect_kind(data, "comps.npz") == "ganspace"
    plan = plan_import(data, FINGERPRINT, url=url, filename="comps.npz")
    assert plan.ok, plan.errors
    assert plan.counts() == {"add-set": 1} and "ganspace, 5 component(s), to review" in plan.summary()
    result = apply_import(plan, url, "ana")
    with read_session(url) as s:
        (info,) = queries.list_component_sets(s, model_id)
        components = queries.list_components(s, info.id)
        vectors = queries.component_vectors(s, info.id)
        queue = review_queue.queue_for(s, "ana", info.id)
        assert queries.active_directions(s, model_id) == []
    assert result.component_set_ids == [info.id] and info.method == "ganspace" and len(queue) == 5
    assert [c.sigma for c in components] == pytest.approx(np.linspace(3.0, 1.0, 5))
    assert [c.eigenvalue for c in components] == pytest.approx(np.linspace(3.0, 1.0, 5) ** 2)
    assert np.array_equal(vectors, unit_rows(5).astype(np.float32))
    assert info.params["sha256"] and info.params["atelier_import"]["file"] == "comps.npz"
    # The same file again is recognised and changes nothing.
    again = plan_import(data, FINGERPRINT, url=url, filename="renamed.npz")
    assert again.counts() == {"reuse-set": 1}
    assert apply_import(again, url, "ana").component_set_ids == []


def test_ganspace_publish_with_names(target):
    url, model_id = target
    names = [f"look {i}" for i in range(3)]
    plan = plan_import(npz_bytes(lat_comp=unit_rows(3), lat_mean=np.zeros(W_DIM), lat_stdev=np.ones(3) * 2),
                       FINGERPRINT, url=url, publish=True, names=names)
    assert plan.ok and plan.counts() == {"add-set": 1, "publish": 3}, plan.summary()
    apply_import(plan, url, "ana")
    data = export_direction_set(url, model_id)
    ds = load_direction_set(data)
    assert ds.names == names and [d.sigma for d in ds.directions] == [2.0, 2.0, 2.0]
    assert all(d.published_by == "ana" and d.layer_range == (0, NUM_WS) for d in ds.directions)
    assert ds.direction("look 1").source == {"kind": "component", "set": "s1", "method": "ganspace", "index": 1}
    bad = plan_import(ganspace(3), FINGERPRINT, url=url, publish=True, names=["a", "b"])
    assert not bad.ok and "2 name(s) given for 3 direction(s)" in bad.errors[0]
    bad = plan_import(ganspace(2), FINGERPRINT, url=url, publish=True, names=["a/b", "c"])
    assert not bad.ok and "path separator" in bad.errors[0]


@pytest.mark.parametrize("arrays, message", [
    (dict(lat_comp=unit_rows(2), lat_mean=np.zeros(W_DIM)), "lacks 'lat_stdev'"),
    (dict(lat_comp=unit_rows(2)[:, None, None, :], lat_mean=np.zeros(W_DIM), lat_stdev=np.ones(2)),
     "expected [n, 1, w_dim] or [n, w_dim]"),
    (dict(lat_comp=unit_rows(2), lat_mean=np.zeros(W_DIM), lat_stdev=np.ones(3)), "3 values for 2 components"),
    (dict(lat_comp=unit_rows(2, w_dim=16), lat_mean=np.zeros(16), lat_stdev=np.ones(2)),
     "vectors of length 16, but model 'tiny' has w_dim 8"),
    (dict(lat_comp=np.full((2, W_DIM), np.nan), lat_mean=np.zeros(W_DIM), lat_stdev=np.ones(2)), "NaN"),
    (dict(lat_comp=unit_rows(2), lat_mean=np.zeros(W_DIM), lat_stdev=-np.ones(2)), "negative"),
])
def test_bad_ganspace_files(untouched, arrays, message):
    url, _ = untouched
    plan = plan_import(npz_bytes(**arrays), FINGERPRINT, url=url)
    assert not plan.ok and message in plan.errors[0], plan.errors


def test_npz_with_pickled_objects_is_refused_without_unpickling(untouched):
    url, _ = untouched
    data = npz_bytes(lat_comp=np.array([{"x": 1}], dtype=object), lat_mean=np.zeros(W_DIM), lat_stdev=np.ones(1))
    plan = plan_import(data, FINGERPRINT, url=url)
    assert not plan.ok and "object arrays would need pickle" in plan.errors[0]


def test_interfacegan_boundary_is_normalised_and_gets_sigma_from_the_model(tmp_path, reference_dir, monkeypatch):
    from model.directions import importers
    from model.network.render import Renderer

    monkeypatch.setattr(importers, "SIGMA_SAMPLES", 2000)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # shared CI cores: see test_export_direction_set.renderer
    try:
        renderer = Renderer(reference_dir / "sg2ada_tiny32.pkl", device="cpu")
        url, model_id = fresh_db(tmp_path / "t.db", renderer.fingerprint, architecture(renderer))
        boundary = np.random.default_rng(3).standard_normal((1, renderer.w_dim)) * 4.0
        data = npy_bytes(boundary)
        assert detect_kind(data, "smile.npy") == "interfacegan"
        plan = plan_import(data, renderer.fingerprint, url=url, renderer=renderer, filename="long_sleeve.npy",
                           publish=True)
        assert plan.ok and not plan.warnings, plan.summary()
        apply_import(plan, url, "ana")
        ds = load_direction_set(export_direction_set(url, model_id))
        # σ by its definition: the spread of w (one mapping output per z) along the unit boundary normal.
        z = np.random.default_rng(0).standard_normal((2000, renderer.z_dim))
        w = renderer.ws_from_z(z)[:, 0].double().numpy()
        expected = float(np.std(w @ (boundary[0] / np.linalg.norm(boundary))))
    finally:
        torch.set_num_threads(threads)
    assert ds.names == ["long_sleeve"] and ds.direction("long_sleeve").source["method"] == "interfacegan"
    assert np.linalg.norm(ds.vectors[0]) == pytest.approx(1.0, abs=1e-6)
    assert np.allclose(ds.vectors[0], (boundary[0] / np.linalg.norm(boundary)).astype(np.float32))
    assert ds.direction("long_sleeve").sigma == pytest.approx(expected) and expected > 0


def test_interfacegan_without_the_model_uses_sigma_one_and_says_so(target):
    url, model_id = target
    plan = plan_import(npy_bytes(np.ones((1, W_DIM))), FINGERPRINT, url=url, filename="b.npy")
    assert plan.ok and any("σ is 1.0" in w for w in plan.warnings)
    apply_import(plan, url, "ana")
    with read_session(url) as s:
        (info,) = queries.list_component_sets(s, model_id)
        (component,) = queries.list_components(s, info.id)
    assert component.sigma == 1.0 and info.method == "interfacegan"


@pytest.mark.parametrize("data, message", [
    (npy_bytes(np.ones((2, W_DIM))), "an InterFaceGAN boundary is [1, w_dim]"),
    (npy_bytes(np.zeros((1, W_DIM))), "all-zero boundary"),
    (npy_bytes(np.ones((1, W_DIM)))[:-8], "the file is truncated or damaged"),
    (npy_bytes(np.array(["a", "b"])), "only plain numbers are accepted"),
    (npy_bytes(np.array([None, 1], dtype=object), allow_pickle=True), "object arrays would need pickle"),
    (b"\x93NUMPY\x09\x00garbage", "not a readable .npy array"),
    (b"just some text", "not a file Atelier recognises"),
    (b"", "is empty"),
])
def test_bad_interfacegan_and_unknown_files(untouched, data, message):
    url, _ = untouched
    plan = plan_import(data, FINGERPRINT, url=url, filename="x.npy")
    assert not plan.ok and message in plan.errors[0], plan.errors


def test_npy_header_cannot_make_us_allocate_more_than_the_file():
    data = npy_bytes(np.ones(4))
    huge = data.replace(b"(4,)", b"(4000000000000,)".ljust(4))
    with pytest.raises(Exception, match="truncated or damaged|not a readable"):
        load_npy(huge, "huge.npy")


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_sefa_factor_file_columns_are_the_directions(target, legacy):
    url, model_id = target
    eigvec = torch.linalg.qr(torch.randn(W_DIM, W_DIM, generator=torch.Generator().manual_seed(0)))[0][:, :4]
    data = torch_bytes({"ckpt": "/old/network-snapshot-000400.pkl", "eigvec": eigvec}, legacy=legacy)
    assert detect_kind(data, "factor.pt") == "sefa-legacy"
    raw = read_raw(data, "sefa-legacy", "factor.pt")
    assert raw.vectors.shape == (4, W_DIM)
    for i in range(4):
        assert np.array_equal(raw.vectors[i], eigvec[:, i].numpy())
    plan = plan_import(data, FINGERPRINT, url=url, filename="factor.pt")
    assert plan.ok and any("network-snapshot-000400.pkl" in w for w in plan.warnings)
    apply_import(plan, url, "ana")
    with read_session(url) as s:
        (info,) = queries.list_component_sets(s, model_id)
        assert info.method == "sefa-legacy" and info.component_count == 4
        assert np.array_equal(queries.component_vectors(s, info.id), eigvec.T.numpy())


class Payload:
    """Pickles as a call to os.mkdir: loading it with plain pickle would create the marker folder."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_sefa_file_with_a_pickled_callable_is_refused_and_nothing_runs(tmp_path, untouched, legacy):
    url, _ = untouched
    marker = tmp_path / "pwned"
    data = torch_bytes({"ckpt": "x.pkl", "eigvec": torch.eye(W_DIM)[:, :2], "x": Payload(str(marker))},
                       legacy=legacy)
    plan = plan_import(data, FINGERPRINT, url=url, filename="factor.pt")
    assert not plan.ok
    assert "factor.pt was refused" in plan.errors[0] and "nothing in the file was run" in plan.errors[0]
    assert not marker.exists()
    with read_session(url) as s:
        assert queries.list_component_sets(s) == []


@pytest.mark.parametrize("obj, message", [
    ({"ckpt": "x", "eigvec": torch.ones(W_DIM + 1, 2)}, "vectors of length 9"),
    ({"ckpt": "x", "vectors": torch.ones(W_DIM, 2)}, "found ['ckpt', 'vectors']"),
    ([1, 2, 3], "found list"),
    ({"eigvec": torch.ones(2, 2, 2)}, "2-D float tensor"),
    ({"eigvec": torch.full((W_DIM, 2), float("nan"))}, "NaN"),
])
def test_bad_sefa_files(untouched, obj, message):
    url, _ = untouched
    plan = plan_import(torch_bytes(obj), FINGERPRINT, url=url, filename="factor.pt")
    assert not plan.ok and message in plan.errors[0], plan.errors


def test_cli_imports_foreign_files(tmp_path, target):
    from cli.main import app

    url, model_id = target
    path = tmp_path / "comps.npz"
    path.write_bytes(ganspace(3))
    result = runner.invoke(app, ["import", str(path), "--database", url, "--publish", "--names", "a,b,c", "--yes",
                                 "--reviewer", "ana"])
    assert result.exit_code == 0, result.output
    assert "add-set s1: ganspace, 3 component(s)" in result.output and "3 published" in result.output
    with read_session(url) as s:
        assert [d.name for d in queries.active_directions(s, model_id)] == ["a", "b", "c"]
    boundary = tmp_path / "b.npy"
    boundary.write_bytes(npy_bytes(np.ones((1, 3))))
    result = runner.invoke(app, ["import", str(boundary), "--database", url, "--yes"])
    assert_clean_user_error(result, "has w_dim 8")
