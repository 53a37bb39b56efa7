"""The result record's format: its schema version, where it lies, its key, and how it is read.

The engine writes records (:class:`bench.engine.store.ResultStore`); reporting reads them; both use
this module, so a record means the same thing to each::

    path = root / result_name("smoke", "coop", key, seed=1)    # <protocol>/<method>/<key[:12]>/seed-1.json
    record, problem = read_record(path)                         # (None, "is not valid JSON (...)") if damaged
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Optional, Tuple

from bench import __version__
from bench.core.safeyaml import load_json
from .headline import headline_metric

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
            data = load_json(f.read())
    except (OSError, UnicodeDecodeError) as err:
        return None, f"cannot be read ({err})"
    except ValueError as err:
        return None, f"is not valid JSON ({err})"
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        return None, "is not a benchmark result"
    if data.get("schema") != SCHEMA:
        return None, f"has result schema {data.get('schema')!r}, this bench reads {SCHEMA}; re-run to replace it"
    wrong = [k for k, tp in REQUIRED.items() if not isinstance(data.get(k), tp) or isinstance(data.get(k), bool)]
    if wrong or headline_metric(data["metrics"]) is None:
        return None, f"lacks valid {', '.join(wrong) or 'metrics.all (or metrics.hm)'}"
    bad = [str(k)[:40] for k, v in data["metrics"].items() if v is not None and not is_metric(k, v)]
    if bad:
        return None, f"has metrics that are not numbers of their range: {', '.join(bad[:5])}"
    problem = unusable(data)
    return (None, problem) if problem else (data, None)


def unusable(data: dict) -> Optional[str]:
    """What makes a well-formed record unusable: a per-class accuracy list whose length is not the
    record's class count (its ``class_train_counts``), which would misplace the long-tail curve."""
    accuracy, counts = data.get("per_class_accuracy"), data.get("class_train_counts")
    if accuracy is None:
        return None
    if not isinstance(accuracy, list) or any(v is not None and not is_metric("", v) for v in accuracy):
        return "has a per_class_accuracy that is not a list of percentages"
    if counts is None:  # written before the counts were recorded: no curve, and nothing to check
        return None
    if not isinstance(counts, list) or any(not isinstance(n, int) or isinstance(n, bool) or n < 0 for n in counts):
        return "has a class_train_counts that is not a list of image counts"
    if len(counts) != len(accuracy):
        return f"has {len(accuracy)} per-class accuracies for {len(counts)} classes (class_train_counts)"
    return None


def is_metric(name: str, value) -> bool:  # noqa: ARG001 (the name: a range per metric, should one differ)
    """A percentage: a number (not true or false, not NaN) in [0, 100].  (Costs are not stored as
    metrics: :func:`bench.records.headline.cost_metrics` derives them when a record is read.)"""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return False
    return 0 <= value <= 100
