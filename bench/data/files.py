"""Split files, checked before use: those shipped with the package and those read from a data root.

Every split list a protocol reads is named by a :class:`SplitFile` with the checksum its origin
publishes.  Shipped files live gzipped under ``bench/data/splits/`` (their ``SOURCE.md`` says where
each comes from); files too large to ship are read from the data root (or fetched from a pinned URL
by ``bench data download``) and must match their size and checksum.  Nothing is ever regenerated::

    text = read_text(IMAGENET_LT_TEST)                          # shipped: verified, decompressed
    text = read_text(IMAGENET_LT_TRAIN, root / "ImageNet_LT_train.txt")   # from the data root
"""
from __future__ import annotations

import gzip
import hashlib
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from bench.core.atomic import write_atomic
from bench.core.errors import BenchError, reason
from bench.core.namedfiles import read_named_bytes

SPLITS_DIR = Path(__file__).resolve().parent / "splits"
LARGEST_SPLIT = 64 << 20  # bytes a split file of unknown size may have (the largest published is ~10 MB)


@dataclass(frozen=True)
class SplitFile:
    name: str  # the file name its origin publishes, e.g. "ImageNet_LT_test.txt"
    source: str  # where to get it: shown when it is missing or does not match
    sha256: str = ""  # of the uncompressed bytes; at least one of sha256 / git_sha1
    git_sha1: str = ""  # git blob SHA-1 (``git hash-object FILE``), how a git repository names it
    size: Optional[int] = None  # bytes
    shipped: str = ""  # path under bench/data/splits/ (gzipped) when it ships with the package
    url: str = ""  # a pinned public download, if there is one

    def describe(self) -> str:
        checks = [f"sha256 {self.sha256[:12]}..." if self.sha256 else "",
                  f"git blob {self.git_sha1[:12]}..." if self.git_sha1 else "",
                  f"{self.size:,} bytes" if self.size is not None else ""]
        return ", ".join(c for c in checks if c)


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def mismatch(spec: SplitFile, data: bytes) -> Optional[str]:
    """What about ``data`` differs from ``spec`` (None: it matches)."""
    if spec.size is not None and len(data) != spec.size:
        return f"it has {len(data):,} bytes, expected {spec.size:,}"
    if spec.sha256 and hashlib.sha256(data).hexdigest() != spec.sha256:
        return f"its SHA-256 is not {spec.sha256}"
    if spec.git_sha1 and git_blob_sha1(data) != spec.git_sha1:
        return f"its git blob SHA-1 is not {spec.git_sha1}"
    return None


def read_bytes(spec: SplitFile, path: Optional[Path] = None) -> bytes:
    """The checked bytes of ``spec``: the shipped copy, or the file at ``path``."""
    if spec.shipped and path is None:
        path = SPLITS_DIR / spec.shipped
        try:
            data = gzip.decompress(path.read_bytes())
        except (OSError, EOFError, gzip.BadGzipFile) as err:
            raise BenchError(f"split file '{path}' that ships with the package cannot be read ({reason(err)}); "
                             "reinstall lt-prompt-bench (pip install -e .)") from None
        problem = mismatch(spec, data)
        if problem:
            raise BenchError(f"split file '{path}' that ships with the package is damaged: {problem}; "
                             "reinstall lt-prompt-bench (pip install -e .)")
        return data
    if path is None:
        raise BenchError(f"split file {spec.name}: no path given and it does not ship with the package")
    if not path.exists():
        raise BenchError(f"split file '{path}' is missing; get {spec.name} from {spec.source} and put it there")
    data = read_named_bytes(path, "split file", limit=spec.size or LARGEST_SPLIT,
                            hint=f"replace it with {spec.name} from {spec.source}")
    problem = mismatch(spec, data)
    if problem:
        raise BenchError(f"split file '{path}' does not match the published {spec.name}: {problem}; "
                         f"replace it with the file from {spec.source}")
    return data


def read_text(spec: SplitFile, path: Optional[Path] = None) -> str:
    return read_bytes(spec, path).decode("utf-8")


def download(spec: SplitFile, path: Path, opener=urllib.request.urlopen) -> Path:
    """Fetch ``spec.url`` to ``path``, written only once it matches its checksum."""
    if not spec.url:
        raise BenchError(f"{spec.name} has no public download; get it from {spec.source}")
    limit = spec.size or LARGEST_SPLIT
    if path.is_file() and path.stat().st_size <= limit and mismatch(spec, path.read_bytes()) is None:
        return path
    try:
        with opener(spec.url, timeout=60) as response:
            data = response.read(limit + 1)  # a wrong or hostile server cannot fill the memory
    except (OSError, ValueError) as err:
        raise BenchError(f"could not download {spec.name} from {spec.url}: {reason(err)}; "
                         f"download it by hand and put it at '{path}'") from None
    problem = mismatch(spec, data)
    if problem:
        raise BenchError(f"the download of {spec.name} from {spec.url} does not match: {problem}; "
                         "nothing was written")
    write_atomic(path, lambda f: f.write(data), binary=True)
    return path
