"""The one command-line tool, ``atelier``.

Each package contributes its sub-commands through ``register(app)`` in its ``commands`` module, so this file
stays a table of contents. Heavy imports (torch, streamlit) happen inside the commands, keeping ``--help`` fast.
"""
from __future__ import annotations

import importlib

import typer

from core.errors import guard_commands

COMMAND_MODULES = ("cli.model_commands", "cli.discovery_commands", "cli.db_commands", "cli.users_commands",
                   "cli.scrape_commands", "cli.app_commands", "cli.export_commands", "cli.publish_commands")

app = typer.Typer(
    name="atelier",
    help="Atelier: train StyleGAN2 on runway images, find and label its latent directions, design new looks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for module_name in COMMAND_MODULES:
    importlib.import_module(module_name).register(app)
guard_commands(app)  # every command, however it was registered, turns user errors into messages (core.errors)


def main() -> None:
    app()
