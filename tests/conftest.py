"""Shared test fixtures: reference vectors, an isolated ATELIER_HOME, and service requirements."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import Result

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference"


def require_service(available: bool, reason: str) -> None:
    """Skip locally with a reason when an optional service is missing; in CI (CI set) fail instead of skipping."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} — CI must provide it (.ci/run installs and starts it)")
    pytest.skip(reason)


def assert_clean_user_error(result: Result, *phrases: str, code: int = 1) -> None:
    """Assert a CliRunner result is a handled user error: SystemExit with `code`, each phrase in the output.

    Why not `"Traceback" not in result.output`: CliRunner never prints a traceback, it stores an uncaught exception
    in `result.exception` (with exit code 1), so that check could not fail. A user error that went through
    `exit_on_user_error` (or a Click usage error) leaves a SystemExit there instead; any other exception is a crash.
    """
    assert isinstance(result.exception, SystemExit), (
        f"expected a clean exit, got a crash: {result.exception!r}\n{result.output}"
    )
    assert result.exit_code == code, (result.exit_code, result.output)
    for phrase in phrases:
        assert phrase in result.output, (phrase, result.output)


def stand_in_persistence(monkeypatch):
    """Make `torch_utils.persistence._reconstruct_persistent_obj` importable while a test pickles crafted
    stylegan2-ada 'persistent objects' (a stand-in that only returns its meta; Atelier's loader never imports it).
    Returns the stand-in function, to put in a pickle's reduce tuple."""
    import sys
    import types

    module = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):
        return meta

    _reconstruct_persistent_obj.__module__ = module.__name__
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    module._reconstruct_persistent_obj = _reconstruct_persistent_obj
    monkeypatch.setitem(sys.modules, "torch_utils", types.ModuleType("torch_utils"))
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", module)
    return _reconstruct_persistent_obj


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
