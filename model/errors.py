"""Errors whose message names the problem and the fix; the CLI prints them without a traceback."""


class AtelierError(Exception):
    """A problem with the user's input or files, explained in plain words."""


def exit_on_user_error(fn):
    """Decorator for CLI commands: an AtelierError becomes its message on stderr and exit code 1, no traceback."""
    import functools
    import sys

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except AtelierError as exc:
            import typer
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(code=1) from None
    return wrapper
