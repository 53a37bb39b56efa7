"""Protocol overrides: a protocol's fields changed from the command line or a report column, without
editing its YAML.  ``--set protocol.backbone.model=ViT-B-32`` becomes ``{"backbone.model": "ViT-B-32"}``,
applied to the protocol's mapping (after a grid cell is expanded) before it is validated like the YAML;
what it changes enters the protocol identity, so its results get their own key::

    sets, methods = split_sets(["protocol.backbone.model=RN50", "coop.n_ctx=4"])
    sets                                   # {"backbone.model": "RN50"}
    apply_overrides(data, sets)            # a copy of the protocol mapping with the override in place
    describe(sets)                         # "backbone.model=RN50": how labels and titles name the change
"""
from __future__ import annotations

import copy
import json
from typing import Any, Dict, List, Tuple

from bench.core.errors import BenchError
from bench.core.safeyaml import load_yaml, shorten

PREFIX = "protocol."
FIXED = ("name", "grid", "display")  # what a protocol is, not how it runs: never overridden
ROOTS = ("label", "description", "family", "dataset", "backbone", "transforms", "train", "eval", "evaluations",
         "means", "seeds", "methods")


def read_value(raw: str, target: str) -> Any:
    """A ``--set`` value read as YAML (``4`` a number, ``null`` None, ``[1, 2]`` a list); text that
    is not YAML stays text; a value too deep or too large once expanded is refused."""
    return load_yaml(raw, f"--set '{shorten(target, 100)}'", malformed_as_text=True) if raw else ""


def split_sets(items: List[str]) -> Tuple[Dict[str, Any], List[str]]:
    """``(protocol overrides, the other --set items)``: ``protocol.PATH=VALUE`` items become
    ``{PATH: value}``; the rest (method fields) are left for the method parser."""
    protocol: Dict[str, Any] = {}
    rest = []
    for item in items:
        target, sep, raw = item.partition("=")
        if not target.startswith(PREFIX):
            rest.append(item)
            continue
        path = target[len(PREFIX):]
        check_path(path, sep)
        clash = [p for p in protocol if p == path or p.startswith(path + ".") or path.startswith(p + ".")]
        if clash:
            raise BenchError(f"--set 'protocol.{path}' and 'protocol.{clash[0]}' set the same field; give one")
        protocol[path] = read_value(raw, target)
    return protocol, rest


def check_path(path: str, sep: str = "=") -> None:
    parts = path.split(".")
    if not sep or not all(parts):
        raise BenchError(f"--set 'protocol.{path}': expected protocol.SECTION.FIELD=VALUE, "
                         "e.g. protocol.backbone.model=ViT-B-32 or protocol.eval.batch_size=256")
    if parts[0] in FIXED or parts[0] not in ROOTS:
        raise BenchError(f"--set 'protocol.{path}': '{parts[0]}' cannot be overridden (fields that can: "
                         f"{', '.join(ROOTS)})")


def apply_overrides(data: dict, overrides: Dict[str, Any]) -> dict:
    """A copy of protocol mapping ``data`` with each ``{dotted path: value}`` put in place."""
    out = copy.deepcopy(data)
    for path, value in overrides.items():
        check_path(path)
        *parents, last = path.split(".")
        block = out
        for i, key in enumerate(parents):
            child = block.setdefault(key, {})
            if not isinstance(child, dict):
                raise BenchError(f"--set 'protocol.{path}': protocol.{'.'.join(parents[:i + 1])} is not a mapping "
                                 "of fields in this protocol")
            block = child
        block[last] = copy.deepcopy(value)
    return out


def show_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def describe(overrides: Dict[str, Any]) -> str:
    """``backbone.model=RN50, eval.batch_size=256`` (sorted, so equal overrides read alike)."""
    return ", ".join(f"{path}={show_value(overrides[path])}" for path in sorted(overrides))


def reference(name: str, overrides: Dict[str, Any]) -> str:
    """How reports and logs name a protocol run with overrides: ``places_lt [backbone.model=RN50]``."""
    return f"{name} [{describe(overrides)}]" if overrides else name


def parse_reference(text: str) -> Tuple[str, Dict[str, Any]]:
    """The inverse of :func:`reference`: ``"places_lt [backbone.model=RN50]"`` -> ``("places_lt",
    {"backbone.model": "RN50"})`` (method cards file a paper's numbers under such names)."""
    name, sep, rest = text.partition(" [")
    if not sep:
        return text, {}
    if not rest.endswith("]"):
        raise BenchError(f"'{text}': expected NAME [PATH=VALUE, ...]")
    sets, _ = split_sets([f"{PREFIX}{part.strip()}" for part in rest[:-1].split(", ")])
    return name, sets


def fingerprint(overrides: Dict[str, Any]) -> str:
    return json.dumps(overrides, sort_keys=True, default=str) if overrides else ""
