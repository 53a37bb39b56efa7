"""Results store: one JSON file per (protocol, method, seed).

Layout: ``<root>/<protocol>/<method>/<key[:12]>/seed-<seed>.json`` where the key
is a SHA-256 of the protocol's identity, the method's name, config and training
recipe, and the code version (``bench.__version__``).  Files are written atomically (temp
file, fsync, rename), so an interrupted run never leaves a half-written
result; a finished cell is skipped when it is asked for again.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import tempfile
from pathlib import Path
from typing import List, Optional

from bench.core.safeyaml import load_json
from bench.core.atomic import set_aside_note, write_atomic, write_json
from bench.core.errors import BenchError, warn
from bench.core.registry import loaded_plugins
from bench.records.schema import SCHEMA, read_placed, read_record, result_name
from .lease import holder
from .nospace import stop_when_full


class ResultStore:
    failed_skip_note = "--retry-failed runs it again"  # what a run says of a failed cell it skips

    def __init__(self, root):
        self.root = Path(root)

    def cell_dir(self, protocol: str, method: str, key: str) -> Path:
        return self.root / protocol / method / key[:12]

    def result_path(self, protocol: str, method: str, key: str, seed: int) -> Path:
        return self.root / result_name(protocol, method, key, seed)

    def checkpoint_path(self, protocol: str, method: str, key: str, seed: int) -> Path:
        return self.cell_dir(protocol, method, key) / f"seed-{seed}.ckpt"

    def lease_path(self, protocol: str, method: str, key: str, seed: int) -> Path:
        return self.cell_dir(protocol, method, key) / f"seed-{seed}.lease"

    def failure_path(self, protocol: str, method: str, key: str, seed: int) -> Path:
        return self.cell_dir(protocol, method, key) / f"seed-{seed}.failed"

    def write_failure(self, protocol: str, method: str, key: str, seed: int, error: str, trace: str) -> Path:
        """A failed cell: its one-line error, with the traceback in a side file (``bench status`` shows both)."""
        path = self.failure_path(protocol, method, key, seed)
        side = path.with_name(f"seed-{seed}.traceback.txt")
        with stop_when_full(path, self.root):
            try:
                write_atomic(side, lambda f: f.write(trace))
                write_json(path, {"error": error, "traceback": side.name, "holder": holder(),
                                  "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
            except Exception:  # both or neither: a traceback file without its record is not a failure
                with contextlib.suppress(OSError):
                    if not path.exists():
                        side.unlink()
                raise
        return path

    def failure(self, protocol: str, method: str, key: str, seed: int) -> Optional[dict]:
        """The recorded failure of a cell, or None (a damaged record still counts as a failure)."""
        path = self.failure_path(protocol, method, key, seed)
        if not path.exists():
            return None
        try:
            data = load_json(path.read_text())
        except (OSError, ValueError):
            data = None
        return data if isinstance(data, dict) else {"error": f"(unreadable failure record '{path.name}')"}

    def clear_failure(self, protocol: str, method: str, key: str, seed: int) -> None:
        path = self.failure_path(protocol, method, key, seed)
        for stale in (path, path.with_name(f"seed-{seed}.traceback.txt")):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()

    def load(self, protocol: str, method: str, key: str, seed: int) -> Optional[dict]:
        """The finished record of a cell, or None; a corrupt file there is set aside (the cell re-runs)."""
        path = self.result_path(protocol, method, key, seed)
        if not path.exists():
            return None
        record, problem = read_record(path)
        if problem is None and record["key"] != key:
            problem = f"holds another cell's result (key {record['key'][:16]}...)"
        if problem is not None:
            warn(f"result file '{path}' {problem}; {set_aside_note(path)}, the cell runs again")
            return None
        return record

    def write(self, record: dict) -> Path:
        path = self.result_path(record["protocol"], record["method"], record["key"], record["seed"])
        with stop_when_full(path, self.root):
            write_json(path, {"schema": SCHEMA, "plugins": loaded_plugins(), **record})  # any plugin may change what ran
        return path

    def check_writable(self, protocol: str = "") -> None:
        """Fail before any work if results cannot be written under the root (and the protocol's folder)."""
        try:
            folder = self.root / protocol
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as err:
            reason = err.strerror or type(err).__name__
            raise BenchError(f"cannot write results under '{self.root}' ({reason}); "
                             "pick another folder with --results-dir") from None

    def records(self, protocol: str) -> List[dict]:
        """Every readable record of ``protocol``; files that are not are reported and skipped."""
        base = self.root / protocol
        out, older = [], []
        for path in sorted(base.glob("*/*/seed-*.json")) if base.is_dir() else []:
            record, problem = read_placed(self.root, os.path.relpath(path, self.root))
            if problem is None:
                out.append(record)
            elif problem.startswith("has result schema"):  # old results are expected, not damage
                older.append(path)
            else:
                warn(f"skipped '{path}': it {problem}")
        if older:
            warn(f"skipped {len(older)} result file(s) of another result schema, e.g. '{older[0]}'; "
                 "re-run to replace them")
        return out


