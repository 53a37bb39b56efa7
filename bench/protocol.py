"""Protocol YAML files: loading, validation and identity (for result hashing)."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Union

import yaml

from .config import ENV, from_dict, identity
from .errors import BenchError, ConfigError
from .plugins import load_builtins
from .registry import BACKBONES, DATASETS, METHODS, suggest

@dataclass
class TrainConfig:
    epochs: int = 5
    batch_size: int = 32
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.002
    momentum: float = 0.9
    weight_decay: float = 5e-4
    scheduler: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: int = 1
    warmup_lr: float = 1e-5
    # AMP is used on CUDA only; "auto" means on when the device is a GPU.
    amp: Union[bool, Literal["auto"]] = "auto"
    num_workers: int = field(default=0, metadata=ENV)

    def validate(self, where: str) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}.{name}", "must be at least 1")
        for name in ("lr", "warmup_lr", "weight_decay", "momentum"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{where}.{name}", "must not be negative")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ConfigError(f"{where}.warmup_epochs", "must be between 0 and epochs - 1")
        if self.num_workers < 0:
            raise ConfigError(f"{where}.num_workers", "must not be negative")


@dataclass
class EvalConfig:
    batch_size: int = field(default=128, metadata=ENV)
    # Many-shot: more than `many_threshold` training images; few-shot: fewer
    # than `few_threshold`; medium-shot: everything in between.
    many_threshold: int = 100
    few_threshold: int = 20

    def validate(self, where: str) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"{where}.batch_size", "must be at least 1")
        if self.few_threshold > self.many_threshold:
            raise ConfigError(f"{where}.few_threshold", "must not exceed many_threshold")


@dataclass
class Protocol:
    name: str
    description: str
    dataset_name: str
    dataset: Any  # the dataset's Config dataclass
    backbone_name: str
    backbone: Any  # the backbone's Config dataclass
    train: TrainConfig
    eval: EvalConfig
    seeds: List[int]
    methods: Dict[str, Any]  # method name -> validated method Config
    path: Optional[Path] = None

    def identity(self) -> dict:
        """Everything that determines results (no paths, no worker counts)."""
        return {
            "name": self.name,
            "dataset": {"name": self.dataset_name, **identity(self.dataset)},
            "backbone": {"name": self.backbone_name, **identity(self.backbone)},
            "train": identity(self.train),
            "eval": identity(self.eval),
        }

    def method_config(self, method: str, overrides: Optional[dict] = None) -> Any:
        """The protocol's config for ``method`` with ``overrides`` applied on top."""
        entry = METHODS.get(method)
        base = dataclasses.asdict(self.methods[method]) if method in self.methods else {}
        base.update(overrides or {})
        return from_dict(entry.Config, base, f"method {method}")


def protocols_dir() -> Path:
    import protocols

    return Path(protocols.__file__).parent


def _natural(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def available_protocols() -> List[str]:
    return sorted((p.stem for p in protocols_dir().glob("*.yaml")), key=_natural)


def resolve_path(name_or_path: str) -> Path:
    """A protocol name from protocols/ or a path to a YAML file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.parent != Path("."):
        if not candidate.is_file():
            raise BenchError(f"protocol file '{name_or_path}' does not exist")
        return candidate
    path = protocols_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        names = available_protocols()
        raise BenchError(
            f"unknown protocol '{name_or_path}'{suggest(name_or_path, names)} "
            f"(available: {', '.join(names)})"
        )
    return path


_TOP_LEVEL = ("name", "description", "dataset", "backbone", "train", "eval", "seeds", "methods")


def load_protocol(name_or_path: str) -> Protocol:
    path = resolve_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise BenchError(f"protocol file '{path}': malformed YAML{at}: {problem}") from None
    return parse_protocol(data, path)


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
    return name, cfg


def parse_protocol(data: Any, path: Optional[Path] = None) -> Protocol:
    load_builtins()
    where = f"protocol file '{path}'" if path else "protocol"
    if not isinstance(data, dict):
        raise BenchError(f"{where}: expected a mapping at the top level, got {type(data).__name__}")
    for key in data:
        if key not in _TOP_LEVEL:
            raise ConfigError(
                f"protocol.{key}",
                f"unknown field{suggest(str(key), _TOP_LEVEL)} (known fields: {', '.join(_TOP_LEVEL)})",
            )
    name = data.get("name", path.stem if path else None)
    if not isinstance(name, str) or not name.replace("-", "_").isidentifier():
        raise ConfigError("protocol.name", f"expected a name of letters, digits, '_' or '-', got {name!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ConfigError("protocol.description", f"expected a string, got {description!r}")
    dataset_name, dataset = _component(data.get("dataset"), "dataset", DATASETS)
    backbone_name, backbone = _component(data.get("backbone"), "backbone", BACKBONES)
    train = from_dict(TrainConfig, data.get("train"), "protocol.train")
    evaluation = from_dict(EvalConfig, data.get("eval"), "protocol.eval")
    seeds = data.get("seeds", [1, 2, 3])
    if not isinstance(seeds, list) or not seeds or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds
    ):
        raise ConfigError("protocol.seeds", f"expected a non-empty list of non-negative integers, got {seeds!r}")
    method_cfgs = {}
    raw_methods = data.get("methods") or {}
    if not isinstance(raw_methods, dict):
        raise ConfigError("protocol.methods", f"expected a mapping of method name to options, got {raw_methods!r}")
    for method, options in raw_methods.items():
        if method not in METHODS:
            hint = suggest(str(method), METHODS.names())
            raise ConfigError(f"protocol.methods.{method}", f"unknown method{hint} (available: {', '.join(METHODS.names())})")
        method_cfgs[method] = from_dict(METHODS.get(method).Config, options, f"protocol.methods.{method}")
    return Protocol(
        name=name,
        description=description,
        dataset_name=dataset_name,
        dataset=dataset,
        backbone_name=backbone_name,
        backbone=backbone,
        train=train,
        eval=evaluation,
        seeds=list(seeds),
        methods=method_cfgs,
        path=path,
    )
