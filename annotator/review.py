"""Review page logic without Streamlit: what to show next, strip settings, recording a decision, plain text."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Sequence

from annotator import services
from annotator.strips import StripRequest
from db import queries as q
from db import review_queue
from db.records import ComponentInfo, QueueItem, ReviewRecord
from db.engine import read_session, write_session
from core.errors import AtelierError
from model.directions.strips import StripSpec, sigma_steps, strip_resolution

DECISION_KEYS = {"approve": "A", "reject": "X", "unsure": "U", "skip": "S"}
PRESET_NAMES = ("all", "coarse", "middle", "fine", "custom")


@dataclass(frozen=True)
class StripSettings:
    preset: str = "all"
    layer_range: tuple[int, int] | None = None  # only for preset "custom"
    max_sigma: float = 3.0
    steps: int = 7
    centred: bool = False
    psi: float = 0.7

    def layers(self, renderer) -> tuple[int, int]:
        presets = services.layer_presets(renderer)
        if self.preset == "custom":
            if self.layer_range is None:
                return presets["all"]
            return self.layer_range
        return presets.get(self.preset, presets["all"])


@dataclass(frozen=True)
class OpeningLayers:
    """The layer choice a component opens on: a preset name, or "custom" with its range."""

    preset: str
    custom: tuple[int, int] | None = None
    why: str = ""


def opening_layers(component: ComponentInfo, last_approved: tuple[int, int] | None,
                   presets: dict[str, tuple[int, int]]) -> OpeningLayers:
    """Where a component's strip starts: the layers this reviewer last approved it on, else the group where the
    scores say it acts most, else every layer. Never the previous component's choice, which is how a colour
    component came to be approved (and published) on the coarse layers, where it does nothing."""
    if last_approved is not None:
        for name, span in presets.items():
            if tuple(span) == tuple(last_approved):
                return OpeningLayers(name, None, "the layers you approved it on")
        return OpeningLayers("custom", (int(last_approved[0]), int(last_approved[1])), "the layers you approved it on")
    suggested = component.layer_sensitivity
    if suggested in presets:
        return OpeningLayers(str(suggested), None, "where the scores say it acts most")
    return OpeningLayers("all", None, "every layer (not scored yet)")


def last_approved_layers(url: str, reviewer: str, component_ids: Sequence[int]) -> dict[int, tuple[int, int] | None]:
    """Component id → the layers of this reviewer's latest approval of it (None when they never approved it)."""
    found: dict[int, tuple[int, int] | None] = {}
    with read_session(url) as session:
        for component_id in component_ids:
            approvals = [r for r in q.review_history(session, component_id)
                         if r.reviewer == reviewer and r.decision == "approve" and r.layer_range is not None]
            found[component_id] = tuple(approvals[-1].layer_range) if approvals else None  # type: ignore[misc]
    return found


def strip_request(ctx: services.Context, component: ComponentInfo, vector, settings: StripSettings,
                  renderer, seeds: Sequence[int]) -> StripRequest:
    start, stop = settings.layers(renderer)
    spec = StripSpec(
        set_key=str(component.set_id), component=component.index, seeds=tuple(int(s) for s in seeds),
        steps=sigma_steps(settings.steps, settings.max_sigma), layer_start=start, layer_stop=stop,
        centred=settings.centred, resolution=strip_resolution(renderer), psi=settings.psi,
        class_index=0 if renderer.c_dim else None,
    )
    return StripRequest(identity=renderer.picture_identity, spec=spec, sigma=float(component.sigma) or 1.0,
                        vector=vector)


def queue(url: str, reviewer: str, set_id: int) -> list[QueueItem]:
    """This reviewer's queue: unreviewed components best-first, skipped ones last."""
    with read_session(url) as session:
        return review_queue.queue_for(session, reviewer, set_id)


def after(items: Sequence[QueueItem], current_id: int | None) -> int | None:
    """The component after `current_id` in the queue (the first one if current is not queued)."""
    ids = [item.component_id for item in items]
    if not ids:
        return None
    if current_id in ids:
        position = ids.index(current_id)
        rest = ids[position + 1:]
        return rest[0] if rest else None
    return ids[0]


def upcoming(items: Sequence[QueueItem], current_id: int | None, count: int = 2) -> list[int]:
    """The next `count` components after the current one (what to prefetch)."""
    ids = [item.component_id for item in items if item.component_id != current_id]
    if current_id is not None and current_id in [i.component_id for i in items]:
        position = [i.component_id for i in items].index(current_id)
        ids = [i.component_id for i in items[position + 1:]] + [i.component_id for i in items[:position]]
    return ids[:count]


def resample_seeds(url: str, set_id: int, count: int, rng_seed: int | None = None) -> tuple[list[int], list[int]]:
    """Give the whole team a fresh review seed set for this component set; returns (new seeds, previous seeds) so
    the page can offer to put the previous ones back."""
    from model.directions.discovery import choose_review_seeds

    with write_session(url) as session:
        previous = q.get_component_set(session, set_id).review_seeds
        fresh = choose_review_seeds(max(1, count), rng_seed=rng_seed)
        while fresh == sorted(previous) and rng_seed is None:  # a draw equal to the old set would look like a no-op
            fresh = choose_review_seeds(max(1, count))
        return q.set_review_seeds(session, set_id, fresh, expected=previous).review_seeds, list(previous)


def restore_seeds(url: str, set_id: int, seeds: Sequence[int]) -> list[int]:
    """Put an earlier review seed set back (the undo of :func:`resample_seeds`)."""
    with write_session(url) as session:
        return q.set_review_seeds(session, set_id, seeds).review_seeds


def component_by_index(url: str, set_id: int, index: int) -> ComponentInfo:
    with read_session(url) as session:
        for component in q.list_components(session, set_id):
            if component.index == index:
                return component
    raise AtelierError(f"There is no component {index} in this set; pick 0 to its last index.")


@dataclass(frozen=True)
class ReviewForm:
    label: str = ""
    category: str | None = None
    consistency: int | None = None
    note: str = ""


def record(url: str, reviewer: str, component_id: int, decision: str, form: ReviewForm,
           layer_range: tuple[int, int] | None = None, strength_range: tuple[float, float] | None = None,
           seconds_spent: float | None = None) -> ReviewRecord:
    """Store one decision (skip keeps no label). Raises InvalidInput with a readable message."""
    if decision == "skip":
        form = replace(form, label="", category=None, consistency=None)
    with write_session(url) as session:
        return q.record_review(
            session, reviewer, component_id, decision, label=form.label.strip(), category=form.category or None,
            consistency=form.consistency, note=form.note, layer_range=layer_range,
            strength_range=strength_range, seconds_spent=seconds_spent,
        )


def teammates(url: str, component_id: int, reviewer: str | None) -> list[ReviewRecord]:
    """Everyone else's reviews of this component, newest first (what teammates said before)."""
    with read_session(url) as session:
        history = q.review_history(session, component_id)
    return [r for r in reversed(history) if r.reviewer != reviewer]


# Every character Markdown, GFM, Streamlit's directives or LaTeX give a meaning: a numeric character reference
# shows as the character and is never markup.
_MARKDOWN_SPECIAL = re.compile(r"[\\`*_{}\[\]()#+\-.!|>~<&$:@=\"'%]")
# GFM also turns bare "https://…", "www.…" and "name@host.example" into links, and it finds them in the text *after*
# escapes and references are decoded, so no escaping stops it. An invisible word joiner (U+2060) where those
# patterns need two characters side by side does.
_BARE_LINK = re.compile(r"(?<=:)(?=//)|(?<=@)|(?i:(?<=www))(?=\.)")
WORD_JOINER = "\u2060"


def escape_markdown(text: str) -> str:
    """Text that Streamlit's Markdown shows literally: no HTML, links (bare ones included), emphasis, directives or
    LaTeX."""
    unlinked = _BARE_LINK.sub(WORD_JOINER, str(text))
    return _MARKDOWN_SPECIAL.sub(lambda found: f"&#{ord(found.group())};", unlinked).replace("\n", " ")
