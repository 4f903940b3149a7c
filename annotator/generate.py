"""Generate page logic without Streamlit: the look in the URL, the sliders, and cached renders as image bytes.

URL: ``?seed=42&psi=0.7&class=3&d.12=1.5&d.7=-2`` — one ``d.<direction id>`` per moved slider, in σ.
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from annotator import imaging, services
from db import queries as q
from db.records import DirectionInfo, LookEdit, LookInfo
from core.errors import AtelierError
from model.network.render import MAX_SEED, check_seed

DEFAULT_PSI = 0.7
PSI_RANGE = (0.0, 1.5)
DISPLAY_TARGET = 512
CACHE_ENTRIES = 128
GUIDANCE = (
    "No directions are published yet, so there are no sliders. To get some: review components on the Review "
    "page and approve the ones with a clear effect (with a label), then publish them on Directions & export."
)


@dataclass(frozen=True)
class Slider:
    """A published direction as the page shows it."""

    id: int
    name: str
    category: str
    vector: np.ndarray = field(compare=False, repr=False)
    sigma: float
    layer_range: tuple[int, int]
    strength_range: tuple[float, float]
    # Why this slider should not be trusted right now (its component is in conflict), shown beside it; None if fine.
    warning: str | None = None

    @property
    def param(self) -> str:
        return f"d.{self.id}"

    def clamp(self, value: float) -> float:
        low, high = self.strength_range
        return float(min(max(value, low), high))


def sliders(directions: Sequence[DirectionInfo], sigma_of: Callable[[DirectionInfo], float],
            warnings: Mapping[int, str] | None = None) -> list[Slider]:
    """``warnings``: direction id → why its slider is marked (workflows.publishing.direction_flags'
    conflicts)."""
    marks = warnings or {}
    return [Slider(id=d.id, name=d.name, category=d.category or "other", vector=np.asarray(d.vector),
                   sigma=float(sigma_of(d)), layer_range=tuple(d.layer_range),  # type: ignore[arg-type]
                   strength_range=tuple(d.strength_range), warning=marks.get(d.id))  # type: ignore[arg-type]
            for d in directions]


def conflict_marks(url: str, model_id: int) -> dict[int, str]:
    """Direction id → the conflict its component is in, for the mark on Generate's slider."""
    from db.engine import read_session
    from workflows.publishing import direction_flags

    with read_session(url) as session:
        return {d: flag.conflict for d, flag in direction_flags(session, model_id).items() if flag.conflict}


def grouped(items: Sequence[Slider]) -> dict[str, list[Slider]]:
    groups: dict[str, list[Slider]] = {}
    for item in sorted(items, key=lambda s: (s.category, s.name.lower())):
        groups.setdefault(item.category, []).append(item)
    return groups


@dataclass(frozen=True)
class LookState:
    seed: int | None = 0
    psi: float = DEFAULT_PSI
    class_index: int | None = None
    values: tuple[tuple[int, float], ...] = ()  # (direction id, σ) for every slider not at 0

    def value(self, direction_id: int) -> float:
        return dict(self.values).get(direction_id, 0.0)


def unedited(look: LookState) -> LookState:
    """The same seed, ψ and class with every slider at 0: the "before" of a before/after comparison."""
    return dataclasses.replace(look, values=())


def parse_seed(text: str | None) -> tuple[int | None, str | None]:
    """Seed box text → (seed, None), (None, prompt) when empty, or (None, error message)."""
    if text is None or not str(text).strip():
        return None, f"Type a seed (any whole number from 0 to {MAX_SEED:,}) or press Random."
    try:
        return check_seed(str(text).strip()), None
    except AtelierError as exc:
        return None, str(exc).capitalize() + "."


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def parse_query(params: Mapping[str, Any], available: Sequence[Slider], c_dim: int = 0) -> tuple[LookState, list[str]]:
    """Read a shared URL; anything malformed becomes a warning and its default, never an exception."""
    warnings: list[str] = []
    raw = {k: (v[-1] if isinstance(v, (list, tuple)) and v else v) for k, v in params.items()}
    seed: int | None = 0
    if "seed" in raw:
        seed, problem = parse_seed(str(raw["seed"]))
        if problem:
            warnings.append(f"The link's seed {raw['seed']!r} is not usable ({problem}); showing seed 0.")
            seed = 0
    psi = DEFAULT_PSI
    if "psi" in raw:
        try:
            psi = _number(str(raw["psi"]))
            if not PSI_RANGE[0] <= psi <= PSI_RANGE[1]:
                raise ValueError
        except ValueError:
            warnings.append(f"The link's ψ {raw['psi']!r} is not a number from {PSI_RANGE[0]} to {PSI_RANGE[1]}; "
                            f"using {DEFAULT_PSI}.")
            psi = DEFAULT_PSI
    class_index = 0 if c_dim else None
    if "class" in raw and c_dim:
        try:
            class_index = int(str(raw["class"]))
            if not 0 <= class_index < c_dim:
                raise ValueError
        except ValueError:
            warnings.append(f"The link's class {raw['class']!r} is not 0 to {c_dim - 1}; using class 0.")
            class_index = 0
    by_id = {s.id: s for s in available}
    values: dict[int, float] = {}
    for key, text in raw.items():
        if not str(key).startswith("d."):
            continue
        try:
            direction_id = int(str(key)[2:])
        except ValueError:
            warnings.append(f"Ignored {key!r} in the link: not a direction.")
            continue
        slider = by_id.get(direction_id)
        if slider is None:
            warnings.append(f"Ignored {key!r} in the link: that direction is not published (any more).")
            continue
        try:
            value = _number(str(text))
        except ValueError:
            warnings.append(f"Ignored {slider.name!r} = {text!r} in the link: not a number.")
            continue
        if slider.clamp(value) != value:
            warnings.append(f"{slider.name!r} = {value} is outside its range {slider.strength_range}; clamped.")
            value = slider.clamp(value)
        if value:
            values[direction_id] = value
    return LookState(seed=seed, psi=psi, class_index=class_index, values=tuple(sorted(values.items()))), warnings


def to_query(look: LookState) -> dict[str, str]:
    params: dict[str, str] = {}
    if look.seed is not None:
        params["seed"] = str(look.seed)
    params["psi"] = f"{look.psi:g}"
    if look.class_index is not None:
        params["class"] = str(look.class_index)
    for direction_id, value in look.values:
        if value:
            params[f"d.{direction_id}"] = f"{value:g}"
    return params


def look_from_saved(look: LookInfo, available: Sequence[Slider]) -> tuple[LookState, list[str]]:
    """A saved look as a state; edits whose direction is no longer published are reported, not applied."""
    by_id = {s.id: s for s in available}
    by_name = {s.name: s for s in available}
    values: dict[int, float] = {}
    missing: list[str] = []
    for edit in look.edits:
        slider = by_id.get(edit.direction_id) if edit.direction_id is not None else None
        slider = slider or by_name.get(edit.name)
        if slider is None:
            missing.append(edit.name)
        elif edit.value:
            values[slider.id] = slider.clamp(edit.value)
    warnings = [f"Not applied (no longer published): {', '.join(missing)}."] if missing else []
    return LookState(seed=look.seed, psi=look.psi, class_index=look.class_index,
                     values=tuple(sorted(values.items()))), warnings


def look_differences(look: LookInfo, available: Sequence[Slider], fingerprint: str) -> list[str]:
    """How today's sliders would render this saved look differently; empty when they match it exactly.

    A look keeps the directions it was made with, so it always reopens as saved; this is what the page says
    before offering to re-apply today's sliders instead.
    """
    found: list[str] = []
    if look.model_fingerprint is not None and look.model_fingerprint != fingerprint:
        found.append("it was designed on other weights than this model's")
    by_id = {s.id: s for s in available}
    by_name = {s.name: s for s in available}
    for edit in look.edits:
        slider = (by_id.get(edit.direction_id) if edit.direction_id is not None else None) or by_name.get(edit.name)
        if slider is None:
            found.append(f"{edit.name!r} is no longer published")
        elif not edit.frozen:
            found.append(f"{edit.name!r} was saved before looks kept their directions; today's slider is used")
        elif not np.array_equal(np.asarray(edit.vector, np.float32), np.asarray(slider.vector, np.float32)):
            found.append(f"{edit.name!r} is now published with another direction")
        elif tuple(edit.layer_range or ()) != tuple(slider.layer_range):
            layers = edit.layer_range or (0, 0)
            found.append(f"{edit.name!r} now moves layers {slider.layer_range[0]}–{slider.layer_range[1] - 1} "
                         f"(saved on {layers[0]}–{layers[1] - 1})")
        elif not math.isclose(float(edit.sigma or 0.0), slider.sigma, rel_tol=1e-6):
            found.append(f"{edit.name!r} now counts in σ {slider.sigma:.4g} (saved with {edit.sigma:.4g})")
        elif slider.clamp(edit.value) != edit.value:
            found.append(f"{edit.name!r} {edit.value:+g}σ is outside today's range {slider.strength_range}")
    return found


def saved_edits(look: LookInfo, available: Sequence[Slider]) -> list:
    """The edits exactly as the look was saved. Looks from before directions were kept with them fall back to
    today's slider of the same direction (or name), as they always did."""
    by_id = {s.id: s for s in available}
    by_name = {s.name: s for s in available}
    edits = []
    for edit in look.edits:
        if not edit.value:
            continue
        if edit.frozen:
            start, stop = edit.layer_range  # type: ignore[misc]
            edits.append(services.edit_for(edit.vector, float(edit.sigma), edit.value, start, stop))  # type: ignore
            continue
        slider = (by_id.get(edit.direction_id) if edit.direction_id is not None else None) or by_name.get(edit.name)
        if slider is not None:
            edits.append(services.edit_for(slider.vector, slider.sigma, slider.clamp(edit.value), *slider.layer_range))
    return edits


def render_saved_jpeg(renderer, look: LookInfo, available: Sequence[Slider], display: int = DISPLAY_TARGET) -> bytes:
    """A saved look as it was saved (its own directions, layers and σ), as JPEG bytes."""
    frozen = all(e.frozen for e in look.edits)
    # A frozen look never changes, so its id (and time, should an id be reused) is enough of a key.
    key = ("saved", renderer.fingerprint, look.id, look.created_at, display) if frozen else None
    found = _image_cache.get(key) if key else None
    if found is None:
        ws = base_ws(renderer, look.seed, look.psi, look.class_index)
        image = renderer.synthesize(ws, saved_edits(look, available))[0]
        found = imaging.to_jpeg(imaging.upscale(image, imaging.display_size(image.shape[0], display)), quality=92)
        if key:
            _image_cache.put(key, found)
    return found


def edits_for(look: LookState, available: Sequence[Slider]) -> list:
    by_id = {s.id: s for s in available}
    return [services.edit_for(by_id[d].vector, by_id[d].sigma, v, *by_id[d].layer_range)
            for d, v in look.values if v and d in by_id]


class _LRU:
    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[Any, Any] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        return None

    def put(self, key: Any, value: Any) -> None:
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)


_ws_cache = _LRU(64)
_image_cache = _LRU(CACHE_ENTRIES)


def base_ws(renderer, seed: int, psi: float, class_index: int | None):
    key = (renderer.fingerprint, seed, psi, class_index)
    ws = _ws_cache.get(key)
    if ws is None:
        ws = renderer.ws_from_seeds([seed], psi=psi, class_index=class_index)
        _ws_cache.put(key, ws)
    return ws


def _look_key(renderer, look: LookState, available: Sequence[Slider]) -> tuple:
    used = {d for d, _ in look.values}
    return (renderer.fingerprint, look, tuple((s.id, s.layer_range, s.sigma) for s in available if s.id in used))


def render_array(renderer, look: LookState, available: Sequence[Slider]) -> np.ndarray:
    """The look at the model's full resolution, uint8 [H, W, 3] (bounded cache keyed by the look)."""
    if look.seed is None:
        raise AtelierError("No seed: type one or press Random.")
    key = ("array", *_look_key(renderer, look, available))
    found = _image_cache.get(key)
    if found is None:
        ws = base_ws(renderer, look.seed, look.psi, look.class_index)
        found = renderer.synthesize(ws, edits_for(look, available))[0]
        _image_cache.put(key, found)
    return found


def render_jpeg(renderer, look: LookState, available: Sequence[Slider], display: int = DISPLAY_TARGET) -> bytes:
    """The look at full resolution, scaled for display, as JPEG bytes; bounded cache keyed by the look."""
    key = ("jpeg", display, *_look_key(renderer, look, available))
    found = _image_cache.get(key)
    if found is None:
        image = render_array(renderer, look, available)
        found = imaging.to_jpeg(imaging.upscale(image, imaging.display_size(image.shape[0], display)), quality=92)
        _image_cache.put(key, found)
    return found


def render_png(renderer, look: LookState, available: Sequence[Slider]) -> bytes:
    """The look at the model's own resolution as PNG (the download)."""
    return imaging.to_png(render_array(renderer, look, available))


def random_seed(rng: np.random.Generator | None = None) -> int:
    return int((rng or np.random.default_rng()).integers(0, MAX_SEED, endpoint=True))


def save(url: str, model_id: int, reviewer: str, name: str, look: LookState,
         available: Sequence[Slider]) -> LookInfo:
    from db.engine import write_session

    if look.seed is None:
        raise AtelierError("Choose a seed before saving the look.")
    by_id = {s.id: s for s in available}
    # Each edit keeps its exact direction (vector, layers, σ), so re-publishing never changes the saved look.
    edits = [LookEdit(name=by_id[d].name, value=v, direction_id=d, vector=by_id[d].vector,
                        layer_range=by_id[d].layer_range, sigma=by_id[d].sigma)
             for d, v in look.values if d in by_id and v]
    with write_session(url) as session:
        return q.save_look(session, model_id, reviewer, name, look.seed, look.psi, edits, look.class_index)
