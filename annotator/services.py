"""The app's own state and start-up, without Streamlit (so it is testable and benchmarkable).

- the first-start bootstrap: migrate the database, register the default (demo) model, compute its component
  set so the Review page has every component at once, and score it in the background (:func:`bootstrap`);
- which model and set are active (:func:`active_model`), stored beside the SQLite file so it survives restarts;
- background scoring threads and their progress for the pages (:func:`start_scoring`, :func:`scoring_state`).

The use cases themselves (register a model, discover and store a set, score and store) are workflows'; the app and
the `atelier` commands call the same functions there.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from core.errors import AtelierError
from core.files import atomic_write_bytes
from core.settings import atelier_home, database_url, default_model_path
from db import queries as q
from db.engine import read_session
from db.records import ComponentSetInfo, DirectionInfo, ModelInfo
from db.migrate import ensure_current
from workflows import components, registry

log = logging.getLogger("atelier.annotator")

Progress = Callable[[float, str], None]

_state_lock = threading.Lock()
_migrated: set[str] = set()
_migrate_lock = threading.Lock()
_bootstrap_lock = threading.Lock()
_scoring: dict[int, threading.Thread] = {}
_scoring_errors: dict[int, str] = {}


def _url(url: str | None) -> str:
    return url or database_url()


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
    model: ModelInfo
    component_set: ComponentSetInfo | None


def bootstrap(url: str | None = None, *, score_in_background: bool = True) -> Context:
    """Make the app usable with no configuration: schema, default model, a component set, scores on the way."""
    url = _url(url)
    migrate_once(url)
    with _bootstrap_lock:
        with read_session(url) as session:
            models = q.list_models(session)
        if not models:
            registry.register_model_file(default_model_path(), None, url)
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


def active_model(url: str | None = None) -> ModelInfo:
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


def current_component_set(model_id: int, url: str | None = None) -> ComponentSetInfo | None:
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


def create_component_set(model: ModelInfo, url: str | None = None, method: str = "sefa",
                         layers: str | tuple[int, int] = "all",
                         progress: Progress | None = None) -> ComponentSetInfo:
    """Discover and store a set (workflows.components, as `atelier discover` does); it becomes the model's active
    set."""
    report = progress or (lambda fraction, text: None)
    report(0.05, f"{method}: sampling w and factorising")
    info = components.discover_and_store(registry.renderer_for(model), method, layers, url=_url(url))
    set_active_component_set(model.id, info.id)
    report(1.0, f"{info.component_count} components ready")
    return info


def score_components(set_id: int, model: ModelInfo, url: str | None = None,
                     progress: Callable[[int], None] | None = None) -> int:
    """Compute and store the automatic scores (workflows.components, as `atelier score` does); returns how many
    components were scored."""
    from model.network.render import Renderer

    # Its own copy of the generator: the interactive renderer's lock stays free for the pages meanwhile.
    renderer = Renderer(Path(model.path), device=None, precision=None)
    return len(components.score_and_store(set_id, renderer, _url(url), progress=progress))


_scored: dict[int, int] = {}


def start_scoring(set_id: int, model: ModelInfo, url: str | None = None) -> None:
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


def direction_sigma(direction: DirectionInfo, url: str | None = None) -> float:
    """The σ a published direction's slider counts in: its component's σ; for supervised directions, 1."""
    from workflows.sliders import direction_sigma as shared_sigma

    with read_session(_url(url)) as session:
        return float(shared_sigma(session, direction))


def edit_for(vector: np.ndarray, sigma: float, value: float, layer_start: int, layer_stop: int):
    """A slider value in σ → an Edit: the direction-set format's own function, so exports render identically."""
    from model.directions.set_format import edit_for as shared_edit_for

    return shared_edit_for(vector, sigma, value, layer_start, layer_stop)
