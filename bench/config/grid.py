"""Protocol grids: one YAML file that declares a table of protocols (datasets x imbalance x ...).

A ``grid:`` block maps dotted paths of the file to ``{label: value}`` (or a list, labelled by its
values).  Each combination is a protocol named ``<file>/<label>/<label>...``, its description
formatted with the labels (``{dataset}``: the label on the axis whose path ends in ``dataset``), and
its ``label`` (what tables show) with the labels' ``display`` texts (``{caltech101: Caltech101}``)::

    grid:
      dataset.dataset: {eurosat: eurosat, dtd: dtd}
      dataset.imb_ratio: {imb10: 0.1, imb50: 0.02}

    expand(data, "b2n_lamp")["b2n_lamp/eurosat/imb10"]["dataset"]   # {..., "dataset": "eurosat", "imb_ratio": 0.1}
"""
from __future__ import annotations

import copy
import itertools
from typing import Any, Dict, List, Tuple

from bench.core.errors import ConfigError

LABEL_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def axes(grid: Any) -> List[Tuple[str, List[Tuple[str, Any]]]]:
    """``[(dotted path, [(label, value), ...]), ...]``, checked."""
    if not isinstance(grid, dict) or not grid:
        raise ConfigError("protocol.grid", f"expected a mapping of dotted field paths to values, got {grid!r}")
    out = []
    for path, values in grid.items():
        where = f"protocol.grid.{path}"
        if not isinstance(path, str) or not all(path.split(".")):
            raise ConfigError(where, "expected a dotted path of this file's fields, e.g. dataset.imb_ratio")
        if isinstance(values, list):
            values = {str(v): v for v in values}
        if not isinstance(values, dict) or not values:
            raise ConfigError(where, f"expected a non-empty mapping of label to value, or a list, got {values!r}")
        for label in values:
            if not isinstance(label, str) or not label or not set(label) <= LABEL_CHARS:
                raise ConfigError(where, f"label {label!r}: use letters, digits, '_', '.' or '-'")
        out.append((path, list(values.items())))
    return out


def put(data: dict, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for key in parents:
        child = data.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"protocol.grid.{path}", f"'{key}' is not a mapping in this file")
        data = child
    data[last] = copy.deepcopy(value)


def expand(data: dict, stem: str) -> Dict[str, dict]:
    """Every protocol of the grid file ``data`` (named ``stem``): name -> its protocol mapping."""
    grid_axes = axes(data.get("grid"))
    display = data.get("display") or {}
    if not isinstance(display, dict):
        raise ConfigError("protocol.display", f"expected a mapping of grid label to what tables show, got {display!r}")
    base = {k: v for k, v in data.items() if k not in ("grid", "display")}
    out = {}
    for combo in itertools.product(*(values for _, values in grid_axes)):
        name = "/".join([stem, *(label for label, _ in combo)])
        protocol = copy.deepcopy(base)
        for (path, _), (_, value) in zip(grid_axes, combo):
            put(protocol, path, value)
        labels = {path.rsplit(".", 1)[-1]: label for (path, _), (label, _) in zip(grid_axes, combo)}
        shown = {k: display.get(v, v) for k, v in labels.items()}
        for field_name, words in (("description", labels), ("label", shown)):
            if field_name not in base:
                continue
            try:
                protocol[field_name] = str(base[field_name]).format(**words)
            except (KeyError, IndexError, ValueError) as err:
                raise ConfigError(f"protocol.{field_name}", f"cannot fill in {err} (placeholders: "
                                  f"{', '.join('{' + k + '}' for k in labels)})") from None
        protocol["name"] = name
        out[name] = protocol
    return out
