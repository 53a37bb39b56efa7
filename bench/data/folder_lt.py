"""ImageNet-LT and Places-LT (Liu et al., OLTR, CVPR 2019): published split lists over image folders.

Each list line is ``relative/path label``; the lists are checked by checksum (:mod:`bench.data.files`)
and the images are opened lazily from a data root in its usual layout:

- ``imagenet_lt``: the ILSVRC2012 folder, ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG`` (val sorted
  into class folders).  ``ImageNet_LT_train.txt`` is too large to ship; ``bench data download
  imagenet_lt --root DIR`` puts it in the root.  Test = the whole ILSVRC2012 val set.
- ``places_lt``: Places365-Standard "small images (256x256) with easy directory structure",
  ``train/<folder>/*.jpg`` and ``val/<folder>/*.jpg``.  Test = the whole Places365 val set.

``test_split: val`` evaluates on the LT val list (20 images per class, drawn from the train images).

Class names.  ImageNet: CLIP's cleaned names, which are not unique (two "missile", two
"sunglasses"), so ``class_ids`` holds the wnids.  Places: from ``label_to_folder.txt``, i.e. in the
label order of the split lists; the sorted list that LIFT and MDPR read by label puts the wrong
name on labels 116-118 and 141-142.  Only ``_`` becomes a space (``apartment_building-outdoor`` ->
``apartment building-outdoor``), as in every anchor code (LIFT ``trainer.py``): cleaning further
would change the text classifier the published Places-LT numbers were measured with.

    bundle = DATASETS.get("places_lt").build(PlacesLTConfig(root="/data/places365_standard"))
    image, label = bundle.train[0]          # a PIL RGB image and an int
    bundle.train.labels[:3], bundle.classnames[116], bundle.class_ids[116]   # ..., 'desert road', 'desert_road'
"""
from __future__ import annotations

import os
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Tuple

from bench.core.coerce import ENV
from bench.core.errors import BenchError
from bench.core.registry import DATASETS
from .base import DatasetBundle, label_counts
from .files import SplitFile, download, read_text
from .listed import ListedImages, escape_error, first_in_each_folder, missing_files, outside_folder  # noqa: F401  (re-exported)

_CB = "facebookresearch/classifier-balancing (BSD), data/"
IMAGENET_LT_TRAIN = SplitFile(
    "ImageNet_LT_train.txt", _CB + "ImageNet_LT/", git_sha1="a063f095fcd475db4cf8b0658c4b73955535bbf9",
    size=4_658_674, url="https://raw.githubusercontent.com/facebookresearch/classifier-balancing/"
                        "f162adef63fdf592d0b8a0f6e52bc481fc08785f/data/ImageNet_LT/ImageNet_LT_train.txt")
IMAGENET_LT_VAL = SplitFile(
    "ImageNet_LT_val.txt", _CB + "ImageNet_LT/", size=804_172, shipped="imagenet_lt/ImageNet_LT_val.txt.gz",
    sha256="9af7ba688acf9532ff5845a8fb14a1e97fdc4c51ac48bc72c08ea9c3f7ff142e")
IMAGENET_LT_TEST = SplitFile(
    "ImageNet_LT_test.txt", _CB + "ImageNet_LT/", size=2_344_500, shipped="imagenet_lt/ImageNet_LT_test.txt.gz",
    sha256="d1590191cf8a71fada7b1aaedaa2d139a2aea93ff2f1b755319d0bd8dbaa55d5")
IMAGENET_LT_CLASSNAMES = SplitFile(
    "classnames.txt", "shijxcs/LIFT, datasets/ImageNet_LT/", size=21_814, shipped="imagenet_lt/classnames.txt.gz",
    sha256="89e0b642c6697a3a43a06a2bb65f9fefb3ca295ccc5f4ba9ce385f1a3a58c629")
PLACES_LT_TRAIN = SplitFile(
    "Places_LT_train.txt", _CB + "Places_LT/", size=2_092_674, shipped="places_lt/Places_LT_train.txt.gz",
    sha256="726c4871dcbf07ce2f857703bfe32e9a83ffbf52d704239f6d95c4f4f4c247f7")
PLACES_LT_VAL = SplitFile(
    "Places_LT_val.txt", _CB + "Places_LT/", size=253_480, shipped="places_lt/Places_LT_val.txt.gz",
    sha256="719e3cf3766c09134ea28f56f1036c78def511ac1ed2c2532a6beef78f2439ba")
PLACES_LT_TEST = SplitFile(
    "Places_LT_test.txt", _CB + "Places_LT/", size=1_705_400, shipped="places_lt/Places_LT_test.txt.gz",
    sha256="44eee8441c8098c59195465abede425721bc35525d75209f9433b161a6eb37bc")
PLACES_LT_LABEL_TO_FOLDER = SplitFile(
    "label_to_folder.txt", "derived from the Places-LT split lists (see SOURCE.md)", size=5_739,
    shipped="places_lt/label_to_folder.txt.gz",
    sha256="1002c6e362cc96f4b8d0432171b219bac09777aea6c4f3b3d949563647ca1814")
# The ASCII-sorted folder list of LIFT / MDPR: kept for comparison only, it does not follow the labels.
PLACES_LT_SORTED_NAMES = SplitFile(
    "classnames_LIFT_sorted.txt", "shijxcs/LIFT, datasets/Places_LT/classnames.txt", size=8_778,
    shipped="places_lt/classnames_LIFT_sorted.txt.gz",
    sha256="bee03ea5431ad49d156f159d24961f8c2787d3b7ac853b962c9cf256cafe50d1")

TEMPLATE = "a photo of a {}."  # the single template of LIFT, LIFT+ and MDPR
SPLITS = ("train", "val", "test")


def imagenet_classes(names: SplitFile = IMAGENET_LT_CLASSNAMES) -> List[Tuple[str, str]]:
    """``(wnid, name)`` of the 1,000 ImageNet classes in label (sorted wnid) order, from
    ``<wnid> <name>`` lines (the list CoOp ships as imagenet/classnames.txt)."""
    rows = [line.partition(" ") for line in read_text(names).splitlines() if line.strip()]
    return [(wnid, name.strip()) for wnid, _, name in rows]


def parse_list(text: str, where: str) -> Tuple[List[str], List[int]]:
    """Paths and labels of a ``relative/path label`` list (``where`` names it: "split list 'x.txt'")."""
    paths, labels = [], []
    for number, line in enumerate(text.splitlines(), 1):
        path, _, label = line.rpartition(" ")
        if not path or not label.isdigit():
            raise BenchError(f"{where}, line {number}: expected 'relative/path label', got {line[:80]!r}")
        paths.append(path)
        labels.append(int(label))
    return paths, labels


class _FolderLT:
    title = ""
    registry_name = ""  # set by DATASETS.register
    layout = ""  # what the root must be, for error messages
    registry_name = ""  # set by the registry
    LISTS: Dict[str, SplitFile] = {}
    SIZES: Dict[str, int] = {}  # lines per list

    @classmethod
    def classes(cls) -> Tuple[List[str], List[str]]:
        """``(class_ids, classnames)`` in label order."""
        raise NotImplementedError

    @classmethod
    def catalog(cls) -> List[Tuple[str, object]]:
        """``(name, config)`` of what ``bench data list`` shows: this dataset with its defaults."""
        return [(cls.registry_name, cls.Config())]

    @classmethod
    def source(cls, cfg) -> str:
        return f"{cls.title}: {cls.origin}"

    @classmethod
    def present(cls, cfg) -> bool:
        return all(os.path.isdir(os.path.join(cfg.root, sub)) for sub in ("train", "val"))

    @classmethod
    def read_list(cls, cfg, split: str) -> Tuple[List[str], List[int]]:
        spec = cls.LISTS[split]
        path = None if spec.shipped else Path(cfg.root) / spec.name
        if path is not None and not path.is_file():
            raise BenchError(f"{cls.title}: the {split} list '{path}' is missing (too large to ship with the "
                             f"package); run `bench data download {cls.registry_name} --root {cfg.root}` or "
                             f"download it by hand from {spec.url} to that path")
        paths, labels = parse_list(read_text(spec, path), cls.list_name(cfg, split))
        if len(paths) != cls.SIZES[split]:
            raise BenchError(f"{cls.title}: the {split} list {path or spec.name} has {len(paths):,} lines, "
                             f"expected {cls.SIZES[split]:,}")
        return paths, labels

    @classmethod
    def list_name(cls, cfg, split: str) -> str:
        spec = cls.LISTS[split]
        return f"split list '{spec.name if spec.shipped else Path(cfg.root) / spec.name}'"

    @classmethod
    def _root(cls, cfg) -> str:
        if not os.path.isdir(cfg.root):
            raise BenchError(f"{cls.title}: dataset root '{cfg.root}' does not exist (protocol.dataset.root); "
                             f"point --data-root at {cls.layout}")
        return cfg.root

    @classmethod
    def build(cls, cfg) -> DatasetBundle:
        root = cls._root(cfg)
        ids, names = cls.classes()
        train_paths, train_labels = cls.read_list(cfg, "train")
        test_paths, test_labels = cls.read_list(cfg, cfg.test_split)
        for split, labels in (("train", train_labels), (cfg.test_split, test_labels)):
            bad = [y for y in labels if y >= len(ids)]
            if bad:
                raise BenchError(f"{cls.title}: the {split} list has label {bad[0]}; labels must be 0..{len(ids) - 1}")
        counts = label_counts(train_labels, len(ids))
        if 0 in counts:
            raise BenchError(f"{cls.title}: class {counts.index(0)} ({names[counts.index(0)]}) has no training image")
        cls._require_folders(cfg, {"train": train_paths, cfg.test_split: test_paths})

        def images(split, paths, labels):
            return ListedImages(root, paths, labels, cls.title, cls.list_name(cfg, split), range(1, len(paths) + 1))

        return DatasetBundle(
            train=images("train", train_paths, train_labels),
            test=images(cfg.test_split, test_paths, test_labels),
            classnames=names, train_counts=counts, template=TEMPLATE, class_ids=ids,
            dataset=getattr(cfg, "coop_name", None))

    @classmethod
    def _require_folders(cls, cfg, lists: Dict[str, List[str]]) -> None:
        """One stat per class folder, not per image: a wrong root fails here, a lost image at load time;
        a folder that resolves outside the root (``..`` in a line, a symlink) is refused here too."""
        for folder, split, index in first_in_each_folder(lists):
            real = outside_folder(cfg.root, lists[split][index])
            if real is not None:
                raise escape_error(cls.title, cfg.root, lists[split][index], real, cls.list_name(cfg, split), index + 1)
            if not os.path.isdir(os.path.join(cfg.root, folder)):
                raise BenchError(f"{cls.title}: class folder '{os.path.join(cfg.root, folder)}' is missing; "
                                 f"the root must be {cls.layout}")

    @classmethod
    def check(cls, cfg) -> List[Tuple[str, int, List[str]]]:
        """``(split, listed images, missing files)`` for train, val and test."""
        root = cls._root(cfg)
        report = []
        for split in SPLITS:
            paths, _ = cls.read_list(cfg, split)
            report.append((split, len(paths), missing_files(root, paths, cls.title, cls.list_name(cfg, split),
                                                            range(1, len(paths) + 1))))
        return report


@dataclass
class ImageNetLTConfig:
    root: str = field(default="data/imagenet", metadata=ENV)  # the ILSVRC2012 folder (train/, val/)
    test_split: Literal["test", "val"] = "test"
    coop_name = "ImageNet"  # its classes and images are ImageNet's: ImageNet's templates and recipes


@DATASETS.register("imagenet_lt")
class ImageNetLT(_FolderLT):
    """ImageNet-LT (OLTR lists, 1,000 classes, 1,280 to 5 training images), ILSVRC2012 images."""

    Config = ImageNetLTConfig
    title = "ImageNet-LT"
    origin = ("ILSVRC2012 train and val images from https://image-net.org/download-images (val sorted into "
              f"wnid folders); the train list from {IMAGENET_LT_TRAIN.url}")
    layout = ("the ILSVRC2012 folder with train/<wnid>/ and val/<wnid>/ (val sorted into class folders, e.g. with "
              "https://github.com/pytorch/examples/blob/main/imagenet/extract_ILSVRC.sh)")
    LISTS = {"train": IMAGENET_LT_TRAIN, "val": IMAGENET_LT_VAL, "test": IMAGENET_LT_TEST}
    SIZES = {"train": 115_846, "val": 20_000, "test": 50_000}
    NAMES = IMAGENET_LT_CLASSNAMES

    @classmethod
    def classes(cls) -> Tuple[List[str], List[str]]:
        rows = imagenet_classes(cls.NAMES)
        return [wnid for wnid, _ in rows], [name for _, name in rows]

    @classmethod
    def download(cls, cfg, opener=urllib.request.urlopen) -> str:
        spec = cls.LISTS["train"]
        path = download(spec, Path(cfg.root) / spec.name, opener=opener)
        return f"{spec.name} is in '{path}' ({spec.describe()}, checked)"


@dataclass
class PlacesLTConfig:
    root: str = field(default="data/places365", metadata=ENV)  # Places365-Standard small, easy format
    test_split: Literal["test", "val"] = "test"


@DATASETS.register("places_lt")
class PlacesLT(_FolderLT):
    """Places-LT (OLTR lists, 365 classes, 4,980 to 5 training images), Places365-Standard images."""

    Config = PlacesLTConfig
    title = "Places-LT"
    origin = ('Places365-Standard "small images (256x256) with easy directory structure", train and val, '
              "from http://places2.csail.mit.edu/download.html")
    layout = ("the Places365-Standard folder of small images (256x256) with easy directory structure, "
              "holding train/<category>/ and val/<category>/ (http://places2.csail.mit.edu/download.html)")
    LISTS = {"train": PLACES_LT_TRAIN, "val": PLACES_LT_VAL, "test": PLACES_LT_TEST}
    SIZES = {"train": 62_500, "val": 7_300, "test": 36_500}
    NAMES = PLACES_LT_LABEL_TO_FOLDER

    @classmethod
    def classes(cls) -> Tuple[List[str], List[str]]:
        # Lines are "<label> <folder>", labels 0..364 in order (the file is checked by checksum).
        folders = [line.partition(" ")[2] for line in read_text(cls.NAMES).splitlines()]
        return folders, [folder.replace("_", " ") for folder in folders]

    @classmethod
    def download(cls, cfg) -> str:
        raise BenchError(f"{cls.title}: nothing to download: the split lists ship with the package, and the "
                         f"images are {cls.origin} (unpack them so that '{cfg.root}' holds train/ and val/)")
