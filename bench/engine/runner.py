"""Runs (protocol, method, seed) cells: build, train, evaluate, store.

The whole plan is checked before the first cell (recipes, seeds, results
folder, data, backbone, a dry build of each method); finished cells are
skipped; the backbone and data are built once and shared::

    runner = Runner(load_protocol("smoke"), RunOptions(results_dir=Path("results")))
    records = runner.run(["coop", "zeroshot"], seeds=[1, 2, 3])
"""
from __future__ import annotations

import dataclasses
import datetime
import platform
import random
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import open_clip
import torch

from bench.config.overrides import reference
from bench.config.protocol import Protocol, check_seeds
from bench.config.recipes import EVAL_FIELDS, Resolved
from bench.core.coerce import identity
from bench.core.errors import BenchError, MissingInput, Unfit, message_of, one_line
from bench.core.registry import METHODS
from bench.data import TransformedDataset
from bench.model.transforms import build_transforms, describe
from bench.records.headline import headline_metric
from bench.records.schema import cell_key
from .evaluation import Evaluation, LabelSpaces, class_text_features, describe_evaluation, per_class_counts, summarise
from . import eligibility, stages
from .fitting import fit_own
from .loading import loader_workers
from .resources import ProtocolResources
from .lease import STALE_AFTER, acquire, holder_label, read_lease
from .metrics import evaluate, group_counts
from .nospace import DiskFull, disk_full, stop_when_full, stopped_at
from .store import ResultStore
from .train import EPOCH_METRICS, precision_name, predict, train
from .usage import default_threads, peak_memory, per_second, reset_peak, resolve_device


@dataclass
class Cell:
    method: str
    resolved: Resolved  # options and training recipe
    seed: int
    key: str
    identity: dict  # the method's part of the key (options, input file hashes), recorded as config.method


@dataclass
class RunOptions:
    results_dir: Path = Path("results")
    device: str = "auto"
    data_root: Optional[str] = None
    progress: bool = False  # bars on a terminal; otherwise one line per epoch
    threads: Optional[int] = None  # CPU threads for torch; None: default_threads()
    # method name -> {field: value, "train": {field: value}}, on top of the protocol's
    overrides: Dict[str, dict] = field(default_factory=dict)
    retry_failed: bool = False  # run cells whose failure is recorded again
    lease_timeout: float = STALE_AFTER  # seconds without a heartbeat before a cell's lease is taken over
    keys_only: Optional[str] = None  # plan/status: the device need not be here; "amp" is this (auto, bf16, fp16)
    wait: float = 0.0  # > 0: try cells held by other workers again after this many seconds, until done
    start: float = 0.0  # begin this far into the plan (0 to 1): workers start apart, to meet less
    cpu_share: int = 1  # processes of this machine that split its CPUs (bench run --workers)


def say(message: str) -> None:
    print(message, flush=True)  # cluster logs are files: unflushed lines arrive only at the end


def headline(record: dict) -> str:
    """The metric a log line shows: overall accuracy, or HM for base-to-new protocols."""
    metric = headline_metric(record["metrics"], record.get("column_order", ()))
    return f"{metric} {record['metrics'][metric]:.2f}" if metric else "no headline metric"


def method_identity(name: str, options) -> dict:
    """A method's options (less machine-specific ones such as a file's path), and under ``inputs`` what
    else decides its results (that file's hash)."""
    fields = identity(options)
    inputs = METHODS.get(name).key_inputs(options)
    return {**fields, "inputs": inputs} if inputs else fields


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Runner:
    def __init__(self, protocol: Protocol, options: RunOptions, log: Callable[[str], None] = say):
        self.protocol = protocol
        self.options = options
        self.store = ResultStore(options.results_dir)
        self.device = resolve_device(options.device, present=options.keys_only is None)
        self.log = log
        # the backbone, data and feature caches: shared with runners of the same protocol (share_resources)
        self.resources = ProtocolResources(protocol, options.data_root, self.device, log)
        # (protocol, method, key, seed) -> ran, done before, failed, failed before or running elsewhere
        self.cell_outcomes: Dict[tuple, str] = {}

    @property
    def outcome(self) -> Counter:
        """How many cells each outcome had."""
        return Counter(self.cell_outcomes.values())

    def plan(self, methods: List[str], seeds: Optional[List[int]] = None) -> List[Cell]:
        """Validate everything up front and list the cells to run."""
        for name in self.options.overrides:
            if name not in stages.with_stages(methods):  # a stage a method starts from is run too
                raise BenchError(f"--set names method '{name}', which is not being run")
        seeds = check_seeds(seeds, "--seeds") if seeds is not None else self.protocol.seeds
        cells = []
        for name in methods:
            resolved = self.protocol.resolve(name, self.options.overrides.get(name))
            cells.extend(stages.planned(self, name, resolved, seeds))  # the stages it starts from first
        return list({(c.method, c.key, c.seed): c for c in cells}.values())  # a stage of several: once

    def make_cells(self, name: str, resolved: Resolved, seeds: List[int],
                   after: Optional[dict] = None) -> List[Cell]:
        """``name``'s cells with ``resolved``, one per seed; ``after``: keys of the stages they start from."""
        recipe = resolved.train_identity()
        for field_name in ("precision", "eval_precision"):  # what runs: "amp" is fp32 on a CPU
            if field_name in recipe:
                recipe[field_name] = precision_name(self.device, recipe[field_name], self.options.keys_only)
        ident = method_identity(name, resolved.keyed_options)  # hashes input files once per method
        ident = {**ident, "after": after} if after else ident
        key = cell_key(self.protocol.identity(), name, ident, recipe, METHODS.code_version(name))
        return [Cell(name, resolved, seed, key, ident) for seed in seeds]

    def preflight(self, cells: List[Cell], skip_unfit: bool = False) -> List[Cell]:
        """Build what every cell needs, and each method once, before the first cell runs: a bad
        data root, weights file or method option fails now, not after hours of finished cells.
        A method that cannot classify some evaluation's classes is an error, or (``skip_unfit``,
        for ``--method all``) left out with a note."""
        spaces, backbone = self.spaces(cells[0].seed if cells else 0), self.backbone()  # data first: cheaper to find wrong
        for ev in spaces.evaluations:
            group_counts(self.protocol.eval.group_by, ev.info.train_counts)
        with torch.random.fork_rng():
            unfit = {c.key for c in {c.key: c for c in cells}.values()
                     if not self.fits(c, backbone, spaces, skip_unfit)}
        return [c for c in cells if c.key not in unfit]

    def fits(self, cell: Cell, backbone, spaces: LabelSpaces, skip_unfit: bool) -> bool:
        """Whether ``cell``'s method builds (it may need a file only the user has) and classifies every
        evaluation; if not, the error, or with ``skip_unfit`` a note and False."""
        try:
            method = METHODS.get(cell.method)(backbone, spaces.train_info, cell.resolved.options)
        except MissingInput as err:
            return self.left_out(cell, str(err), err, skip_unfit)
        except Unfit as err:
            return self.left_out(cell, str(err), Unfit(f"{cell.method} cannot run on {self.shown_name}: {err}"),
                                 skip_unfit)
        for ev in spaces.evaluations:
            try:
                method.use_label_space(ev.info)
            except BenchError as err:
                why = f"evaluation '{ev.name}' ({describe_evaluation(ev)}): {err}"
                return self.left_out(cell, why, Unfit(f"{cell.method} cannot run on {self.shown_name}: {why}"),
                                     skip_unfit)
        return True

    @property
    def shown_name(self) -> str:
        """The protocol as logs name it: with its overrides (``places_lt [backbone.model=RN50]``)."""
        return reference(self.protocol.name, self.protocol.overrides)

    def left_out(self, cell: Cell, why: str, err: BenchError, skip_unfit: bool) -> bool:
        if not skip_unfit:
            raise err
        self.log(f"bench: note: {cell.method} is left out of {self.shown_name}: {why}")
        return False

    def run(self, methods: List[str], seeds: Optional[List[int]] = None, skip_unfit: bool = False) -> List[dict]:
        """Every cell not finished, failed (unless ``retry_failed``) or held by another worker; the
        finished records.  ``self.outcome`` counts what happened to each cell.  With ``wait`` set,
        cells held elsewhere are tried again every ``wait`` seconds until they are done (a holder that
        dies leaves a stale lease, which is then taken over)."""
        cells = self.plan(eligibility.with_recipes(self, methods, skip_unfit), seeds)  # no recipe: a note
        self.store.check_writable(self.protocol.name)
        torch.set_num_threads(self.options.threads or default_threads())
        cells = self.preflight(cells, skip_unfit)
        first = int(self.options.start * len(cells)) % len(cells) if cells else 0
        pending = list(enumerate(cells[first:] + cells[:first], 1))
        records = []
        announced = set()  # cells already logged as held elsewhere: a waiting worker says it once
        while pending:
            held = []
            for i, cell in pending:
                tag = f"[{i}/{len(cells)}] {self.protocol.name} / {cell.method} / seed {cell.seed}"
                try:
                    outcome, record = self.run_leased(cell, tag, quiet=i in announced)
                except DiskFull as err:  # every later cell would fail the same way: stop, saying where
                    raise stopped_at(err, tag, self.outcome) from None
                if outcome == "running elsewhere" and self.options.wait:
                    held.append((i, cell))
                    announced.add(i)
                    continue
                self.cell_outcomes[(self.protocol.name, cell.method, cell.key, cell.seed)] = outcome
                records += [record] if record is not None else []
            if held:
                time.sleep(self.options.wait)
            pending = held
        return records

    def run_leased(self, cell: Cell, tag: str, quiet: bool = False) -> Tuple[str, Optional[dict]]:
        """One cell, exactly once across workers: skipped when done, failed before or held elsewhere;
        otherwise run under its lease, a failure recorded (JSON with the one-line error; a traceback file).
        Returns what happened (a key of ``self.outcome``) and the finished record; ``quiet``: no line
        for a cell still held elsewhere."""
        where = (self.protocol.name, cell.method, cell.key, cell.seed)
        done = self.finished(cell, tag)
        if done is not None:
            return "done before", done
        failed = self.store.failure(*where)
        if failed is not None and not self.options.retry_failed:
            self.log(f"{tag}: failed before ({failed.get('error')}); skipped, {self.store.failed_skip_note}")
            return "failed before", None
        waiting = stages.run_stages_first(self, cell, tag)  # a two-stage method's stage 1, done once
        if waiting is not None:
            return waiting, None
        lease_file = self.store.lease_path(*where)
        with stop_when_full(lease_file, self.store.root):
            lease = acquire(lease_file, self.options.lease_timeout)
        if lease is None:
            if not quiet:
                holder = read_lease(lease_file)
                since = f" since {holder.get('since')}" if holder else ""
                self.log(f"{tag}: running elsewhere ({holder_label(holder)}{since}), skipped")
            return "running elsewhere", None
        with lease:
            done = self.finished(cell, tag)  # it may have finished while the lease was being taken
            if done is not None:
                return "done before", done
            try:
                record = self.run_cell(cell, tag)
            except Exception as err:  # noqa: BLE001  (a cell's failure must not stop the others)
                full = disk_full(err, self.store.checkpoint_path(*where), self.store.root)
                if full is not None:  # not the cell's fault: no failure record, it resumes later
                    raise full from None
                self.failed(cell, tag, err)
                return "failed", None
            path = self.store.write(record)
            self.store.clear_failure(*where)
        self.log(f"{tag}: {headline(record)}, {record['seconds']:.1f}s -> {path}")
        return "ran", record

    def finished(self, cell: Cell, tag: str) -> Optional[dict]:
        done = self.store.load(self.protocol.name, cell.method, cell.key, cell.seed)
        if done is not None:
            self.log(f"{tag}: done already, skipped ({headline(done)})")
        return done

    def failed(self, cell: Cell, tag: str, err: Exception) -> None:
        error = one_line(f"{type(err).__name__}: {message_of(err)}")
        path = self.store.write_failure(self.protocol.name, cell.method, cell.key, cell.seed, error,
                                        traceback.format_exc())
        self.log(f"{tag}: failed: {error} (traceback: {path.with_name(path.stem + '.traceback.txt')})")

    def check_data(self) -> None:
        self.resources.check_data()

    def spaces(self, seed: int) -> LabelSpaces:
        return self.resources.spaces(seed)

    def backbone(self):
        return self.resources.backbone()

    def run_cell(self, cell: Cell, tag: str = "") -> dict:
        start = time.time()
        proto, recipe = self.protocol, cell.resolved.train
        backbone = self.backbone()
        reset_peak(self.device)
        seed_everything(cell.seed)  # after everything shared, so only the seed decides the method's init
        train_tf, test_tf = build_transforms(proto.transforms, backbone.image_size)
        spaces = self.spaces(cell.seed)
        method = METHODS.get(cell.method)(backbone, spaces.train_info, cell.resolved.options).to(self.device)
        method.prepare(TransformedDataset(spaces.train, test_tf))
        fit_own(self, method, spaces.train, recipe, cell.seed)  # a method that fits itself (LFA), on frozen views
        stages.start_from_stages(self, cell, method)  # stage 2 from stage 1's final state (bench.engine.stages)
        checkpoint = self.store.checkpoint_path(proto.name, cell.method, cell.key, cell.seed)
        train_set = TransformedDataset(spaces.train, train_tf)
        if recipe.feature_cache and method.trains:
            train_set = self.cached(recipe, spaces.train, train_tf, recipe.feature_cache, "train", cell.seed)
        method.features_given = bool(recipe.feature_cache)  # after prepare(), which reads images
        after_epoch = self.epoch_evaluation(method, spaces, recipe, test_tf, cell.seed)
        summary = train(
            method, train_set, recipe, cell.seed, self.device,
            checkpoint=checkpoint, key=cell.key, progress=self.options.progress,
            log=None if self.options.progress else (lambda line: self.log(f"{tag}: {line}")),
            workers=self.loader_workers(recipe), after_epoch=after_epoch,
        )
        curve = summary.pop(EPOCH_METRICS, None)  # a field of its own in the record
        if spaces.new_train is not None:
            method.adapt_to_new(TransformedDataset(spaces.new_train, test_tf))
        evaluating = time.time()
        results = self.evaluate_all(method, spaces, recipe, test_tf, cell.seed)
        tested = per_second(sum(len(ev.test) for ev in spaces.evaluations), time.time() - evaluating)
        result = summarise(spaces, results, proto.means)
        extras = {**({EPOCH_METRICS: curve} if proto.eval.per_epoch else {}),
                  **({"text_features": class_text_features(method, spaces)} if proto.eval.text_features else {})}
        return {
            "key": cell.key,
            "protocol": proto.name,
            "method": cell.method,
            "seed": cell.seed,
            "code_version": METHODS.code_version(cell.method),
            "origin": METHODS.origin(cell.method),  # built-in, or the plugin (file or module) it came from
            "config": {
                "protocol": proto.identity(),
                "method": cell.identity,
                "train": {k: v for k, v in dataclasses.asdict(recipe).items()
                          if cell.resolved.trains or k in EVAL_FIELDS},
                "sources": cell.resolved.sources,
            },
            **result,
            "class_train_counts": per_class_counts(spaces.evaluations),  # the long-tail curve's x
            # Table columns in the protocol's order (JSON objects are written sorted): evaluations, group means.
            "column_order": [*(ev.name for ev in spaces.evaluations),
                             *dict.fromkeys(f"{ev.group}_mean" for ev in spaces.evaluations if ev.group), *proto.means],
            "evaluations": {ev.name: {"classes": len(ev.classes), "group": ev.group, **res}
                            for ev, res in zip(spaces.evaluations, results)},
            "train": summary,
            # throughput and memory: epoch wall times and train images/s are in "train"
            "usage": {"eval_images_per_second": tested, **peak_memory(self.device),
                      "trainable_parameters": sum(p.numel() for p in method.trainable_parameters())},
            "setup": self.setup(backbone, method, recipe, train_tf, test_tf),
            "method_state": method.record_fields(),
            # numbers the method reports of itself: report specs read them as metrics, leaderboards do not
            "method_metrics": method.record_metrics(),
            **extras,  # protocol.eval's opt-in extras, for figures
            "seconds": time.time() - start,
            "env": {
                "torch": torch.__version__,
                "open_clip": open_clip.__version__,
                "python": platform.python_version(),
                "device": str(self.device),
                "threads": torch.get_num_threads(),
            },
            "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }

    def evaluate_all(self, method, spaces: LabelSpaces, recipe, test_tf, seed: int) -> List[dict]:
        """:meth:`evaluate` of every evaluation, in the protocol's order."""
        return [self.evaluate(method, ev, recipe, test_tf, i, seed) for i, ev in enumerate(spaces.evaluations)]

    def epoch_evaluation(self, method, spaces: LabelSpaces, recipe, test_tf,
                         seed: int) -> Optional[Callable[[int], dict]]:
        """With ``protocol.eval.per_epoch``, what training calls after each epoch: every evaluation scored
        as the final one is (the metrics of :func:`summarise`), then the method back on its training
        classes in train mode, so training goes on as without it.  A transductive method's new-class pass
        (``adapt_to_new``, LAMP's) runs once, after training: its per-epoch new-class numbers are from
        before it."""
        if not self.protocol.eval.per_epoch:
            return None

        def after_epoch(epoch: int) -> dict:
            results = self.evaluate_all(method, spaces, recipe, test_tf, seed)
            method.use_label_space(method.data)
            method.train()
            return summarise(spaces, results, self.protocol.means)["metrics"]
        return after_epoch

    def evaluate(self, method, ev: Evaluation, recipe, test_tf, index: int, seed: int) -> dict:
        method.use_label_space(ev.info)
        test = TransformedDataset(ev.test, test_tf)
        if recipe.feature_cache:
            test = self.cached(recipe, ev.test, test_tf, 1, f"evaluation {index}", seed)
        logits, labels = predict(
            method, test, method.eval_batch_size or self.protocol.eval.batch_size,
            self.device,
            precision=recipe.eval_precision, num_workers=self.loader_workers(recipe), progress=self.options.progress,
        )
        counts = group_counts(self.protocol.eval.group_by, ev.info.train_counts)
        return evaluate(logits, labels, counts, self.protocol.eval.many_threshold, self.protocol.eval.few_threshold)

    def cached(self, recipe, dataset, transform, views: int, split: str, seed: int):
        """``dataset`` as the frozen features of ``views`` views under ``transform`` (train.feature_cache)."""
        return self.resources.cached(recipe.eval_precision, dataset, transform, views, split, seed,
                                     self.loader_workers(recipe))

    def loader_workers(self, recipe) -> int:
        return loader_workers(recipe.num_workers, self.device, self.options.cpu_share)

    def setup(self, backbone, method, recipe, train_tf, test_tf) -> dict:
        """What actually ran, beyond the config: activation, precision, transforms."""
        trained = method.trains and bool(method.trainable_parameters())
        return {
            "activation": backbone.activation,
            "image_size": backbone.image_size,
            "precision": {
                "train": precision_name(self.device, recipe.precision) if trained else None,
                "eval": precision_name(self.device, recipe.eval_precision),
            },
            "transforms": {"train": describe(train_tf) if trained else None, "test": describe(test_tf)},
            "group_by": self.protocol.eval.group_by,
            "loader_workers": self.loader_workers(recipe),
        }
