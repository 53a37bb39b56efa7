"""Results store: one JSON file per (protocol, method, seed).

Layout: ``<root>/<protocol>/<method>/<key[:12]>/seed-<seed>.json`` where the key
is a SHA-256 of the protocol's identity, the method's name, config and training
recipe, and the code version (``bench.__version__``).  Files are written atomically (temp
file, fsync, rename), so an interrupted run never leaves a half-written
result; a finished cell is skipped when it is asked for again.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import List, Optional, Tuple

from . import __version__
from .atomic import set_aside, write_json
from .errors import BenchError, warn
from .leaderboard import headline_metric

# Layout of a record; bumped when fields move (2: config.train, config.sources, setup; 3: evaluations).
SCHEMA = 3


def cell_key(protocol_identity: dict, method: str, method_config: dict, train_recipe: dict,
             code_version: str = __version__) -> str:
    payload = {
        "protocol": protocol_identity,
        "method": method,
        "method_config": method_config,
        "train_recipe": train_recipe,
        "code_version": code_version,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


# What read_placed says of a valid record found at another path than its own.
MISPLACED = "is not where its own protocol, method, key and seed put it (a copy?)"


def result_name(protocol: str, method: str, key: str, seed: int) -> str:
    """Where a record lies below a results root: ``<protocol>/<method>/<key[:12]>/seed-<seed>.json``."""
    return os.path.join(protocol, method, key[:12], f"seed-{seed}.json")


class ResultStore:
    def __init__(self, root):
        self.root = Path(root)

    def cell_dir(self, protocol: str, method: str, key: str) -> Path:
        return self.root / protocol / method / key[:12]

    def result_path(self, protocol: str, method: str, key: str, seed: int) -> Path:
        return self.root / result_name(protocol, method, key, seed)

    def checkpoint_path(self, protocol: str, method: str, key: str, seed: int) -> Path:
        return self.cell_dir(protocol, method, key) / f"seed-{seed}.ckpt"

    def load(self, protocol: str, method: str, key: str, seed: int) -> Optional[dict]:
        """The finished record of a cell, or None; a corrupt file there is set aside (the cell re-runs)."""
        path = self.result_path(protocol, method, key, seed)
        if not path.exists():
            return None
        record, problem = read_record(path)
        if problem is None and record["key"] != key:
            problem = f"holds another cell's result (key {record['key'][:16]}...)"
        if problem is not None:
            warn(f"result file '{path}' {problem}; set aside as '{set_aside(path).name}', the cell runs again")
            return None
        return record

    def write(self, record: dict) -> Path:
        path = self.result_path(record["protocol"], record["method"], record["key"], record["seed"])
        write_json(path, {"schema": SCHEMA, **record})
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


REQUIRED = {"key": str, "protocol": str, "method": str, "seed": int, "code_version": str, "metrics": dict,
            "config": dict}


def read_placed(root, rel: str) -> Tuple[Optional[dict], Optional[str]]:
    """:func:`read_record` of ``root/rel``, and :data:`MISPLACED` for a valid record that belongs
    elsewhere (its protocol, method, key and seed name another path: a copy)."""
    record, problem = read_record(os.path.join(root, rel))
    if problem is None and rel != result_name(record["protocol"], record["method"], record["key"], record["seed"]):
        return None, MISPLACED
    return record, problem


def read_record(path) -> Tuple[Optional[dict], Optional[str]]:
    """``(record, None)``, or ``(None, what is wrong with the file)``; ``path`` a Path or a string."""
    if not os.path.isfile(path):  # a FIFO would block the read forever
        return None, "is not a regular file"
    try:
        with open(path, encoding="utf-8") as f:
            data = json.loads(f.read())
    except (OSError, UnicodeDecodeError) as err:
        return None, f"cannot be read ({err})"
    except ValueError as err:
        return None, f"is not valid JSON ({err})"
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        return None, "is not a benchmark result"
    if data.get("schema") != SCHEMA:
        return None, f"has result schema {data.get('schema')!r}, this bench reads {SCHEMA}; re-run to replace it"
    wrong = [k for k, tp in REQUIRED.items() if not isinstance(data.get(k), tp)]
    if wrong or headline_metric(data["metrics"]) is None:
        return None, f"lacks valid {', '.join(wrong) or 'metrics.all (or metrics.hm)'}"
    bad = [k for k, v in data["metrics"].items() if v is not None and not (isinstance(v, (int, float)) and 0 <= v <= 100)]
    if bad:
        return None, f"has metrics that are not percentages: {', '.join(bad)}"
    return data, None
