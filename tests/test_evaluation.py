"""Label spaces: base-to-new cells train on base classes and are scored with separate classifiers."""
import pytest
import torch

from bench.core.errors import BenchError
from bench.data import DatasetBundle
from bench.engine.evaluation import label_spaces, summarise
from bench.engine.metrics import evaluate


class Items(torch.utils.data.Dataset):
    def __init__(self, labels):
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return f"image{i}", self.labels[i]


def bundle(base=(0, 1)):
    return DatasetBundle(train=Items([0, 0, 0, 1]), test=Items([0, 1, 2, 2, 3, 1]), classnames=list("abcd"),
                         train_counts=[3, 1, 0, 0], base_classes=list(base))


def test_long_tailed_bundle_has_one_evaluation_over_all_classes():
    data = bundle()
    data.base_classes = None
    spaces = label_spaces(data)
    assert spaces.train is data.train and [ev.name for ev in spaces.evaluations] == ["test"]
    assert spaces.train_info.classnames == list("abcd") and spaces.train_info.new_classnames == []


def test_base_to_new_renumbers_each_label_space():
    spaces = label_spaces(bundle(base=(1, 3)))
    assert spaces.train_info.classnames == ["b", "d"] and spaces.train_info.train_counts == [1, 0]
    assert spaces.train_info.new_classnames == ["a", "c"]
    assert [spaces.train[i] for i in range(len(spaces.train))] == [("image3", 0)]
    base, new = spaces.evaluations
    assert (base.name, base.classes, base.info is spaces.train_info) == ("base", [1, 3], True)
    assert [base.test[i] for i in range(len(base.test))] == [("image1", 0), ("image4", 1), ("image5", 0)]
    assert new.info.classnames == ["a", "c"]
    assert [new.test[i] for i in range(len(new.test))] == [("image0", 0), ("image2", 1), ("image3", 1)]


def test_scores_are_harmonic_means_of_separate_classifiers():
    spaces = label_spaces(bundle())
    # base: 2 images, both right; new: 3 images (labels 0, 0, 1 within the new space), one right
    base = evaluate(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]), [3, 1])
    new = evaluate(torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]), torch.tensor([0, 0, 1]), [0, 0])
    out = summarise(spaces, [base, new])
    m = out["metrics"]
    assert (m["base"], m["new"]) == (pytest.approx(100.0), pytest.approx(100 / 3))
    assert m["hm"] == pytest.approx(2 * 100 * (100 / 3) / (100 + 100 / 3))
    assert m["hm_macro_f1"] == pytest.approx(2 * 100 * m["new_macro_f1"] / (100 + m["new_macro_f1"]))
    assert "all" not in m and out["num_test"] == 5
    assert out["per_class_accuracy"] == [100.0, 100.0, 0.0, 100.0]  # by the bundle's class index


def test_base_to_new_needs_listed_labels():
    data = bundle()
    data.test = torch.utils.data.TensorDataset(torch.zeros(2), torch.zeros(2))
    with pytest.raises(BenchError, match="must list its labels"):
        label_spaces(data)


def test_per_class_counts_follow_the_per_class_accuracy_order():
    from bench.engine.evaluation import Evaluation, per_class_counts
    from bench.model.method import ClassInfo

    lt = Evaluation("test", ClassInfo(["a", "b", "c"], [100, 10, 1]), None, [0, 1, 2])
    assert per_class_counts([lt]) == [100, 10, 1]
    # base-to-new: base classes 1 and 3 (trained), new classes 0 and 2 (never), by dataset index
    base = Evaluation("base", ClassInfo(["b", "d"], [50, 5]), None, [1, 3], kind="base")
    new = Evaluation("new", ClassInfo(["a", "c"], [0, 0]), None, [0, 2], kind="new")
    assert per_class_counts([base, new]) == [0, 50, 0, 5]
