"""`bench run`: methods x protocols x seeds, each cell run once (finished cells are skipped)."""
from __future__ import annotations

import sys
from pathlib import Path

from bench.core.errors import BenchError
from bench.core.registry import METHODS

from .common import add_plugin_option, parse_overrides, whole


def cmd_run(args) -> int:
    from bench.config.catalog import locate, match_protocols, save_view

    names = match_protocols(args.protocol)  # an unknown name is reported before torch is imported
    from bench.config.protocol import load_protocol
    from bench.engine.runner import RunOptions, Runner
    from bench.plugins import fingerprint

    protocols = [load_protocol(name) for name in names]  # every file is checked before anything runs
    methods = METHODS.names() if args.method == ["all"] else list(dict.fromkeys(args.method))
    for name in methods:
        METHODS.get(name)
    if not args.results_dir.strip():
        raise BenchError("--results-dir: must not be empty (default: results)")
    options = RunOptions(
        results_dir=Path(args.results_dir),
        device=args.device,
        data_root=args.data_root,
        progress=not args.no_progress and sys.stderr.isatty(),
        threads=args.threads,
        overrides=parse_overrides(args.set),
    )
    runners = [Runner(protocol, options) for protocol in protocols]
    if len(runners) > 1:
        print(f"bench: running {len(runners)} protocols: {', '.join(names[:4])}{', ...' if len(names) > 4 else ''}")
        for runner in runners:  # a missing dataset of the last table cell fails now, not hours in
            runner.check_data()
    for name, runner in zip(names, runners):
        runner.run(methods, args.seeds, skip_unfit=args.method == ["all"])
        path, cell = locate(name)
        save_view(path, runner.protocol.view(), cell or "", fingerprint())  # the leaderboard need not import torch
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run methods on a protocol (finished cells are skipped)")
    p.add_argument("--protocol", required=True, help="protocol name (see `bench list`) or YAML path")
    p.add_argument("--method", required=True, nargs="+", help="method names, or 'all'")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (default: the protocol's)")
    p.add_argument("--set", action="append", default=[], metavar="METHOD.FIELD=VALUE",
                   help="override a method option or training field, e.g. coop.n_ctx=4, "
                        "coop.train.lr=0.01 (repeatable)")
    p.add_argument("--results-dir", default="results", help="where result JSON files go (default: results)")
    p.add_argument("--data-root", help="dataset folder (overrides the protocol's dataset.root)")
    p.add_argument("--device", default="auto", help="auto (GPU when available), cpu, cuda, cuda:1, ...")
    p.add_argument("--no-progress", action="store_true", help="no progress bars: one line per epoch instead")
    p.add_argument("--threads", type=whole(1, 1024), help="CPU threads for torch (default: usable CPUs - 1, at least 1)")
    add_plugin_option(p)
    p.set_defaults(func=cmd_run)
