"""Sub-commands of `atelier` that belong to the `scrape` package."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this package's sub-commands to the root `atelier` app."""

    @app.command("scrape")
    def scrape_command(
        profile: str | None = typer.Option(None, "--profile", help="Site profile (.toml): start URLs, CSS "
                                           "selectors, politeness and limits. Template: "
                                           "scrape/profiles/example-runway.toml. Not needed with --report."),
        out: str = typer.Option(..., "--out", help="Output folder (images/, metadata.jsonl, state). Run the same "
                                "command again to resume an interrupted crawl."),
        max_pages: int | None = typer.Option(None, "--max-pages", min=1, help="Read at most this many pages "
                                             "(overrides the profile)."),
        max_images: int | None = typer.Option(None, "--max-images", min=1, help="Stop after keeping this many "
                                              "images (overrides the profile)."),
        delay: float | None = typer.Option(None, "--delay", min=0.0, help="Seconds between two requests to one "
                                           "host (overrides the profile; robots.txt Crawl-delay still applies)."),
        retry_failed: bool = typer.Option(False, "--retry-failed", help="Queue URLs that failed in earlier runs "
                                          "again (files refused for their content only if the profile limit that "
                                          "refused them was raised)."),
        refresh: bool = typer.Option(False, "--refresh", help="Read the listing pages of an earlier crawl again "
                                     "(conditional requests: unchanged pages cost a 304) and download only what "
                                     "is new."),
        report: bool = typer.Option(False, "--report", help="Print every failed or skipped URL with its reason, "
                                    "the look pages without a usable image and the placeholders; no request made."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    ) -> None:
        """Crawl a runway archive politely and download its look images, resumably, with their metadata."""
        # Imports live here so `atelier --help` stays fast; option types above are plain str/int/float for the
        # same reason (annotations are resolved against this module's globals).
        import sys
        from pathlib import Path

        from core.errors import AtelierError
        from scrape.profile import load_profile
        from scrape.scraper import report_lines, scrape

        try:
            if report:
                for line in report_lines(Path(out)):
                    typer.echo(line)
                return
            if profile is None:
                raise AtelierError("--profile is missing. Fix: pass --profile site.toml (or --report to list what "
                                   "an earlier crawl in --out failed to get).")
            summary = scrape(load_profile(profile), Path(out), max_pages=max_pages, max_images=max_images,
                             delay=delay, retry_failed=retry_failed, refresh=refresh, progress=not quiet)
        except AtelierError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            print(f"interrupted; everything so far is saved. Run the same command again to resume into {out}.",
                  file=sys.stderr)
            raise typer.Exit(130) from None
        for line in summary.lines():
            typer.echo(line)
        if summary.error:
            # The crawl could not go on (site unreachable): a script or scheduler must not take this for success.
            print(f"error: {summary.error}. The queue is kept; run the same command again when the site answers.",
                  file=sys.stderr)
            raise typer.Exit(1)

    @app.command("prepare")
    def prepare_command(
        src: str = typer.Argument(..., help="Folder written by `atelier scrape` (or any folder of images)."),
        dst: str = typer.Argument(..., help="Dataset to write: a name ending in .zip gives a zip, any other name "
                                  "a folder. The contact sheet and report are written beside it."),
        resolution: int = typer.Option(256, "--resolution", help="Image side in pixels: a power of two."),
        framing: str = typer.Option("pad", "--framing", help="pad: pad to a square with the border colour; "
                                    "crop: crop a square around the figure."),
        whiten_background: bool = typer.Option(False, "--whiten-background", help="Push pixels close to the "
                                               "border colour to white."),
        label_field: str | None = typer.Option(None, "--label-field", help="Metadata field whose values become "
                                               "class labels (e.g. season, category) for a conditional model."),
        min_size: int = typer.Option(128, "--min-size", help="Drop images whose shorter side is below this."),
        max_aspect: float = typer.Option(3.0, "--max-aspect", help="Drop images longer than this ratio "
                                         "(long side / short side)."),
        sample: int = typer.Option(64, "--sample", help="Images on the contact sheet (0: no sheet)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the contact sheet's random sample."),
        force: bool = typer.Option(False, "--force", help="Replace an existing dataset at DST."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    ) -> None:
        """Filter, frame, resize and label scraped images into a training dataset (stylegan2-ada layout)."""
        import sys

        from core.errors import AtelierError
        from scrape.prepare import PrepareOptions, prepare

        options = PrepareOptions(resolution=resolution, framing=framing, whiten_background=whiten_background,
                                 label_field=label_field, min_size=min_size, max_aspect=max_aspect, sample=sample,
                                 seed=seed, force=force)
        try:
            report = prepare(src, dst, options, progress=not quiet)
        except AtelierError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(1) from None
        for line in report.lines():
            typer.echo(line)

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

        from core.errors import AtelierError
        from core.files import image_format, write_image
        from scrape.synth import preview_grid, write_dataset

        try:
            if labels not in ("garment", "none"):
                raise AtelierError(f"--labels '{labels}' is unknown; use garment or none.")
            if workers < 1:
                raise AtelierError(f"--workers must be at least 1, not {workers}.")
            if preview is not None:
                image_format(Path(preview), "--preview")  # refused before the dataset is written
            path = write_dataset(Path(out), count, resolution=resolution, seed0=seed,
                                 conditional_on=None if labels == "none" else labels, workers=workers,
                                 overwrite=force)
            typer.echo(f"wrote {count} images of {resolution}x{resolution} px to {path}")
            if preview is not None:
                from PIL import Image

                write_image(Path(preview), Image.fromarray(preview_grid(seed, resolution)))
                typer.echo(f"wrote preview grid to {preview}")
        except AtelierError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(1) from None
