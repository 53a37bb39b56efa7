"""Protocol YAML files: loading, validation and identity (for result hashing).

A protocol is a dataset, a frozen backbone, the image transforms, the
evaluation and a *family* that picks each method's training recipe from its
card (see :mod:`bench.config.recipes`)::

    protocol = load_protocol("cifar100_lt_ir100")
    protocol.resolve("coop").train.lr     # 0.001: MDPR's CoOp recipe for the lt family
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple


from bench import __version__
from bench.core.coerce import ENV, check_fields, from_dict, identity
from bench.core.errors import BenchError, ConfigError
from bench.core.namedfiles import read_named_text
from bench.core.safeyaml import load_yaml
from bench.core.registry import BACKBONES, DATASETS, METHODS, fill_registries, suggest
from .dataroots import default_root, root_for
from .catalog import available_protocols, locate, protocols_dir, resolve_path  # noqa: F401  (re-exported)
from .grid import expand
from .overrides import apply_overrides, describe
from .recipes import FAMILIES, Resolved, TrainRecipe, resolve
from .transforms import TransformConfig, transform_identity


# Reference training-count profiles that some papers group classes by, whatever the run's own
# counts, as (classes, largest class, imbalance ratio) of an exponential profile: LIFT
# (shijxcs/LIFT:trainer.py) groups CIFAR-100-LT IR10 and IR50 classes into many/medium/few by the
# IR100 counts.  bench.engine.metrics computes the counts.
GROUP_PROFILES: Dict[str, Tuple[int, int, float]] = {
    "cifar100_lt_ir100": (100, 500, 100.0),
}
Classes = Literal["all", "base", "new"]


@dataclass
class EvalPlan:
    """One evaluation as a protocol declares it (the dataset is built by the runner)."""

    name: str
    classes: Classes = "all"
    group: str = ""  # evaluations of a group are averaged into "<group>_mean" (xd, dg)
    label: str = field(default="", metadata={"identity": False})  # what tables head its column (Caltech101)


@dataclass
class EvalConfig:
    batch_size: int = field(default=128, metadata={**ENV, "min": 1})
    # Many-shot: more than `many_threshold` training images; few-shot: fewer
    # than `few_threshold`; medium-shot: everything in between.
    many_threshold: int = 100
    few_threshold: int = 20
    # Which training counts define the groups: the protocol's own ("own"), or a
    # reference profile, e.g. LIFT groups CIFAR-100-LT IR10/IR50 classes by the
    # IR100 counts ("cifar100_lt_ir100"), which gives its IR10 table a few column.
    group_by: Literal[tuple(["own", *GROUP_PROFILES])] = "own"  # type: ignore[valid-type]
    # Opt-in extras of the record, for figures: every evaluation's metrics after each training epoch
    # (``epoch_metrics``; one more evaluation per epoch), and each evaluation's class text features
    # after the final one (``text_features``).
    per_epoch: bool = False
    text_features: bool = False

    def validate(self, where: str) -> None:
        if self.few_threshold > self.many_threshold:
            raise ConfigError(f"{where}.few_threshold", "must not exceed many_threshold")

    def identity(self) -> dict:
        """The fields that decide results, the opt-in extras only when on: a run with one is a cell
        of its own, and the keys of results made before the extras existed stay as they were."""
        return {name: value for name, value in identity(self).items()
                if name not in OPT_IN_EXTRAS or value}


OPT_IN_EXTRAS = ("per_epoch", "text_features")  # EvalConfig fields left out of the key while False


@dataclass
class EvaluationSpec:
    """A declared evaluation: its plan, and the dataset whose test set it scores (None: the
    training dataset's own).  ``inherits`` marks a dataset block merged onto the training one,
    so ``--data-root`` moves both."""

    plan: EvalPlan
    dataset_name: Optional[str] = None
    dataset: Any = None
    inherits: bool = False

    def identity(self) -> dict:
        out = identity(self.plan)  # a label changes how tables head it, not what it scores
        if self.dataset_name is not None:
            out["dataset"] = {"name": self.dataset_name, **identity(self.dataset)}
        return out


@dataclass
class Protocol:
    name: str
    description: str
    family: str  # a key of recipes.FAMILIES: picks each method's recipe from its card
    dataset_name: str
    dataset: Any  # the dataset's Config dataclass
    backbone_name: str
    backbone: Any  # the backbone's Config dataclass
    transforms: TransformConfig
    train: Dict[str, Any]  # TrainRecipe fields set for every method (checked, partial)
    eval: EvalConfig
    seeds: List[int]
    methods: Dict[str, dict]  # method name -> its block: options, and optionally "train"
    path: Optional[Path] = None
    evaluations: List[EvaluationSpec] = field(default_factory=list)  # empty: the dataset's default
    # extra averages of evaluations' accuracy, recorded as metrics: name -> evaluation names (a paper's
    # own average, e.g. LAMP Table 3's "Avg. (w/o Source)", which includes the source)
    means: Dict[str, List[str]] = field(default_factory=dict)
    label: str = ""  # how tables head its column ("CIFAR-100-LT, IR 100"); empty: its name
    overrides: Dict[str, Any] = field(default_factory=dict)  # dotted path -> value, from --set protocol.PATH=VALUE

    def identity(self) -> dict:
        """Everything protocol-wide that determines results (no paths, no worker
        counts); each method's training recipe joins it in the cell key."""
        return {
            "name": self.name,
            "family": self.family,
            "dataset": {"name": self.dataset_name, **identity(self.dataset)},
            "backbone": {"name": self.backbone_name, **identity(self.backbone)},
            "transforms": transform_identity(self.transforms, self.planned_setup()["image_size"]),
            "eval": self.eval.identity(),
            **({"evaluations": [e.identity() for e in self.evaluations]} if self.evaluations else {}),
            **({"means": self.means} if self.means else {}),
        }

    def view(self) -> dict:
        """What the leaderboard needs, as plain JSON (``bench.config.catalog`` caches it): name,
        description, identity, the methods loaded, each one's current options and recipe here, and the
        code version of each method whose version is not bench's own (a plugin's, or a built-in's with
        a ``code_revision``; results of other versions of its code are not current)."""
        references = {}
        for name in METHODS.names():
            try:
                resolved = self.resolve(name)
            except BenchError:  # a card that does not fit this protocol: its rows keep bare labels
                continue
            references[name] = {"": dataclasses.asdict(resolved.options), "train": resolved.train_identity()}
        versions = {name: METHODS.code_version(name) for name in METHODS.names()}  # each class checked once
        view = {"name": self.name, "label": self.label, "description": self.description, "identity": self.identity(),
                "overrides": self.overrides,
                "metric_labels": {e.plan.name: e.plan.label for e in self.evaluations if e.plan.label},
                "references": references, "seeds": list(self.seeds), "methods": METHODS.names(),
                "code_versions": {name: v for name, v in versions.items() if v != __version__}}
        return json.loads(json.dumps(view))

    def planned_setup(self) -> dict:
        """The backbone's input size and activation, from its config (nothing is loaded)."""
        return BACKBONES.get(self.backbone_name).planned_setup(self.backbone)

    def resolve(self, method: str, cli: Optional[dict] = None) -> Resolved:
        """``method``'s options and training recipe here, ``--set`` values on top."""
        return resolve(METHODS.get(method), self.family, self.train, self.methods.get(method), cli, method,
                       getattr(self.dataset, "shots", None), getattr(self.dataset, "coop_name", None))


NAME_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a name, or a grid cell's parts joined by '/'
MAX_SEED = 2**32 - 1  # numpy's limit; keeps every per-epoch seed inside torch's range


def check_seeds(seeds: Any, where: str) -> List[int]:
    """A non-empty list of distinct integers in [0, MAX_SEED]."""
    ok = isinstance(seeds, list) and seeds and all(
        isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in seeds
    )
    if not ok:
        raise ConfigError(where, f"expected a non-empty list of integers from 0 to {MAX_SEED}, got {seeds!r}")
    return list(dict.fromkeys(seeds))


_TOP_LEVEL = ("name", "label", "description", "family", "dataset", "backbone", "transforms", "train", "eval",
              "evaluations", "means", "seeds", "methods", "grid")
_EVALUATION_FIELDS = ("name", "dataset", "classes", "group", "label")


def load_protocol(name_or_path: str, overrides: Optional[Dict[str, Any]] = None) -> Protocol:
    """A protocol by name (``cifar100_lt_ir100``, a grid cell ``b2n_lamp/eurosat/imb10``) or YAML path
    (``my/grid.yaml/eurosat/imb10`` for a cell of a grid file), with ``overrides`` ({dotted path:
    value}, :mod:`bench.config.overrides`) put in place before it is checked."""
    path, cell = locate(name_or_path)
    text = read_named_text(path, "protocol file", hint="it must be a YAML text file")
    data = load_yaml(text, f"protocol file '{path}'")
    if isinstance(data, dict) and "grid" in data:
        cells = expand(data, path.stem)
        if cell is None:
            shipped = path.parent.resolve() == protocols_dir().resolve()
            shown = list(cells)[:3] if shipped else [f"{path}/{c.partition('/')[2]}" for c in list(cells)[:3]]
            raise BenchError(f"protocol file '{path}' is a grid of {len(cells)} protocols ({', '.join(shown)}, "
                             f"...); name one, or run them all with bench run --protocol {path.stem if shipped else path}")
        data = cells[cell]
    if overrides:
        if not isinstance(data, dict):
            raise BenchError(f"protocol file '{path}': expected a mapping at the top level, got {type(data).__name__}")
        data = apply_overrides(data, overrides)
    return parse_protocol(data, path, overrides)


def _component(data: Any, section: str, registry) -> tuple:
    if not isinstance(data, dict):
        raise ConfigError(f"protocol.{section}", f"expected a mapping with a 'name', got {data!r}")
    if "name" not in data:
        raise ConfigError(f"protocol.{section}.name", "required field is missing")
    options = dict(data)
    name = options.pop("name")
    if not isinstance(name, str) or name not in registry:
        hint = suggest(str(name), registry.names())
        raise ConfigError(
            f"protocol.{section}.name",
            f"unknown {registry.kind} {name!r}{hint} (available: {', '.join(registry.names())})",
        )
    cfg = from_dict(registry.get(name).Config, options, f"protocol.{section}")
    if registry is DATASETS and "root" not in options:
        found = root_for(name, cfg)  # the user's data roots file, where the block names no root
        if found or hasattr(cfg, "root"):  # else the default's folder under $BENCH_DATA, not under the cwd
            cfg = dataclasses.replace(cfg, root=found[0] if found else default_root(cfg))
    return name, cfg


def _evaluation(item: Any, i: int, training: dict) -> EvaluationSpec:
    where = f"protocol.evaluations[{i}]"
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].isidentifier():
        raise ConfigError(where, f"expected a mapping with a 'name' of letters, digits and '_', got {item!r}")
    for key in item:
        if key not in _EVALUATION_FIELDS:
            raise ConfigError(f"{where}.{key}", f"unknown field{suggest(str(key), _EVALUATION_FIELDS)} "
                              f"(known fields: {', '.join(_EVALUATION_FIELDS)})")
    plan = from_dict(EvalPlan, {k: v for k, v in item.items() if k != "dataset"}, where)
    if plan.group and not plan.group.isidentifier():
        raise ConfigError(f"{where}.group", f"expected letters, digits and '_', got {plan.group!r}")
    block = item.get("dataset")
    if block is None:
        return EvaluationSpec(plan)
    if not isinstance(block, dict):
        raise ConfigError(f"{where}.dataset", f"expected a mapping of dataset fields, got {block!r}")
    inherits = block.get("name", training.get("name")) == training.get("name")
    merged = {**training, **block} if inherits else block
    name, cfg = _component(merged, f"evaluations[{i}].dataset", DATASETS)
    return EvaluationSpec(plan, name, cfg, inherits and "root" not in block)


def _means(raw: Any, evaluations: List[EvaluationSpec]) -> Dict[str, List[str]]:
    """``means: {name: [evaluation, ...]}``: each name a new metric, each list two or more evaluations."""
    if raw is None:
        return {}
    names = [e.plan.name for e in evaluations]
    if not isinstance(raw, dict) or not evaluations:
        raise ConfigError("protocol.means", "expected a mapping of metric name to evaluation names, in a protocol "
                          "that lists its evaluations")
    for name, members in raw.items():
        if not isinstance(name, str) or not NAME_PART.fullmatch(name) or name in names or name.endswith("_mean"):
            raise ConfigError(f"protocol.means.{name}", "must be a new metric name (not an evaluation's, "
                              "not ending in _mean)")
        if not isinstance(members, list) or len(members) < 2 or any(m not in names for m in members):
            raise ConfigError(f"protocol.means.{name}", f"expected a list of two or more of the evaluations "
                              f"({', '.join(names)}), got {members!r}")
    return {name: list(members) for name, members in raw.items()}


def _evaluations(raw: Any, training: Any) -> List[EvaluationSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not raw:
        raise ConfigError("protocol.evaluations", f"expected a non-empty list of evaluations, got {raw!r}")
    specs = [_evaluation(item, i, training if isinstance(training, dict) else {}) for i, item in enumerate(raw)]
    names = [s.plan.name for s in specs]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError("protocol.evaluations", f"evaluation name '{name}' is used twice")
    return specs


def parse_protocol(data: Any, path: Optional[Path] = None, overrides: Optional[Dict[str, Any]] = None) -> Protocol:
    fill_registries()
    where = f"protocol file '{path}'" if path else "protocol"
    if overrides:
        where += f" with --set {describe(overrides)}"
    if not isinstance(data, dict):
        raise BenchError(f"{where}: expected a mapping at the top level, got {type(data).__name__}")
    for key in data:
        if key not in _TOP_LEVEL:
            raise ConfigError(
                f"protocol.{key}",
                f"unknown field{suggest(str(key), _TOP_LEVEL)} (known fields: {', '.join(_TOP_LEVEL)})",
            )
    name = data.get("name", path.stem if path else None)
    if not isinstance(name, str) or not all(NAME_PART.fullmatch(part) for part in name.split("/")):
        raise ConfigError("protocol.name", f"expected a name of letters, digits, '_' or '-' "
                          f"(grid cells: parts joined by '/'), got {name!r}")
    description, label = data.get("description", ""), data.get("label", "")
    for field_name, value in (("description", description), ("label", label)):
        if not isinstance(value, str):
            raise ConfigError(f"protocol.{field_name}", f"expected a string, got {value!r}")
    family = data.get("family")
    if not isinstance(family, str) or family not in FAMILIES:
        hint = suggest(str(family), FAMILIES) if family is not None else ""
        problem = "required field is missing" if family is None else f"unknown family {family!r}{hint}"
        raise ConfigError("protocol.family", f"{problem} (one of: {', '.join(FAMILIES)})")
    dataset_name, dataset = _component(data.get("dataset"), "dataset", DATASETS)
    backbone_name, backbone = _component(data.get("backbone"), "backbone", BACKBONES)
    transforms = from_dict(TransformConfig, data.get("transforms"), "protocol.transforms")
    train = check_fields(TrainRecipe, data.get("train"), "protocol.train")
    evaluation = from_dict(EvalConfig, data.get("eval"), "protocol.eval")
    evaluations = _evaluations(data.get("evaluations"), data.get("dataset"))
    seeds = check_seeds(data.get("seeds", [1, 2, 3]), "protocol.seeds")
    raw_methods = data.get("methods") or {}
    if not isinstance(raw_methods, dict):
        raise ConfigError("protocol.methods", f"expected a mapping of method name to options, got {raw_methods!r}")
    for method in raw_methods:
        if method not in METHODS:
            hint = suggest(str(method), METHODS.names())
            raise ConfigError(f"protocol.methods.{method}", f"unknown method{hint} (available: {', '.join(METHODS.names())})")
    protocol = Protocol(
        name=name, description=description, family=family, dataset_name=dataset_name, dataset=dataset,
        backbone_name=backbone_name, backbone=backbone, transforms=transforms, train=train, eval=evaluation,
        seeds=list(seeds), methods={m: dict(block or {}) for m, block in raw_methods.items()}, path=path,
        evaluations=evaluations, means=_means(data.get("means"), evaluations), label=label,
        overrides=dict(overrides or {}),
    )
    planned = protocol.planned_setup()["image_size"]
    if transforms.size and planned and transforms.size != planned:
        raise ConfigError("protocol.transforms.size", f"is {transforms.size} but {backbone_name} takes "
                          f"{planned}-pixel images; leave it out to use the backbone's size")
    for method in protocol.methods:  # the protocol's own method blocks must resolve now, not mid-run
        protocol.resolve(method)
    return protocol
