"""Training recipes: each method trains with its paper's recipe for the protocol's family.

Papers train every method with its own recipe on the same data (on CIFAR-100-LT,
MDPR ran CoOp with AdamW 1e-3 for 20 epochs at batch 128; MaPLe's own config is
SGD 0.0035, batch 4).  A protocol therefore names its *family* (``family: lt``)
and each method's card gives a :class:`Recipe` per family.  What a cell runs is
resolved in layers, each overriding the one before:

1. engine defaults (:class:`TrainRecipe`: the Dassl/CoOp optimisation defaults);
2. the method card's recipe for the family (``options`` and ``train``, then its ``by_shots``
   entry for the protocol's shot count and its ``by_dataset`` entry for the training set);
3. the protocol's ``train:`` block (every method; smoke twins shorten runs here);
4. the protocol's ``methods.<name>:`` block (options, and its own ``train:``);
5. ``--set <name>.<field>=...`` and ``--set <name>.train.<field>=...``.

:func:`resolve` keeps, for every field, the layer that set it; ``bench show``
prints it so a reader can check a recipe against its paper.

The cell key names the options in one form (:attr:`Resolved.keyed_options`): values that run alike
(CoOp's ``n_ctx: 16`` and ``null``) are one configuration with one key, and the protocol's own options
keep the key they always had.

    >>> resolved = resolve(CoOp, "lt", protocol_train={}, protocol_method={"n_ctx": 8}, cli={})
    >>> resolved.train.lr, resolved.sources["train.lr"]
    (0.001, 'card: MDPR App. A.1.2')
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Mapping, Optional, Tuple

from bench.core.coerce import ENV, check_fields, from_dict, identity
from bench.core.errors import ConfigError

FAMILIES: Dict[str, str] = {
    "lt": "long-tailed recognition on CIFAR-100-LT, ImageNet-LT, Places-LT (MDPR's protocol)",
    "b2n_lt100": "long-tailed base-to-new, 100-shot cap, imbalance 10-200 (LAMP / Candle protocol)",
    "b2n_lt16": "long-tailed base-to-new, 16-shot cap, tau 1 / 0.25 / 0.06 (CPT protocol)",
    "xd_lt100": "long-tailed ImageNet (100-shot cap, imbalance 100) to 10 datasets and 4 shifts (LAMP / Candle)",
    "xd_lt16": "long-tailed ImageNet (16-shot cap, tau 1 / 0.25 / 0.06) to 10 datasets and 4 shifts (CPT)",
    "b2n_fs": "balanced few-shot base-to-new, 1 / 2 / 4 / 8 shots per class (LAMP Tables 12-15)",
}
# A card without a recipe of its own for a family uses this family's (the papers train the
# cross-dataset source with their base-to-new settings unless their configs say otherwise).
# The 1-8 shot base-to-new runs use the official 16-shot base-to-new configs with fewer shots.
FALLBACK = {"xd_lt100": "b2n_lt100", "xd_lt16": "b2n_lt16", "b2n_fs": "b2n_lt16"}

Precision = Literal["amp", "fp32"]
# The recipe fields that still apply to a method that is not trained.
EVAL_FIELDS = ("eval_precision", "num_workers", "feature_cache")


RATE = {"min": 0, "max": 1e3}  # learning rates and decay: past this, float32 training only overflows


@dataclass
class TrainRecipe:
    """How a method is trained.  Defaults: Dassl's as the CoOp configs set them
    (``KaiyangZhou/Dassl.pytorch:dassl/config/defaults.py`` and ``dassl/optim/``
    at c61a1b570ac6333bd50fb5ae06aea59002fb20bb; ``KaiyangZhou/CoOp:configs/trainers/CoOp/``)."""

    epochs: int = field(default=10, metadata={"min": 1, "max": 100_000})
    batch_size: int = field(default=32, metadata={"min": 1, "max": 1_000_000})
    # Dassl drops the last partial batch (when the set holds at least one batch).
    drop_last: bool = True
    # adam: Dassl's (torch Adam, weight decay coupled into the gradient); adamw: decoupled decay
    optimizer: Literal["sgd", "adamw", "adam"] = "sgd"
    lr: float = field(default=0.002, metadata=RATE)
    momentum: float = field(default=0.9, metadata={"min": 0, "max": 1})  # SGD only
    eps: float = field(default=1e-8, metadata={"min": 0, "max": 1})  # Adam and AdamW (TCP's: 1e-3)
    # Clip the gradients' total L2 norm to this before each step (LASP's 1.0); null: no clipping.
    grad_clip: Optional[float] = field(default=None, metadata={"min": 0, "max": 1e6})
    weight_decay: float = field(default=5e-4, metadata=RATE)
    # Per-epoch cosine from lr down to min_lr over `epochs`, after the warm-up.
    scheduler: Literal["cosine", "constant"] = "cosine"
    min_lr: float = field(default=0.0, metadata=RATE)
    warmup_epochs: int = field(default=1, metadata={"min": 0, "max": 100_000})  # at the constant warmup_lr (Dassl's)
    warmup_lr: float = field(default=1e-5, metadata=RATE)
    # "amp": autocast on GPU (bf16 where supported, else fp16 with loss scaling),
    # fp32 master weights; always fp32 on CPU.
    precision: Precision = "amp"
    eval_precision: Precision = "amp"
    # Data-loading processes; null: sized to the CPUs on a GPU (bench.engine.loading), none on a CPU.
    num_workers: Optional[int] = field(default=None, metadata={**ENV, "min": 0, "max": 64})
    # Opt-in, for methods that never touch the image tower: train on the frozen features of this many
    # augmented views per training image (and test on cached test features), computed once and reused
    # across epochs, seeds and methods (bench.engine.features).  0: off, images every step.
    feature_cache: int = field(default=0, metadata={"min": 0, "max": 1000})

    def validate(self, where: str) -> None:
        if self.warmup_epochs >= self.epochs:
            raise ConfigError(f"{where}.warmup_epochs", f"must be between 0 and epochs - 1 ({self.epochs - 1})")
        if self.min_lr > self.lr:
            raise ConfigError(f"{where}.min_lr", "must not exceed lr")


def lr_for_epoch(cfg: TrainRecipe, epoch: int, scale: float = 1.0) -> float:
    """Learning rate of (0-based) ``epoch``: constant warm-up, then cosine per epoch.

    Dassl steps ``CosineAnnealingLR(T_max=epochs)`` once per epoch behind a
    constant warm-up, so epoch ``w + k`` runs at ``min + (lr - min)(1 + cos(pi k / epochs)) / 2``.
    ``scale``: a parameter group's base rate is ``scale · lr`` (Dassl's warm-up sets every group to warmup_lr).
    """
    if epoch < cfg.warmup_epochs:
        return cfg.warmup_lr
    lr = cfg.lr * scale
    if cfg.scheduler == "constant":
        return lr
    progress = (epoch - cfg.warmup_epochs) / cfg.epochs
    return cfg.min_lr + 0.5 * (lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


DEFAULT_EPS = 1e-8
MACHINE_FIELDS = {f"train.{f.name}" for f in dataclasses.fields(TrainRecipe) if not f.metadata.get("identity", True)}


@dataclass(frozen=True)
class Recipe:
    """A method's recipe for one protocol family, as its source states it."""

    source: str  # where the numbers come from, e.g. "MDPR App. A.1.2"
    train: Mapping[str, Any] = field(default_factory=dict)  # TrainRecipe fields
    options: Mapping[str, Any] = field(default_factory=dict)  # the method's Config fields
    # train fields per shot count of the protocol's few-shot draw, where the source trains each differently
    # (CoOp's few-shot runs: 50 epochs at 1 shot, 100 at 2 and 4, 200 at 8 and 16)
    by_shots: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    # options and train fields per dataset (CoOp's name: "ImageNet", "SUN397"), where the official code
    # trains one differently: TCP's 25 epochs on ImageNet and SUN397 ({"ImageNet": {"train": {"epochs": 25}}})
    by_dataset: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass
class Resolved:
    """A method's options and training recipe for one protocol, with provenance."""

    options: Any  # the method's Config dataclass
    train: TrainRecipe
    trains: bool  # False: evaluated without training (only EVAL_FIELDS matter)
    sources: Dict[str, str]  # "n_ctx" / "train.lr" -> the layer that set it
    method: Any = None  # the method's class (its canonical_options)
    base: Any = None  # the options without the command line's --set values (the protocol's own)

    @property
    def keyed_options(self) -> Any:
        """The options as the cell key names them: written in one form (the method's
        ``canonical_options``: CoOp's n_ctx 16 and null are one), so options that run alike share a
        key; and written as the protocol's own where they run as those do, so that the key of a
        protocol's own configuration never changes (results found again)."""
        if self.method is None:
            return self.options
        canonical = self.method.canonical_options
        mine = canonical(self.options)
        return self.base if self.base is not None and canonical(self.base) == mine else mine

    def train_identity(self) -> dict:
        """The recipe fields that determine this method's results (for the cell key):
        fields that cannot act (momentum under AdamW, ...) are left out."""
        ident, t = identity(self.train), self.train
        # eps at torch's default is left out too: results from before the field existed keep their keys
        unused = {"momentum": t.optimizer != "sgd", "eps": t.optimizer == "sgd" or t.eps == DEFAULT_EPS,
                  "warmup_lr": t.warmup_epochs == 0, "grad_clip": t.grad_clip is None,
                  "min_lr": t.scheduler == "constant", "feature_cache": t.feature_cache == 0}
        if not self.trains:
            unused.update({k: True for k in ident if k not in EVAL_FIELDS})
        return {k: v for k, v in ident.items() if not unused.get(k)}


@dataclass
class _Layer:
    label: str  # how `bench show` names it: "card: MDPR App. A.1.2", "protocol train", "--set"
    where: str  # error path prefix of its options: "protocol.methods.coop", "--set coop"
    options: Mapping[str, Any]
    train: Mapping[str, Any]
    user: bool = True  # written by the user (protocol file or command line), not the card

    @property
    def train_where(self) -> str:
        return self.where if self.where == "protocol.train" else f"{self.where}.train"


def _split(block: Optional[Mapping], where: str) -> Tuple[dict, dict]:
    """``{..., "train": {...}}`` -> (options, train)."""
    if block is None:
        return {}, {}
    if not isinstance(block, Mapping):
        raise ConfigError(where, f"expected a mapping, got {block!r}")
    options = dict(block)
    return options, options.pop("train", None) or {}


def card_recipe(method_cls: Any, family: str) -> Optional[Recipe]:
    """The card's recipe for ``family``, or for the family it falls back to (FALLBACK); None: engine defaults."""
    card = getattr(method_cls, "card", None)
    recipes = card.recipes if card is not None else {}
    return recipes.get(family) or recipes.get(FALLBACK.get(family, ""))


def _layers(method_cls: Any, family: str, protocol_train: Mapping, protocol_method: Optional[Mapping],
            cli: Optional[Mapping], name: str, shots: Optional[int], dataset: Optional[str]) -> List[_Layer]:
    recipe = card_recipe(method_cls, family)
    layers = [_Layer(f"card: {recipe.source}", f"{name} card ({recipe.source})", recipe.options, recipe.train,
                     user=False)] if recipe else []
    if recipe and shots in recipe.by_shots:
        at = f"{recipe.source}, {shots} shot{'s' * (shots != 1)}"
        layers.append(_Layer(f"card: {at}", f"{name} card ({at})", {}, recipe.by_shots[shots], user=False))
    if recipe and dataset in recipe.by_dataset:
        at = f"{recipe.source}, {dataset}"
        layers.append(_Layer(f"card: {at}", f"{name} card ({at})", *_split(recipe.by_dataset[dataset], at), user=False))
    return layers + [
        _Layer("protocol train", "protocol.train", {}, protocol_train),
        _Layer(f"protocol methods.{name}", f"protocol.methods.{name}", *_split(protocol_method, f"protocol.methods.{name}")),
        _Layer("--set", f"--set {name}", *_split(cli, f"--set {name}")),
    ]


def resolve(method_cls: Any, family: str, protocol_train: Mapping, protocol_method: Optional[Mapping],
            cli: Optional[Mapping], name: str = "method", shots: Optional[int] = None,
            dataset: Optional[str] = None) -> Resolved:
    """Merge the layers (module docstring) into a validated :class:`Resolved`; ``shots``, the
    protocol's few-shot cap, picks the card recipe's ``by_shots`` entry, and ``dataset`` (CoOp's
    name of the training set) its ``by_dataset`` entry."""
    trains = getattr(method_cls, "trains", True)
    values: Dict[str, Any] = {}  # "n_ctx" / "train.lr" -> value
    sources: Dict[str, str] = {}
    origins: Dict[str, str] = {}  # the error path of the layer that set it, for user layers
    base: Optional[Dict[str, Any]] = None  # the values before the command line's, where it sets options
    for layer in _layers(method_cls, family, protocol_train, protocol_method, cli, name, shots, dataset):
        if layer.label == "--set" and layer.options:
            base = dict(values)
        options = check_fields(method_cls.Config, layer.options, layer.where)
        train = _train_fields(check_fields(TrainRecipe, layer.train, layer.train_where), trains, layer, name)
        for key, value in [*options.items(), *((f"train.{k}", v) for k, v in train.items())]:
            values[key], sources[key] = value, layer.label
            where = layer.train_where if key.startswith("train.") else layer.where
            origins[key] = f"{where}.{key.removeprefix('train.')}" if layer.user else None
    options = _build(method_cls.Config, values, sources, origins, "", name)
    train = _build(TrainRecipe, values, sources, origins, "train.", name)
    if train.feature_cache and not getattr(method_cls, "frozen_image_tower", False):
        where = origins.get("train.feature_cache") or f"{name} recipe: train.feature_cache"
        raise ConfigError(where, f"method '{name}' runs prompts inside the image tower, so its image features "
                          "cannot be cached; leave feature_cache at 0 for it")
    for key in [*(f.name for f in dataclasses.fields(options)), *(f"train.{f.name}" for f in dataclasses.fields(train))]:
        sources.setdefault(key, "default")
    return Resolved(options=options, train=train, trains=trains, sources=sources, method=method_cls,
                    base=_base_options(method_cls.Config, base, options, name))


def _base_options(config: type, base: Optional[dict], options: Any, name: str) -> Any:
    """The options the layers below ``--set`` give (``base``: their values, None when --set sets no
    option); None where those alone are not valid (the command line mends them)."""
    if base is None:
        return options
    try:
        return from_dict(config, {k: v for k, v in base.items() if _in_group(k, "")}, f"{name} recipe")
    except ConfigError:
        return None


def _train_fields(train: dict, trains: bool, layer: _Layer, name: str) -> dict:
    """A method that is not trained takes only EVAL_FIELDS (protocol-wide training settings pass it by)."""
    if trains:
        return train
    if layer.where != "protocol.train" and set(train) - set(EVAL_FIELDS):
        raise ConfigError(layer.train_where, f"method '{name}' is not trained; only {' and '.join(EVAL_FIELDS)} apply")
    return {k: v for k, v in train.items() if k in EVAL_FIELDS}


def _in_group(key: str, prefix: str) -> bool:
    """Whether merged key ``key`` ("n_ctx", "train.lr") belongs to the group of ``prefix`` ("" or "train.")."""
    return key.startswith(prefix) if prefix else "." not in key


def _build(cls: type, values: dict, sources: dict, origins: dict, prefix: str, name: str) -> Any:
    """``from_dict`` on the merged values; a cross-field error names where each value came from."""
    own = {k[len(prefix):]: v for k, v in values.items() if _in_group(k, prefix)}
    try:
        return from_dict(cls, own, f"{name} recipe: {prefix}".rstrip(": "))
    except ConfigError as err:
        last = err.where.rsplit(".", 1)[-1] if "." in err.where else err.where.rsplit(" ", 1)[-1]
        key = prefix + re.sub(r"\[\d+\]$", "", last)
        where = (origins.get(key) or f"{name} recipe: {key}") + last[len(key) - len(prefix):]
        changed = [f"{k} = {values[k]!r} ({sources[k]})" for k in values
                   if origins.get(k) and k != key and _in_group(k, prefix) and k not in MACHINE_FIELDS]
        detail = f"{key} = {values[key]!r} from {sources[key]}" if key in values else f"{key} is the default"
        if changed:
            detail += "; set by you: " + ", ".join(changed)
        raise ConfigError(where, f"{err.message} ({detail})") from None


def recipe_table(resolved: Resolved) -> List[Tuple[str, Any, str]]:
    """``(field, value, source)`` rows for ``bench show``."""
    rows = [(f.name, getattr(resolved.options, f.name), resolved.sources[f.name])
            for f in dataclasses.fields(resolved.options)]
    names = [f.name for f in dataclasses.fields(TrainRecipe) if resolved.trains or f.name in EVAL_FIELDS]
    return rows + [(f"train.{n}", getattr(resolved.train, n), resolved.sources[f"train.{n}"]) for n in names]
