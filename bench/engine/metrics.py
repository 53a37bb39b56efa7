"""Evaluation metrics.  All accuracies are percentages (0-100)."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch

from bench.config.protocol import GROUP_PROFILES
from bench.core.errors import BenchError
from bench.data.base import exponential_counts


def group_counts(group_by: str, train_counts: Sequence[int]) -> List[int]:
    """The training counts that define many/medium/few (``eval.group_by``)."""
    if group_by == "own":
        return list(train_counts)
    profile = exponential_counts(*GROUP_PROFILES[group_by])
    if len(profile) != len(train_counts):
        raise BenchError(
            f"protocol.eval.group_by: profile '{group_by}' has {len(profile)} classes "
            f"but the dataset has {len(train_counts)}; use group_by: own"
        )
    return list(profile)


def shot_groups(train_counts: Sequence[int], many: int = 100, few: int = 20) -> Dict[str, List[int]]:
    """Classes by training-set size: many (> many), few (< few), medium (the rest)."""
    groups: Dict[str, List[int]] = {"many": [], "medium": [], "few": []}
    for cls, n in enumerate(train_counts):
        key = "many" if n > many else "few" if n < few else "medium"
        groups[key].append(cls)
    return groups


def per_class_accuracy(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> List[Optional[float]]:
    """Accuracy of each class (None for a class without test images)."""
    correct = torch.zeros(num_classes).index_add_(0, labels, (preds == labels).float())
    total = torch.bincount(labels, minlength=num_classes).float()
    return [100.0 * c / t if t > 0 else None for c, t in zip(correct.tolist(), total.tolist())]


def accuracy_over(preds: torch.Tensor, labels: torch.Tensor, classes: Sequence[int]) -> Optional[float]:
    """Top-1 accuracy over the test images whose label is in ``classes``."""
    if not len(classes):
        return None
    mask = torch.isin(labels, torch.as_tensor(list(classes), dtype=labels.dtype))
    if not mask.any():
        return None
    return 100.0 * (preds[mask] == labels[mask]).float().mean().item()


def macro_f1(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """Unweighted mean of per-class F1 over classes present in labels or predictions."""
    tp = torch.zeros(num_classes).index_add_(0, labels, (preds == labels).float())
    n_pred = torch.bincount(preds, minlength=num_classes).float()
    n_true = torch.bincount(labels, minlength=num_classes).float()
    denom = n_pred + n_true
    present = denom > 0
    f1 = torch.where(present, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
    return 100.0 * f1[present].mean().item()


def evaluate(
    logits: torch.Tensor,
    labels: torch.Tensor,
    train_counts: Sequence[int],
    many: int = 100,
    few: int = 20,
) -> dict:
    """All metrics for one evaluation: ``{"metrics": {...}, "per_class_accuracy": [...], ...}``."""
    logits, labels = logits.float().cpu(), labels.long().cpu()
    num_classes = logits.shape[1]
    preds = logits.argmax(dim=1)
    groups = shot_groups(train_counts, many, few)
    metrics: Dict[str, Optional[float]] = {"all": 100.0 * (preds == labels).float().mean().item()}
    for name, classes in groups.items():
        metrics[name] = accuracy_over(preds, labels, classes)
    metrics["macro_f1"] = macro_f1(preds, labels, num_classes)
    return {
        "metrics": metrics,
        "per_class_accuracy": per_class_accuracy(preds, labels, num_classes),
        "group_sizes": {name: len(classes) for name, classes in groups.items()},
        "num_test": int(labels.numel()),
    }
