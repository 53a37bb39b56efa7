"""`bench run`: methods x protocols x seeds, each cell run once (finished cells are skipped)."""
from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from bench import plugins
from bench.core.errors import BenchError, MissingData, message_of
from bench.core.registry import METHODS

from .common import SET_HELP, add_plugin_option, parse_sets, whole


def selections(args) -> list:
    """The selections a command runs (`run`, `plan`, `status`): its own ``--protocol``/``--method``, or
    with ``--report SPEC`` one per column and row setting of the spec (:mod:`bench.cli.report_cells`);
    each is :func:`select`'s triple and its seeds (None: each protocol's), all checked before anything runs."""
    if args.report is None:
        if args.rows is not None:
            raise BenchError("--rows needs --report (it picks the rows of a report spec)")
        if args.method is None and not args.method_needed:
            args.method = ["all"]
        if args.protocol is None or args.method is None:
            raise BenchError(f"give --protocol{' and --method' if args.method is None else ''}, or --report SPEC "
                             "(the cells a report or figure spec reads)")
        return [(*select(args), args.seeds)]
    if args.protocol is not None or args.method is not None:
        raise BenchError("--report picks the protocols and methods itself; leave --protocol and --method out")
    if getattr(args, "feature_cache", 0):
        raise BenchError("--feature-cache makes cells of their own, which the spec does not read; give it in the "
                         "spec's rows instead (set: {train.feature_cache: K})")
    from .report_cells import spec_selections

    parts, notes = spec_selections(args)
    for note in notes:
        print(f"bench: note: {note}", file=sys.stderr)
    return [(*select(part), part.seeds) for part in parts]


def select(args) -> tuple:
    """``(protocol names, a Runner per protocol, methods)`` of one selection: every protocol file
    checked, every method name known, before anything runs."""
    from bench.config.catalog import match_protocols

    names = match_protocols(args.protocol)  # an unknown name is reported before torch is imported
    from bench.config.protocol import load_protocol
    from bench.engine.runner import RunOptions, Runner

    protocol_sets, method_sets = parse_sets(args.set)
    protocols = [load_protocol(name, protocol_sets) for name in names]
    methods = METHODS.names() if args.method == ["all"] else list(dict.fromkeys(args.method))
    for name in methods:
        METHODS.get(name)
    check_method_options(args, protocols, methods, method_sets)
    if not args.results_dir.strip():
        raise BenchError("--results-dir: must not be empty (default: results)")
    options = RunOptions(
        results_dir=Path(args.results_dir),
        device=args.device,
        data_root=getattr(args, "data_root", None),
        progress=not getattr(args, "no_progress", True) and sys.stderr.isatty(),
        threads=getattr(args, "threads", None),
        overrides=with_feature_cache(method_sets, methods, getattr(args, "feature_cache", 0)),
        retry_failed=getattr(args, "retry_failed", False),
        lease_timeout=args.lease_timeout,
        keys_only=getattr(args, "amp_dtype", None) or slurm_target(args),  # the device need not be here
    )
    return names, [Runner(protocol, options) for protocol in protocols], methods


def check_method_options(args, protocols: list, methods: list, method_sets: dict) -> None:
    """Each method's ``--set`` fields on each protocol, before anything runs (an unknown field, a value out
    of range); a report's selection names the spec's rows that set them."""
    from .report_cells import rows_named

    for name in methods:
        if name in method_sets:
            with rows_named(getattr(args, "spec_name", None), getattr(args, "spec_rows", {}).get(name, [])):
                for protocol in protocols:
                    protocol.resolve(name, method_sets[name])


def with_feature_cache(overrides: dict, methods: list, views: int) -> dict:
    """``--feature-cache K``: ``train.feature_cache = K`` for each method that never touches the image
    tower, unless ``--set`` says otherwise for it; the others run on images as usual, with a note naming them."""
    for name in methods if views else []:
        if METHODS.get(name).frozen_image_tower:
            overrides.setdefault(name, {}).setdefault("train", {}).setdefault("feature_cache", views)
    inside = [name for name in methods if views and not METHODS.get(name).frozen_image_tower]
    if inside:
        print(f"bench: note: --feature-cache does not apply to {', '.join(inside)}: they run prompts inside the "
              "image tower, so they train and are evaluated on images as usual", file=sys.stderr)
    return overrides


def cmd_run(args) -> int:
    """Every selection's cells: here, in ``--workers`` processes, or as one SLURM job array."""
    from bench.engine.resources import share_resources
    from bench.launch.workers import merge

    chosen = selections(args)
    names = [name for picked in chosen for name in picked[0]]
    runners = [runner for picked in chosen for runner in picked[1]]
    if args.launcher == "slurm":
        return run_on_slurm(args, chosen, names, runners)
    if args.workers > 1 or args.devices:
        return run_with_workers(args, chosen, names, runners)
    distinct = list(dict.fromkeys(names))  # a report runs a protocol in several selections
    if len(distinct) > 1:
        print(f"bench: running {len(distinct)} protocols: {', '.join(distinct[:4])}"
              f"{', ...' if len(distinct) > 4 else ''}")
    share_resources(runners)
    check_data(runners)
    for _, part, methods, seeds in chosen:
        for runner in part:
            runner.run(methods, seeds, skip_unfit=unfit_skipped(args))
    # each cell once: two selections of a report may share one (the second finds it done)
    return finish(names, runners, merge(runner.cell_outcomes.items() for runner in runners))


def unfit_skipped(args) -> bool:
    """``--method all`` and a report's rows leave out a method that cannot run a protocol (a reason is
    printed); a method named alone fails with its reason."""
    return args.method == ["all"] or args.report is not None


def noting_on_stderr(runners: list) -> list:
    """``runners``, their notes (a method left out) on stderr: `plan` and `status` print tables on stdout."""
    for runner in runners:
        runner.log = lambda message: print(message, file=sys.stderr, flush=True)
    return runners


def check_data(runners, always: bool = False) -> None:
    """Build each protocol's first data (once per shared resources), before any cell runs: a missing
    dataset of the last table cell fails now, not hours in (one protocol's data is built by its own
    preflight, unless ``always``)."""
    distinct = list({id(runner.resources): runner for runner in runners}.values())
    problems = []  # each missing dataset once (MissingData drops repeats), however many protocols read it
    for runner in distinct if always or len(distinct) > 1 else []:
        try:
            runner.check_data()
        except BenchError as err:
            problems += getattr(err, "problems", [message_of(err)])
    if problems:
        raise MissingData(problems)


def finish(names, runners, outcome: Counter) -> int:
    """Cache each protocol's view (the leaderboard then needs no torch), print the summary; exit
    code 1 if a cell failed."""
    from bench.config.catalog import locate, save_view

    from bench.config.overrides import fingerprint

    code = plugins.fingerprint()  # read once: a table has dozens of protocols
    for name, runner in zip(names, runners):
        path, cell = locate(name)
        save_view(path, runner.protocol.view(), cell or "", code, fingerprint(runner.protocol.overrides))
    print(summary(outcome), flush=True)
    return 1 if outcome["failed"] else 0


def launched(args, chosen: list):
    """What other processes run (workers, SLURM tasks): every selection (a report's parts) in one,
    every protocol's data checked here first, and the plugins named in the environment those processes
    inherit (sbatch passes it on)."""
    from bench.engine.resources import share_resources
    from bench.launch.workers import Selection

    runners = [runner for picked in chosen for runner in picked[1]]
    share_resources(runners)
    check_data(runners, always=True)
    plugins.export()
    parts = [Selection(names, methods, seeds, part[0].options, unfit_skipped(args), part[0].protocol.overrides)
             for names, part, methods, seeds in chosen]
    selection = parts[0]
    if len(parts) > 1:
        names = list(dict.fromkeys(name for part in parts for name in part.names))
        methods = list(dict.fromkeys(method for part in parts for method in part.methods))
        selection = Selection(names, methods, None, parts[0].options, unfit_skipped(args), parts=parts)
    return replace(selection, launched_at=time.time())  # --retry-failed: a failure of this launch is not run again


def run_with_workers(args, chosen: list, names: list, runners: list) -> int:
    """``--workers N --devices 0,1``: N processes, one device each, every cell exactly once; the summary
    also when the launch is stopped (SIGTERM, SIGINT) or its workers all died, with a non-zero exit code."""
    from bench.launch.workers import Unfinished, device_list, run_workers

    devices = device_list(args.devices or chosen[0][1][0].options.device, args.workers)
    try:
        return finish(names, runners, run_workers(launched(args, chosen), devices))
    except Unfinished as ended:
        finish(names, runners, ended.outcome)
        return ended.code


def run_on_slurm(args, chosen: list, names: list, runners: list) -> int:
    """``--launcher slurm``: one submitit job array whose tasks pull cells through the leases."""
    import datetime

    from bench.launch.slurm import executor, load_profile, submit, task_device, task_outcomes

    sbatch = dict(parse_option(item) for item in args.slurm_option)
    profile = load_profile(args.slurm_profile, {
        "partition": args.slurm_partition, "time_min": args.slurm_time, "gpus": args.slurm_gpus,
        "cpus": args.slurm_cpus, "array": args.slurm_array, "cluster": args.slurm_cluster,
        **({"sbatch": sbatch} if sbatch else {})})
    profile, _ = task_device(profile, args.device)  # the tasks follow --device; a contradiction is an error
    logs = Path(args.results_dir) / ".slurm" / datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    executor(profile, logs)  # submitit missing or an option it does not know: an error before anything
    jobs = submit(launched(args, chosen), profile, logs, planned_keys(chosen))
    print(f"bench: submitted {len(jobs)} array task(s) (job {jobs[0].job_id.split('_')[0]}); logs in {logs}; "
          f"follow with: bench status {following(args)}", flush=True)
    if profile.cluster is None:
        return 0
    return finish(names, runners, task_outcomes(jobs, logs))  # local or debug: the tasks ran, as a test or dry run


def planned_keys(chosen: list) -> list:
    """The keys of every cell a launch may run, for its note: `bench status` then blames a failed launch
    only for its own cells, not for another configuration of the same protocol and method (every method
    named: sorting out the unfit ones builds them, which a login node need not do)."""
    from bench.engine.eligibility import planned_cells

    return sorted({cell.key for _, runners, methods, seeds in chosen for runner in runners
                   for cell in planned_cells(runner, methods, seeds, skip_unfit=False)})


def slurm_target(args):
    """``--launcher slurm`` plans here and runs on the nodes: ``--device cuda`` needs no GPU on this machine."""
    return "auto" if getattr(args, "launcher", None) == "slurm" else None


def following(args) -> str:
    return f"--report {args.report}" if args.report else f"--protocol {args.protocol}"


def parse_option(item: str) -> tuple:
    key, sep, value = item.partition("=")
    if not sep or not key or not all(c.isalnum() or c in "-_" for c in key):
        raise BenchError(f"--slurm-option '{item}': expected an sbatch option as NAME=VALUE, e.g. account=abc")
    return key, value


def summary(outcome: Counter) -> str:
    """``bench: 9 cells: 6 ran, 2 done before, 1 failed`` (and what was skipped, and why; what a stopped
    launch's workers were in the middle of)."""
    parts = [f"{outcome[k]} {k}" for k in ("ran", "done before", "failed", "failed before", "running elsewhere")
             if outcome[k]] + [f"{outcome['stopped']} stopped mid-run"] * bool(outcome["stopped"])
    hint = "; bench status lists the errors, --retry-failed runs them again" if outcome["failed"] else ""
    return f"bench: {sum(outcome.values())} cells: {', '.join(parts) or 'none'}{hint}"


def add_selection(parser, method_required: bool = True):
    """The arguments that pick cells: `run`, `plan` and `status` take the same; returns the
    "execution" group (`--help` shows the options in groups) for a command's own options."""
    p = parser.add_argument_group("selection", "which cells: protocols x methods x seeds")
    p.add_argument("--protocol", help="protocol name (see `bench list`), YAML path, table name or glob")
    p.add_argument("--method", nargs="+",
                   help="method names, or 'all'" + (" (with --protocol)" if method_required else " (default)"))
    p.add_argument("--report", metavar="SPEC", help="instead of --protocol and --method: the cells a report or "
                                                    "figure spec reads (its rows, settings, columns and seeds)")
    p.add_argument("--rows", choices=["paper", "all"],
                   help="with --report: the paper's rows (default: paper), or its extra rows too (all)")
    p.add_argument("--seeds", type=whole(0, 2**32 - 1), nargs="+", help="seeds (default: the protocol's)")
    p.add_argument("--set", action="append", default=[], metavar="METHOD.FIELD=VALUE", help=SET_HELP)
    add_plugin_option(p)
    p = parser.add_argument_group("execution", "where results go and how cells run")
    p.add_argument("--results-dir", default="results", help="where result JSON files go (default: results)")
    p.add_argument("--device", default="auto", help="auto (GPU when available), cpu, cuda, cuda:1, ... "
                                                    "(it decides the precision, which is part of the key)")
    p.add_argument("--feature-cache", type=whole(0, 1000), default=0, metavar="VIEWS",
                   help="methods that never touch the image tower train on the cached features of VIEWS "
                        "augmented views per image (a variant: its own key and label; default 0, off)")
    p.add_argument("--lease-timeout", type=whole(5, 7 * 24 * 3600), default=600, metavar="SECONDS",
                   help="a cell whose worker has not been heard from for this long is taken over (default: 600)")
    parser.set_defaults(method_needed=method_required)
    return p


def add_parser(sub) -> None:
    parser = sub.add_parser("run", help="run methods on a protocol (finished cells are skipped)")
    p = add_selection(parser)
    p.add_argument("--data-root", help="dataset folder (overrides the protocol's dataset.root)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars: one line per epoch instead")
    p.add_argument("--threads", type=whole(1, 1024), help="CPU threads for torch (default: usable CPUs - 1, at least 1)")
    p.add_argument("--retry-failed", action="store_true", help="run again the cells whose failure is recorded")
    p.add_argument("--workers", type=whole(1, 1024), default=1,
                   help="worker processes on this machine, one device each (default: 1, this process)")
    p.add_argument("--devices", help="the workers' devices, round robin: GPU indices (0,1,2,3) or cpu "
                                     "(default: --device)")
    p.add_argument("--launcher", choices=["local", "slurm"], default="local",
                   help="local (this machine: --workers) or slurm (a submitit job array; pip install -e '.[slurm]')")
    p = parser.add_argument_group("SLURM", "with --launcher slurm: one submitit job array (pip install -e '.[slurm]')")
    p.add_argument("--slurm-profile", metavar="FILE", help="YAML with partition, time_min, gpus, cpus, mem_gb, "
                                                           "array, parallel, sbatch: {option: value}")
    p.add_argument("--slurm-partition", metavar="NAME", help="the partition the tasks run on (default: the cluster's)")
    p.add_argument("--slurm-time", type=whole(1, 60 * 24 * 30), metavar="MINUTES",
                   help="per task; a task at its limit is requeued and resumes (default: 240)")
    p.add_argument("--slurm-gpus", type=whole(0, 64), help="GPUs per task (default: 0 with --device cpu, else 1)")
    p.add_argument("--slurm-cpus", type=whole(1, 1024), help="CPUs per task (default: 8)")
    p.add_argument("--slurm-array", type=whole(1, 100_000), metavar="TASKS", help="array tasks (default: 8)")
    p.add_argument("--slurm-option", action="append", default=[], metavar="NAME=VALUE",
                   help="an extra sbatch option, e.g. account=abc or qos=high (repeatable)")
    p.add_argument("--slurm-cluster", choices=["local", "debug"],
                   help="run the array with submitit's local (subprocesses) or debug (this process) executor")
    parser.set_defaults(func=cmd_run)
