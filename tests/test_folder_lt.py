"""ImageNet-LT and Places-LT: the shipped lists, and builds over small fake folder trees."""
import dataclasses
import gzip
import hashlib
import io
import os
import re

import pytest
from PIL import Image

from bench.core.errors import BenchError
from bench.core.registry import DATASETS
from bench.data import files
from bench.data import folder_lt as lt
from bench.data.base import label_counts


def shipped(spec):
    return lt.parse_list(files.read_text(spec), spec.name)


# --- (a) the shipped lists -------------------------------------------------------------------

def test_imagenet_lt_shipped_lists_and_names():
    ids, names = lt.ImageNetLT.classes()
    assert len(ids) == len(set(ids)) == 1000 and ids == sorted(ids)
    assert names.count("missile") == 2 and names.count("sunglasses") == 2
    for spec, size, per_class in ((lt.IMAGENET_LT_TEST, 50_000, 50), (lt.IMAGENET_LT_VAL, 20_000, 20)):
        paths, labels = shipped(spec)
        assert len(paths) == size and label_counts(labels, 1000) == [per_class] * 1000
        assert all(path.split("/")[1] == ids[label] for path, label in zip(paths, labels))


def test_places_lt_shipped_lists_groups_and_label_order():
    ids, names = lt.PlacesLT.classes()
    sizes = {}
    for split, spec in lt.PlacesLT.LISTS.items():
        paths, labels = shipped(spec)
        sizes[split] = len(paths)
        assert all(path.split("/")[1] == ids[label] for path, label in zip(paths, labels))
    assert sizes == {"train": 62_500, "val": 7_300, "test": 36_500}
    counts = label_counts(shipped(lt.PLACES_LT_TRAIN)[1], 365)
    assert (max(counts), min(counts)) == (4980, 5)
    assert [sum(n > 100 for n in counts), sum(20 <= n <= 100 for n in counts), sum(n < 20 for n in counts)] \
        == [131, 163, 71]
    assert [sum(n >= 100 for n in counts), sum(20 < n < 100 for n in counts), sum(n <= 20 for n in counts)] \
        == [132, 156, 77]
    sorted_names = [line.split(" ")[0] for line in files.read_text(lt.PLACES_LT_SORTED_NAMES).splitlines()]
    assert (ids[116], names[116]) == ("desert_road", "desert road")
    assert (ids[141], names[141]) == ("field_road", "field road")
    assert (sorted_names[116], sorted_names[141]) == ("desert-sand", "field-wild")
    assert sorted(ids) == sorted_names
    assert names[ids.index("apartment_building-outdoor")] == "apartment building-outdoor"


def test_protocols_load():
    from bench.config.protocol import load_protocol

    for name in ("imagenet_lt", "places_lt"):
        protocol = load_protocol(name)
        assert protocol.dataset_name == name and protocol.family == "lt" and protocol.seeds == [1, 2, 3]
        assert protocol.transforms.train_crop == "random_resized" and protocol.eval.batch_size == 256


# --- (b) fake folder trees in each real layout -----------------------------------------------

FAKE = {  # split -> (path, label) lines over 3 classes; "{}" = the class folder
    "train": [("train/{0}/a.jpg", 0), ("train/{0}/b.jpg", 0), ("train/{1}/c.jpg", 1), ("train/{2}/d.jpg", 2)],
    "val": [("train/{0}/v.jpg", 0), ("train/{1}/w.jpg", 1), ("train/{2}/x.jpg", 2)],
    "test": [("val/{0}/t.jpg", 0), ("val/{1}/u.jpg", 1), ("val/{2}/grey.jpg", 2)],
}
CLASSES = {lt.ImageNetLT: ["n01440764", "n01443537", "n04008634"],
           lt.PlacesLT: ["airfield", "desert_road", "field-wild"]}


def fake_spec(spec, data, splits_dir):
    """``spec`` with the checksum of ``data``, shipped from ``splits_dir`` if ``spec`` ships."""
    if spec.shipped:
        (splits_dir / spec.shipped).parent.mkdir(parents=True, exist_ok=True)
        (splits_dir / spec.shipped).write_bytes(gzip.compress(data))
        return dataclasses.replace(spec, size=len(data), sha256=hashlib.sha256(data).hexdigest(), git_sha1="")
    return dataclasses.replace(spec, size=len(data), sha256="", git_sha1=files.git_blob_sha1(data))


@pytest.fixture(params=[lt.ImageNetLT, lt.PlacesLT], ids=["imagenet_lt", "places_lt"])
def fake(request, tmp_path, monkeypatch):
    """(dataset class, config) over a fake tree with the class's fake lists patched in."""
    cls, folders = request.param, CLASSES[request.param]
    root, splits_dir = tmp_path / "root", tmp_path / "splits"
    monkeypatch.setattr(files, "SPLITS_DIR", splits_dir)
    lists = {}
    for split, lines in FAKE.items():
        text = "".join(f"{path.format(*folders)} {label}\n" for path, label in lines)
        spec = fake_spec(cls.LISTS[split], text.encode(), splits_dir)
        if not spec.shipped:
            root.mkdir(exist_ok=True)
            (root / spec.name).write_text(text)
        lists[split] = spec
        for path, label in lines:
            image = Image.new("L" if "grey" in path else "RGB", (4, 4), 40 * label)
            (root / path.format(*folders)).parent.mkdir(parents=True, exist_ok=True)
            image.save(root / path.format(*folders))
    if cls is lt.ImageNetLT:
        names = "n01440764 tench\nn01443537 goldfish\nn04008634 missile\n"
    else:
        names = "".join(f"{i} {folder}\n" for i, folder in enumerate(folders))
    monkeypatch.setattr(cls, "NAMES", fake_spec(cls.NAMES, names.encode(), splits_dir))
    monkeypatch.setattr(cls, "LISTS", lists)
    monkeypatch.setattr(cls, "SIZES", {split: len(lines) for split, lines in FAKE.items()})
    return cls, cls.Config(root=str(root))


def test_build_over_fake_tree(fake):
    cls, cfg = fake
    assert DATASETS.get(cls.registry_name) is cls and cls.present(cfg)
    bundle = cls.build(cfg)
    assert (len(bundle.train), len(bundle.test)) == (4, 3)
    assert bundle.train.labels == [0, 0, 1, 2] and bundle.test.labels == [0, 1, 2]
    assert bundle.train_counts == [2, 1, 1] and bundle.template == "a photo of a {}."
    assert bundle.class_ids == CLASSES[cls]
    expected = ["tench", "goldfish", "missile"] if cls is lt.ImageNetLT else ["airfield", "desert road", "field-wild"]
    assert bundle.classnames == expected
    image, label = bundle.test[2]  # saved as greyscale
    assert (image.mode, image.size, label) == ("RGB", (4, 4), 2)
    on_val = cls.build(dataclasses.replace(cfg, test_split="val"))
    assert on_val.test.paths[0].startswith("train/") and on_val.test.labels == [0, 1, 2]


# --- (c) bad inputs: one BenchError naming the file or folder --------------------------------

def test_missing_root(tmp_path):
    for cls in (lt.ImageNetLT, lt.PlacesLT):
        cfg = cls.Config(root=str(tmp_path / "nowhere"))
        assert not cls.present(cfg)
        with pytest.raises(BenchError, match="nowhere' does not exist.*--data-root"):
            cls.build(cfg)


def test_missing_class_folder(fake):
    cls, cfg = fake
    folder = os.path.join(cfg.root, "val", CLASSES[cls][2])
    for name in os.listdir(folder):
        os.remove(os.path.join(folder, name))
    os.rmdir(folder)
    hint = "ILSVRC2012 folder" if cls is lt.ImageNetLT else "Places365-Standard"
    with pytest.raises(BenchError, match=f"class folder '{re.escape(folder)}' is missing; the root must be .*{hint}"):
        cls.build(cfg)


def test_imagenet_train_list_missing_or_corrupt(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    cfg = lt.ImageNetLTConfig(root=str(tmp_path))
    hint = f"bench data download imagenet_lt --root {re.escape(str(tmp_path))}.*raw.githubusercontent"
    with pytest.raises(BenchError, match=hint):
        lt.ImageNetLT.build(cfg)
    (tmp_path / "ImageNet_LT_train.txt").write_text("train/n01440764/x.JPEG 0\n")
    with pytest.raises(BenchError, match="ImageNet_LT_train.txt' does not match"):
        lt.ImageNetLT.build(cfg)


def test_wrong_counts_and_labels(fake, monkeypatch):
    cls, cfg = fake
    monkeypatch.setattr(cls, "SIZES", {**cls.SIZES, "test": 4})
    with pytest.raises(BenchError, match="test list .* has 3 lines, expected 4"):
        cls.build(cfg)
    monkeypatch.setattr(cls, "SIZES", {**cls.SIZES, "test": 3})
    ids = CLASSES[cls]
    splits_dir = files.SPLITS_DIR
    names = "n01440764 a\nn01443537 b\nn04008634 c\nn09999999 d\n" if cls is lt.ImageNetLT else \
        "".join(f"{i} {f}\n" for i, f in enumerate(ids + ["zoo"]))
    monkeypatch.setattr(cls, "NAMES", fake_spec(cls.NAMES, names.encode(), splits_dir))
    with pytest.raises(BenchError, match="class 3 .* has no training image"):
        cls.build(cfg)
    monkeypatch.setattr(cls, "NAMES", fake_spec(cls.NAMES, "\n".join(names.splitlines()[:2]).encode(), splits_dir))
    with pytest.raises(BenchError, match="label 2; labels must be 0..1"):
        cls.build(cfg)


def test_image_vanished_at_load(fake):
    cls, cfg = fake
    bundle = cls.build(cfg)
    path = os.path.join(cfg.root, bundle.train.paths[3])
    os.remove(path)
    with pytest.raises(BenchError, match=f"image '{re.escape(path)}' cannot be read"):
        bundle.train[3]


# --- (d) check() and (e) download() -----------------------------------------------------------

def test_check_finds_missing_files(fake):
    cls, cfg = fake
    folders = CLASSES[cls]
    os.remove(os.path.join(cfg.root, "train", folders[0], "b.jpg"))
    os.mkdir(os.path.join(cfg.root, "train", folders[1], "not_a_file.jpg"))
    os.rename(os.path.join(cfg.root, "val", folders[1]), os.path.join(cfg.root, "elsewhere"))
    assert cls.check(cfg) == [
        ("train", 4, [os.path.join(cfg.root, "train", folders[0], "b.jpg")]),
        ("val", 3, []),
        ("test", 3, [os.path.join(cfg.root, "val", folders[1], "u.jpg")]),
    ]


def test_download_writes_only_a_matching_file(tmp_path, monkeypatch):
    good = b"train/n01440764/n01440764_190.JPEG 0\n"
    spec = dataclasses.replace(lt.IMAGENET_LT_TRAIN, size=len(good), git_sha1=files.git_blob_sha1(good))
    monkeypatch.setattr(lt.ImageNetLT, "LISTS", {**lt.ImageNetLT.LISTS, "train": spec})
    cfg = lt.ImageNetLTConfig(root=str(tmp_path))
    target = tmp_path / "ImageNet_LT_train.txt"
    with pytest.raises(BenchError, match="does not match.*nothing was written"):
        lt.ImageNetLT.download(cfg, opener=lambda url, timeout: io.BytesIO(b"tampered\n"))
    assert not target.exists()
    urls = []
    message = lt.ImageNetLT.download(cfg, opener=lambda url, timeout: urls.append(url) or io.BytesIO(good))
    assert target.read_bytes() == good and str(target) in message
    assert urls == ["https://raw.githubusercontent.com/facebookresearch/classifier-balancing/"
                    "f162adef63fdf592d0b8a0f6e52bc481fc08785f/data/ImageNet_LT/ImageNet_LT_train.txt"]  # pinned


def test_places_download_explains_where_images_come_from(tmp_path):
    with pytest.raises(BenchError, match="split lists ship with the package.*places2.csail.mit.edu"):
        lt.PlacesLT.download(lt.PlacesLTConfig(root=str(tmp_path)))
