"""Which results a report reads, and why others are not: a record matches a row on a protocol when its
config is the protocol's current one (with the column's overrides) with the row's ``set`` values, at the
current code version; a column left without numbers says what it found instead.  Also how a title names
the backbones that ran::

    selected(frame, view, RowSpec("coop"))       # the rows of a results frame a report row takes
    unmatched_columns(report, frame, views, version)   # ["places_lt: no numbers; found 12 result(s) ..."]
    titled("Leaderboard ({backbone})", views)    # "Leaderboard (CLIP ViT-B/16)"
"""
from __future__ import annotations

import re
from typing import Dict, List

from bench.core.errors import BenchError
from .leaderboard import current_version, differences, flatten, why_not_current
from .reportspec import RowSpec


def matches(config: dict, view: dict, row: RowSpec) -> bool:
    """Whether a record's config is the protocol's current one with the row's ``set`` values."""
    if config.get("protocol") != view["identity"]:
        return False
    reference = view["references"].get(row.method)
    if reference is None:
        return False
    expected = {**flatten(reference), **row.set}
    ours = flatten({"": config.get("method", {}), "train": config.get("train") or {}})
    return not differences(ours, expected) and all(k in ours for k in row.set)


def check_settings(row: RowSpec, views: List[dict]) -> None:
    """Each ``set`` option exists; a number YAML read as text (``1e-3``) becomes the number, as
    ``--set`` makes it."""
    for view in views:
        reference = flatten(view["references"].get(row.method) or {})
        unknown = [k for k in row.set if reference and k not in reference]
        if unknown:
            raise BenchError(f"report row '{row.name}': {row.method} has no option {', '.join(map(repr, unknown))} "
                             f"(see `bench show {view['name']} --method {row.method}`)")
        for key, value in row.set.items():
            current = reference.get(key)
            if isinstance(value, str) and isinstance(current, (int, float)) and not isinstance(current, bool):
                try:
                    row.set[key] = float(value) if isinstance(current, float) else int(value)
                except ValueError:
                    raise BenchError(f"report row '{row.name}': {key} takes a number, got {value!r}") from None


def found_elsewhere(frame, views: Dict[str, dict], version: str) -> str:
    """``"; found 12 result(s) of other configurations: ..."`` for results of these protocols that a
    report does not read, or ""."""
    if frame.empty:
        return ""
    records = [{"protocol": p, "method": m, "code_version": v, "config": c}
               for p, m, v, c in zip(frame["protocol"], frame["method"], frame["code_version"], frame["config"])]
    return "; " + why_not_current(records, views, version)


def unmatched_columns(report, ours, views: Dict[str, dict], version: str) -> List[str]:
    """A line for each protocol of a :class:`bench.reporting.report.Report` that no row has a number for:
    why the results of it that exist do not match (another configuration or code version), or that none do."""
    lines = []
    for protocol in report.read:
        if any(report.cells[(row.name, protocol, m)].values for row in report.rows for m in report.read[protocol]):
            continue
        name = views[protocol]["name"]
        frame = ours[ours["protocol"] == name]
        view = views[protocol]
        frame = frame[[not (matches(c, view, RowSpec(m)) and v == current_version(m, version, view.get("code_versions")))
                       for c, m, v in zip(frame["config"], frame["method"], frame["code_version"])]]
        lines.append(f"{protocol}: no numbers{found_elsewhere(frame, {name: views[protocol]}, version)}" if len(frame)
                     else f"{protocol}: no numbers; the results folders hold no result of protocol '{name}'")
    return lines


def selected(frame, view: dict, row: RowSpec):
    """The rows of ``frame`` whose config :func:`matches` (tested once per key: a key is a hash of
    its config); None for no frame."""
    if frame is None:
        return None
    firsts = frame.drop_duplicates("key")
    keep = [key for key, config in zip(firsts["key"], firsts["config"]) if matches(config, view, row)]
    return frame[frame["key"].isin(keep)]


def seed_values(frame, metric: str) -> Dict[int, float]:
    """seed -> value of ``metric`` (seeds lacking it left out)."""
    if frame is None or metric not in frame.columns:
        return {}
    return {seed: float(v) for seed, v in zip(frame["seed"].tolist(), frame[metric].tolist()) if is_number(v)}


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and value == value  # NaN: a metric this record lacks


PAPERS_BACKBONE = "CLIP ViT-B/16"  # what the papers' tables ran; a title says so only when it differs


def backbone_name(identity: dict) -> str:
    """``CLIP ViT-B/16`` (OpenAI weights), ``ViT-B/32 (laion2b_s34b_b79k)``, ``RN50, random weights``."""
    block = identity.get("backbone")
    if not isinstance(block, dict):
        return ""
    model = re.sub(r"^(ViT-[A-Za-z]+)-(\d+)", r"\1/\2", str(block.get("model", block.get("name", "?"))))
    if block.get("name") != "open_clip":
        return f"{str(block.get('name', '?')).replace('_', ' ')} {model}"
    tag = block.get("pretrained")
    return f"CLIP {model}" if tag == "openai" else f"{model}, random weights" if tag is None else f"{model} ({tag})"


def titled(title: str, views: Dict[str, dict]) -> str:
    """``title`` with ``{backbone}`` replaced by the backbones its protocols ran; a title without the
    placeholder names them at its end when they are not the papers' CLIP ViT-B/16."""
    names = ", ".join(dict.fromkeys(filter(None, (backbone_name(v["identity"]) for v in views.values()))))
    if "{backbone}" in title:
        return title.replace("{backbone}", names or "?")
    if names in ("", PAPERS_BACKBONE):
        return title
    return f"{title[:-1]}; {names})" if title.endswith(")") else f"{title} ({names})"  # one pair of brackets
