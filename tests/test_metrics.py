import pytest
import torch

from bench.core.errors import BenchError
from bench.data.base import exponential_counts
from bench.engine.metrics import evaluate, group_counts, macro_f1, per_class_accuracy, shot_groups
from bench.records.headline import harmonic_mean


def test_shot_group_boundaries():
    # many: > 100, medium: 20..100, few: < 20
    groups = shot_groups([101, 100, 20, 19, 500, 5])
    assert groups == {"many": [0, 4], "medium": [1, 2], "few": [3, 5]}


def test_per_class_accuracy_and_missing_class():
    labels = torch.tensor([0, 0, 1, 1, 1])
    preds = torch.tensor([0, 1, 1, 1, 0])
    acc = per_class_accuracy(preds, labels, 3)
    assert acc[0] == pytest.approx(50.0)
    assert acc[1] == pytest.approx(200 / 3)
    assert acc[2] is None


def test_macro_f1_by_hand():
    labels = torch.tensor([0, 0, 1, 1, 2])
    preds = torch.tensor([0, 1, 1, 1, 1])
    # class 0: tp1 fp0 fn1 -> 2/3; class 1: tp2 fp2 fn0 -> 4/6; class 2: tp0 -> 0
    expected = (2 / 3 + 4 / 6 + 0) / 3 * 100
    assert macro_f1(preds, labels, 4) == pytest.approx(expected)  # class 3 absent everywhere: ignored


def test_harmonic_mean():
    assert harmonic_mean(80.0, 60.0) == pytest.approx(2 * 80 * 60 / 140)
    assert harmonic_mean(0.0, 0.0) == 0.0
    assert harmonic_mean(None, 50.0) is None


def test_evaluate_reports_all_groups():
    counts = [150, 50, 10]
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    logits = torch.nn.functional.one_hot(torch.tensor([0, 0, 1, 0, 0, 0]), 3).float()
    result = evaluate(logits, labels, counts)
    m = result["metrics"]
    assert m["all"] == pytest.approx(50.0)
    assert (m["many"], m["medium"], m["few"]) == (pytest.approx(100.0), pytest.approx(50.0), pytest.approx(0.0))
    assert result["group_sizes"] == {"many": 1, "medium": 1, "few": 1}
    assert result["num_test"] == 6
    assert "base" not in m


def test_evaluate_empty_group_is_none():
    labels = torch.tensor([0, 1])
    logits = torch.eye(2)
    m = evaluate(logits, labels, [500, 400])["metrics"]
    assert m["few"] is None and m["medium"] is None and m["many"] == 100.0


@pytest.mark.parametrize("ir, own, lift", [
    # (many, medium, few) class counts; lt_anchors §1.3, recomputed from the LDAM-DRW formula
    (10, (69, 31, 0), (35, 35, 30)),
    (50, (41, 41, 18), (35, 35, 30)),
    (100, (35, 35, 30), (35, 35, 30)),
])
def test_lift_groups_cifar_by_the_ir100_counts(ir, own, lift):
    counts = exponential_counts(100, 500, ir)
    sizes = lambda c: tuple(len(v) for v in shot_groups(c).values())  # noqa: E731
    assert sizes(group_counts("own", counts)) == own
    assert sizes(group_counts("cifar100_lt_ir100", counts)) == lift
    assert shot_groups(group_counts("cifar100_lt_ir100", counts))["few"] == list(range(70, 100))


def test_reference_profile_must_fit_the_dataset():
    with pytest.raises(BenchError, match="profile 'cifar100_lt_ir100' has 100 classes but the dataset has 10"):
        group_counts("cifar100_lt_ir100", [5] * 10)
