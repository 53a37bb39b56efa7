"""Training recipes: each method trains with its paper's recipe for the protocol's family.

Papers train every method with its own recipe on the same data (on CIFAR-100-LT,
MDPR ran CoOp with AdamW 1e-3 for 20 epochs at batch 128; MaPLe's own config is
SGD 0.0035, batch 4).  A protocol therefore names its *family* (``family: lt``)
and each method's card gives a :class:`Recipe` per family.  What a cell runs is
resolved in layers, each overriding the one before:

1. engine defaults (:class:`TrainRecipe`: the Dassl/CoOp optimisation defaults);
2. the method card's recipe for the family (``options`` and ``train``);
3. the protocol's ``train:`` block (every method; smoke twins shorten runs here);
4. the protocol's ``methods.<name>:`` block (options, and its own ``train:``);
5. ``--set <name>.<field>=...`` and ``--set <name>.train.<field>=...``.

:func:`resolve` keeps, for every field, the layer that set it; ``bench show``
prints it so a reader can check a recipe against its paper.

    >>> resolved = resolve(CoOp, "lt", protocol_train={}, protocol_method={"n_ctx": 8}, cli={})
    >>> resolved.train.lr, resolved.sources["train.lr"]
    (0.001, 'card: MDPR App. A.1.2')
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Mapping, Optional, Tuple

from .config import ENV, check_fields, from_dict, identity
from .errors import ConfigError

FAMILIES: Dict[str, str] = {
    "lt": "long-tailed recognition on CIFAR-100-LT, ImageNet-LT, Places-LT (MDPR's protocol)",
    "b2n_lt100": "long-tailed base-to-new, 100-shot cap, imbalance 10-200 (LAMP / Candle protocol)",
    "b2n_lt16": "long-tailed base-to-new, 16-shot cap, tau 1 / 0.25 / 0.06 (CPT protocol)",
}

Precision = Literal["amp", "fp32"]
# The recipe fields that still apply to a method that is not trained.
EVAL_FIELDS = ("eval_precision", "num_workers")


@dataclass
class TrainRecipe:
    """How a method is trained.  Defaults: Dassl's as the CoOp configs set them
    (``KaiyangZhou/Dassl.pytorch:dassl/config/defaults.py`` and ``dassl/optim/``
    at c61a1b570ac6333bd50fb5ae06aea59002fb20bb; ``KaiyangZhou/CoOp:configs/trainers/CoOp/``)."""

    epochs: int = 10
    batch_size: int = 32
    # Dassl drops the last partial batch (when the set holds at least one batch).
    drop_last: bool = True
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.002
    momentum: float = 0.9  # SGD only
    weight_decay: float = 5e-4
    # Per-epoch cosine from lr down to min_lr over `epochs`, after the warm-up.
    scheduler: Literal["cosine", "constant"] = "cosine"
    min_lr: float = 0.0
    warmup_epochs: int = 1  # at the constant warmup_lr (Dassl's ConstantWarmupScheduler)
    warmup_lr: float = 1e-5
    # "amp": autocast on GPU (bf16 where supported, else fp16 with loss scaling),
    # fp32 master weights; always fp32 on CPU.
    precision: Precision = "amp"
    eval_precision: Precision = "amp"
    num_workers: int = field(default=0, metadata=ENV)

    def validate(self, where: str) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}.{name}", "must be at least 1")
        for name in ("lr", "warmup_lr", "weight_decay", "momentum", "min_lr"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{where}.{name}", "must not be negative")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ConfigError(f"{where}.warmup_epochs", f"must be between 0 and epochs - 1 ({self.epochs - 1})")
        if self.min_lr > self.lr:
            raise ConfigError(f"{where}.min_lr", "must not exceed lr")
        if self.num_workers < 0:
            raise ConfigError(f"{where}.num_workers", "must not be negative")


def lr_for_epoch(cfg: TrainRecipe, epoch: int) -> float:
    """Learning rate of (0-based) ``epoch``: constant warm-up, then cosine per epoch.

    Dassl steps ``CosineAnnealingLR(T_max=epochs)`` once per epoch behind a
    constant warm-up, so epoch ``w + k`` runs at ``min + (lr - min)(1 + cos(pi k / epochs)) / 2``.
    """
    if epoch < cfg.warmup_epochs:
        return cfg.warmup_lr
    if cfg.scheduler == "constant":
        return cfg.lr
    progress = (epoch - cfg.warmup_epochs) / cfg.epochs
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class Recipe:
    """A method's recipe for one protocol family, as its source states it."""

    source: str  # where the numbers come from, e.g. "MDPR App. A.1.2"
    train: Mapping[str, Any] = field(default_factory=dict)  # TrainRecipe fields
    options: Mapping[str, Any] = field(default_factory=dict)  # the method's Config fields


@dataclass
class Resolved:
    """A method's options and training recipe for one protocol, with provenance."""

    options: Any  # the method's Config dataclass
    train: TrainRecipe
    trains: bool  # False: evaluated without training (only eval_precision matters)
    sources: Dict[str, str]  # "n_ctx" / "train.lr" -> the layer that set it

    def train_identity(self) -> dict:
        """The recipe fields that determine this method's results (for the cell key)."""
        ident = identity(self.train)
        return ident if self.trains else {k: v for k, v in ident.items() if k in EVAL_FIELDS}


def _split(block: Optional[Mapping], where: str) -> Tuple[dict, dict]:
    """``{..., "train": {...}}`` -> (options, train)."""
    if block is None:
        return {}, {}
    if not isinstance(block, Mapping):
        raise ConfigError(where, f"expected a mapping, got {block!r}")
    options = dict(block)
    train = options.pop("train", None) or {}
    return options, train


def resolve(method_cls: Any, family: str, protocol_train: Mapping, protocol_method: Optional[Mapping],
            cli: Optional[Mapping], name: str = "method") -> Resolved:
    """Merge the layers (module docstring) into a validated :class:`Resolved`."""
    card = getattr(method_cls, "card", None)
    recipe = card.recipes.get(family) if card is not None else None
    proto_opts, proto_train = _split(protocol_method, f"protocol.methods.{name}")
    cli_opts, cli_train = _split(cli, f"--set {name}")
    layers: List[Tuple[str, str, Mapping, Mapping]] = [
        ("card: " + recipe.source if recipe else "", f"card of {name}",
         recipe.options if recipe else {}, recipe.train if recipe else {}),
        ("protocol train", "protocol.train", {}, protocol_train),
        (f"protocol methods.{name}", f"protocol.methods.{name}", proto_opts, proto_train),
        ("--set", f"--set {name}", cli_opts, cli_train),
    ]
    trains = getattr(method_cls, "trains", True)
    options, train, sources, origins = {}, {}, {}, {}
    for label, where, opts, tr in layers:
        train_where = f"{where}.train" if where != "protocol.train" else where
        opts = check_fields(method_cls.Config, opts, where)
        tr = check_fields(TrainRecipe, tr, train_where)
        if not trains:  # protocol-wide training settings are not for it
            if where != "protocol.train" and set(tr) - set(EVAL_FIELDS):
                raise ConfigError(f"{where}.train", f"method '{name}' is not trained; only "
                                  f"{' and '.join(EVAL_FIELDS)} apply")
            tr = {k: v for k, v in tr.items() if k in EVAL_FIELDS}
        options.update(opts)
        train.update(tr)
        sources.update({k: label for k in opts})
        sources.update({f"train.{k}": label for k in tr})
        origins.update({k: where for k in opts})
        origins.update({f"train.{k}": train_where for k in tr})
    return Resolved(
        options=_build(method_cls.Config, options, "", origins, name),
        train=_build(TrainRecipe, train, "train.", origins, name),
        trains=trains,
        sources=sources,
    )


def _build(cls: type, values: dict, prefix: str, origins: Dict[str, str], name: str) -> Any:
    """``from_dict`` on merged layers; a cross-field error names the layer that set the field."""
    try:
        return from_dict(cls, values, f"method {name}.{prefix}".rstrip("."))
    except ConfigError as err:
        field_name = err.where.rsplit(".", 1)[-1]
        origin = origins.get(prefix + field_name)
        if origin is None:
            raise
        raise ConfigError(f"{origin}.{field_name}", f"{err.message} (in {name}'s recipe)") from None


def recipe_table(resolved: Resolved) -> List[Tuple[str, Any, str]]:
    """``(field, value, source)`` rows for ``bench show``; unset fields say "default"."""
    rows = [(f.name, getattr(resolved.options, f.name), resolved.sources.get(f.name, "default"))
            for f in dataclasses.fields(resolved.options)]
    names = [f.name for f in dataclasses.fields(TrainRecipe) if resolved.trains or f.name in EVAL_FIELDS]
    rows += [(f"train.{n}", getattr(resolved.train, n), resolved.sources.get(f"train.{n}", "default")) for n in names]
    return rows
