"""Where Atelier keeps its files, and which database and model it uses.

Everything is overridable by environment variables so tests, CI and teams can point Atelier elsewhere:
- ``ATELIER_HOME``          folder for the local SQLite file, caches and uploads (default ``~/.atelier``)
- ``ATELIER_DATABASE_URL``  SQLAlchemy URL; PostgreSQL for teams (default: SQLite file inside ATELIER_HOME)
- ``ATELIER_MODEL``         default generator file (default: the built-in demo model)
- ``ATELIER_RUNS``          training run folders (default ``~/.cache/atelier/runs``)
- ``ATELIER_MIN_APPROVALS`` approvals a component needs before it is published (default 1)
"""
from __future__ import annotations

import os
from pathlib import Path

# The repository (or the installed packages' folder): model/assets holds the demo generator and the factor predictor.
PROJECT_DIR = Path(__file__).resolve().parents[1]
ASSETS_DIR = PROJECT_DIR / "model" / "assets"
DEMO_MODEL_PATH = ASSETS_DIR / "demo.safetensors"


def atelier_home() -> Path:
    home = Path(os.environ.get("ATELIER_HOME", Path.home() / ".atelier")).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def cache_dir() -> Path:
    path = atelier_home() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    """Where training runs are looked for and started. Not created here: only a training run writes into it, so
    looking at the Training page leaves no empty folder behind (in ~/.cache with ATELIER_HOME set elsewhere)."""
    return Path(os.environ.get("ATELIER_RUNS", Path.home() / ".cache" / "atelier" / "runs")).expanduser()


def shipped_runs_dir() -> Path | None:
    """The runs that come with a checkout (``runs/``: the demo model's own training), or None when there are none
    (an installed package). They are read, never written: a continued run is copied out first."""
    path = PROJECT_DIR / "runs"
    return path if path.is_dir() else None


def shown_path(path: str | Path) -> str:
    """`path` as people read and type it: under the home folder it starts with `~/` (shorter, and the same on
    every teammate's machine); anything else stays absolute."""
    path = Path(path).expanduser().absolute()
    try:
        inside = path.relative_to(Path.home())
    except ValueError:
        return str(path)
    return "~" if inside == Path(".") else f"~/{inside}"


def database_url() -> str:
    url = os.environ.get("ATELIER_DATABASE_URL", "").strip()
    if url:
        return url
    return f"sqlite:///{atelier_home() / 'atelier.db'}"


def default_model_path() -> Path:
    override = os.environ.get("ATELIER_MODEL", "").strip()
    return Path(override).expanduser() if override else DEMO_MODEL_PATH


def min_approvals_setting() -> int:
    """K, the approvals a component needs: ``ATELIER_MIN_APPROVALS`` (default 1)."""
    from core.errors import AtelierError

    raw = os.environ.get("ATELIER_MIN_APPROVALS", "").strip()
    if not raw:
        return 1
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise AtelierError(f"ATELIER_MIN_APPROVALS must be a whole number of at least 1, got {raw!r}. Unset it for "
                           f"the default of 1.")
    return value
