"""Name rules that the database and the direction-set file share: a name publishing accepts is one the file accepts.

They sit in core (floor 0) because db (publishing a direction) and model (validating a direction-set file) both
need them and neither may import the other's floor upward.
"""
from __future__ import annotations

import unicodedata
from typing import Any

from core.errors import InvalidInput

MAX_DIRECTION_NAME_LENGTH = 200
# Right-to-left overrides and isolates can make "evil.exe" display as something else in file listings.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def check_direction_name(name: Any, where: str = "direction name") -> str:
    """A direction name is a safetensors key and shows in file listings: no separators, no '..', no controls.

    The one rule for direction names: publishing (``db.queries.publish_direction``) refuses what the export
    (``workflows.export``) would refuse, and importing a file refuses the same names.
    """
    if not isinstance(name, str):
        raise InvalidInput(f"{where} must be text, got {type(name).__name__}")
    fix = "use letters, digits, spaces, '-' or '_'"
    if not name.strip():
        raise InvalidInput(f"{where} is empty: give every direction a name")
    if name != name.strip():
        raise InvalidInput(f"{where} {name!r} starts or ends with spaces; remove them")
    if len(name) > MAX_DIRECTION_NAME_LENGTH:
        raise InvalidInput(
            f"{where} {name[:40]!r}… is {len(name)} characters; keep it to {MAX_DIRECTION_NAME_LENGTH}"
        )
    if "/" in name or "\\" in name:
        raise InvalidInput(f"{where} {name!r} contains a path separator ('/' or '\\'); {fix}")
    if ".." in name:
        raise InvalidInput(f"{where} {name!r} contains '..'; {fix}")
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in _BIDI_CONTROLS for ch in name):
        raise InvalidInput(f"{where} {name!r} contains control characters; {fix}")
    return name
