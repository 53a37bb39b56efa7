"""Label spaces of a cell: what a method trains on and each evaluation it is scored by.

A long-tailed protocol trains and tests on all classes.  A base-to-new protocol (the bundle names
its ``base_classes``) trains on the base classes only and is tested twice with separate classifiers,
as in CoCoOp: base test images among the base classes, new test images among the new classes
(``method.set_label_space``).  Labels are renumbered within each label space::

    space = label_spaces(bundle)
    method = Method(backbone, space.train_info, cfg)      # trained on space.train
    for ev in space.evaluations: ...                      # ev.info, ev.test, ev.classes
    record_part = combine(space, [evaluate(...) for ev in space.evaluations])
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from torch.utils.data import Dataset

from .data import DatasetBundle
from .errors import BenchError
from .method import ClassInfo
from .metrics import harmonic_mean


class Relabelled(Dataset):
    """The items of ``dataset`` whose label is in ``classes``, labelled by their position there."""

    def __init__(self, dataset: Dataset, labels: Sequence[int], classes: Sequence[int]):
        position = {c: i for i, c in enumerate(classes)}
        self.dataset = dataset
        self.items = [(i, position[y]) for i, y in enumerate(labels) if y in position]
        self.labels = [y for _, y in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):
        i, label = self.items[index]
        return self.dataset[i][0], label


@dataclass
class Evaluation:
    name: str  # "test" (all classes), "base" or "new"
    info: ClassInfo
    test: Dataset
    classes: List[int]  # the bundle's class index of each label


@dataclass
class LabelSpaces:
    train_info: ClassInfo
    train: Dataset
    evaluations: List[Evaluation]


def labels_of(dataset: Dataset) -> List[int]:
    labels = getattr(dataset, "labels", None)
    if labels is None:
        raise BenchError(f"a base-to-new dataset must list its labels ({type(dataset).__name__} has no .labels)")
    return list(labels)


def label_spaces(data: DatasetBundle) -> LabelSpaces:
    names, counts = data.classnames, data.train_counts
    if data.base_classes is None:
        info = ClassInfo(list(names), list(counts), data.template)
        return LabelSpaces(info, data.train, [Evaluation("test", info, data.test, list(range(len(names))))])
    base = list(data.base_classes)
    new = [c for c in range(len(names)) if c not in set(base)]
    train_info = ClassInfo([names[c] for c in base], [counts[c] for c in base], data.template,
                           new_classnames=[names[c] for c in new])
    new_info = ClassInfo([names[c] for c in new], [counts[c] for c in new], data.template)
    test_labels = labels_of(data.test)
    return LabelSpaces(
        train_info, Relabelled(data.train, labels_of(data.train), base),
        [Evaluation("base", train_info, Relabelled(data.test, test_labels, base), base),
         Evaluation("new", new_info, Relabelled(data.test, test_labels, new), new)],
    )


def combine(spaces: LabelSpaces, results: List[dict]) -> dict:
    """One record part from each evaluation's :func:`bench.metrics.evaluate` output."""
    if len(results) == 1:
        return results[0]
    by_name = {ev.name: res["metrics"] for ev, res in zip(spaces.evaluations, results)}
    base, new = by_name["base"], by_name["new"]
    metrics: Dict[str, Optional[float]] = {
        "base": base["all"], "new": new["all"], "hm": harmonic_mean(base["all"], new["all"]),
        "base_macro_f1": base["macro_f1"], "new_macro_f1": new["macro_f1"],
        "hm_macro_f1": harmonic_mean(base["macro_f1"], new["macro_f1"]),
        **{group: base[group] for group in ("many", "medium", "few")},  # base classes by training count
    }
    per_class: List[Optional[float]] = [None] * sum(len(ev.classes) for ev in spaces.evaluations)
    for ev, res in zip(spaces.evaluations, results):
        for label, acc in zip(ev.classes, res["per_class_accuracy"]):
            per_class[label] = acc
    return {"metrics": metrics, "per_class_accuracy": per_class, "group_sizes": results[0]["group_sizes"],
            "num_test": sum(res["num_test"] for res in results)}
