"""`atelier publish` and `atelier unpublish`: the app's Directions page on the command line, with the same checks
(``model.directions.publishing``): a dead slider, a component in conflict or approvals on different layers is refused
with the
reason unless ``--force``, and a forced publish records what it overrode."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from core.errors import AtelierError, exit_on_user_error
from cli.export_commands import DATABASE_HELP, MODEL_HELP, _default_reviewer, _find_model, _only_model

REVIEWER_HELP = "Who publishes (default $ATELIER_REVIEWER, else your login name)."


def _parse_layers(text: str) -> tuple[int, int]:
    """'7-9' (inclusive, as the app shows layers) → (7, 10), end exclusive as stored."""
    try:
        first, _, last = text.partition("-")
        start, stop = int(first), int(last or first) + 1
    except ValueError:
        raise AtelierError(f"--layers {text!r} is not FIRST-LAST (e.g. 7-9, both included)") from None
    if start < 0 or stop <= start:
        raise AtelierError(f"--layers {text!r}: the first layer must be 0 or more and not after the last")
    return start, stop


def _parse_strength(text: str) -> tuple[float, float]:
    """'-2,3' → (-2.0, 3.0)."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise AtelierError(f"--strength {text!r} is not MIN,MAX in σ (e.g. -2,3)") from None
    if high < low:
        raise AtelierError(f"--strength {text!r} has its maximum below its minimum: swap them")
    return low, high


def _component(session: Any, model: Any, index: int, set_id: Optional[int]) -> Any:
    from db import queries

    sets = [s for s in queries.list_component_sets(session, model.id) if set_id is None or s.id == set_id]
    if not sets:
        raise AtelierError(f"model {model.name!r} has no component set" + (f" {set_id}" if set_id else "")
                           + "; run `atelier discover` first, or pick one with --set")
    chosen = sets[0]
    for component in queries.list_components(session, chosen.id):
        if component.index == index:
            return component
    raise AtelierError(f"set {chosen.id} has no component {index} (it has 0–{chosen.component_count - 1})")


def _renderer(model: Any, network: Optional[Path]) -> Any:
    from model.network.render import Renderer

    path = network or Path(model.path)
    if not path.exists():
        raise AtelierError(f"the generator file of model {model.name!r} is missing ({path}); pass --network FILE")
    renderer = Renderer(path, device="cpu")
    if renderer.fingerprint != model.fingerprint:
        raise AtelierError(f"{path} is not model {model.name!r}'s generator (other weights); pass its own file")
    return renderer


@exit_on_user_error
def publish_command(
    component: int = typer.Argument(..., help="The component's index in its set (as on the Review page)."),
    name: Optional[str] = typer.Option(None, "--name", help="The slider's name (default: the approved label)."),
    category: Optional[str] = typer.Option(None, "--category", help="Default: the approved category."),
    layers: Optional[str] = typer.Option(None, "--layers", help="FIRST-LAST ws rows, both included (default: the "
                                                                "layers the approvals agree on)."),
    strength: Optional[str] = typer.Option(None, "--strength", help="MIN,MAX in σ (default: the measured span "
                                                                    "where the edit stays plausible)."),
    force: bool = typer.Option(False, "--force", help="Publish even when the checks refuse; the reasons "
                                                      "overridden are recorded with the direction."),
    set_id: Optional[int] = typer.Option(None, "--set", help="Component set id (default: the model's newest)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    network: Optional[Path] = typer.Option(None, "--network", "-n", help="Generator file (default: the model's "
                                                                         "registered file)."),
    reviewer: Optional[str] = typer.Option(None, "--reviewer", help=REVIEWER_HELP),
    database: Optional[str] = typer.Option(None, "--database", help=DATABASE_HELP),
) -> None:
    """Publish a component as a slider, checked as in the app: measured first, refused with the reason."""
    from db import queries
    from db.engine import write_session
    from db.migrate import ensure_current
    from workflows import publishing

    ensure_current(database)
    layer_range = _parse_layers(layers) if layers else None
    strength_range = _parse_strength(strength) if strength else None
    with write_session(database) as session:
        target = _find_model(session, model) if model else _only_model(session)
        found = _component(session, target, component, set_id)
        renderer = _renderer(target, network)
        who = queries.ensure_reviewer(session, reviewer or _default_reviewer()).name
        proposal = publishing.propose(session, renderer, target.id, found.id, name=name, category=category,
                                      layer_range=layer_range, strength_range=strength_range)
        effect = proposal.effect
        typer.echo(f"component {found.index}: layers {proposal.layer_range[0]}–{proposal.layer_range[1] - 1}, "
                   f"range {proposal.strength_range[0]:g} … {proposal.strength_range[1]:g} σ, image change "
                   f"{effect.low_change:.1%} / {effect.high_change:.1%} at the ends")
        if force:
            for reason in proposal.refusals:
                typer.echo(f"overridden: {reason}", err=True)
        info = publishing.publish(session, proposal, who, force=force)
    typer.echo(f"published {info.name!r} (direction {info.id}) by {who}"
               + (" with the refusals above overridden" if info.override_reasons else ""))


@exit_on_user_error
def unpublish_command(
    name: str = typer.Argument(..., help="The published direction's name."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    reviewer: Optional[str] = typer.Option(None, "--reviewer", help=REVIEWER_HELP),
    database: Optional[str] = typer.Option(None, "--database", help=DATABASE_HELP),
) -> None:
    """Withdraw a published direction (kept in the history, stamped with who and when)."""
    from db import queries
    from db.engine import write_session
    from db.migrate import ensure_current
    from workflows import publishing

    ensure_current(database)
    with write_session(database) as session:
        target = _find_model(session, model) if model else _only_model(session)
        who = queries.ensure_reviewer(session, reviewer or _default_reviewer()).name
        info = publishing.unpublish(session, target.id, name, who)
    typer.echo(f"unpublished {info.name!r} (direction {info.id}) by {who}")


def register(app: typer.Typer) -> None:
    """Add `atelier publish` and `atelier unpublish` to the root app."""
    app.command("publish")(publish_command)
    app.command("unpublish")(unpublish_command)
