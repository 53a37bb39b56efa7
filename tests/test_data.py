import math
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import cifar

from bench.core.errors import BenchError
from bench.data.base import exponential_counts, label_counts
from bench.data.cifar_lt import CIFAR100LT, CIFAR100LTConfig, long_tail_indices
from bench.data.synthetic import SyntheticLT, SyntheticLTConfig, prototype


@pytest.mark.parametrize("ir", [10, 50, 100])
def test_cifar_lt_counts_follow_the_formula(ir):
    counts = exponential_counts(100, 500, ir)
    assert counts == [math.floor(500 * ir ** (-i / 99)) for i in range(100)]
    assert counts[0] == 500 and counts[-1] == 500 // ir
    assert counts == sorted(counts, reverse=True)


def test_cifar_lt_ir100_total():
    # The well-known size of CIFAR-100-LT at IR 100.
    assert sum(exponential_counts(100, 500, 100)) == 10847


def test_long_tail_indices_are_deterministic_and_exact():
    targets = np.repeat(np.arange(5), 20)
    np.random.RandomState(1).shuffle(targets)
    counts = [20, 10, 5, 3, 1]
    a = long_tail_indices(targets, counts, seed=0)
    b = long_tail_indices(targets, counts, seed=0)
    c = long_tail_indices(targets, counts, seed=1)
    assert a == b and a != c
    assert len(set(a)) == len(a)
    assert label_counts(targets[a].tolist(), 5) == counts


def test_synthetic_dataset(smoke_data):
    cfg = SyntheticLTConfig()
    assert smoke_data.train_counts == exponential_counts(10, 150, 30)
    assert smoke_data.train_counts[0] > 100 and smoke_data.train_counts[-1] < 20
    assert len(smoke_data.train) == sum(smoke_data.train_counts)
    assert len(smoke_data.test) == 10 * cfg.test_per_class
    image, label = smoke_data.train[0]
    assert isinstance(image, Image.Image) and image.size == (32, 32) and label == 0
    assert smoke_data.classnames[:3] == ["apple", "bicycle", "castle"]


def test_synthetic_dataset_is_reproducible():
    a = SyntheticLT.build(SyntheticLTConfig(num_classes=3, max_per_class=5))
    b = SyntheticLT.build(SyntheticLTConfig(num_classes=3, max_per_class=5))
    c = SyntheticLT.build(SyntheticLTConfig(num_classes=3, max_per_class=5, data_seed=1))
    assert torch.equal(a.train.images, b.train.images)
    assert not torch.equal(a.train.images, c.train.images)


def test_synthetic_base_to_new_has_unlabelled_new_class_images():
    plain = SyntheticLT.build(SyntheticLTConfig(num_classes=5, max_per_class=8, imbalance_ratio=4))
    b2n = SyntheticLT.build(SyntheticLTConfig(num_classes=5, max_per_class=8, imbalance_ratio=4, base_to_new=True))
    assert plain.new_train is None and b2n.train_counts == [8, 4, 2, 0, 0]
    assert [b2n.new_train.labels.count(c) for c in (3, 4)] == [8, 2]  # the same rule over the 2 new classes
    # Drawn with their own generator: the training and test images are those of the split without them.
    again = SyntheticLT.build(SyntheticLTConfig(num_classes=5, max_per_class=8, imbalance_ratio=4, base_to_new=True))
    assert torch.equal(b2n.test.images, again.test.images) and torch.equal(b2n.new_train.images, again.new_train.images)


def test_synthetic_classes_are_separable():
    """Nearest class mean on raw pixels is far above chance: the structure is learnable."""
    data = SyntheticLT.build(SyntheticLTConfig(num_classes=5, max_per_class=40, imbalance_ratio=1))
    x = data.train.images.float().flatten(1)
    y = torch.tensor(data.train.labels)
    means = torch.stack([x[y == c].mean(0) for c in range(5)])
    xt = data.test.images.float().flatten(1)
    pred = torch.cdist(xt, means).argmin(1)
    assert (pred == torch.tensor(data.test.labels)).float().mean() > 0.6


def test_prototype_depends_only_on_the_name():
    assert torch.equal(prototype("tiger", 16), prototype("tiger", 16))
    assert not torch.equal(prototype("tiger", 16), prototype("zebra", 16))


def fake_cifar100(root, per_class_train=6, per_class_test=2):
    """CIFAR-100 in torchvision's on-disk format, with tiny random images."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.RandomState(0)
    for split, n in (("train", per_class_train), ("test", per_class_test)):
        labels = np.repeat(np.arange(100), n)
        rng.shuffle(labels)
        data = rng.randint(0, 256, (len(labels), 3072), dtype=np.uint8)
        with open(folder / split, "wb") as f:
            pickle.dump({"data": data, "fine_labels": labels.tolist()}, f)
    names = [f"name_{i}" for i in range(100)]
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": names}, f)


def test_cifar100_lt_from_disk(tmp_path, monkeypatch):
    fake_cifar100(tmp_path)
    monkeypatch.setattr(cifar, "check_integrity", lambda *args: True)  # fake files fail the md5 check
    cfg = CIFAR100LTConfig(imbalance_ratio=6, max_per_class=6, root=str(tmp_path), download=False)
    data = CIFAR100LT.build(cfg)
    assert data.train_counts == exponential_counts(100, 6, 6)
    assert len(data.train) == sum(data.train_counts)
    assert len(data.test) == 200
    assert data.classnames[0] == "name 0"  # underscores become spaces
    image, label = data.train[0]
    assert isinstance(image, Image.Image) and 0 <= label < 100


def test_cifar100_lt_too_few_images(tmp_path, monkeypatch):
    fake_cifar100(tmp_path, per_class_train=3)
    monkeypatch.setattr(cifar, "check_integrity", lambda *args: True)
    with pytest.raises(BenchError, match="too few training images"):
        CIFAR100LT.build(CIFAR100LTConfig(max_per_class=6, root=str(tmp_path), download=False))


def test_cifar100_lt_missing_root(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(BenchError, match="dataset root .* does not exist"):
        CIFAR100LT.build(CIFAR100LTConfig(root=str(missing), download=False))


def test_cifar100_lt_empty_root(tmp_path):
    with pytest.raises(BenchError, match="Dataset not found or corrupted"):
        CIFAR100LT.build(CIFAR100LTConfig(root=str(tmp_path), download=False))
