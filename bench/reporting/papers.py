"""The papers' numbers beside ours: which entry of a method card holds a report row's paper
number on a protocol (its own ``reported``, or an ablation table the row names), and the cards'
notes on the numbers shown, for the table's notes::

    reported_value(RowSpec("coop"), "cifar100_lt_ir100", "all", card, True, view)   # 64.34
    paper_notes(report, views, cards)   # ["MDPR Table 2, CoOp: MDPR keeps the best test epoch ..."]
"""
from __future__ import annotations

import re
from typing import Dict, List, Mapping, Optional, Tuple

from .leaderboard import flatten
from .reportspec import RowSpec


def reported_value(row: RowSpec, protocol: str, metric: str, card, show: bool, view: dict) -> Optional[float]:
    return paper_number(row, protocol, metric, card, show, view)[0]


def paper_number(row: RowSpec, protocol: str, metric: str, card, show: bool,
                 view: dict) -> Tuple[Optional[float], bool]:
    """(the paper's number for the cell, whether the paper printed "–" there: a card's ``None``, as
    MDPR's CoCoOp on ImageNet-LT)."""
    if not show:
        return None, False
    metrics = row.reported.get(protocol, {}) if row.reported else getattr(
        card_entry(row, protocol, card, view), "metrics", {})
    value = metrics.get(metric)
    return (None if value is None else float(value)), metric in metrics and value is None and not row.reported


def card_entry(row: RowSpec, protocol: str, card, view: dict):
    """The card's ``Reported`` (or ``Ablation``, for a row ``reported_from`` a table) that holds the
    paper's numbers of ``row`` on ``protocol``; None when it has none (a row with other settings)."""
    if row.reported_from:
        return next((a for a in getattr(card, "ablations", ()) if a.table == row.reported_from
                     and a.protocol == protocol and same_settings(a.settings, row, view)), None)
    if row.set and not same_settings({}, row, view):
        return None  # the card's numbers are the method's own recipe, not this setting
    return getattr(card, "reported", {}).get(protocol)


def paper_notes(report, views: Dict[str, dict], cards) -> List[str]:
    """The cards' notes on the paper numbers a :class:`bench.reporting.report.Report` shows (how a
    paper's setup differs, what it printed), once each, naming the rows only when a note is not about
    every row with paper numbers: ``"MDPR Table 2, MDPR (CoOp): MDPR keeps the best test epoch ..."``.
    A note that only restates its row's label (an ablation row's description) is left out, and so is
    one that another note of the same rows contains."""
    if not report.spec.reported:
        return []
    notes: Dict[str, List[str]] = {}
    with_numbers: List[str] = []
    for row in report.rows:
        label = report.row_labels.get(row.name, row.name)
        for group in report.groups:
            entry = None if row.reported else card_entry(row, group.pattern if group.is_mean else group.name,
                                                         cards.get(row.method), views[group.members[0]])
            if entry is None:
                continue
            with_numbers.append(label)
            where = getattr(entry, "source", None) or getattr(entry, "table", "")
            for clause in filter(None, entry.note.split("; ")):  # a clause the rows share is said once
                if not restates(clause, label):
                    notes.setdefault(clause, []).append((where, label))
    # one note per clause, naming every table it comes from ("MDPR Table 2 and MDPR Table 3: ...")
    notes = {f"{listed(list(dict.fromkeys(w for w, _ in found)))}: {clause}": [r for _, r in found]
             for clause, found in notes.items()}
    kept = {note: list(dict.fromkeys(rows)) for note, rows in notes.items()
            if not any(other != note and other.startswith(note.rstrip(".")) and set(rows) <= set(notes[other])
                       for other in notes)}
    everyone = set(with_numbers)
    return [note if set(rows) >= everyone else note.replace(": ", f", {listed(rows)}: ", 1)
            for note, rows in kept.items()]


def listed(names: List[str]) -> str:
    """"A", "A and B", "A, B and C"."""
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def restates(note: str, label: str) -> bool:
    """Whether a note only says what its row's label says ("all five dimensions" on "all five")."""
    a, b = re.sub(r"\s*\([^)]*\)", "", note).strip().lower(), label.strip().lower()  # the note's asides aside
    short, long = sorted((a, b), key=len)
    return bool(short) and (a == b or (long.startswith(short + " ") and len(short.split()) >= 2))


def same_settings(settings: Mapping[str, object], row: RowSpec, view: dict) -> bool:
    """Whether an ablation's settings are the row's, each unset field at its current value here."""
    current = flatten(view["references"].get(row.method, {}))
    ours = {**current, **row.set}
    return all(k in ours and ours[k] == v for k, v in settings.items()) and all(
        k in settings or v == current.get(k) for k, v in row.set.items())
