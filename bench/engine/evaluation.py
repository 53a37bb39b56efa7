"""Label spaces of a cell: what a method trains on and each evaluation it is scored by.

A protocol trains on one dataset and names its evaluations (:class:`EvalPlan`): a test set (the
training dataset's, or another dataset's) and the classes it is scored among (all, base or new).
Without a list, a long-tailed protocol is scored on its test set over all classes, and a
base-to-new protocol (the bundle names ``base_classes``) trains on the base classes and is scored
twice with separate classifiers, as in CoCoOp: base test images among the base classes, new test
images among the new ones.  Labels are renumbered within each label space::

    space = label_spaces(bundle)                          # or label_spaces(bundle, [(plan, other), ...])
    method = Method(backbone, space.train_info, cfg)      # trained on space.train
    for ev in space.evaluations: ...                      # ev.name, ev.info, ev.test, ev.classes
    record_part = summarise(space, [evaluate(...) for ev in space.evaluations])
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from torch.utils.data import Dataset

from bench.config.protocol import Classes, EvalPlan
from bench.core.errors import BenchError
from bench.data import DatasetBundle
from bench.model.method import ClassInfo
from bench.records.headline import F1, harmonic_mean



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
    name: str
    info: ClassInfo
    test: Dataset
    classes: List[int]  # the evaluated bundle's class index of each label
    group: str = ""
    kind: Classes = "all"


@dataclass
class LabelSpaces:
    train_info: ClassInfo
    train: Dataset
    evaluations: List[Evaluation]
    new_train: Optional[Dataset] = None  # unlabelled new-class training images (DatasetBundle.new_train)


def labels_of(dataset: Dataset) -> List[int]:
    labels = getattr(dataset, "labels", None)
    if labels is None:
        raise BenchError(f"a dataset scored on a subset of its classes must list its labels "
                         f"({type(dataset).__name__} has no .labels)")
    return list(labels)


def default_plans(data: DatasetBundle) -> List[EvalPlan]:
    if data.base_classes is None:
        return [EvalPlan("test")]
    return [EvalPlan("base", "base"), EvalPlan("new", "new")]


def selected_classes(data: DatasetBundle, plan: EvalPlan) -> List[int]:
    every = list(range(len(data.classnames)))
    if plan.classes == "all":
        return every
    if data.base_classes is None:
        raise BenchError(f"evaluation '{plan.name}': classes '{plan.classes}' needs a base-to-new dataset "
                         "(one that names its base classes); use classes: all")
    base = set(data.base_classes)
    return [c for c in every if (c in base) == (plan.classes == "base")]


def class_ids(data: DatasetBundle) -> List[str]:
    return list(data.class_ids) if data.class_ids is not None else list(data.classnames)


def label_space(train: DatasetBundle, trained: List[int], train_info: ClassInfo, data: DatasetBundle,
                plan: EvalPlan) -> Evaluation:
    """Evaluation ``plan`` of ``data`` (``train`` itself or another dataset): classes trained on are
    matched by id (ImageNet wnids) and carry their training counts; the training label space itself
    is ``train_info`` (so methods need not switch).  Another dataset over the same classes (ImageNet-V2)
    is a label space of its own: its dataset's name picks its templates, and a method may treat a
    target set apart from its training classes (LFA's target-set mapping)."""
    classes = selected_classes(data, plan)
    comparable = data is train or (data.class_ids is not None and train.class_ids is not None)
    position = {cid: i for i, cid in enumerate(class_ids(train)[c] for c in trained)} if comparable else {}
    ids = class_ids(data)
    found = [position.get(ids[c]) for c in classes]
    names = [data.classnames[c] for c in classes]
    if data is train and names == train_info.classnames and found == train_info.training_index:
        info = train_info
    else:
        counts = [train.train_counts[trained[i]] if i is not None else 0 for i in found]
        info = ClassInfo(names, counts, data.template, training_index=None if None in found else found,
                         dataset=data.dataset)
    test = data.test if plan.classes == "all" else Relabelled(data.test, labels_of(data.test), classes)
    return Evaluation(plan.name, info, test, classes, plan.group, plan.classes)


def describe_evaluation(ev: Evaluation) -> str:
    """What an evaluation is, for a line that says why a method cannot run it."""
    kinds = {"xd": "a cross-dataset target", "dg": "a domain-generalization target"}
    return kinds.get(ev.group, f"{ev.kind} classes" + (f", group {ev.group}" if ev.group else ""))


def label_spaces(train: DatasetBundle, others: Sequence[Tuple[EvalPlan, DatasetBundle]] = ()) -> LabelSpaces:
    """The training label space and every evaluation; ``others`` pairs each declared evaluation with
    its dataset (``train`` itself for its own test set).  Nothing declared: :func:`default_plans`."""
    trained = list(train.base_classes) if train.base_classes is not None else list(range(len(train.classnames)))
    new = [c for c in range(len(train.classnames)) if c not in set(trained)]
    names = train.classnames
    train_info = ClassInfo([names[c] for c in trained], [train.train_counts[c] for c in trained], train.template,
                           new_classnames=[names[c] for c in new], training_index=list(range(len(trained))),
                           dataset=train.dataset)
    pairs = list(others) or [(plan, train) for plan in default_plans(train)]
    evaluations = [label_space(train, trained, train_info, data, plan) for plan, data in pairs]
    train_set = train.train if train.base_classes is None else Relabelled(train.train, labels_of(train.train), trained)
    return LabelSpaces(train_info, train_set, evaluations, train.new_train)


def summarise(spaces: LabelSpaces, results: List[dict], means: Optional[Dict[str, List[str]]] = None) -> dict:
    """The record's summary from each evaluation's :func:`bench.engine.metrics.evaluate` output: one
    evaluation's metrics as they are; otherwise each evaluation's accuracy under its name, HM of a
    base and a new evaluation, the mean of each group and each of ``means``, and Many/Medium/Few of
    the first."""
    if len(results) == 1:
        return results[0]
    evs = spaces.evaluations
    metrics: Dict[str, Optional[float]] = {ev.name: res["metrics"]["all"] for ev, res in zip(evs, results)}
    f1 = {f"{ev.name}{F1}": res["metrics"]["macro_f1"] for ev, res in zip(evs, results)}
    kinds = {ev.kind: res["metrics"] for ev, res in zip(evs, results)}
    if "base" in kinds and "new" in kinds and [ev.kind for ev in evs].count("base") == 1:
        base, new = kinds["base"], kinds["new"]
        metrics.update({"base": base["all"], "new": new["all"], "hm": harmonic_mean(base["all"], new["all"]),
                        "base_macro_f1": base["macro_f1"], "new_macro_f1": new["macro_f1"],
                        "hm_macro_f1": harmonic_mean(base["macro_f1"], new["macro_f1"])})
    for group in dict.fromkeys(ev.group for ev in evs if ev.group):
        members = [ev.name for ev in evs if ev.group == group]
        metrics[f"{group}_mean"] = statistics.fmean(metrics[m] for m in members)
        f1[f"{group}_mean{F1}"] = mean_or_none([f1[f"{m}{F1}"] for m in members])
    for name, members in (means or {}).items():  # a protocol's own averages (protocol.means)
        metrics[name] = statistics.fmean(metrics[m] for m in members)
        f1[f"{name}{F1}"] = mean_or_none([f1[f"{m}{F1}"] for m in members])
    if not any(ev.kind == "new" for ev in evs):  # base-to-new records keep their base/new/HM F1s alone
        metrics.update(f1)
    first = results[0]
    metrics.update({g: first["metrics"].get(g) for g in ("many", "medium", "few")})
    return {"metrics": metrics, "per_class_accuracy": per_class(evs, results),
            "group_sizes": first["group_sizes"], "num_test": sum(res["num_test"] for res in results)}


def mean_or_none(values: List[Optional[float]]) -> Optional[float]:
    return None if any(v is None for v in values) else statistics.fmean(values)


def per_class_counts(evs: List[Evaluation]) -> List[int]:
    """Training images of each class, in the order of the record's ``per_class_accuracy``."""
    if [ev.kind for ev in evs[:2]] != ["base", "new"]:
        return list(evs[0].info.train_counts)
    out = [0] * (len(evs[0].classes) + len(evs[1].classes))
    for ev in evs[:2]:
        for label, count in zip(ev.classes, ev.info.train_counts):
            out[label] = count
    return out


def per_class(evs: List[Evaluation], results: List[dict]) -> List[Optional[float]]:
    """Per-class accuracy of the first evaluation; of base and new together, by the training
    dataset's class index, when the first two are a base and a new evaluation."""
    if [ev.kind for ev in evs[:2]] != ["base", "new"]:
        return results[0]["per_class_accuracy"]
    out: List[Optional[float]] = [None] * (len(evs[0].classes) + len(evs[1].classes))
    for ev, res in zip(evs[:2], results):
        for label, acc in zip(ev.classes, res["per_class_accuracy"]):
            out[label] = acc
    return out


def class_text_features(method, spaces: LabelSpaces) -> Dict[str, Optional[dict]]:
    """``protocol.eval.text_features``: each evaluation's class names and the method's L2-normalised class
    text features among them (5 decimals), or None where the method has none independent of the image."""
    import torch
    import torch.nn.functional as F

    method.eval()
    out: Dict[str, Optional[dict]] = {}
    for ev in spaces.evaluations:
        method.use_label_space(ev.info)
        with torch.no_grad():
            features = method.record_text_features()
        rows = None if features is None else F.normalize(features.float(), dim=-1).cpu().tolist()
        out[ev.name] = None if rows is None else {"classes": list(ev.info.classnames),
                                                  "features": [[round(v, 5) for v in row] for row in rows]}
    return out
