"""The `atelier` command-line tool: one module of sub-commands per pipeline stage."""
