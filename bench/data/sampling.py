"""The official few-shot and long-tail subset draws, as pure functions of a label list.

Both return positions into ``labels`` in the order the official code's output list would hold
the items, so ``[items[i] for i in few_shot_indices(labels, 16, seed)]`` is the subset CoOp and
its descendants train on for that seed::

    labels = [item[1] for item in split["train"]]
    shots = few_shot_indices(labels, shots=16, seed=1)            # Dassl, seed 1
    keep = long_tail_indices([labels[i] for i in shots], 0.25, seed=1)   # Candle, min/max 0.25
    subset = [shots[i] for i in keep]

Sources read (``fetch``, HEAD commits):

- ``KaiyangZhou/Dassl.pytorch@c61a1b57:dassl/data/datasets/base_dataset.py``
  ``generate_fewshot_dataset`` and ``split_dataset_by_label``; ``dassl/utils/tools.py``
  ``set_random_seed`` (``random.seed``, ``np.random.seed``, ``torch.manual_seed``).
- ``shijxcs/Candle@d285eb35:datasets/oxford_pets.py`` ``gen_imbalanced_data`` (the copy that
  ``train.py`` imports; the stale copy under ``configs/datasets/`` uses the *mean* class size as
  the maximum and a floor of 2, and is not what runs).

RNG streams.  Dassl's ``train.py`` seeds the global ``random`` and ``np.random`` once and then
builds the trainer, whose data manager builds the dataset first (``SimpleTrainer.__init__`` calls
``build_data_loader`` before ``build_model``).  Inside the dataset constructor the few-shot draw
uses Python's ``random`` (train first, then val with ``min(shots, 4)``; the val draw comes after
and so does not change train), and ``gen_imbalanced_data`` is the first and only user of
``np.random`` before it.  So each stream starts fresh from the seed, and a private
``random.Random(seed)`` / ``np.random.RandomState(seed)`` draws the same numbers.  (For Candle's
cross-dataset runs a second dataset ``dm.dataset_new`` is built by a modified Dassl data manager
that is not public; if it were built before the ImageNet training set, the ImageNet draw would
start from a used numpy state.  This could not be checked.)
"""
from __future__ import annotations

import random
from collections import Counter
from typing import Dict, Hashable, List, Sequence

import numpy as np


def few_shot_indices(labels: Sequence[Hashable], shots: int, seed: int) -> List[int]:
    """Dassl's ``generate_fewshot_dataset``: at most ``shots`` items per label.

    Labels are grouped in first-appearance order; each group with at least ``shots`` items
    gives ``random.sample(group, shots)`` (in the order drawn), a smaller group is kept whole.
    ``shots < 1`` keeps everything, as Dassl does.
    """
    if shots < 1:
        return list(range(len(labels)))
    groups: Dict[Hashable, List[int]] = {}
    for index, label in enumerate(labels):
        groups.setdefault(label, []).append(index)
    rng = random.Random(seed)
    out: List[int] = []
    for members in groups.values():
        out.extend(rng.sample(members, shots) if len(members) >= shots else members)
    return out


def long_tail_counts(labels: Sequence[int], imb_ratio: float) -> Dict[int, int]:
    """Images kept per label by Candle's exponential profile (``imb_ratio`` = min/max).

    Rank ``r`` in ``Counter(labels).most_common()`` (largest first, ties in first-appearance
    order) keeps ``int(max(n_max * imb_ratio ** (r / (C - 1)), 1))``.  With one class Candle
    divides by zero; here that class keeps everything.
    """
    ranked = Counter(labels).most_common()
    if not ranked:
        return {}
    img_max = ranked[0][1]
    last = max(len(ranked) - 1.0, 1.0)
    return {label: int(max(img_max * (imb_ratio ** (rank / last)), 1))
            for rank, (label, _) in enumerate(ranked)}


def long_tail_indices(labels: Sequence[int], imb_ratio: float, seed: int) -> List[int]:
    """Candle's ``gen_imbalanced_data(train, imb_ratio, 'exp')``: the positions kept, ascending.

    ``imb_ratio`` is min/max (0.1 means "imbalance 10"; 1.0 returns every position).  Per class,
    in sorted label order, one shared ``np.random.RandomState(seed)`` shuffles the class's
    positions and keeps the first ``n``; the kept items stay in their input order.  Candle looks
    the counts up by label value (``img_num_per_cls_reassigned[label]``), which is only right for
    labels ``0..C-1``; here counts are matched to labels by value, identical in that case.
    """
    if imb_ratio == 1.0:
        return list(range(len(labels)))
    if not 0.0 < imb_ratio <= 1.0:
        raise ValueError(f"imb_ratio must be in (0, 1], got {imb_ratio}")
    counts = long_tail_counts(labels, imb_ratio)
    labels_np = np.asarray(labels, dtype=np.int64)
    rng = np.random.RandomState(seed)
    keep = np.zeros(len(labels_np), dtype=bool)
    for label in np.unique(labels_np):
        positions = np.where(labels_np == label)[0]
        rng.shuffle(positions)
        keep[positions[:counts[int(label)]]] = True
    return np.flatnonzero(keep).tolist()
