"""The 11 CoOp datasets and the 4 ImageNet shift test sets, as the long-tailed B2N papers draw them.

One registered dataset, ``coop``, reads any of them from CoOp's ``$DATA`` layout
(:mod:`bench.data.coop_layout`) and draws the training set the way the official code does::

    cfg = CoOpConfig(dataset="eurosat", root="/data/coop", shots=16, imb_ratio=0.25)
    bundle = DATASETS.get("coop").build(cfg, seed=1)   # seeds 1, 2, 3 as in the papers
    bundle.train_counts        # [16, 11, 8, 5, 4, 0, 0, 0, 0, 0]: 5 base classes, then 5 new ones
    image, label = bundle.test[0]

Order of the draws, as in ``shijxcs/Candle@d285eb35`` (``datasets/oxford_pets.py``
``OxfordPets.__init__``, and the same in every other ``datasets/*.py`` there, ImageNet included):

1. the full train list (split file, official lists or folders);
2. Dassl's few-shot draw with cap ``shots`` (``generate_fewshot_dataset``, Python ``random``);
3. ``subsample_classes``: for ``base_to_new`` only the base classes (the first ``ceil(C/2)``
   labels) keep training images;
4. ``gen_imbalanced_data(train, imb_ratio)``: the exponential long-tail draw over the base
   classes (numpy), skipped when ``imb_ratio`` is 1.

Both draws use the cell's seed, as Dassl's ``set_random_seed(cfg.SEED)`` does
(:mod:`bench.data.sampling` says why fresh generators reproduce it).  Labels stay the dataset's
own ``0..C-1``; the engine relabels base and new from ``base_classes``.  The test set is the
full split-file test list (ImageNet: the val folders), never sampled.  Class names are cleaned
as the CoOp trainers do (``_`` becomes a space); templates are CoOp's ``CUSTOM_TEMPLATES``.

Folders follow CoOp's ``DATASETS.md``, not Candle's: Candle renamed some (``oxford-iiit-pet``,
``dtd/dtd``, ``caltech101``, ``fgvc-aircraft-2013b/data``), and its ``datasets/imagenet.py`` reads
``classnames.txt`` through an undefined ``self.save_dir`` (it only runs with a cached
``preprocessed.pkl``).  Neither changes which images are drawn.
"""
from __future__ import annotations

import math
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Literal, Tuple

from bench.core.coerce import ENV
from bench.core.errors import BenchError, ConfigError, reason
from bench.core.registry import DATASETS
from .base import DatasetBundle, label_counts
from .coop_layout import LAYOUTS, Layout, Listing, Lists, absent, dataset_dir, read_lists
from .files import download as download_file
from .listed import ListedImages, escape_error, first_in_each_folder, missing_files, outside_folder
from .sampling import few_shot_indices, long_tail_indices

Name = Literal["imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
               "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101",
               "imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r"]


@dataclass
class CoOpConfig:
    dataset: Name
    # few-shot cap per class (16, 100); 0: no cap, every training image (Dassl's NUM_SHOTS < 1)
    shots: int = field(default=16, metadata={"min": 0, "max": 100_000})
    imb_ratio: float = field(default=1.0, metadata={"min": 0, "max": 1})  # min/max class size; 1 = balanced
    classes: Literal["base_to_new", "all"] = "base_to_new"
    root: str = field(default="data/coop", metadata=ENV)  # CoOp's $DATA: holds imagenet/, caltech-101/, ...

    @property
    def coop_name(self) -> str:
        """CoOp's name of the dataset (a recipe's ``by_dataset`` key)."""
        return LAYOUTS[self.dataset].name

    def validate(self, where: str) -> None:
        at = f"{where}." if where else ""
        if not 0 < self.imb_ratio <= 1:
            raise ConfigError(f"{at}imb_ratio", "is min/max class size, in (0, 1]: 'imbalance 10' is 0.1")
        if LAYOUTS[self.dataset].test_only and self.classes != "all":
            raise ConfigError(f"{at}classes", f"{self.dataset} is a test-only set (no training images, "
                                              "no base/new split); use classes: all")


def training_indices(labels: List[int], num_classes: int, cfg: CoOpConfig, seed: int,
                     half: str = "base") -> List[int]:
    """Positions in the full train list kept for training, in the official list order.  ``half="new"``
    draws the new classes' images the same way (base-to-new only; for transductive steps)."""
    chosen = few_shot_indices(labels, cfg.shots, seed)
    if cfg.classes == "base_to_new":
        base = math.ceil(num_classes / 2)
        chosen = [i for i in chosen if (labels[i] < base) == (half == "base")]
    if cfg.imb_ratio == 1.0:
        return chosen
    if not 0 <= seed < 2**32:  # numpy's legacy seeding, as Dassl's np.random.seed
        raise BenchError(f"coop: seed {seed} is out of range for the long-tail draw (0 <= seed < 2**32)")
    keep = long_tail_indices([labels[i] for i in chosen], cfg.imb_ratio, seed)
    return [chosen[k] for k in keep]


def _require_folders(layout: Layout, root: Path, listing: Listing) -> None:
    """One stat per image folder, not per image: a wrong root fails here, a lost image at load time;
    a folder that resolves outside the image folder (``..`` in a line, a symlink) is refused here too."""
    for folder, _, index in first_in_each_folder({"": listing.paths}):
        real = outside_folder(listing.root, listing.paths[index])
        if real is not None:
            raise escape_error(layout.name, listing.root, listing.paths[index], real, listing.listed_in,
                               listing.lines[index] if listing.lines is not None else None)
        path = Path(listing.root) / folder
        if not path.is_dir():
            raise absent(layout, root, f"image folder '{path}' is missing")


def _images(listing: Listing, keep: List[int], title: str) -> ListedImages:
    lines = [listing.lines[i] for i in keep] if listing.lines is not None else None
    return ListedImages(listing.root, [listing.paths[i] for i in keep], [listing.labels[i] for i in keep], title,
                        listing.listed_in, lines)


@DATASETS.register("coop")
class CoOpDatasets:
    """The 11 CoOp datasets (+ ImageNet-V2/-Sketch/-A/-R), few-shot then long-tailed as in Candle."""

    Config = CoOpConfig
    seeded = True  # the engine passes the cell's seed to build()

    @staticmethod
    def build(cfg: CoOpConfig, seed: int) -> DatasetBundle:
        cfg.validate("coop")
        layout, root = LAYOUTS[cfg.dataset], Path(cfg.root)
        lists: Lists = read_lists(layout, root)
        for listing in (lists.train, lists.test):
            _require_folders(layout, root, listing)
        num_classes = len(lists.classnames)
        keep = training_indices(lists.train.labels, num_classes, cfg, seed)
        train = _images(lists.train, keep, layout.name)
        test = _images(lists.test, list(range(len(lists.test.paths))), layout.name)
        base, new_train = None, None
        if cfg.classes == "base_to_new":
            base = list(range(math.ceil(num_classes / 2)))
            new_train = _images(lists.train, training_indices(lists.train.labels, num_classes, cfg, seed, "new"),
                                layout.name)
        return DatasetBundle(
            train=train, test=test, classnames=[name.replace("_", " ") for name in lists.classnames],
            train_counts=label_counts(train.labels, num_classes), template=layout.template,
            base_classes=base, class_ids=lists.class_ids, new_train=new_train, dataset=layout.name)

    @staticmethod
    def catalog() -> List[Tuple[str, CoOpConfig]]:
        return [(key, CoOpConfig(dataset=key, classes="all" if layout.test_only else "base_to_new"))
                for key, layout in LAYOUTS.items()]

    @staticmethod
    def source(cfg: CoOpConfig) -> str:
        layout = LAYOUTS[cfg.dataset]
        return f"{layout.name}: {layout.source}"

    @staticmethod
    def present(cfg: CoOpConfig) -> bool:
        return dataset_dir(LAYOUTS[cfg.dataset], Path(cfg.root)).is_dir()

    @staticmethod
    def check(cfg: CoOpConfig) -> List[Tuple[str, int, List[str]]]:
        """``(split, listed images, missing files)`` for the full train and test lists."""
        layout = LAYOUTS[cfg.dataset]
        lists = read_lists(layout, Path(cfg.root))
        return [(split, len(listing.paths), missing_files(listing.root, listing.paths, layout.name,
                                                          listing.listed_in, listing.lines))
                for split, listing in (("train", lists.train), ("test", lists.test))]

    @staticmethod
    def download(cfg: CoOpConfig, opener=urllib.request.urlopen) -> str:
        """The split file that does not ship (Food101, SUN397) and, where torchvision's download
        gives exactly CoOp's folders (EuroSAT, Food101, SUN397), the images.  torchvision's
        EuroSAT archive has the MD5 it pinned for the DFKI URL CoOp names, so it is the same file."""
        layout, root = LAYOUTS[cfg.dataset], Path(cfg.root)
        fetch_split = layout.split is not None and not layout.split.shipped
        if not (fetch_split or layout.torchvision):
            raise absent(layout, root, "nothing to download automatically")
        here, done = dataset_dir(layout, root), []
        if fetch_split:  # the small file first: it stays if the image download fails
            path = download_file(layout.split, here / layout.split.name, opener=opener)
            done.append(f"{layout.split.name} in '{path}' ({layout.split.describe()}, checked)")
        images = here / layout.image_dir
        if layout.torchvision and not images.is_dir():
            _torchvision_download(layout, root)
            done.append(f"images in '{images}'")
        elif layout.torchvision:
            done.append(f"images already in '{images}'")
        return f"{layout.name}: " + "; ".join(done)


def _torchvision_download(layout: Layout, root: Path) -> None:
    import torchvision.datasets

    # Each class's own root makes its folders land where CoOp's DATASETS.md puts them.
    where = {"EuroSAT": root, "Food101": root, "SUN397": root / "sun397"}[layout.torchvision]
    try:
        getattr(torchvision.datasets, layout.torchvision)(root=str(where), download=True)
    except (OSError, RuntimeError) as err:
        here = dataset_dir(layout, root)
        raise BenchError(f"{layout.name}: the image download by torchvision.datasets.{layout.torchvision} "
                         f"failed ({reason(err)}); {layout.how.format(dir=here)}") from None
