"""Where the datasets live on this machine: one user file maps dataset names to folders, so every
protocol finds ImageNet, the CoOp datasets and Places wherever they are, without ``--data-root``.

The file is ``$BENCH_DATA_ROOTS`` if set, else ``$XDG_CONFIG_HOME/lt-prompt-bench/data.yaml``
(``~/.config/lt-prompt-bench/data.yaml``)::

    coop: /datasets/coop                 # every CoOp dataset (CoOp's $DATA layout: imagenet/, eurosat/, ...)
    imagenet: /fast/imagenet-coop        # one CoOp dataset elsewhere (a name of `bench data list`)
    imagenet_lt: /datasets/ILSVRC2012
    places_lt: /datasets/places365_standard
    cifar100_lt: /datasets/cifar

The file is read with a size limit (a device, FIFO or folder in its place is an error), and a key that
names no dataset (a typo: ``fgvc_aircarft``) is a warning naming the known keys.

A dataset block's own ``root`` (in the YAML, or ``--set protocol.dataset.root=...``) and ``--data-root``
win over the file; the file wins over the dataset's default, a folder under ``$BENCH_DATA`` (else
``$XDG_DATA_HOME/lt-prompt-bench``, ``~/.local/share/lt-prompt-bench``) whatever folder a command runs in
(CoOp's datasets under ``coop/``, CIFAR-100 under ``cifar100/``, ...)::

    root_for("coop", CoOpConfig(dataset="eurosat"))   # ("/datasets/coop", "coop") with the file above
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from bench.core.errors import BenchError, warn
from bench.core.namedfiles import read_named_text
from bench.core.registry import DATASETS, fill_registries, suggest
from bench.core.safeyaml import load_yaml

ENV_VAR = "BENCH_DATA_ROOTS"
HOME_VAR = "BENCH_DATA"
_read: Dict[Tuple[str, int, int], Dict[str, str]] = {}  # (path, mtime, size) -> its mapping


def roots_file() -> Path:
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config) / "lt-prompt-bench" / "data.yaml"


def data_roots() -> Dict[str, str]:
    """The file's ``{dataset name: folder}``; {} when there is none (a named file that is missing is an error)."""
    path = roots_file()
    try:
        stat = path.stat()
    except OSError:
        if os.environ.get(ENV_VAR):
            raise BenchError(f"${ENV_VAR} names '{path}', which does not exist; create it (dataset: folder per line) "
                             f"or unset ${ENV_VAR}") from None
        return {}
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _read:
        _read[key] = parse_roots(path)
        warn_unknown_keys(path, _read[key])
    return _read[key]


def parse_roots(path: Path) -> Dict[str, str]:
    text = read_named_text(path, "data roots file", hint="it must be a small YAML file, e.g. "
                           "'places_lt: /datasets/places365_standard'")
    data = load_yaml(text, f"data roots file '{path}'")
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in data.items()):
        raise BenchError(f"data roots file '{path}': expected a mapping of dataset name to folder, "
                         "e.g. 'places_lt: /datasets/places365_standard'")
    # a relative folder is relative to the file, wherever the command runs (join keeps an absolute one)
    return {name: os.path.join(path.parent, os.path.expanduser(folder)) for name, folder in data.items()}


def known_keys() -> List[str]:
    """The names a data roots file may map: each registered dataset with a ``root``, and the datasets its
    catalog offers (each CoOp dataset: ``eurosat``, ``fgvc_aircraft``, ...)."""
    fill_registries()
    names = set()
    for name in DATASETS.names():
        entry = DATASETS.get(name)
        if "root" in getattr(getattr(entry, "Config", None), "__dataclass_fields__", {}):
            names.add(name)
        if hasattr(entry, "catalog"):
            names.update(label for label, _ in entry.catalog())
    return sorted(names)


def warn_unknown_keys(path: Path, roots: Dict[str, str]) -> None:
    """A key no dataset looks up (a typo) would be ignored without a word: say so, once per file version."""
    if not roots:
        return
    known = known_keys()
    for name in (name for name in roots if name not in known):
        warn(f"data roots file '{path}': '{name}' is not a dataset name, so its folder is not used"
             f"{suggest(name, known)} (known: {', '.join(known)})")


def root_for(registered: str, cfg) -> Optional[Tuple[str, str]]:
    """``(folder, the file's key that gave it)`` for a dataset config: its own name (a CoOp dataset's
    ``dataset``) first, then the registered dataset's; None when the file names neither."""
    if not hasattr(cfg, "root"):
        return None
    roots = data_roots()
    for key in (getattr(cfg, "dataset", None), registered):
        if isinstance(key, str) and key in roots:
            return roots[key], key
    return None


def data_home() -> Path:
    """The folder the datasets' default roots are under: ``$BENCH_DATA``, else ``lt-prompt-bench`` in
    ``$XDG_DATA_HOME`` (``~/.local/share``); never the folder a command runs in."""
    if os.environ.get(HOME_VAR):
        return Path(os.environ[HOME_VAR]).expanduser().absolute()
    share = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(share).expanduser().absolute() / "lt-prompt-bench"


def default_root(cfg) -> str:
    """A dataset config's default root (``data/coop``) as a folder under :func:`data_home` (``coop``);
    an absolute default is kept."""
    root = Path(cfg.root).expanduser()
    if root.is_absolute():
        return str(root)
    parts = root.parts[1:] if root.parts[:1] == ("data",) and len(root.parts) > 1 else root.parts
    return str(data_home().joinpath(*parts))
