"""Fixtures for the db tests: a fresh database per test, on SQLite and on PostgreSQL.

Test modules import the fixtures they use (``from db_fixtures import ...``); pytest puts ``tests/`` on sys.path.

PostgreSQL comes from ``ATELIER_TEST_POSTGRES_URL`` (``.ci/postgres.sh`` starts one and prints it). Each test gets
its own schema there, selected through the connection's search_path, and the schema is dropped afterwards; so
tests never see each other's rows and no CREATEDB privilege is needed. Without the variable the PostgreSQL
half of each test is skipped locally and fails in CI, where skipping would hide a broken setup.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from db import migrate, queries
from db.engine import dispose_engines, normalise_url, safe_url, write_session

POSTGRES_ENV = "ATELIER_TEST_POSTGRES_URL"
POSTGRES_MISSING = "PostgreSQL not available: run .ci/postgres.sh or set ATELIER_TEST_POSTGRES_URL"

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]

W_DIM = 8
NUM_WS = 6


def postgres_base_url() -> str:
    url = os.environ.get(POSTGRES_ENV, "").strip()
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{POSTGRES_MISSING} (CI must provide it: .ci/run calls .ci/postgres.sh)", pytrace=False)
        pytest.skip(POSTGRES_MISSING)
    return url


@contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
    """A URL whose connections live in a new, empty schema; the schema is dropped on exit."""
    schema = f"atelier_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalise_url(base_url), poolclass=NullPool)
    try:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except OperationalError as exc:
        admin.dispose()
        pytest.fail(f"{POSTGRES_ENV} is set to {safe_url(base_url)} but the server cannot be used: {exc.orig}. "
                    "Run .ci/postgres.sh (as root) or fix the URL.", pytrace=False)
    url = make_url(normalise_url(base_url)).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        # Pooled connections of the engines under test would otherwise keep the schema busy.
        dispose_engines()
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def empty_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all, on the parametrised backend."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'review.db'}"
        dispose_engines()
    else:
        with postgres_schema(postgres_base_url()) as url:
            yield url


@pytest.fixture
def db_url(empty_url: str) -> str:
    """A database at the latest revision."""
    migrate.upgrade(empty_url)
    return empty_url


@dataclass(frozen=True)
class Seeded:
    url: str
    model_id: int
    set_id: int
    component_ids: list[int]  # by component index
    reviewers: list[str]


def seed(url: str, *, components: int = 6, reviewers: tuple[str, ...] = ("ana", "ben", "cleo")) -> Seeded:
    """One model (w_dim 8, 6 ws), one component set, some reviewers."""
    rng = np.random.default_rng(0)
    with write_session(url) as session:
        model = queries.register_model(
            session, "demo", "/models/demo.safetensors", "ab" * 32,
            {"z_dim": 8, "w_dim": W_DIM, "num_ws": NUM_WS, "img_resolution": 64, "c_dim": 3},
        )
        info = queries.add_component_set(
            session, model.id, "sefa", {"layers": "all"}, 0,
            rng.standard_normal((components, W_DIM)), np.linspace(2.0, 1.0, components),
            eigenvalues=np.linspace(10.0, 1.0, components), review_seeds=[1, 2, 3],
        )
        ids = [c.id for c in queries.list_components(session, info.id)]
        for name in reviewers:
            queries.add_reviewer(session, name)
    return Seeded(url=url, model_id=model.id, set_id=info.id, component_ids=ids, reviewers=list(reviewers))


@pytest.fixture
def seeded(db_url: str) -> Seeded:
    return seed(db_url)
