"""Images a list names under a folder, read without leaving the folder or filling the memory.

A list line (or a symlink in the data tree) can point anywhere: ``../../../../home/me/secret`` or a link
to ``/etc``.  Every listed file must resolve (``..`` and symlinks followed) to a place under its folder;
one that does not is one error naming the list, the line and the folder, in ``bench data check``
(:func:`missing_files`), when a dataset is built (:func:`outside_folder`, one resolve per folder) and
when the image is opened (:class:`ListedImages`, one resolve per image: a link made after the check).

An image is decoded only if its header says it has at most ``$BENCH_MAX_MEGAPIXELS`` megapixels
(default 64): a 450 KB PNG of 12000x12000 pixels decodes to 432 MB, twice that while it becomes RGB::

    images = ListedImages("/data/places365", ["train/airfield/1.jpg"], [0], "Places-LT",
                          listed_in="split list 'Places_LT_train.txt'", lines=[1])
    image, label = images[0]          # a PIL RGB image and an int
"""
from __future__ import annotations

import errno
import math
import os
import warnings
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Set, Tuple

from PIL import Image
from torch.utils.data import Dataset

from bench.core.errors import BenchError, reason

PIXELS_VAR = "BENCH_MAX_MEGAPIXELS"
# 64 MP: above every photo in the suite's datasets (web and camera images, the largest about 30 MP) and
# a 61 MP full-frame camera's; 192 MB once decoded.  Pillow warns only at 89.5 MP and refuses at 179 MP.
DEFAULT_MEGAPIXELS = 64


def pixel_cap() -> float:
    """Megapixels an image may have: ``$BENCH_MAX_MEGAPIXELS``, else :data:`DEFAULT_MEGAPIXELS`."""
    text = os.environ.get(PIXELS_VAR, "").strip()
    if not text:
        return DEFAULT_MEGAPIXELS
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    most = 2 * (Image.MAX_IMAGE_PIXELS or math.inf) / 1e6  # Pillow's own refusal, whatever is asked here
    if not 0 < value <= most:
        raise BenchError(f"${PIXELS_VAR}={text[:40]!r}: expected the megapixels an image may have, a number above "
                         f"0 and at most {most:.0f} (Pillow's own limit); the default is {DEFAULT_MEGAPIXELS}")
    return value


def inside(path: str, folder: str) -> bool:
    """Whether the resolved ``path`` is the resolved ``folder`` or under it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def outside_folder(root: str, relative: str) -> Optional[str]:
    """Where ``relative`` under ``root`` resolves to, when that is not under ``root`` (else None)."""
    real = os.path.realpath(os.path.join(root, relative))
    return None if inside(real, os.path.realpath(root)) else real


def first_in_each_folder(lists: Dict[str, Sequence[str]]) -> List[Tuple[str, str, int]]:
    """``(folder, split, index)`` of the first path naming each folder of ``lists`` (split -> relative
    paths), folders sorted: a dataset is checked once per folder, not once per image."""
    first: Dict[str, Tuple[str, int]] = {}
    for split, paths in lists.items():
        for index, path in enumerate(paths):
            first.setdefault(path.rpartition("/")[0], (split, index))
    return [(folder, split, index) for folder, (split, index) in sorted(first.items())]


def escape_error(title: str, root: str, path: str, real: str, listed_in: str = "", line: Optional[int] = None):
    """The error for a listed ``path`` that resolves to ``real``, outside ``root``."""
    where = f"{listed_in}, line {line}" if listed_in and line is not None else listed_in
    head = f"{title}: {where}" if where else title
    return BenchError(f"{head}: '{path}' resolves to '{real}', outside the dataset folder '{root}'; every "
                      "listed file must be under it (use the published split list, and copy in a file that a "
                      "symlink leads out to)")


class ListedImages(Dataset):
    """``(PIL RGB image, label)`` for the listed paths under ``root``, opened on access.  ``listed_in``
    and ``lines`` (each path's line in it) name the list in errors."""

    def __init__(self, root: str, paths: List[str], labels: List[int], title: str, listed_in: str = "",
                 lines: Optional[Sequence[int]] = None):
        self.root, self.paths, self.labels, self.title = root, paths, labels, title
        self.listed_in, self.lines = listed_in, lines
        self.real_root = os.path.realpath(root)
        self.max_megapixels = pixel_cap()  # read here: a bad value fails the build, not a loader worker

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        path = os.path.join(self.root, self.paths[index])
        real = os.path.realpath(path)
        if not inside(real, self.real_root):
            raise escape_error(self.title, self.root, self.paths[index], real, self.listed_in,
                               self.lines[index] if self.lines is not None else None)
        try:
            with warnings.catch_warnings():  # the cap below is the check, said in one line
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(real)
            with image:
                self.check_size(path, image.size)
                return image.convert("RGB"), self.labels[index]
        except Image.DecompressionBombError:
            raise self.too_large(path, f"more than {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels") from None
        except OSError as err:  # vanished, unreadable or not an image
            raise BenchError(f"{self.title}: image '{path}' cannot be read ({reason(err)}); "
                             "`bench data check` lists every missing file") from None

    def check_size(self, path: str, size: Tuple[int, int]) -> None:
        """Refuse an image over the cap from its header, before decoding a pixel."""
        width, height = size
        if width * height > self.max_megapixels * 1e6:
            raise self.too_large(path, f"{width}x{height} pixels ({width * height / 1e6:.1f} megapixels, "
                                       f"{3 * width * height / 2**30:.1f} GB decoded)", width * height)

    def too_large(self, path: str, what: str, pixels: int = 0) -> BenchError:
        needed = f"{math.ceil(pixels / 1e6)}" if pixels else "a larger number"
        return BenchError(f"{self.title}: image '{path}' is {what}, over the cap of {self.max_megapixels:g} "
                          f"megapixels per image; shrink it, or raise the cap with {PIXELS_VAR}={needed}")


def missing_files(root: str, paths: List[str], title: str = "", listed_in: str = "",
                  lines: Optional[Sequence[int]] = None) -> List[str]:
    """The listed files absent under ``root``: one directory listing per folder, not a stat per file.
    A listed file that resolves outside ``root`` (``..``, a symlinked folder or file) is an error."""
    by_folder: Dict[str, List[Tuple[int, str]]] = defaultdict(list)
    for index, path in enumerate(paths):
        folder, _, name = path.rpartition("/")
        by_folder[folder].append((index, name))
    missing = []
    for folder, names in by_folder.items():
        here = os.path.join(root, folder)
        present, broken, links = _files_in(here)
        for index, name in [names[0]] + [(i, n) for i, n in names if n in links]:
            real = outside_folder(root, paths[index])
            if real is not None:
                raise escape_error(title, root, paths[index], real, listed_in,
                                   lines[index] if lines is not None else None)
        missing.extend(os.path.join(here, name) + (f" ({broken[name]})" if name in broken else "")
                       for _, name in names if name not in present)
    return missing


def _files_in(folder: str) -> Tuple[Set[str], Dict[str, str], Set[str]]:
    """The regular files of ``folder``, what is wrong with each entry that cannot be followed (a symlink
    loop names itself; the other files are still found), and which entries are symlinks."""
    present: Set[str] = set()
    broken: Dict[str, str] = {}
    try:
        with os.scandir(folder) as entries:
            listed = list(entries)
    except OSError:
        return present, broken, set()
    for entry in listed:
        try:
            if entry.is_file():
                present.add(entry.name)
        except OSError as err:
            broken[entry.name] = "a symlink loop" if err.errno == errno.ELOOP else reason(err)
    return present, broken, {entry.name for entry in listed if entry.is_symlink()}
