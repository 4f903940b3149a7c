"""Publishing checked: the one rule for turning a component into a slider, used by the app and by the CLI.

A slider that changes nothing visible, a component the team has not settled (in conflict) or approvals that
disagree on which layers to move are refused with the reason; ``force`` publishes anyway and the overridden
reasons are stored with the direction, so an override is never silent. The measurements are
model.directions.publishing's; this module reads the reviews, proposes, publishes, says which published directions no
longer match what the team approved (:func:`direction_flags`) and mends one in a single transaction
(:func:`update_direction`).
"""
from __future__ import annotations

from dataclasses import dataclass

from core.errors import AtelierError
from db import queries as q
from db import review_queue
from db.records import ModelInfo, ReviewRecord
from model.directions.publishing import (
    DEFAULT_PSI, MEASURE_SEEDS, DirectionFlags, Proposal, PublishRefused, Span, effect_refusal, format_layers,
    measure_effect, plausible_span,
)


def approved_layers(session, component_id: int) -> dict[str, tuple[int, int] | None]:
    """Reviewer → the layers their current approval records (only reviewers whose latest review approves)."""
    latest: dict[str, ReviewRecord] = {}
    for record in q.review_history(session, component_id):
        latest[record.reviewer] = record
    return {name: r.layer_range for name, r in latest.items() if r.decision == "approve"}


def review_refusals(session, component_id: int) -> list[str]:
    """What the reviews say against publishing this component: not approved, a conflict, or approvals on
    different layers."""
    reasons: list[str] = []
    status = review_queue.component_status(session, component_id)
    if status.status not in ("approved", "conflict"):
        reasons.append(f"Component {status.index} is {status.status.replace('_', ' ')}, not approved: approve it "
                       "on the Review page first.")
    if status.status == "conflict":
        sides = ", ".join(f"{who} {decision}s" for who, decision in sorted(status.decisions.items()))
        reasons.append(f"Component {status.index} is in conflict ({sides}): settle it on the Review page first.")
    layers = approved_layers(session, component_id)
    if len(set(layers.values())) > 1:
        each = ", ".join(f"{who} {format_layers(span)}" for who, span in sorted(layers.items()))
        reasons.append(f"The approvals of component {status.index} disagree on the layers ({each}): agree on one "
                       "range on the Review page (approve again on it).")
    return reasons


def agreed_layers(session, component_id: int, num_ws: int) -> tuple[int, int]:
    """The layers a slider starts from: the range every current approval records; every row when they differ
    (publishing then says so) or when none records one."""
    agreed = set(approved_layers(session, component_id).values())
    return next(iter(agreed)) if len(agreed) == 1 and None not in agreed else (0, num_ws)


def measure_seeds(session, component) -> list[int]:
    """The seeds a slider's effect is measured and shown on: the first of its set's review seeds."""
    seeds = q.get_component_set(session, component.set_id).review_seeds or list(range(MEASURE_SEEDS))
    return [int(s) for s in seeds[:MEASURE_SEEDS]]


def default_span(session, renderer, component_id: int, layer_range: tuple[int, int]) -> Span:
    """The slider range a publish starts from: where the edit stays plausible on these layers."""
    component = q.get_component(session, component_id)
    return plausible_span(renderer, q.component_vector(session, component_id), float(component.sigma) or 1.0,
                          layer_range, measure_seeds(session, component))


@dataclass(frozen=True)
class Candidate:
    """A component that may be published, with the defaults a publish starts from."""

    component_id: int
    index: int
    name: str
    category: str | None
    layer_range: tuple[int, int]
    approvals: int


def candidates(session, set_id: int, model: ModelInfo) -> list[Candidate]:
    """Approved components not published yet, and components in conflict that someone approved (listed so the
    refusal and its reason are visible where people publish, not only on the command line)."""
    published = {d.component_id for d in q.active_directions(session, model.id)}
    found = []
    for status in review_queue.component_statuses(session, set_id):
        wanted = status.status == "approved" or (status.status == "conflict" and status.approvals)
        if wanted and status.component_id not in published:
            found.append(Candidate(
                component_id=status.component_id, index=status.index,
                name=(status.latest_label or f"component {status.index}").strip(), category=status.latest_category,
                layer_range=agreed_layers(session, status.component_id, model.num_ws), approvals=status.approvals))
    return found


def propose(session, renderer, model_id: int, component_id: int, *, name: str | None = None,
            category: str | None = None, layer_range: tuple[int, int] | None = None,
            strength_range: tuple[float, float] | None = None, psi: float = DEFAULT_PSI) -> Proposal:
    """Defaults from the approvals (name, category, layers) and the measured span, then every check.

    Nothing is written; :func:`publish` stores a proposal. ``renderer`` must be the model's generator.
    """
    model = q.get_model(session, model_id)
    if renderer.fingerprint != model.fingerprint:
        raise AtelierError(f"the generator given is not model {model.name!r}'s (fingerprint "
                           f"{renderer.fingerprint[:12]} vs {model.fingerprint[:12]}): load the model's own file")
    component = q.get_component(session, component_id)
    status = review_queue.component_status(session, component_id)
    vector = q.component_vector(session, component_id)
    sigma = float(component.sigma) or 1.0
    if layer_range is None:
        layer_range = agreed_layers(session, component_id, model.num_ws)
    layer_range = (int(layer_range[0]), int(layer_range[1]))
    if not 0 <= layer_range[0] < layer_range[1] <= model.num_ws:
        raise AtelierError(f"layers {layer_range[0]}–{layer_range[1] - 1} are outside this model's "
                           f"{model.num_ws} ws rows (0–{model.num_ws - 1})")
    seeds = measure_seeds(session, component)
    if strength_range is None:
        span = plausible_span(renderer, vector, sigma, layer_range, seeds, psi)
        strength_range = (span.low, span.high)
    strength_range = (float(strength_range[0]), float(strength_range[1]))
    effect = measure_effect(renderer, vector, sigma, layer_range, strength_range, seeds, psi)
    refusals = review_refusals(session, component_id)
    dead = effect_refusal(effect, layer_range, strength_range, component.layer_sensitivity)
    if dead:
        refusals.insert(0, dead)
    default_name = (name if name is not None else status.latest_label or f"component {component.index}").strip()
    return Proposal(model_id=model.id, component_id=component.id, component_index=component.index,
                    name=default_name, category=category if category is not None else status.latest_category,
                    layer_range=layer_range, strength_range=strength_range, sigma=sigma, effect=effect,
                    refusals=tuple(refusals))


def publish(session, proposal: Proposal, reviewer: str, *, force: bool = False):
    """Store a checked proposal: refused with every reason unless ``force``, which records the reasons overridden."""
    if proposal.refusals and not force:
        raise PublishRefused(proposal.refusals)
    return q.publish_direction(
        session, proposal.model_id, proposal.name, reviewer, component_id=proposal.component_id,
        category=proposal.category or None, layer_range=proposal.layer_range,
        strength_range=proposal.strength_range, measured_effect=proposal.effect.measured,
        override_reasons=proposal.refusals,
    )


def unpublish(session, model_id: int, name: str, reviewer: str):
    """Withdraw the active direction with this name (the row stays, stamped with who and when)."""
    for direction in q.active_directions(session, model_id):
        if direction.name == name.strip():
            return q.unpublish_direction(session, direction.id, reviewer)
    known = ", ".join(repr(d.name) for d in q.active_directions(session, model_id)) or "none"
    raise AtelierError(f"no published direction is named {name!r}; published: {known}")


# --------------------------------------------------------------------------------------------------------------
# After publishing: conflicts and out-of-date directions


def direction_flags(session, model_id: int) -> dict[int, DirectionFlags]:
    """Direction id → what needs attention, for every active direction published from a component.

    Out of date: someone approved the component after it was published, on other layers than the direction
    moves (what they approved is what an update publishes). In conflict: its reviews now disagree.
    """
    flags: dict[int, DirectionFlags] = {}
    for direction in q.active_directions(session, model_id):
        if direction.component_id is None:
            continue
        status = review_queue.component_status(session, direction.component_id)
        conflict = None
        if status.status == "conflict":
            sides = ", ".join(f"{who} {decision}s" for who, decision in sorted(status.decisions.items()))
            conflict = f"component {status.index} is in conflict ({sides})"
        history = q.review_history(session, direction.component_id)
        later = [r for r in history if r.decision == "approve" and r.created_at > direction.published_at
                 and r.layer_range is not None and tuple(r.layer_range) != tuple(direction.layer_range)]
        out_of_date, approved = None, None
        if later:
            newest = later[-1]
            approved = tuple(newest.layer_range)  # type: ignore[arg-type]
            out_of_date = (f"{newest.reviewer} approved layers {format_layers(approved)} after it was published on "
                           f"{format_layers(direction.layer_range)}")
        if conflict or out_of_date:
            flags[direction.id] = DirectionFlags(direction.id, conflict, out_of_date, approved)  # type: ignore[arg-type]
    return flags


def update_direction(session, renderer, direction_id: int, reviewer: str, *, force: bool = False):
    """Re-publish an out-of-date direction on the layers approved since, under the same name and category, in one
    transaction (the old row is unpublished, never deleted). The new settings go through every check."""
    direction = q.get_direction(session, direction_id)
    if not direction.active or direction.component_id is None:
        raise AtelierError(f"direction {direction.name!r} is not an active direction from a component; "
                           "publish it from the Directions page instead")
    flag = direction_flags(session, direction.model_id).get(direction.id)
    if flag is None or flag.approved_layers is None:
        raise AtelierError(f"direction {direction.name!r} already matches its approvals; nothing to update")
    q.unpublish_direction(session, direction.id, reviewer)
    proposal = propose(session, renderer, direction.model_id, direction.component_id, name=direction.name,
                       category=direction.category, layer_range=flag.approved_layers)
    return publish(session, proposal, reviewer, force=force)
