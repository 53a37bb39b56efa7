"""`bench data`: which datasets the protocols read, whether they are on disk, and fetching what can be.

Every dataset that reads files offers ``catalog()`` (named configs), ``source(cfg)``,
``present(cfg)``, ``check(cfg)`` (each split's listed and missing files) and ``download(cfg)``::

    bench data list                               # each dataset, where it is looked for (data roots file), found or not
    bench data list --root ~/data/coop            # ... all of them under one folder instead
    bench data check eurosat --root ~/data/coop   # every file the split lists name; the first missing
    bench data download imagenet_lt --root ~/data/imagenet   # the train list, checked by its git blob SHA-1
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional, Tuple

from bench.config.dataroots import ENV_VAR, HOME_VAR, data_home, data_roots, default_root, root_for, roots_file
from bench.core.errors import BenchError
from bench.core.registry import DATASETS, suggest
from bench.plugins import load_all

from .common import add_plugin_option

SHOWN_MISSING = 5


def entries() -> List[Tuple[str, str, object]]:
    """``(label, registered dataset, config)`` of every dataset that reads files."""
    load_all()
    out = []
    for name in DATASETS.names():
        entry = DATASETS.get(name)
        if hasattr(entry, "catalog"):
            out += [(label, name, cfg) for label, cfg in entry.catalog()]
    return out


def find(name: str, dataset: Optional[str], root: Optional[str]) -> Tuple[str, object, object]:
    """``(label, entry, config)`` for ``bench data check/download NAME [--dataset D] [--root DIR]``."""
    rows = entries()
    label = dataset or name
    hits = [(lbl, reg, cfg) for lbl, reg, cfg in rows if lbl == label and (dataset is None or reg == name)]
    if not hits:
        labels = [lbl for lbl, _, _ in rows]
        raise BenchError(f"unknown dataset '{label}'{suggest(label, labels)} (see `bench data list`: "
                         f"{', '.join(labels)})")
    label, registered, cfg = hits[0]
    return label, DATASETS.get(registered), with_root(registered, cfg, root)[0]


def with_root(registered: str, cfg, root: Optional[str]) -> Tuple[object, str]:
    """``cfg`` with its root from ``--root``, else the data roots file, else its default; and where it came from."""
    if root is not None:
        return dataclasses.replace(cfg, root=root), "--root"
    found = root_for(registered, cfg)
    if found is not None:
        return dataclasses.replace(cfg, root=found[0]), f"{roots_file()}: {found[1]}"
    return dataclasses.replace(cfg, root=default_root(cfg)), f"default: ${HOME_VAR} or {data_home()}"


def cmd_list(args) -> int:
    rows = entries()
    data_roots()  # a roots file that cannot be read is the one line printed, before any output
    width = max(len(label) for label, _, _ in rows)
    print(f"data roots file: {roots_file()} ({'read' if roots_file().is_file() else 'none'}; "
          f"${ENV_VAR} names another)")
    for label, registered, cfg in rows:
        entry = DATASETS.get(registered)
        cfg, origin = with_root(registered, cfg, args.root)
        state = "found" if entry.present(cfg) else "not found"
        print(f"  {label:<{width}}  {state} under {cfg.root} ({origin})")
        print(f"  {'':<{width}}  {entry.source(cfg)}")
    return 0


def cmd_check(args) -> int:
    label, entry, cfg = find(args.name, args.dataset, args.root)
    missing_total = 0
    for split, listed, missing in entry.check(cfg):
        missing_total += len(missing)
        state = "all found" if not missing else f"{len(missing):,} missing, e.g. {', '.join(missing[:SHOWN_MISSING])}"
        print(f"{label} {split}: {listed:,} images listed, {state}")
    if missing_total:
        raise BenchError(f"{label}: {missing_total:,} listed image(s) missing under '{cfg.root}'; "
                         f"get them from {entry.source(cfg)}")
    print(f"{label}: every listed image is under '{cfg.root}'")
    return 0


def cmd_download(args) -> int:
    label, entry, cfg = find(args.name, args.dataset, args.root)
    print(entry.download(cfg))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="datasets: list, check the files on disk, download what is public")
    data = p.add_subparsers(dest="data_command", required=True, parser_class=type(p))
    q = data.add_parser("list", help="each dataset, where it comes from, whether it is found under the root")
    q.add_argument("--root", help="look under this folder instead of each dataset's default root")
    add_plugin_option(q)
    q.set_defaults(func=cmd_list)
    for command, func, text in (("check", cmd_check, "every file the split lists reference exists"),
                                ("download", cmd_download, "fetch what has a public download, checked")):
        q = data.add_parser(command, help=text)
        q.add_argument("name", help="a dataset of `bench data list` (eurosat, imagenet_lt, ...) or coop")
        q.add_argument("--dataset", help="with name coop: which CoOp dataset (eurosat, ...)")
        q.add_argument("--root", help="the dataset root (default: the dataset's default root)")
        add_plugin_option(q)
        q.set_defaults(func=func)
