"""The CoOp datasets: shipped split files, and builds over small fake trees in CoOp's layout."""
import dataclasses
import hashlib
import io
import json
import math
import shutil

import pytest
from PIL import Image

from bench.core.coerce import from_dict
from bench.core.errors import BenchError, ConfigError
from bench.core.registry import DATASETS
from bench.data import coop_layout
from bench.data.coop import CoOpConfig, CoOpDatasets
from bench.data.coop_layout import LAYOUTS, SPLIT_FILES
from bench.data.files import SplitFile, git_blob_sha1, read_text

# (train, val, test, classes) of the shipped files: b2n_anchors.md §1.1-§1.2 / SOURCE.md
SHIPPED = {
    "caltech101": (4128, 1649, 2465, 100), "oxford_pets": (2944, 736, 3669, 37),
    "stanford_cars": (6509, 1635, 8041, 196), "oxford_flowers": (4093, 1633, 2463, 102),
    "dtd": (2820, 1128, 1692, 47), "eurosat": (13500, 5400, 8100, 10), "ucf101": (7639, 1898, 3783, 101),
}
BASE_NEW = {"caltech101": (50, 50), "oxford_pets": (19, 18), "stanford_cars": (98, 98),
            "oxford_flowers": (51, 51), "dtd": (24, 23), "eurosat": (5, 5), "ucf101": (51, 50)}


@pytest.mark.parametrize("key", sorted(SHIPPED))
def test_shipped_split_files(key, tmp_path):
    split = json.loads(read_text(SPLIT_FILES[key]))
    train, val, test, classes = SHIPPED[key]
    assert [len(split[p]) for p in ("train", "val", "test")] == [train, val, test]
    (tmp_path / LAYOUTS[key].folder).mkdir()
    lists = coop_layout.read_lists(LAYOUTS[key], tmp_path)
    assert (len(lists.train.paths), len(lists.test.paths), len(lists.classnames)) == (train, test, classes)
    base = math.ceil(classes / 2)
    assert (base, classes - base) == BASE_NEW[key]


def test_registered_and_catalog():
    assert DATASETS.get("coop") is CoOpDatasets and CoOpDatasets.seeded
    catalog = dict(CoOpDatasets.catalog())
    assert len(catalog) == 15 and catalog["eurosat"] == CoOpConfig(dataset="eurosat")
    assert catalog["imagenet_a"].classes == "all" and catalog["imagenet"].classes == "base_to_new"
    assert "EuroSAT.zip" in CoOpDatasets.source(catalog["eurosat"])


# --- fake trees -------------------------------------------------------------------------------

def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (4, 4), 90).save(buf, "JPEG")  # grey: the loader must convert to RGB
    return buf.getvalue()


JPEG = jpeg()


def put(path, data=JPEG):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def fake_split(monkeypatch, root, key, classes=10, train=20, test=2):
    """A split_zhou file for ``key`` in its dataset folder, its images, and the layout pointed at it."""
    layout = LAYOUTS[key]
    images = root / layout.folder / layout.image_dir
    split = {"train": [], "val": [], "test": []}
    for label in range(classes):
        for part, n in (("train", train), ("test", test)):
            for i in range(n):
                rel = f"Class_{label}/{part}_{i}.jpg"
                put(images / rel)
                split[part].append([rel, label, f"class_{label}"])
    data = json.dumps(split).encode()
    (root / layout.folder / layout.split.name).write_bytes(data)
    spec = SplitFile(layout.split.name, "a test", sha256=hashlib.sha256(data).hexdigest())
    monkeypatch.setitem(LAYOUTS, key, dataclasses.replace(layout, split=spec))
    return data


def build(root, seed=1, **options):
    return CoOpDatasets.build(from_dict(CoOpConfig, dict(root=str(root), **options), "protocol.dataset"), seed)


def test_split_dataset_few_shot_then_long_tail(monkeypatch, tmp_path):
    fake_split(monkeypatch, tmp_path, "eurosat")
    bundle = build(tmp_path, dataset="eurosat", shots=16, imb_ratio=0.25)
    # 5 base classes of 20 -> 16 shots each -> 16 * 0.25 ** (r / 4) = 16, 11.3, 8, 5.7, 4
    assert bundle.train_counts == [16, 11, 8, 5, 4, 0, 0, 0, 0, 0]
    assert bundle.base_classes == [0, 1, 2, 3, 4] and bundle.class_ids is None
    assert bundle.classnames[3] == "class 3" and bundle.template == "a centered satellite photo of {}."
    assert bundle.dataset == "EuroSAT"  # CoOp's name: the key of per-dataset templates and recipes
    assert len(bundle.test) == 20 and sorted(set(bundle.test.labels)) == list(range(10))
    image, label = bundle.train[0]
    assert image.mode == "RGB" and label == bundle.train.labels[0] == 0

    def chosen(seed):
        return build(tmp_path, seed, dataset="eurosat", shots=16, imb_ratio=0.25).train.paths

    assert chosen(1) == bundle.train.paths and chosen(2) != chosen(1)
    # The new classes' (unlabelled) training images are drawn by the same rule, ranked among themselves.
    new_counts = [bundle.new_train.labels.count(c) for c in range(5, 10)]
    assert new_counts == [16, 11, 8, 5, 4] and not set(bundle.new_train.paths) & set(bundle.train.paths)
    every = build(tmp_path, dataset="eurosat", shots=16, classes="all")
    assert every.train_counts == [16] * 10 and every.base_classes is None and every.new_train is None
    balanced = build(tmp_path, dataset="eurosat", shots=100)
    assert balanced.train_counts == [20] * 5 + [0] * 5


def test_food101_split_file_from_the_data_root(monkeypatch, tmp_path):
    food = tmp_path / "food-101"
    (food / "images").mkdir(parents=True)
    with pytest.raises(BenchError, match="bench data download coop --dataset food101"):
        build(tmp_path, dataset="food101")
    (food / "split_zhou_Food101.json").write_text('{"train": [], "val": [], "test": []}')
    with pytest.raises(BenchError, match="does not match"):  # the real git blob SHA-1 is pinned
        build(tmp_path, dataset="food101")

    data = fake_split(monkeypatch, tmp_path, "food101", classes=3, train=4, test=1)
    bundle = build(tmp_path, dataset="food101", shots=2)
    assert bundle.train_counts == [2, 2, 0] and bundle.template == "a photo of {}, a type of food."

    # download: images present, so only the split file is fetched (by its pinned URL)
    (food / "split_zhou_Food101.json").unlink()
    spec = dataclasses.replace(SPLIT_FILES["food101"], git_sha1=git_blob_sha1(data))
    monkeypatch.setitem(LAYOUTS, "food101", dataclasses.replace(LAYOUTS["food101"], split=spec))
    urls = []

    class Response(io.BytesIO):
        def __enter__(self):
            return self

    def opener(url, timeout):
        urls.append(url)
        return Response(data)

    message = CoOpDatasets.download(CoOpConfig(dataset="food101", root=str(tmp_path)), opener=opener)
    assert "split_zhou_Food101.json" in message and urls == [spec.url]
    assert "c7e7e68ae4eeadfab98e7886b2d6c9cf48a7ceb5" in spec.url
    assert (food / "split_zhou_Food101.json").read_bytes() == data


def test_download_images_with_torchvision_or_explain(monkeypatch, tmp_path):
    import torchvision.datasets

    made = []

    class FakeEuroSAT:  # torchvision.datasets.EuroSAT extracts to <root>/eurosat/2750
        def __init__(self, root, download):
            made.append((root, download))
            (tmp_path / "eurosat" / "2750").mkdir(parents=True)

    monkeypatch.setattr(torchvision.datasets, "EuroSAT", FakeEuroSAT)
    cfg = CoOpConfig(dataset="eurosat", root=str(tmp_path))
    assert "images in" in CoOpDatasets.download(cfg) and made == [(str(tmp_path), True)]
    assert "already" in CoOpDatasets.download(cfg) and len(made) == 1
    with pytest.raises(BenchError, match="nothing to download automatically; extract .*UCF-101-midframes"):
        CoOpDatasets.download(CoOpConfig(dataset="ucf101", root=str(tmp_path)))


def test_fgvc_layout(tmp_path):
    here = tmp_path / "fgvc_aircraft"
    variants = ["707-320", "A300B4", "Boeing 737", "F-16A/B"]
    (here / "images").mkdir(parents=True)
    (here / "variants.txt").write_text("\n".join(variants) + "\n")
    for part, n in (("train", 5), ("val", 1), ("test", 2)):
        lines = [f"{part}{v}{i:03d} {name}" for v, name in enumerate(variants) for i in range(n)]
        (here / f"images_variant_{part}.txt").write_text("\n".join(lines) + "\n")
        for line in lines:
            put(here / "images" / (line.split(" ")[0] + ".jpg"))
    bundle = build(tmp_path, dataset="fgvc_aircraft", shots=3)
    assert bundle.classnames == variants and bundle.train_counts == [3, 3, 0, 0]
    assert bundle.test.labels == [0, 0, 1, 1, 2, 2, 3, 3] and bundle.base_classes == [0, 1]
    assert bundle.template == "a photo of a {}, a type of aircraft."
    assert [(split, n, missing) for split, n, missing in CoOpDatasets.check(
        CoOpConfig(dataset="fgvc_aircraft", root=str(tmp_path)))] == [("train", 20, []), ("test", 8, [])]


WNIDS = [("n001", "tench"), ("n002", "goldfish"), ("n003", "great white shark"), ("n004", "tiger shark")]


@pytest.fixture
def imagenet(monkeypatch, tmp_path):
    monkeypatch.setattr(coop_layout, "imagenet_classes", lambda: list(WNIDS))
    for label, (wnid, _) in enumerate(WNIDS):
        for part, n in (("train", 6), ("val", 2)):
            for i in reversed(range(n)):
                put(tmp_path / "imagenet" / "images" / part / wnid / f"{wnid}_{i}.JPEG")
    return tmp_path


def test_imagenet_layout(imagenet):
    bundle = build(imagenet, dataset="imagenet", shots=4, imb_ratio=0.5)
    assert bundle.class_ids == ["n001", "n002", "n003", "n004"] and bundle.classnames[2] == "great white shark"
    assert bundle.train_counts == [4, 2, 0, 0] and bundle.base_classes == [0, 1]
    assert bundle.test.paths[:2] == ["n001/n001_0.JPEG", "n001/n001_1.JPEG"]  # sorted, not os.listdir order
    every = build(imagenet, dataset="imagenet", shots=4, imb_ratio=0.5, classes="all")
    assert every.train_counts == [4, 3, 2, 2]  # 4 * 0.5 ** (r / 3) = 4, 3.17, 2.52, 2


def test_shift_sets(monkeypatch, imagenet):
    root = imagenet
    for i, (wnid, _) in enumerate(WNIDS):
        put(root / "imagenetv2" / "imagenetv2-matched-frequency-format-val" / str(i) / "a.jpeg")
        put(root / "imagenet-sketch" / "images" / wnid / "sketch_0.JPEG")
    for folder, sub in (("imagenet-adversarial", "imagenet-a"), ("imagenet-rendition", "imagenet-r")):
        for wnid in ("n002", "n004"):
            put(root / folder / sub / wnid / "x.jpg")
        put(root / folder / sub / "README.txt", b"readme")
    v2 = build(root, dataset="imagenet_v2", classes="all")
    assert v2.test.labels == [0, 1, 2, 3] and v2.class_ids == [w for w, _ in WNIDS]
    assert len(v2.train) == 0 and v2.train.labels == [] and v2.train_counts == [0] * 4
    assert v2.base_classes is None and v2.template == "a photo of a {}."
    # 4 fake classes stand for Sketch's 1,000 folders and 2 for the 200 of A and R
    for key, classes in (("imagenet_sketch", 4), ("imagenet_a", 2), ("imagenet_r", 2)):
        monkeypatch.setitem(LAYOUTS, key, dataclasses.replace(LAYOUTS[key], classes=classes))
    sketch = build(root, dataset="imagenet_sketch", classes="all")
    assert sketch.test.labels == [0, 1, 2, 3] and sketch.classnames[0] == "tench"
    for key in ("imagenet_a", "imagenet_r"):
        bundle = build(root, dataset=key, classes="all")
        assert bundle.class_ids == ["n002", "n004"] and bundle.classnames == ["goldfish", "tiger shark"]
        assert bundle.test.labels == [0, 1] and bundle.train_counts == [0, 0]
    monkeypatch.setitem(LAYOUTS, "imagenet_a", dataclasses.replace(LAYOUTS["imagenet_a"], classes=3))
    with pytest.raises(BenchError, match="has 2 class folders, expected 3"):
        build(root, dataset="imagenet_a", classes="all")
    with pytest.raises(ConfigError, match="test-only"):
        build(root, dataset="imagenet_a")  # classes defaults to base_to_new
    with pytest.raises(ConfigError, match="test-only"):
        CoOpDatasets.build(CoOpConfig(dataset="imagenet_v2", root=str(root)), 1)


def test_missing_folders(monkeypatch, tmp_path, imagenet):
    with pytest.raises(BenchError, match="dataset folder .*dtd.* is missing.*dtd-r1.0.1.tar.gz"):
        build(tmp_path, dataset="dtd")
    assert not CoOpDatasets.present(CoOpConfig(dataset="dtd", root=str(tmp_path)))
    shutil.rmtree(imagenet / "imagenet" / "images" / "val" / "n003")
    with pytest.raises(BenchError, match="class folder .*val/n003' is missing; extract the ILSVRC-2012"):
        build(imagenet, dataset="imagenet")
    fake_split(monkeypatch, tmp_path, "eurosat", classes=2, train=2, test=1)
    assert CoOpDatasets.present(CoOpConfig(dataset="eurosat", root=str(tmp_path)))
    (tmp_path / "eurosat" / "2750" / "Class_1" / "train_0.jpg").unlink()
    report = CoOpDatasets.check(CoOpConfig(dataset="eurosat", root=str(tmp_path)))
    assert report[0][:2] == ("train", 4) and report[0][2][0].endswith("Class_1/train_0.jpg")
    assert report[1] == ("test", 2, [])
    shutil.rmtree(tmp_path / "eurosat" / "2750" / "Class_1")
    with pytest.raises(BenchError, match="image folder .*Class_1' is missing; extract .*EuroSAT.zip"):
        build(tmp_path, dataset="eurosat")


def test_bad_config_values():
    with pytest.raises(ConfigError, match="imb_ratio"):
        from_dict(CoOpConfig, {"dataset": "dtd", "imb_ratio": 10}, "protocol.dataset")
    with pytest.raises(ConfigError, match="imb_ratio.*0.1"):
        from_dict(CoOpConfig, {"dataset": "dtd", "imb_ratio": 0}, "protocol.dataset")
    with pytest.raises(ConfigError, match="dataset"):
        from_dict(CoOpConfig, {"dataset": "eurosatt"}, "protocol.dataset")
