"""Which server paths the app may open when a team uses it (no Streamlit here, so it is testable on its own).

In team mode the Models page (register a file by path) and the Training page (follow a run folder) only open paths
inside configured folders: ``ATELIER_FOLDERS`` (folders separated by ``:``), by default ``ATELIER_HOME`` and the
runs folder. Anything else gets the same answer as a path that does not exist, so the page cannot be used to find
out which files the server has (``/etc/shadow`` and ``/no/such/file`` read alike). On one person's own machine
(no team mode) any path works, as it always did.
"""
from __future__ import annotations

import os
from pathlib import Path

from core.errors import AtelierError
from core.settings import atelier_home, runs_dir, shown_path

FOLDERS_ENV = "ATELIER_FOLDERS"


class PathRefused(AtelierError):
    """A server path that is missing or outside the allowed folders (deliberately one message for both)."""


def allowed_folders() -> list[Path]:
    raw = os.environ.get(FOLDERS_ENV, "").strip()
    if not raw:
        return [atelier_home().resolve(), runs_dir().resolve()]
    folders = [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]
    return [folder.resolve() for folder in folders]


def server_path(text: str, *, team: bool, kind: str = "file", folders: list[Path] | None = None) -> Path:
    """The path typed into a page, resolved, when it may be opened; otherwise :class:`PathRefused`.

    Symbolic links and ``..`` are resolved first, so neither leads out of an allowed folder. ``kind`` is "file" or
    "folder", what the page needs there.
    """
    typed = str(text).strip()
    if not typed:
        raise PathRefused(f"Type the path of a {kind} on the server.")
    path = Path(typed).expanduser()
    if not team:
        return path
    roots = allowed_folders() if folders is None else [f.resolve() for f in folders]
    try:
        resolved = path.resolve()
        inside = any(resolved == root or resolved.is_relative_to(root) for root in roots)
        usable = inside and (resolved.is_file() if kind == "file" else resolved.is_dir())
    except (OSError, RuntimeError, ValueError):  # loops, names the OS refuses
        usable = False
    if not usable:
        where = ", ".join(shown_path(root) for root in roots)
        raise PathRefused(f"No {kind} {typed!r} in the folders this server opens ({where}). Put it there, upload "
                          f"it, or ask the admin to add its folder to {FOLDERS_ENV}.")
    return resolved
