"""Sub-commands of `atelier` that belong to the `scrape` package."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this package's sub-commands to the root `atelier` app."""
