"""Dassl's few-shot draw and Candle's long-tail draw (bench.data.sampling)."""
import hashlib
import json
import random
from collections import Counter, defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.data import files
from bench.data.coop_layout import SPLIT_FILES
from bench.data.sampling import few_shot_indices, long_tail_counts, long_tail_indices

# --- few-shot ----------------------------------------------------------------------------------


def test_few_shot_keeps_small_groups_whole_in_first_appearance_order():
    assert few_shot_indices([1, 0, 1, 2, 0], shots=5, seed=3) == [0, 2, 1, 4, 3]
    assert few_shot_indices([1, 0, 1], shots=0, seed=3) == [0, 1, 2]  # Dassl: shots < 1 keeps all


def test_few_shot_draws_as_dassl_with_the_global_random():
    """The same draw written the way Dassl's train.py runs it: random.seed, then random.sample
    per label on the items (not positions) of each first-appearance group."""
    labels = [3, 1, 3, 0, 1, 1, 3, 3, 0, 1, 3, 1, 0, 0]
    items = [f"img{i}" for i in range(len(labels))]
    random.seed(7)
    groups = defaultdict(list)
    for item, label in zip(items, labels):
        groups[label].append(item)
    expected = []
    for members in groups.values():
        expected.extend(random.sample(members, 3) if len(members) >= 3 else members)
    assert [items[i] for i in few_shot_indices(labels, 3, 7)] == expected


# --- long tail ---------------------------------------------------------------------------------


def test_long_tail_counts_by_hand():
    # 5 classes capped at 16, min/max 0.25: 16 * 0.25 ** (r / 4) = 16, 11.31, 8, 5.66, 4
    labels = [c for c in range(5) for _ in range(16)]
    assert long_tail_counts(labels, 0.25) == {0: 16, 1: 11, 2: 8, 3: 5, 4: 4}
    # ties keep first-appearance order: class 2 ranks before class 0
    assert long_tail_counts([2, 2, 0, 0, 1], 0.5) == {2: 2, 0: 1, 1: 1}
    # CPT's tau 0.06 with 16 shots: int(max(0.96, 1)) = 1 for the tail class
    assert long_tail_counts([0] * 16 + [1] * 16, 0.06) == {0: 16, 1: 1}
    assert long_tail_counts([4, 4, 4], 0.1) == {4: 3}  # one class: Candle divides by zero; kept whole


def test_long_tail_draws_as_candle_with_the_global_numpy_state():
    """The same draw written as Candle runs it: np.random.seed, shuffle each class's positions in
    sorted class order on the global state, keep the first n, then filter the list in order."""
    labels = [0] * 9 + [1] * 6 + [2] * 9 + [0, 2, 1]
    counts = long_tail_counts(labels, 0.1)
    np.random.seed(5)
    chosen = set()
    arr = np.array(labels)
    for label in np.unique(arr):
        positions = np.where(arr == label)[0]
        np.random.shuffle(positions)
        chosen.update(positions[:counts[label]].tolist())
    assert long_tail_indices(labels, 0.1, 5) == [i for i in range(len(labels)) if i in chosen]


def test_long_tail_rejects_a_ratio_above_one():
    with pytest.raises(ValueError):
        long_tail_indices([0, 1], 10.0, 0)


labels_st = st.lists(st.integers(0, 6), min_size=1, max_size=80)


@settings(max_examples=60, deadline=None)
@given(labels=labels_st, shots=st.integers(1, 12), ratio=st.floats(0.01, 1.0), seed=st.integers(0, 2**32 - 1))
def test_invariants(labels, shots, ratio, seed):
    few = few_shot_indices(labels, shots, seed)
    assert few == few_shot_indices(labels, shots, seed)
    assert len(set(few)) == len(few)
    sizes = Counter(labels)
    few_counts = Counter(labels[i] for i in few)
    assert few_counts == {c: min(shots, n) for c, n in sizes.items()}
    order = list(dict.fromkeys(labels))  # first-appearance order of the labels
    assert list(dict.fromkeys(labels[i] for i in few)) == order

    sub = [labels[i] for i in few]
    keep = long_tail_indices(sub, ratio, seed)
    assert keep == long_tail_indices(sub, ratio, seed) and keep == sorted(set(keep))
    kept = Counter(sub[i] for i in keep)
    head, head_size = Counter(sub).most_common(1)[0]
    assert kept[head] == head_size == min(shots, max(sizes.values()))
    assert all(1 <= kept[c] <= few_counts[c] for c in few_counts)
    assert long_tail_indices(sub, 1.0, seed) == list(range(len(sub)))


# --- golden: the official 16-shot subsets -----------------------------------------------------
# SHA-256 of ",".join(str(i) for i in indices) of train.indices in
# linzhiqiu/cross_modal_adaptation:indices/<dataset>/shot_16-seed_<s>.json (read at HEAD
# ac9077ee4e422f768c9b9109551468605e33ec9a; the files last changed in 0ba1f73e1e31a5d090f00f79ec7e822bc663c4fa).
# Those are Dassl's 16-shot draws over the split files we ship ("sorted": of the sorted list;
# "ordered": in the file's order, which is Dassl's output order).
GOLDEN = {
    ("eurosat", 1): ("b0ff40bcfc9195c88a98daf0a7f095792fffff31142f287a80dbb5a4941c6860",
                     "d0eded86733d42019212d3473aa6a17bbd602f8931a6401d1433e57658d750fd"),
    ("eurosat", 2): ("4e801cd3b8bfc6a1d05efbefd74870094272ee0bd7b25d5583439f6775be2fb4",
                     "8cdddbc39a1af0d486f53f9e4aaefd3492210706d589a4cfd2be4828ec559760"),
    ("eurosat", 3): ("f1911c788c19aa51124caa2ee84bbc54e4873df53f5dc9da4154f1a68b37e993",
                     "05ff8da9bfd82a508830ed3d64276d6b3660d63fdf719ca5dcc006bc79937a47"),
    ("dtd", 1): ("c15409b3c8347bd1d562911c82cbf26e47ad5eb0609abbd61492ce7c6a361395",
                 "6aa4d669856a3f3bb4cad4d94df9d3d007dd93cd81278d81c2e07f0a4fddd6a0"),
    ("dtd", 2): ("d6422b7b3545396914efc0a4f23bf9c4e1607babd4cbc580c8f8a44c8c1242ea",
                 "68595428c5c9a568128b5cfc113df3d456e1f7f29ae207f9979b8eac583765b9"),
    ("dtd", 3): ("60987317badd49102065acdd6feb9a57d256dac1d6a5476a9f91987abe561aac",
                 "1a91bd3b5e6f50d8169467780a47e32a00180d44b9e0f6e9f7c15d1d422df443"),
}


def digest(indices):
    return hashlib.sha256(",".join(map(str, indices)).encode()).hexdigest()


@pytest.mark.parametrize("dataset", ["eurosat", "dtd"])
def test_few_shot_reproduces_the_official_16_shot_subsets(dataset):
    labels = [label for _, label, _ in json.loads(files.read_text(SPLIT_FILES[dataset]))["train"]]
    for seed in (1, 2, 3):
        chosen = few_shot_indices(labels, 16, seed)
        assert (digest(sorted(chosen)), digest(chosen)) == GOLDEN[dataset, seed]


def test_no_cap_keeps_the_largest_class_at_its_original_size():
    """LAMP's reading (`--set protocol.dataset.shots=0`): no few-shot cap, so the exponential profile starts
    from the largest class's original size (300 here) instead of the 100-shot cap."""
    from bench.data.coop import CoOpConfig, training_indices

    labels = [c for c, n in enumerate([300, 250, 120, 90, 300, 40]) for _ in range(n)]  # 3 base, 3 new classes
    uncapped = CoOpConfig(dataset="eurosat", shots=0, imb_ratio=0.1)
    capped = CoOpConfig(dataset="eurosat", shots=100, imb_ratio=0.1)
    for cfg, largest in ((uncapped, 300), (capped, 100)):
        counts = Counter(labels[i] for i in training_indices(labels, 6, cfg, seed=1))
        assert set(counts) == {0, 1, 2} and counts[0] == largest and counts[2] == largest // 10
    uncapped.validate("protocol.dataset")  # 0 is a value the config accepts
