"""Fixtures for the direction-set tests (export, import, import formats): fresh databases with one model.

Test modules import what they use (``from direction_fixtures import ...``), fixtures included, as with
``db_fixtures``; pytest puts ``tests/`` on sys.path.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from db import queries
from db.engine import dispose_engines, write_session
from db.migrate import ensure_current

FINGERPRINT = "ab" * 32
W_DIM, NUM_WS = 8, 6
ARCH = {"z_dim": 8, "w_dim": W_DIM, "num_ws": NUM_WS, "img_resolution": 32, "c_dim": 0}
runner = CliRunner()


@pytest.fixture(autouse=True)
def _close_engines():
    yield
    dispose_engines()


@pytest.fixture
def target(tmp_path):
    return fresh_db(tmp_path / "target.db", FINGERPRINT, ARCH)


@pytest.fixture(scope="module")
def untouched(tmp_path_factory):
    """One database for all the files that must be refused: none of them may write to it, which each test checks."""
    return fresh_db(tmp_path_factory.mktemp("untouched") / "target.db", FINGERPRINT, ARCH)


def architecture(renderer) -> dict:
    return {"z_dim": renderer.z_dim, "w_dim": renderer.w_dim, "num_ws": renderer.num_ws,
            "img_resolution": renderer.resolution, "c_dim": renderer.c_dim}


def fresh_db(path: Path, fingerprint: str, arch: dict, name: str = "tiny", model_path: str = "tiny.pkl"):
    """A new SQLite database at the latest revision with one registered model; returns (url, model id)."""
    url = f"sqlite:///{path}"
    ensure_current(url)
    with write_session(url) as session:
        model = queries.register_model(session, name, model_path, fingerprint, arch)
    return url, model.id


def populate(url: str, model_id: int, w_dim: int, num_ws: int) -> None:
    """Two component sets, three reviewers, reviews of every kind (conflict, undo, skip), three publications."""
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((6, w_dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with write_session(url) as s:
        sefa = queries.add_component_set(s, model_id, "sefa", {"layers": "all", "seconds": 0.25}, 1000, vectors,
                                         np.linspace(2.0, 0.5, 6), eigenvalues=np.linspace(9.0, 1.0, 6),
                                         review_seeds=[11, 12, 13])
        c = [x.id for x in queries.list_components(s, sefa.id)]
        pca = queries.add_component_set(s, model_id, "pca", {"samples": 500}, 500, rng.standard_normal((3, w_dim)),
                                        [0.7, 0.6, 0.5])
        p = [x.id for x in queries.list_components(s, pca.id)]
        for name in ("ana", "ben", "cleo"):
            queries.add_reviewer(s, name)
        queries.add_category(s, "prints")
        queries.update_scores(s, sefa.id, [
            {"index": 0, "effect": 0.5, "consistency": 0.9, "locality_where": "arms", "priority": 2.0},
            {"index": 1, "colour_share": 0.8, "layer_sensitivity": "fine", "suggested_category": "colour"},
            {"index": 2, "dead": True},
        ])
        queries.record_review(s, "ana", c[0], "approve", label="longer sleeves", category="sleeve", consistency=5,
                              layer_range=(0, num_ws // 2), strength_range=(-2.0, 2.0), note="clear on all seeds")
        queries.record_review(s, "ben", c[0], "approve", label="long sleeves", category="sleeve", consistency=4)
        queries.record_review(s, "cleo", c[0], "reject", note="=HYPERLINK(\"x\")")  # a formula-looking note
        queries.record_review(s, "cleo", c[1], "approve", label="redder", category="colour")
        queries.record_review(s, "ben", c[1], "approve", label="red print", category="prints", consistency=3)
        queries.record_review(s, "ana", c[2], "reject")
        queries.record_review(s, "ben", c[3], "unsure", consistency=2)
        queries.record_review(s, "ana", c[4], "skip")
        queries.record_review(s, "ana", c[5], "approve", label="hem")
        queries.undo_last_review(s, "ana", c[5])
        queries.record_review(s, "ben", p[1], "approve", label="volume", category="silhouette")
        queries.record_review(s, "ana", p[2], "reject")
        queries.publish_direction(s, model_id, "Sleeve length", "ana", component_id=c[0], category="sleeve",
                                  layer_range=(0, num_ws // 2), strength_range=(-2.0, 2.5))
        queries.publish_direction(s, model_id, "Colour: red", "ben", component_id=c[1], category="prints",
                                  layer_range=(num_ws // 2, num_ws))
        queries.publish_direction(s, model_id, "Volume", "ben", component_id=p[1], category="silhouette")
        queries.publish_direction(s, model_id, "-Hemline", "cleo", vector=rng.standard_normal(w_dim),
                                  category="length", strength_range=(-1.0, 1.0))
        old = queries.publish_direction(s, model_id, "Old", "ana", component_id=c[3])
        queries.unpublish_direction(s, old.id, "ana")


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}
