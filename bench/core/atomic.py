"""Atomic file writes: a temp file in the same folder, fsync, then rename.

A reader never sees a half-written file, and an interrupted write leaves the
previous version (or nothing) in place.  A file found corrupt is renamed aside
(:func:`set_aside`), never deleted, so nothing is lost.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable


def write_atomic(path: Path, write: Callable[[IO], Any], binary: bool = False) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: Path, data: Any, compact: bool = False) -> None:
    """Strict JSON: a NaN or infinity raises instead of writing a bare ``NaN`` that parsers reject.
    ``compact``: one line in the order given, for large machine-read files (the C encoder, much faster)."""
    if compact:
        text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    else:
        text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"
    write_atomic(path, lambda f: f.write(text))


def save_torch(path: Path, obj: Any) -> None:
    import torch

    write_atomic(path, lambda f: torch.save(obj, f), binary=True)


def set_aside(path: Path) -> Path:
    """Rename ``path`` to ``<name>.corrupt`` (``.corrupt-2``, ... if taken); returns the new path."""
    path = Path(path)
    aside, n = path.with_name(path.name + ".corrupt"), 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{n}")
    os.replace(path, aside)
    return aside
