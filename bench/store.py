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
from pathlib import Path
from typing import Iterator, List, Optional

from . import __version__
from .atomic import write_json
from .errors import BenchError

SCHEMA = 1


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


class ResultStore:
    def __init__(self, root):
        self.root = Path(root)

    def cell_dir(self, protocol: str, method: str, key: str) -> Path:
        return self.root / protocol / method / key[:12]

    def result_path(self, protocol: str, method: str, key: str, seed: int) -> Path:
        return self.cell_dir(protocol, method, key) / f"seed-{seed}.json"

    def checkpoint_path(self, protocol: str, method: str, key: str, seed: int) -> Path:
        return self.cell_dir(protocol, method, key) / f"seed-{seed}.ckpt"

    def load(self, protocol: str, method: str, key: str, seed: int) -> Optional[dict]:
        path = self.result_path(protocol, method, key, seed)
        if not path.exists():
            return None
        record = _read(path)
        return record if record.get("key") == key else None

    def write(self, record: dict) -> Path:
        path = self.result_path(record["protocol"], record["method"], record["key"], record["seed"])
        write_json(path, {"schema": SCHEMA, **record})
        return path

    def records(self, protocol: str) -> List[dict]:
        return list(self._iter(protocol))

    def _iter(self, protocol: str) -> Iterator[dict]:
        base = self.root / protocol
        if not base.is_dir():
            return
        for path in sorted(base.glob("*/*/seed-*.json")):
            yield _read(path)


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise BenchError(f"cannot read result file '{path}': {err}") from None
    if not isinstance(data, dict) or "metrics" not in data:
        raise BenchError(f"result file '{path}' is not a benchmark result")
    return data
