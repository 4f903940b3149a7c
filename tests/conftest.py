"""Shared test fixtures: reference vectors, an isolated ATELIER_HOME, and service requirements."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference"


def require_service(available: bool, reason: str) -> None:
    """Skip locally with a reason when an optional service is missing; in CI (CI set) fail instead of skipping."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} — CI must provide it (.ci/run installs and starts it)")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own ATELIER_HOME so no test touches a real ~/.atelier."""
    home = tmp_path_factory.mktemp("atelier-home")
    monkeypatch.setenv("ATELIER_HOME", str(home))
    monkeypatch.setenv("ATELIER_RUNS", str(home / "runs"))
    return home


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.fail(f"reference vectors missing: {REFERENCE} (the shared/ folder beside the checkout)")
    return REFERENCE
