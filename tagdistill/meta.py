"""``tagdistill.json``: what a model folder holds (a student or a teacher), written and read in one place.

Every folder carries ``format_version`` and ``kind``; the rest depends on the kind (a student: its
config, vocabulary and labels; a teacher: labels, window settings, dev F1). The file is written to a
temporary name and renamed, so a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

META_FILE = "tagdistill.json"
FORMAT_VERSION = 1  # of this file's layout; a newer one is refused with a clear error


def write_meta(folder: Path, kind: str, fields: dict[str, Any]) -> None:
    """Write ``folder/tagdistill.json`` with ``format_version``, ``kind`` and ``fields``, atomically."""
    path = Path(folder) / META_FILE
    tmp = path.with_name(META_FILE + ".tmp")
    tmp.write_text(json.dumps({**fields, "format_version": FORMAT_VERSION, "kind": kind}, indent=1) + "\n")
    tmp.replace(path)


def read_meta(folder: Path, kind: str | None = None) -> dict[str, Any]:
    """The folder's ``tagdistill.json``; with ``kind``, an error unless it describes that kind of model.

    Teacher folders written before the two writers were one have ``format`` instead of ``format_version``.
    """
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a tagdistill model folder (no {META_FILE})")
    meta = json.loads(path.read_text())
    version = meta.get("format_version", meta.get("format", FORMAT_VERSION))
    if version > FORMAT_VERSION:
        raise ValueError(f"{folder} was written by a newer tagdistill (format {version})")
    if kind is not None and meta.get("kind") != kind:
        raise ValueError(f"{folder} holds a {meta.get('kind')!r} model, not a {kind}")
    return meta
