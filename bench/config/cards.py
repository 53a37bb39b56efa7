"""Method cards without torch: what a method is, which code it follows, what its papers report.

The method contract (``bench.model.method``, re-exported by ``bench.api``) uses these classes; reports
read cards through a JSON cache of them (:func:`card_to_json`, :func:`card_from_json`), so that
rendering a table from results never imports torch::

    card = MethodCard(paper="...", code="owner/repo:path@commit", label="CoOp",
                      reported={"places_lt": Reported("MDPR Table 3", {"all": 40.73})})
    card_from_json(card_to_json(card)).reported["places_lt"].metrics   # {"all": 40.73}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

from .recipes import Recipe


@dataclass(frozen=True)
class Reported:
    """Numbers a paper reports for a method on one of our protocols (percent)."""

    source: str  # e.g. "MDPR Table 2"
    metrics: Mapping[str, Optional[float]]  # our metric names: all, many, ...; None: the paper printed "–"
    note: str = ""  # how the paper's setup differs from ours, where known (and why a "–")


@dataclass(frozen=True)
class Ablation:
    """A paper's ablation or sensitivity row: its numbers for a run of ``protocol`` with
    ``--set <method>.<field>=<value>`` for each of ``settings`` (report specs find it by table)."""

    table: str  # e.g. "LAMP Table 7"
    protocol: str  # a protocol name; a glob when the paper reports a mean over protocols
    settings: Mapping[str, object]
    metrics: Mapping[str, float]
    note: str = ""


@dataclass(frozen=True)
class MethodCard:
    """What a method is, which code it follows, how its papers train it, what they report."""

    paper: str  # citation of the paper that defines the method
    code: str  # the official code followed: owner/repo:path at a commit
    label: str = ""  # how tables name it ("CoOp+LA"); empty: its registry name
    # where the method's behaviour (what its code and paper do, and where ours differs) is written down:
    # a section of a spec ("methods_spec §2") or a URL; free text
    spec: str = ""
    recipes: Mapping[str, Recipe] = field(default_factory=dict)  # protocol family -> recipe
    reported: Mapping[str, Reported] = field(default_factory=dict)  # protocol name -> numbers
    ablations: Sequence[Ablation] = ()  # the paper's ablation and sensitivity rows


def card_to_json(card: MethodCard) -> dict:
    """What reports read of a card, as plain JSON (its recipes stay with the method)."""
    return {"paper": card.paper, "code": card.code, "label": card.label, "spec": card.spec,
            "reported": {p: [r.source, dict(r.metrics), r.note] for p, r in card.reported.items()},
            "ablations": [[a.table, a.protocol, dict(a.settings), dict(a.metrics), a.note] for a in card.ablations]}


def card_from_json(data: dict) -> MethodCard:
    return MethodCard(data["paper"], data["code"], data["label"], data["spec"],
                      reported={p: Reported(*r) for p, r in data["reported"].items()},
                      ablations=tuple(Ablation(*a) for a in data["ablations"]))
