"""Registering generators: one rule for a model's architecture record and its name, for the app and the CLI.

- :func:`architecture_of`: what the database records about a generator's shape (written here only).
- :func:`model_label`: a new model's name — the name given, else ``demo`` for the built-in model, else the file's
  stem; a name already taken by other weights gets the fingerprint's first 8 digits in brackets.
- :func:`register_network`: register a loaded generator (idempotent by fingerprint: the same weights return the same
  entry, with its path updated when the file has moved).
- the app's model files: one renderer per file per process (:func:`get_renderer`), uploads kept by content, and a
  training run's best or newest snapshot (:func:`register_run_generator`).
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import AtelierError
from core.files import atomic_write_bytes
from core.settings import atelier_home, database_url, default_model_path
from db import queries as q
from db.records import ModelInfo
from db.engine import write_session

_renderers: dict[str, Any] = {}
_renderers_lock = threading.Lock()


def architecture_of(renderer) -> dict[str, Any]:
    """The generator's shape as the database and exported direction sets record it."""
    return {"z_dim": renderer.z_dim, "w_dim": renderer.w_dim, "c_dim": renderer.c_dim,
            "num_ws": renderer.num_ws, "img_resolution": renderer.resolution}


def model_label(name: str | None, path: str | Path | None, fingerprint: str, taken: set[str]) -> str:
    """The name a newly registered model gets (see the module's docstring for the rule)."""
    label = (name or "").strip()
    if not label and path:
        resolved = Path(path).expanduser().resolve()
        label = "demo" if resolved == default_model_path().resolve() else resolved.stem
    label = label or f"model-{fingerprint[:8]}"
    return f"{label} ({fingerprint[:8]})" if label in taken else label


@dataclass(frozen=True)
class Registration:
    """A registered model, and whether this call created it (False: those weights were registered already)."""

    model: ModelInfo
    created: bool


def register_network(session, renderer, name: str | None = None,
                     path: str | Path | None = None) -> Registration:
    """Register the renderer's generator under :func:`model_label`'s name; same weights → the existing entry."""
    source = path if path is not None else (getattr(renderer.network, "source", "") or "")
    stored_path = str(Path(source).expanduser().resolve()) if source else ""
    existing = q.model_by_fingerprint(session, renderer.fingerprint)
    taken = set() if existing is not None else {m.name for m in q.list_models(session)}
    label = existing.name if existing is not None else model_label(name, source or None, renderer.fingerprint, taken)
    model = q.register_model(session, label, stored_path, renderer.fingerprint, architecture_of(renderer))
    return Registration(model=model, created=existing is None)


# --------------------------------------------------------------------------------------------------------------
# The app's model files


def get_renderer(path: str | Path | None = None):
    """The process-wide renderer for a model file (loaded on first use; device and precision from
    ``atelier app --device/--precision``, i.e. ATELIER_DEVICE and ATELIER_PRECISION)."""
    from model.network.render import Renderer

    resolved = Path(path or default_model_path()).expanduser().resolve()
    try:
        stat = resolved.stat()
        # Keyed on the file's size and modification time too: a file replaced at the same path is loaded afresh
        # instead of rendering with the weights that were there before.
        key = f"{resolved}|{stat.st_size}|{stat.st_mtime_ns}"
    except OSError:
        key = str(resolved)  # a missing file: Renderer raises the clear error
    with _renderers_lock:
        renderer = _renderers.get(key)
        if renderer is None:
            renderer = Renderer(resolved, device=None, precision=None)
            _renderers[key] = renderer
        return renderer


def renderer_for(model: ModelInfo):
    """The registered model's renderer; a clear message when its file has gone."""
    path = Path(model.path)
    if not path.exists():
        raise AtelierError(f"The file of model {model.name!r} is missing: {model.path}. Register it again from "
                           "its new location on the Models page.")
    return get_renderer(path)


def register_model_file(path: str | Path, name: str | None, url: str | None = None) -> ModelInfo:
    """Load a generator file (checks it is one) and register it; the same weights again return the same entry."""
    path = Path(path).expanduser()
    if not path.exists():
        raise AtelierError(f"No such file: {path}. Give the path of a .pkl or .safetensors generator.")
    renderer = get_renderer(path)
    with write_session(url or database_url()) as session:
        return register_network(session, renderer, name, path).model


def _upload_target(file_name: str, data: bytes) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in Path(file_name).name).lstrip(".") or "network"
    return atelier_home() / "uploads" / f"{hashlib.sha256(data).hexdigest()[:16]}-{safe}"


def store_upload(file_name: str, data: bytes) -> Path:
    """Keep an uploaded network under ATELIER_HOME/uploads, named by its content: a second upload with the same
    file name but other weights gets its own file instead of replacing the first model's weights."""
    if not data:
        raise AtelierError(f"{file_name} is empty (0 bytes); upload the file again.")
    target = _upload_target(file_name, data)
    if not target.exists():
        atomic_write_bytes(target, data)
    return target


def register_upload(file_name: str, data: bytes, name: str | None, url: str | None = None) -> ModelInfo:
    """Store an uploaded network and register it. A file that is refused (damaged, crafted, not a generator) is
    deleted again, unless an earlier upload had already stored those exact bytes: refused uploads must not pile up
    in uploads/."""
    fresh = not _upload_target(file_name, data).exists()
    stored = store_upload(file_name, data)
    try:
        return register_model_file(stored, name, url)
    except BaseException:
        if fresh:
            stored.unlink(missing_ok=True)
        raise


def register_run_generator(run_dir: str | Path, which: str = "best", url: str | None = None) -> ModelInfo:
    """Register a training run's best generator (``which="best"``) or its newest snapshot (``"newest"``) as a model.

    The file is copied into ATELIER_HOME/uploads first: the trainer replaces network-best.safetensors when a better
    snapshot comes and deletes old snapshots, and a registered model must keep the weights it was registered with.
    """
    from model.training.runs import read_run

    run = read_run(run_dir)
    if which == "best":
        if run.best_path is None:
            raise AtelierError(f"{run.path} has no best generator yet (it is kept once the trainer measures a "
                               f"snapshot's Fréchet distance); register the newest snapshot instead")
        source, kimg = run.best_path, float(run.best.get("kimg", run.kimg))
    elif which == "newest":
        if not run.snapshots:
            raise AtelierError(f"{run.path} has no snapshot yet; the trainer writes the first one after "
                               f"--snap-minutes or --snap-kimg")
        kimg, source = run.snapshots[-1]
    else:
        raise AtelierError(f"which must be 'best' or 'newest', not {which!r}")
    return register_upload(f"{run.name}-{int(kimg)}kimg.safetensors", source.read_bytes(),
                           f"{run.name} · {int(kimg)} kimg", url)
