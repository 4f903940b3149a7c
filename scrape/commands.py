"""Sub-commands of `atelier` that belong to the `scrape` package."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this package's sub-commands to the root `atelier` app."""

    @app.command("synth")
    def synth(
        out: str = typer.Option(..., "--out", help="Dataset to write: a .zip, or a folder for any other name."),
        count: int = typer.Option(..., "--count", help="Number of images (seeds --seed .. --seed+count-1)."),
        resolution: int = typer.Option(64, "--resolution", help="Image side in pixels: a power of two, 16 or more."),
        seed: int = typer.Option(0, "--seed", help="First seed; the same seeds always give the same images."),
        labels: str = typer.Option("garment", "--labels", help="Class labels in dataset.json: garment or none."),
        preview: str | None = typer.Option(None, "--preview", help="Also write an 8x8 grid PNG of samples."),
        workers: int = typer.Option(1, "--workers", help="Processes that render in parallel."),
        force: bool = typer.Option(False, "--force", help="Replace an existing dataset at --out."),
    ) -> None:
        """Write a synthetic runway dataset (stylegan2-ada layout) with every image's garment factors recorded."""
        # Imports live here, not at the top of this shared module: annotations above are strings resolved against
        # module globals, so paths are taken as str and converted below.
        import sys
        from pathlib import Path

        from model.errors import AtelierError
        from scrape.synth import preview_grid, write_dataset

        try:
            if labels not in ("garment", "none"):
                raise AtelierError(f"--labels '{labels}' is unknown; use garment or none.")
            if workers < 1:
                raise AtelierError(f"--workers must be at least 1, not {workers}.")
            path = write_dataset(Path(out), count, resolution=resolution, seed0=seed,
                                 conditional_on=None if labels == "none" else labels, workers=workers,
                                 overwrite=force)
            typer.echo(f"wrote {count} images of {resolution}x{resolution} px to {path}")
            if preview is not None:
                from PIL import Image

                preview_path = Path(preview)
                preview_path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(preview_grid(seed, resolution)).save(preview_path)
                typer.echo(f"wrote preview grid to {preview}")
        except AtelierError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(1) from None
