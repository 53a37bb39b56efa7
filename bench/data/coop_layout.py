"""Where each CoOp dataset keeps its images and lists under ``$DATA``, and how to read them.

The folders are those of ``KaiyangZhou/CoOp:DATASETS.md`` (HEAD ff61507c), read as its
``datasets/*.py`` read them::

    layout = LAYOUTS["eurosat"]                    # eurosat/2750/, split_zhou_EuroSAT.json
    lists = read_lists(layout, Path("data/coop"))  # full train and test lists, raw class names

Five readers:

- ``split``: a ``split_zhou_<Name>.json`` (``{"train": [[rel_path, label, name], ...], ...}``,
  paths relative to the image folder).  Seven ship with the package; Food101's and SUN397's are
  read from the dataset folder, where CoOp puts them, and checked by git blob SHA-1.
- ``fgvc``: ``variants.txt`` and ``images_variant_{train,test}.txt`` of FGVC-Aircraft 2013b.
- ``imagenet``: ``images/train/<wnid>/`` and ``images/val/<wnid>/``.  CoOp lists the images
  with ``os.listdir`` (Dassl ``listdir_nohidden(sort=False)``), whose order depends on the file
  system, so its ImageNet few-shot draws are not portable; here the names are SORTED.
- ``wnid_folders``: the test-only Sketch, A and R, one folder per wnid, labels in sorted wnid
  order (``README.txt`` skipped); A and R have 200 of the 1,000 classes.
- ``numbered``: the test-only ImageNetV2, folder ``i`` holding ImageNet class ``i``.

ImageNet names and wnids come from the shipped ``classnames.txt`` (identical to the
``imagenet/classnames.txt`` CoOp asks users to copy into each ImageNet-family folder), so those
copies are not needed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from bench.core.errors import BenchError
from bench.core.namedfiles import read_named_text
from bench.core.safeyaml import load_json
from .files import SplitFile, read_text
from .folder_lt import imagenet_classes

_MIRROR = "linzhiqiu/cross_modal_adaptation (MIT), splits/ at c7e7e68 (CoOp's DATASETS.md Google Drive copies)"
LARGEST_LIST = 16 << 20  # bytes of a list read from a dataset folder (FGVC-Aircraft's are about 100 KB)
_RAW = ("https://raw.githubusercontent.com/linzhiqiu/cross_modal_adaptation/"
        "c7e7e68ae4eeadfab98e7886b2d6c9cf48a7ceb5/splits/")


def _shipped(name: str, sha256: str, git_sha1: str, size: int) -> SplitFile:
    file = f"split_zhou_{name}.json"
    return SplitFile(file, _MIRROR, sha256=sha256, git_sha1=git_sha1, size=size, shipped=f"b2n/{file}.gz")


def _pinned(name: str, git_sha1: str) -> SplitFile:
    file = f"split_zhou_{name}.json"
    return SplitFile(file, _MIRROR, git_sha1=git_sha1, url=_RAW + file)


SPLIT_FILES: Dict[str, SplitFile] = {
    "caltech101": _shipped("Caltech101", "52ce83205ff8ff8a1a18119aad6376120ae35c36e783a984bc560cbf10e73fa5",
                           "8be694a80de04a39fb159c462bea9696aa47ccf1", 809_184),
    "oxford_pets": _shipped("OxfordPets", "d7f3ffe65b3919f95132e51422894ae18686b83c331fd8c0adcdc3dc2de6301e",
                            "fa821d9f9e7d32fdf3640bf74fa7491ed04f37da", 724_217),
    "stanford_cars": _shipped("StanfordCars", "40acee7aa65c8e4727a32d90e884b7c3f8960b523422317e163f7af65432959d",
                              "dcdb8264712e9940e74cfb0f06ddb8f9cc239b81", 1_855_652),
    "oxford_flowers": _shipped("OxfordFlowers", "2f50c42fc1a17ca13c271cb4269b1347bdb43d2be672e34f74a4e4cbfbcca794",
                               "8d10037b0690b6c65e307a354b039efb0f42404c", 771_139),
    "dtd": _shipped("DescribableTextures", "f26ebeccd2b58e68d70f07a0dc39fe49bf7b69024bac34396b954dfd87969c38",
                    "8dd197a94b598fa44ee3c9e35c486dd017ab00a7", 563_702),
    "eurosat": _shipped("EuroSAT", "541503a77d0b26b735d85ec7a3e672804fe0aa466c2e5f07da772cc6c0af8ad2",
                        "6bdc847a5d5c49dcc78e8cb8707b87198cbfa5a4", 3_006_492),
    "ucf101": _shipped("UCF101", "d78cb834f7c5792ceaff2c5ee2d7c76a9e4086e48a3a6b01232989d29cbefdd8",
                       "ea87e3de7b4f6f00fdd77618e34a23508b4c5590", 1_557_485),
    "food101": _pinned("Food101", "39557040ee6501bd32aa8b5dfd75f7941a32f0a7"),
    "sun397": _pinned("SUN397", "8d5725db8f70bcf02245665304f863e68f96a24c"),
}


@dataclass(frozen=True)
class Layout:
    key: str  # the Config.dataset value
    name: str  # CoOp's dataset class name (the key of its CUSTOM_TEMPLATES)
    folder: str  # under $DATA
    image_dir: str  # under folder ("" = the folder itself)
    reader: str  # split | fgvc | imagenet | numbered | wnid_folders
    template: str  # CoOp trainers/zsclip.py CUSTOM_TEMPLATES
    source: str  # where the images come from
    how: str  # CoOp DATASETS.md in one line; {dir} is the dataset folder
    split: Optional[SplitFile] = None
    test_only: bool = False
    classes: int = 0  # folders a wnid_folders set must have (0: any)
    torchvision: str = ""  # a torchvision dataset whose download gives exactly this layout


def _layouts() -> Dict[str, Layout]:
    photo = "a photo of a {}."
    ox = "https://www.robots.ox.ac.uk/~vgg/data/"
    rows = [
        Layout("imagenet", "ImageNet", "imagenet", "images", "imagenet", photo,
               "ILSVRC-2012 train and val from https://image-net.org/download-images",
               "extract the ILSVRC-2012 train and val sets to {dir}/images/train/<wnid>/ and "
               "{dir}/images/val/<wnid>/ (val sorted into wnid folders)"),
        Layout("caltech101", "Caltech101", "caltech-101", "101_ObjectCategories", "split", photo,
               "http://www.vision.caltech.edu/Image_Datasets/Caltech101/101_ObjectCategories.tar.gz",
               "extract 101_ObjectCategories.tar.gz (http://www.vision.caltech.edu/Image_Datasets/Caltech101/) "
               "in {dir}/"),
        Layout("oxford_pets", "OxfordPets", "oxford_pets", "images", "split", "a photo of a {}, a type of pet.",
               ox + "pets/data/images.tar.gz", "extract " + ox + "pets/data/images.tar.gz in {dir}/"),
        Layout("stanford_cars", "StanfordCars", "stanford_cars", "", "split", photo,
               "cars_train.tgz and cars_test.tgz from http://ai.stanford.edu/~jkrause/car196/ (offline now: "
               "use a mirror)", "extract cars_train.tgz and cars_test.tgz (http://ai.stanford.edu/~jkrause/car196/, "
               "offline now: use a mirror) in {dir}/, giving {dir}/cars_train/ and {dir}/cars_test/"),
        Layout("oxford_flowers", "OxfordFlowers", "oxford_flowers", "jpg", "split",
               "a photo of a {}, a type of flower.", ox + "flowers/102/102flowers.tgz",
               "extract " + ox + "flowers/102/102flowers.tgz in {dir}/, giving {dir}/jpg/"),
        Layout("food101", "Food101", "food-101", "images", "split", "a photo of {}, a type of food.",
               "food-101.tar.gz from https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/",
               "extract food-101.tar.gz (https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/) in the "
               "data root, giving {dir}/images/", torchvision="Food101"),
        Layout("fgvc_aircraft", "FGVCAircraft", "fgvc_aircraft", "images", "fgvc",
               "a photo of a {}, a type of aircraft.", ox + "fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",
               "extract " + ox + "fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz and move its data/ "
               "folder to {dir}"),
        Layout("sun397", "SUN397", "sun397", "SUN397", "split", photo,
               "http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz",
               "extract http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz in {dir}/, giving {dir}/SUN397/",
               torchvision="SUN397"),
        Layout("dtd", "DescribableTextures", "dtd", "images", "split", "{} texture.",
               ox + "dtd/download/dtd-r1.0.1.tar.gz",
               "extract " + ox + "dtd/download/dtd-r1.0.1.tar.gz in the data root, giving {dir}/images/"),
        Layout("eurosat", "EuroSAT", "eurosat", "2750", "split", "a centered satellite photo of {}.",
               "http://madm.dfki.de/files/sentinel/EuroSAT.zip (RGB)",
               "extract http://madm.dfki.de/files/sentinel/EuroSAT.zip in {dir}/, giving {dir}/2750/",
               torchvision="EuroSAT"),
        Layout("ucf101", "UCF101", "ucf101", "UCF-101-midframes", "split", "a photo of a person doing {}.",
               "UCF-101-midframes.zip (Google Drive link in KaiyangZhou/CoOp DATASETS.md)",
               "extract UCF-101-midframes.zip (Google Drive link in CoOp's DATASETS.md) in {dir}/"),
        Layout("imagenet_v2", "ImageNetV2", "imagenetv2", "imagenetv2-matched-frequency-format-val", "numbered",
               photo, "https://s3-us-west-2.amazonaws.com/imagenetv2public/imagenetv2-matched-frequency.tar.gz",
               "extract https://s3-us-west-2.amazonaws.com/imagenetv2public/imagenetv2-matched-frequency.tar.gz "
               "in {dir}/", test_only=True),
        Layout("imagenet_sketch", "ImageNetSketch", "imagenet-sketch", "images", "wnid_folders", photo,
               "https://github.com/HaohanWang/ImageNet-Sketch",
               "extract ImageNet-Sketch (https://github.com/HaohanWang/ImageNet-Sketch) to {dir}, giving "
               "{dir}/images/<wnid>/", test_only=True, classes=1000),
        Layout("imagenet_a", "ImageNetA", "imagenet-adversarial", "imagenet-a", "wnid_folders", photo,
               "imagenet-a.tar from https://github.com/hendrycks/natural-adv-examples",
               "extract imagenet-a.tar (https://github.com/hendrycks/natural-adv-examples) in {dir}/",
               test_only=True, classes=200),
        Layout("imagenet_r", "ImageNetR", "imagenet-rendition", "imagenet-r", "wnid_folders", photo,
               "imagenet-r.tar from https://github.com/hendrycks/imagenet-r",
               "extract imagenet-r.tar (https://github.com/hendrycks/imagenet-r) in {dir}/",
               test_only=True, classes=200),
    ]
    return {row.key: replace(row, split=SPLIT_FILES.get(row.key)) for row in rows}


LAYOUTS: Dict[str, Layout] = _layouts()


@dataclass
class Listing:
    """Images of one split: ``paths`` relative to ``root`` (the image folder)."""

    root: str
    paths: List[str]
    labels: List[int]
    listed_in: str = ""  # the list naming them, for errors ("": the folders themselves)
    lines: Optional[List[int]] = None  # each path's line in that list


@dataclass
class Lists:
    train: Listing
    test: Listing
    classnames: List[str]  # raw, as the files write them (the builder replaces "_")
    class_ids: Optional[List[str]] = None  # wnids, ImageNet family only


def dataset_dir(layout: Layout, root: Path) -> Path:
    return Path(root) / layout.folder


def absent(layout: Layout, root: Path, what: str) -> BenchError:
    here = dataset_dir(layout, root)
    also = f" or run `bench data download coop --dataset {layout.key} --root {root}`" if layout.torchvision else ""
    return BenchError(f"{layout.name}: {what}; {layout.how.format(dir=here)}{also} (KaiyangZhou/CoOp DATASETS.md)")


def read_lists(layout: Layout, root: Path) -> Lists:
    """The full train and test lists of ``layout`` under the data root ``root``."""
    here = dataset_dir(layout, root)
    if not here.is_dir():
        raise absent(layout, root, f"dataset folder '{here}' is missing")
    reader = {"split": _read_split, "fgvc": _read_fgvc, "imagenet": _read_imagenet,
              "numbered": _read_numbered, "wnid_folders": _read_wnid_folders}[layout.reader]
    return reader(layout, root)


def _split_text(layout: Layout, root: Path) -> str:
    spec = layout.split
    if spec.shipped:
        return read_text(spec)
    path = dataset_dir(layout, root) / spec.name
    if not path.is_file():
        raise BenchError(f"{layout.name}: split file '{path}' is missing (too large to ship with the package); "
                         f"run `bench data download coop --dataset {layout.key} --root {root}` or download "
                         f"{spec.url} to that path ({spec.source})")
    return read_text(spec, path)


def _read_split(layout: Layout, root: Path) -> Lists:
    where = layout.split.name
    try:
        data = load_json(_split_text(layout, root))
        rows = {part: [(str(p), int(y), str(c)) for p, y, c in data[part]] for part in ("train", "test")}
    except (ValueError, KeyError, TypeError) as err:
        raise BenchError(f"{layout.name}: split file {where} is not a split_zhou file ({err})") from None
    names: Dict[int, str] = {}
    for _, label, name in rows["train"] + rows["test"]:
        if names.setdefault(label, name) != name:
            raise BenchError(f"{layout.name}: split file {where} gives label {label} two names")
    if sorted(names) != list(range(len(names))):
        raise BenchError(f"{layout.name}: split file {where} has labels that are not 0..{len(names) - 1}")
    image_root = str(dataset_dir(layout, root) / layout.image_dir)
    train, test = ([Listing(image_root, [p for p, _, _ in rows[k]], [y for _, y, _ in rows[k]],
                            f"the {k} list of split file {where}") for k in ("train", "test")])
    return Lists(train, test, [names[y] for y in range(len(names))])


def _read_fgvc(layout: Layout, root: Path) -> Lists:
    here = dataset_dir(layout, root)

    def lines(name: str) -> List[Tuple[int, str]]:
        """``(line number, text)`` of the file's lines that are not blank."""
        path = here / name
        if not path.exists():
            raise absent(layout, root, f"'{path}' is missing")
        text = read_named_text(path, "FGVCAircraft list", limit=LARGEST_LIST,
                               hint=f"{layout.how.format(dir=here)} (KaiyangZhou/CoOp DATASETS.md)")
        return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if line.strip()]

    variants = [line for _, line in lines("variants.txt")]
    label_of = {name: label for label, name in enumerate(variants)}

    def listing(name: str) -> Listing:
        paths, labels, numbers = [], [], []
        for number, line in lines(name):
            image, _, variant = line.partition(" ")
            if variant not in label_of:
                raise BenchError(f"FGVCAircraft: {here / name}, line {number}: variant {variant!r} "
                                 "is not in variants.txt")
            paths.append(image + ".jpg")
            labels.append(label_of[variant])
            numbers.append(number)
        return Listing(str(here / layout.image_dir), paths, labels, f"split list '{here / name}'", numbers)

    return Lists(listing("images_variant_train.txt"), listing("images_variant_test.txt"), variants)


def image_names(folder: Path) -> List[str]:
    """Sorted names of the non-hidden files in ``folder`` (Dassl skips names starting with '.'); an entry
    that cannot be followed (a symlink loop) is listed, as Dassl's os.listdir does, so that checking
    and loading name it."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if not e.name.startswith(".") and _file_or_broken(e))


def _file_or_broken(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return True


def _folder_listing(layout: Layout, root: Path, image_root: Path, folders: List[str]) -> Listing:
    paths, labels = [], []
    for label, folder in enumerate(folders):
        if not (image_root / folder).is_dir():
            raise absent(layout, root, f"class folder '{image_root / folder}' is missing")
        names = image_names(image_root / folder)
        paths.extend(f"{folder}/{name}" for name in names)
        labels.extend([label] * len(names))
    return Listing(str(image_root), paths, labels)


def _read_imagenet(layout: Layout, root: Path) -> Lists:
    classes = imagenet_classes()
    wnids = [wnid for wnid, _ in classes]
    images = dataset_dir(layout, root) / layout.image_dir
    train, test = (_folder_listing(layout, root, images / part, wnids) for part in ("train", "val"))
    return Lists(train, test, [name for _, name in classes], wnids)


def _empty(image_root: Path) -> Listing:
    return Listing(str(image_root), [], [])


def _read_numbered(layout: Layout, root: Path) -> Lists:
    classes = imagenet_classes()  # folder i holds the i-th class of classnames.txt (CoOp imagenetv2.py)
    images = dataset_dir(layout, root) / layout.image_dir
    test = _folder_listing(layout, root, images, [str(i) for i in range(len(classes))])
    return Lists(_empty(images), test, [name for _, name in classes], [wnid for wnid, _ in classes])


def _read_wnid_folders(layout: Layout, root: Path) -> Lists:
    names = dict(imagenet_classes())
    images = dataset_dir(layout, root) / layout.image_dir
    if not images.is_dir():
        raise absent(layout, root, f"image folder '{images}' is missing")
    with os.scandir(images) as entries:
        wnids = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    unknown = [w for w in wnids if w not in names]
    if unknown:
        raise BenchError(f"{layout.name}: folder '{images / unknown[0]}' is not an ImageNet wnid")
    if layout.classes and len(wnids) != layout.classes:
        raise absent(layout, root, f"'{images}' has {len(wnids)} class folders, expected {layout.classes}")
    test = _folder_listing(layout, root, images, wnids)
    return Lists(_empty(images), test, [names[w] for w in wnids], wnids)
