"""What the pages need from the model and the database, without Streamlit (so it is testable and benchmarkable).

- one :class:`~model.network.render.Renderer` per model file per process (:func:`get_renderer`);
- the first-start bootstrap: migrate the database, register the default (demo) model, compute its component
  set so the Review page has every component at once, and score it in the background (:func:`bootstrap`);
- which model is active (:func:`active_model_id`), stored beside the SQLite file so it survives restarts;
- the calls into discovery and scoring, each in exactly one function here (:func:`discover_components`,
  :func:`score_components`), so the pages never care which module provides them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from db import queries as q
from db.engine import read_session, write_session
from db.migrate import ensure_current
from core.errors import AtelierError
from core.files import atomic_write_bytes
from core.settings import atelier_home, database_url, default_model_path

log = logging.getLogger("atelier.annotator")

Progress = Callable[[float, str], None]

_renderers: dict[str, Any] = {}
_renderers_lock = threading.Lock()
_state_lock = threading.Lock()
_migrated: set[str] = set()
_migrate_lock = threading.Lock()
_bootstrap_lock = threading.Lock()
_scoring: dict[int, threading.Thread] = {}
_scoring_errors: dict[int, str] = {}


def _url(url: str | None) -> str:
    return url or database_url()


# --------------------------------------------------------------------------------------------------------------
# Renderer: loaded once per process


def get_renderer(path: str | Path | None = None):
    """The process-wide renderer for a model file (loaded on first use, CPU unless a GPU is there)."""
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
            # Device and precision from `atelier app --device/--precision` (ATELIER_DEVICE, ATELIER_PRECISION).
            renderer = Renderer(resolved, device=None, precision=None)
            _renderers[key] = renderer
        return renderer


def renderer_for(model: q.ModelInfo):
    path = Path(model.path)
    if not path.exists():
        raise AtelierError(f"The file of model {model.name!r} is missing: {model.path}. Register it again from "
                           "its new location on the Models page.")
    return get_renderer(path)


def architecture_of(renderer) -> dict[str, Any]:
    return {"z_dim": renderer.z_dim, "w_dim": renderer.w_dim, "c_dim": renderer.c_dim,
            "num_ws": renderer.num_ws, "img_resolution": renderer.resolution}


# --------------------------------------------------------------------------------------------------------------
# Start-up


def migrate_once(url: str | None = None) -> None:
    """Upgrade the database schema once per process (a fresh SQLite file becomes usable)."""
    key = _url(url)
    with _migrate_lock:
        if key not in _migrated:
            ensure_current(key)
            _migrated.add(key)


@dataclass(frozen=True)
class Context:
    """What every page starts from: the active model and its current component set (None while there is none)."""

    url: str
    model: q.ModelInfo
    component_set: q.ComponentSetInfo | None


def bootstrap(url: str | None = None, *, score_in_background: bool = True) -> Context:
    """Make the app usable with no configuration: schema, default model, a component set, scores on the way."""
    url = _url(url)
    migrate_once(url)
    with _bootstrap_lock:
        with read_session(url) as session:
            models = q.list_models(session)
        if not models:
            register_model_file(default_model_path(), None, url)
        model = active_model(url)
        with read_session(url) as session:
            sets = q.list_component_sets(session, model.id)
        if not sets:
            component_set = create_component_set(model, url)
            if score_in_background and scoring_on_start():
                start_scoring(component_set.id, model, url)
        else:
            component_set = current_component_set(model.id, url)
    return Context(url=url, model=model, component_set=component_set)


def context(url: str | None = None) -> Context:
    """The active model and set, without creating anything (pages call this after :func:`bootstrap`)."""
    url = _url(url)
    model = active_model(url)
    return Context(url=url, model=model, component_set=current_component_set(model.id, url))


# --------------------------------------------------------------------------------------------------------------
# Models and the active one


def _state_file() -> Path:
    return atelier_home() / "annotator.json"


def _read_state() -> dict[str, Any]:
    try:
        return json.loads(_state_file().read_text())
    except (OSError, ValueError):
        return {}


def _write_state(**values: Any) -> None:
    # Streamlit runs each browser session in its own thread: the lock keeps two read-modify-writes from losing
    # each other's change, and the atomic write keeps a reader from seeing half a file.
    with _state_lock:
        state = _read_state()
        state.update(values)
        atomic_write_bytes(_state_file(), json.dumps(state, indent=2).encode())


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


def register_upload(file_name: str, data: bytes, name: str | None, url: str | None = None) -> q.ModelInfo:
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


def register_model_file(path: str | Path, name: str | None, url: str | None = None) -> q.ModelInfo:
    """Load a generator file (checks it is one) and register it; the same weights again return the same entry."""
    path = Path(path).expanduser()
    if not path.exists():
        raise AtelierError(f"No such file: {path}. Give the path of a .pkl or .safetensors generator.")
    renderer = get_renderer(path)
    label = (name or "").strip() or ("demo" if path.resolve() == default_model_path().resolve() else path.stem)
    with write_session(_url(url)) as session:
        taken = {m.name for m in q.list_models(session)}
        existing = q.model_by_fingerprint(session, renderer.fingerprint)
        if existing is None and label in taken:
            label = f"{label} ({renderer.fingerprint[:8]})"
        return q.register_model(session, label, str(path.resolve()), renderer.fingerprint, architecture_of(renderer))


def register_run_generator(run_dir: str | Path, which: str = "best", url: str | None = None) -> q.ModelInfo:
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


def active_model(url: str | None = None) -> q.ModelInfo:
    """The model the team works on: the one chosen on the Models page, else the first registered."""
    url = _url(url)
    chosen = _read_state().get("active_model_id")
    with read_session(url) as session:
        models = q.list_models(session)
    if not models:
        raise AtelierError("No model is registered yet: register one on the Models page.")
    by_id = {m.id: m for m in models}
    return by_id.get(chosen, models[0])


def set_active_model(model_id: int) -> None:
    _write_state(active_model_id=int(model_id))


def current_component_set(model_id: int, url: str | None = None) -> q.ComponentSetInfo | None:
    """The chosen set of this model, else its newest."""
    with read_session(_url(url)) as session:
        sets = q.list_component_sets(session, model_id)
    chosen = _read_state().get("active_sets", {}).get(str(model_id))
    for item in sets:
        if item.id == chosen:
            return item
    return sets[0] if sets else None


def set_active_component_set(model_id: int, set_id: int) -> None:
    sets = dict(_read_state().get("active_sets", {}))
    sets[str(model_id)] = int(set_id)
    _write_state(active_sets=sets)


# --------------------------------------------------------------------------------------------------------------
# Discovery and scoring: the only places that call model.directions.discovery / model.directions.scores


def discover_components(renderer, method: str = "sefa", layers: str | tuple[int, int] = "all",
                        progress: Progress | None = None) -> dict[str, Any]:
    """Run discovery; returns vectors, sigmas, eigenvalues, params, sample_count for :func:`q.add_component_set`."""
    report = progress or (lambda fraction, text: None)
    report(0.05, f"{method}: sampling w and factorising")
    from model.directions import discovery

    found = discovery.discover(renderer, method, layers if isinstance(layers, str) else f"{layers[0]}-{layers[1] - 1}")
    report(0.9, "storing")
    params = dict(found.params)
    params["fingerprint"] = found.fingerprint
    return {"vectors": found.vectors, "sigmas": found.sigmas, "eigenvalues": found.values,
            "params": params, "sample_count": found.sample_count}


def create_component_set(model: q.ModelInfo, url: str | None = None, method: str = "sefa",
                         layers: str | tuple[int, int] = "all",
                         progress: Progress | None = None) -> q.ComponentSetInfo:
    renderer = renderer_for(model)
    found = discover_components(renderer, method, layers, progress)
    from model.directions.discovery import choose_review_seeds

    seeds = choose_review_seeds(rng_seed=model.id)  # the CLI's rule (distinct, sorted), seeded by the model id
    with write_session(_url(url)) as session:
        info = q.add_component_set(session, model.id, method, found["params"], found["sample_count"],
                                   found["vectors"], found["sigmas"], found["eigenvalues"], seeds)
    set_active_component_set(model.id, info.id)
    if progress:
        progress(1.0, f"{info.component_count} components ready")
    return info


def score_components(set_id: int, model: q.ModelInfo, url: str | None = None,
                     progress: Callable[[int], None] | None = None) -> int:
    """Compute and store the automatic scores; returns how many components were scored."""
    from model.directions import scores
    from model.network.render import Renderer

    # Its own copy of the generator: the interactive renderer's lock stays free for the pages meanwhile.
    renderer = Renderer(Path(model.path), device=None, precision=None)
    with read_session(_url(url)) as session:
        vectors = q.component_vectors(session, set_id)
        sigmas = np.array([c.sigma for c in q.list_components(session, set_id)])
    # Each batch is stored as it is done: the queue places what is scored at once (db.queries.review_order).
    found = scores.score_set(renderer, vectors, sigmas, batch=64, progress=progress,
                             resolution=scores.scoring_resolution(renderer), refine=scores.default_refine(renderer),
                             on_batch=lambda batch: scores.store_scores(set_id, batch, _url(url)))
    return len(found)


_scored: dict[int, int] = {}


def start_scoring(set_id: int, model: q.ModelInfo, url: str | None = None) -> None:
    """Score a set in a background thread (the Review page works meanwhile, in index order)."""
    running = _scoring.get(set_id)
    if running is not None and running.is_alive():
        return
    _scored[set_id] = 0
    _scoring_errors.pop(set_id, None)

    def count(done: int) -> None:
        _scored[set_id] = _scored.get(set_id, 0) + done

    def work() -> None:
        try:
            score_components(set_id, model, url, count)
        except Exception as exc:  # shown on the Overview page; never kills the app
            log.exception("scoring set %s failed", set_id)
            _scoring_errors[set_id] = str(exc)

    thread = threading.Thread(target=work, name=f"atelier-score-{set_id}", daemon=True)
    _scoring[set_id] = thread
    thread.start()


def scoring_state(set_id: int) -> str:
    """'' when idle, else a short sentence for the pages."""
    if set_id in _scoring_errors:
        return f"Scoring failed: {_scoring_errors[set_id]}"
    thread = _scoring.get(set_id)
    if thread is not None and thread.is_alive():
        return f"Scoring components in the background ({_scored.get(set_id, 0)} measured so far)."
    return ""


def scoring_on_start() -> bool:
    """``ATELIER_SCORE_ON_START=0`` skips background scoring at first start (tests, slow machines)."""
    return os.environ.get("ATELIER_SCORE_ON_START", "1").strip() not in ("0", "false", "no")


# --------------------------------------------------------------------------------------------------------------
# Layer presets and σ


def layer_presets(renderer) -> dict[str, tuple[int, int]]:
    """ws row ranges (stop exclusive) for coarse, middle, fine and all: model.directions.discovery's rule, the CLI's
    too."""
    from model.directions.discovery import layer_presets as presets_of

    return presets_of(renderer.G)


def direction_sigma(direction: q.DirectionInfo, url: str | None = None) -> float:
    """The σ a published direction's slider counts in: its component's σ; for supervised directions, 1."""
    from workflows.exchange import direction_sigma as shared_sigma

    with read_session(_url(url)) as session:
        return float(shared_sigma(session, direction))


def edit_for(vector: np.ndarray, sigma: float, value: float, layer_start: int, layer_stop: int):
    """A slider value in σ → an Edit: the direction-set format's own function, so exports render identically."""
    from model.directions.set_format import edit_for as shared_edit_for

    return shared_edit_for(vector, sigma, value, layer_start, layer_stop)
