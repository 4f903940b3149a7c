"""`atelier export` and `atelier import`: the labelled direction set in and out of Atelier (docs/direction-set.md)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import typer

from core.errors import AtelierError, exit_on_user_error

DATABASE_HELP = "Database URL; default ATELIER_DATABASE_URL, else the SQLite file in ATELIER_HOME."
MODEL_HELP = "Model id, name or fingerprint (default: the file's model, or the only registered one)."


def _default_reviewer() -> str:
    name = os.environ.get("ATELIER_REVIEWER", "").strip()
    if name:
        return name
    try:
        import getpass

        return getpass.getuser() or "import"
    except (OSError, KeyError, ImportError):
        return "import"


def _find_model(session: Any, spec: str) -> Any:
    from db import queries

    models = queries.list_models(session)
    text = spec.strip()
    for model in models:
        by_fingerprint = len(text) >= 8 and model.fingerprint.startswith(text.lower())
        if text == str(model.id) or text == model.name or by_fingerprint:
            return model
    known = ", ".join(f"{m.id}: {m.name} ({m.fingerprint[:12]})" for m in models) or "none registered"
    raise AtelierError(f"no model matches {spec!r}; models in this database: {known}")


def _only_model(session: Any) -> Any:
    from db import queries

    models = queries.list_models(session)
    if len(models) == 1:
        return models[0]
    if not models:
        raise AtelierError("no model is registered in this database: pass --network FILE to register one")
    known = ", ".join(f"{m.id}: {m.name}" for m in models)
    raise AtelierError(f"this database has several models ({known}); choose one with --model")


@exit_on_user_error
def export_directions(
    out: Path = typer.Option(..., "--out", "-o", help="The .zip file to write (replaced atomically if it exists)."),
    all_reviewed: bool = typer.Option(False, "--all-reviewed", help="Also export reviewed components that are not "
                                                                     "published (approved, rejected, ...)."),
    previews: bool = typer.Option(False, "--previews", help="Add one review strip per direction (renders images)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model id, name or fingerprint (default: the "
                                                                      "only registered model)."),
    network: Optional[Path] = typer.Option(None, "--network", "-n", help="Generator file for --previews (default: "
                                                                         "the model's registered file)."),
    database: Optional[str] = typer.Option(None, "--database", help=DATABASE_HELP),
) -> None:
    """Export the published directions (or every reviewed one) as a direction-set .zip."""
    from db.engine import read_session
    from db.migrate import ensure_current
    from model.directions.set_reader import load_direction_set
    from workflows.export import export_direction_set

    if out.suffix.lower() != ".zip":
        raise AtelierError(f"the output must end in .zip, got {out.name}")
    ensure_current(database)
    with read_session(database) as session:
        target = _find_model(session, model) if model else _only_model(session)
    renderer = None
    if previews and network is not None:
        from model.network.render import Renderer

        renderer = Renderer(network, device="cpu")
    path = export_direction_set(database, target.id, out, all_reviewed=all_reviewed, include_previews=previews,
                                renderer=renderer)
    written = load_direction_set(path)
    published = sum(1 for d in written.directions if d.published)
    typer.echo(f"wrote {len(written)} direction(s) ({published} published) of model {target.name!r} to {path}")


def _register_network(network: Path, database: Optional[str]) -> tuple[Any, Any]:
    """Load a generator and register it (workflows.registry: idempotent by fingerprint, the app's naming rule);
    returns the renderer and the model this call registered (None when those weights were registered already)."""
    from db.engine import write_session
    from model.network.render import Renderer
    from workflows.registry import register_network

    renderer = Renderer(network, device="cpu")
    with write_session(database) as session:
        registration = register_network(session, renderer, None, network)
    return renderer, registration.model if registration.created else None


def _unregister_unused(model: Any, database: Optional[str]) -> None:
    """Take back a registration this command made when the import is refused, cancelled or a dry run: an import
    that writes nothing leaves no model behind either. Kept if anything has come to refer to it meanwhile."""
    from sqlalchemy import delete, exists, select

    from db.engine import write_session
    from db.schema import ComponentSet, Look, Model, PublishedDirection

    with write_session(database) as session:
        if not any(session.scalar(select(exists().where(table.model_id == model.id)))
                   for table in (ComponentSet, PublishedDirection, Look)):
            session.execute(delete(Model).where(Model.id == model.id))


def _model_renderer(model: Any) -> Any:
    """The target model's generator for σ, if its registered file is there and has the registered weights."""
    from model.network.render import Renderer

    try:
        renderer = Renderer(Path(model.path), device="cpu")
    except (AtelierError, OSError):
        return None
    return renderer if renderer.fingerprint == model.fingerprint else None


@exit_on_user_error
def import_directions(
    file: Path = typer.Argument(..., help="Atelier .zip, GANSpace .npz, InterFaceGAN .npy or old SeFa file."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    network: Optional[Path] = typer.Option(None, "--network", "-n", help="Generator file: registers it if needed, "
                                                                         "makes it the target and gives σ for "
                                                                         "InterFaceGAN and SeFa files."),
    force: bool = typer.Option(False, "--force", help="Import a set exported from a different model "
                                                      "(same dimensions)."),
    publish: bool = typer.Option(False, "--publish", help="GANSpace / InterFaceGAN / SeFa: publish the directions "
                                                          "now instead of sending them to review."),
    names: Optional[str] = typer.Option(None, "--names", help="With --publish: comma-separated names, one per "
                                                              "direction (default <method>_000, ...)."),
    reviewer: Optional[str] = typer.Option(None, "--reviewer", help="Who is importing (default $ATELIER_REVIEWER, "
                                                                    "else your login name)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before writing."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show what would be imported."),
    database: Optional[str] = typer.Option(None, "--database", help=DATABASE_HELP),
) -> None:
    """Import directions: validate the file, show what will be added, then write it in one transaction."""
    from db.migrate import ensure_current
    from model.directions import importers
    from model.directions.set_reader import read_source

    ensure_current(database)
    data, label = read_source(file)
    kind = importers.detect_kind(data, label)
    renderer, registered = _register_network(network, database) if network is not None else (None, None)
    written = False
    try:
        written = _plan_and_apply(data, label, kind, renderer, model, force, publish, names, reviewer, yes, dry_run,
                                  database)
    finally:
        if registered is not None and not written:
            _unregister_unused(registered, database)
    if registered is not None:
        typer.echo(f"registered model {registered.name!r} ({registered.fingerprint[:12]}…)")


def _plan_and_apply(data: bytes, label: str, kind: str, renderer: Any, model: Optional[str],
                    force: bool, publish: bool, names: Optional[str], reviewer: Optional[str], yes: bool,
                    dry_run: bool, database: Optional[str]) -> bool:
    """Plan the import, show it, and write it when asked; True when something was written."""
    from db.engine import read_session
    from workflows.imports import apply_import, plan_import

    target: str | None = None
    with read_session(database) as session:
        if model:
            chosen = _find_model(session, model)
        elif renderer is not None:
            chosen = _find_model(session, renderer.fingerprint)
        elif kind != "atelier":
            chosen = _only_model(session)
        else:
            chosen = None
    if chosen is not None:
        target = chosen.fingerprint
        if renderer is not None and renderer.fingerprint != chosen.fingerprint:
            renderer = None
        if renderer is None and kind in ("interfacegan", "sefa-legacy"):
            renderer = _model_renderer(chosen)
    name_list = [n for n in names.split(",")] if names else None
    plan = plan_import(data, target, force, url=database, publish=publish, names=name_list, renderer=renderer,
                       filename=label)
    typer.echo(plan.summary(include_errors=False))
    if not plan.ok:
        for error in plan.errors:
            typer.echo(f"error: {error}", err=True)
        typer.echo("nothing was written", err=True)
        raise typer.Exit(code=1)
    if dry_run:
        typer.echo("dry run: nothing was written")
        return False
    if not yes and not typer.confirm("Write this to the database?", default=False):
        typer.echo("cancelled: nothing was written")
        raise typer.Exit(code=1)
    result = apply_import(plan, database, reviewer or _default_reviewer())
    parts = [f"{len(result.component_set_ids)} new component set(s)", f"{result.reviews} review(s)",
             f"{len(result.published)} published", f"{len(result.replaced)} replaced", f"{result.unchanged} unchanged"]
    typer.echo("imported: " + ", ".join(parts))
    return True


def register(app: typer.Typer) -> None:
    """Add `atelier export` and `atelier import` to the root app."""
    app.command("export")(export_directions)
    app.command("import")(import_directions)
