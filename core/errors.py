"""Errors whose message names the problem and the fix; the CLI prints them without a traceback.

Every `atelier` command runs inside :func:`exit_on_user_error` (``cli.main`` applies it to the whole command tree,
so a new command cannot forget it). It is the one place where known kinds of failure become a message and exit
code 1: an AtelierError (the code's own explanation), a file-system error (a path that is a folder, a file, not
writable, a full disk), and a number option that is not finite. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import errno
import functools
import inspect
import math
import sys
from typing import Any, Callable


class AtelierError(Exception):
    """A problem with the user's input or files, explained in plain words."""


class InvalidInput(AtelierError):
    """Input the database or a name rule refuses; the message names the problem and what to do instead.

    It lives here, not in db, because the name rules (core.names) raise it and model/ may not import db."""


def _option_label(name: str, parameter: inspect.Parameter) -> str:
    """How the user typed a parameter: its first long option name (--trunc), or its name for an argument."""
    decls = [d for d in getattr(parameter.default, "param_decls", None) or () if d.startswith("--")]
    if decls:
        return decls[0].split("/")[0]
    if type(parameter.default).__name__ == "ArgumentInfo":
        return name.upper()
    return "--" + name.replace("_", "-")


MAX_SEED = 2 ** 32 - 1  # numpy's RandomState, which every seed in Atelier ends up in, takes 0 … 2**32 - 1


def check_finite_numbers(values: dict[str, Any], labels: dict[str, str]) -> None:
    """Typer and Click accept 'nan' and 'inf' for any float option; no Atelier option means either of them.
    Every whole-number option named `seed` is a random seed, so it gets the one range all of them accept."""
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise AtelierError(f"{labels.get(name, name)} {value}: give a finite number")
        if name == "seed" and isinstance(value, int) and not 0 <= value <= MAX_SEED:
            raise AtelierError(f"{labels.get(name, name)} {value}: a seed is a whole number from 0 to {MAX_SEED}")


def os_error_message(exc: OSError) -> str:
    """A file-system error in words, naming the path and what to do about it."""
    path = exc.filename if exc.filename is not None else "a file"
    if isinstance(exc, IsADirectoryError):
        return f"{path} is a folder, not a file: give a file name (a path inside it, or another name)"
    if isinstance(exc, NotADirectoryError):
        return f"cannot use {path}: part of that path is a file, not a folder. Choose another path"
    if isinstance(exc, PermissionError):
        return f"permission denied for {path}: choose a place you can write to, or change its permissions"
    if isinstance(exc, FileExistsError):
        return f"{path} is in the way: something of that name already exists. Remove it or choose another name"
    if isinstance(exc, FileNotFoundError):
        return f"{path} does not exist: check the path"
    if exc.errno == errno.ENOSPC:
        return f"no space left on the disk while writing {path}: free some space and run the command again"
    if exc.errno == errno.ENAMETOOLONG:
        return f"the path {str(path)[:80]}… is too long for the file system: choose a shorter one"
    return f"{path}: {exc.strerror or exc}"


def exit_on_user_error(fn: Callable) -> Callable:
    """Decorator for CLI commands: a user error becomes its message on stderr and exit code 1, no traceback."""
    if getattr(fn, "_atelier_guarded", False):
        return fn
    parameters = inspect.signature(fn).parameters
    labels = {name: _option_label(name, p) for name, p in parameters.items()}

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import typer

        try:
            check_finite_numbers(kwargs, labels)
            return fn(*args, **kwargs)
        except AtelierError as exc:
            message = str(exc)
        except OSError as exc:
            message = os_error_message(exc)
        except MemoryError:
            message = "not enough memory for this: ask for less at once (a smaller batch, fewer samples or seeds)"
        print(f"error: {message}", file=sys.stderr)
        raise typer.Exit(code=1) from None

    wrapper._atelier_guarded = True
    return wrapper


def guard_commands(app: Any) -> None:
    """Apply :func:`exit_on_user_error` to every command of a Typer app and of the apps added to it."""
    for command in app.registered_commands:
        if command.callback is not None:
            command.callback = exit_on_user_error(command.callback)
    for group in app.registered_groups:
        guard_commands(group.typer_instance)
