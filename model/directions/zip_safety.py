"""Zip files from untrusted sources, read safely: Atelier direction sets, GANSpace ``.npz`` and torch files.

Every check happens on the central directory before a member is read (unsafe names, duplicates, encryption, odd
compression, zip bombs by size and by ratio), and :func:`read_member` never reads more than a member declares or a
limit allows. The format reader (:mod:`model.directions.set_reader`) and the foreign readers
(:mod:`model.directions.importers`) both use these, so one set of rules guards every upload.
"""
from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Mapping

from model.directions.set_format import DirectionSetError, MiB

MAX_UNPACKED_BYTES = 200 * MiB  # everything inside, uncompressed, as declared and as actually read
# Deflate reaches ~1000:1 on crafted input; real members (JSON, CSV, float32, JPEG) stay far below this.
MAX_RATIO = 100
RATIO_CHECK_FROM = 1 * MiB
MAX_MEMBERS = 20_000


def open_zip(data: bytes, label: str, what: str = "direction set") -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise DirectionSetError(f"{label} is not a complete zip file (truncated or damaged download?); "
                                f"export or copy the {what} again") from None


def check_member_name(name: str, label: str) -> None:
    if (not name or name.startswith(("/", "\\")) or "\\" in name or "\x00" in name or re.match(r"^[A-Za-z]:", name)
            or any(part == ".." for part in name.split("/"))):
        raise DirectionSetError(f"{label} contains a member with an unsafe path {name!r} (absolute, '..', or "
                                f"backslashes); it was refused. Export the file again from Atelier")


def check_zip_members(zf: zipfile.ZipFile, label: str, limits: Mapping[str, int] | None = None,
                      default_limit: int = MAX_UNPACKED_BYTES) -> list[zipfile.ZipInfo]:
    """Refuse unsafe names, duplicates, encryption, odd compression and zip bombs before reading anything."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise DirectionSetError(f"{label} has {len(infos)} members; at most {MAX_MEMBERS} are allowed")
    seen: set[str] = set()
    total = 0
    for info in infos:
        check_member_name(info.filename, label)
        if info.filename in seen:
            raise DirectionSetError(f"{label} contains {info.filename!r} twice; refused (which one is meant?)")
        seen.add(info.filename)
        if info.flag_bits & 0x1:
            raise DirectionSetError(f"{label}: member {info.filename!r} is encrypted; Atelier reads only plain zips")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise DirectionSetError(f"{label}: member {info.filename!r} uses an unsupported compression "
                                    f"(method {info.compress_type}); use stored or deflate")
        limit = (limits or {}).get(info.filename, default_limit)
        if info.file_size > limit:
            raise DirectionSetError(f"{label}: member {info.filename!r} unpacks to {info.file_size:,} bytes, more "
                                    f"than the {limit:,} allowed; refused as a possible zip bomb")
        if info.file_size > RATIO_CHECK_FROM and info.file_size > MAX_RATIO * max(1, info.compress_size):
            raise DirectionSetError(f"{label}: member {info.filename!r} is compressed more than {MAX_RATIO}:1 "
                                    f"({info.compress_size:,} -> {info.file_size:,} bytes); refused as a zip bomb")
        total += info.file_size
    if total > MAX_UNPACKED_BYTES:
        raise DirectionSetError(f"{label} unpacks to {total:,} bytes, more than the {MAX_UNPACKED_BYTES:,} allowed; "
                                f"refused as a possible zip bomb")
    return infos


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, label: str, limit: int) -> bytes:
    """A member's bytes, reading at most ``limit`` (whatever its header claims) and checking its CRC."""
    chunks, size = [], 0
    try:
        with zf.open(info) as handle:
            while True:
                chunk = handle.read(1 << 16)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit or size > info.file_size:
                    raise DirectionSetError(f"{label}: member {info.filename!r} unpacks to more than it declares "
                                            f"or than {limit:,} bytes; refused as a zip bomb")
                chunks.append(chunk)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
        if isinstance(exc, DirectionSetError):
            raise
        raise DirectionSetError(f"{label}: member {info.filename!r} is damaged ({exc}); export or copy the file "
                                f"again") from None
    return b"".join(chunks)

