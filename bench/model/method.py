"""Base class for benchmark methods.

A method is an ``nn.Module`` registered by name in ``METHODS``::

    @METHODS.register("my_method")
    class MyMethod(Method):
        '''One line shown by `bench list`.'''
        Config = MyConfig          # a dataclass; protocol/CLI options are checked against it

        card = MethodCard(paper=..., code=..., recipes={"lt": Recipe(...)})

        def __init__(self, backbone, data, cfg): ...   # data: the training label space (ClassInfo)
        def forward(self, images):  # -> logits [batch, num_classes]

Optional hooks: ``prepare(train)`` runs once before training with the training images under the
test transform (prototypes, clusters); ``start_epoch(epoch, epochs, steps)`` before each epoch
(warm-ups, per-epoch counters); ``extra_state()`` / ``load_extra_state()`` checkpoint state that
training changes besides the parameters (routing biases); ``adapt_to_new(images)`` runs after
training with the unlabelled new-class training images of a base-to-new protocol, for transductive
methods (LAMP's bias pass); ``set_label_space(info)`` switches the classifier to other classes (new
classes of a base-to-new protocol) without touching learned parameters; ``key_inputs(cfg)`` names
inputs outside the options that decide the results (a knowledge-base file's hash), for the cell key;
``canonical_options(cfg)`` the options in one form for the cell
key, where several run alike (CoOp's n_ctx null and 16), so that options that run the same share one key;
``record_text_features()`` the class text features a record stores with ``protocol.eval.text_features``;
``param_groups()`` optimizer groups with their own learning-rate scale (LASP's LayerNorms);
``fit(features, labels, seed)``, for a method whose class names ``fit_views``, fits it on frozen training
features instead of the epoch loop (closed-form or full-batch methods: LFA; ``bench.engine.fitting``).
In training mode ``forward`` may return anything ``loss`` takes (features as well as logits).

Parameters with ``requires_grad=True`` are trained (and checkpointed); a
method with ``trains = False`` is evaluated without training.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
from dataclasses import dataclass, field
from typing import ClassVar, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from bench.config.cards import Ablation, MethodCard, Reported  # noqa: F401  (re-exported)
from bench.config.recipes import FAMILIES, Recipe, TrainRecipe
from bench.core.coerce import check_fields
from bench.core.errors import BenchError, ConfigError
from bench.core.registry import suggest
from .backbone import ClipBackbone
from .prompting import encode_image_deep, encode_text_deep
from .shortcuts import ACTIVE as SHORTCUTS
from .transforms import VIEWS


@dataclass
class NoOptions:
    pass


@dataclass
class ClassInfo:
    """A label space: the classes a method classifies among, and their training counts."""

    classnames: List[str]
    train_counts: List[int]  # training images per class (0 for classes never trained on)
    template: str = "a photo of a {}."
    # Names of the classes evaluated later but never trained on (base-to-new).  A method that uses
    # them in training (Candle) is class-name transductive and its card says so.
    new_classnames: List[str] = field(default_factory=list)
    # For an evaluation label space whose classes were all trained on: each class's position among
    # the training classes (ImageNet-A's 200 of ImageNet's 1000).  Per-class parameters and priors
    # are indexed by it.  None: some classes are new to the method.
    training_index: Optional[List[int]] = None
    # CoOp's name of the dataset the classes come from ("EuroSAT"; None outside CoOp's sets): methods
    # with a template per dataset (KgCoOp, TCP, LFA) look theirs up with it (:func:`dataset_template`).
    dataset: Optional[str] = None


def dataset_template(info: ClassInfo, table: Mapping[str, object], default: object = None) -> object:
    """``table``'s entry for the dataset of ``info`` (a method's templates keyed by CoOp's dataset names,
    ``{"EuroSAT": "a centered satellite photo of {}."}``); for a dataset the table lacks, ``default``,
    else the label space's own template."""
    if info.dataset in table:
        return table[info.dataset]
    return info.template if default is None else default


def memoised_text(text_features):
    """``text_features`` that, inside :meth:`Method.one_label_space`, is computed once and reused."""
    @functools.wraps(text_features)
    def once(self, *args, **kwargs):
        memo = self.__dict__.get("_text_memo")
        if memo is None or args or kwargs:
            return text_features(self, *args, **kwargs)
        if "text" not in memo:
            memo["text"] = text_features(self)
        return memo["text"]

    once.memoised = True
    return once


class Method(nn.Module):
    Config = NoOptions
    card: ClassVar[Optional[MethodCard]] = None
    trains: ClassVar[bool] = True  # False: no training recipe, evaluated as built
    registry_name: ClassVar[str] = "method"  # set by METHODS.register
    # Set (or bumped) when a change alters this method's results and no other's: its code version,
    # and so its keys, change ("0.4.0+mdpr.1") while every other method's results stay current.
    code_revision: ClassVar[str] = ""
    # Whether the class prompts' text features depend on the images (CoCoOp's meta-net, LAMP's
    # routing, Candle's fusion).  When they do not, ``text_features()`` is computed once per
    # prediction over a label space instead of once per test batch (see :meth:`one_label_space`).
    text_depends_on_image: ClassVar[bool] = False
    # Whether images reach the method only as frozen image-tower features, through image_features()
    # or raw_image_features() (no prompts inside the image tower).  Such a method may train and be
    # evaluated on cached features (TrainRecipe.feature_cache; bench.engine.features).
    frozen_image_tower: ClassVar[bool] = False
    features_given: bool = False  # set by the engine: the "images" are raw image features from the cache
    # A method that fits itself on frozen features (trains = False, frozen_image_tower) names the view of
    # each training image it needs ("five_crop", bench.model.transforms.VIEWS); the engine calls fit() once.
    fit_views: ClassVar[Optional[str]] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("text_features")
        if own is not None and not getattr(own, "memoised", False):
            cls.text_features = memoised_text(own)

    def __init__(self, backbone: ClipBackbone, data: ClassInfo, cfg):
        super().__init__()
        self.backbone = backbone
        self.data = data  # the training label space
        self.label_space = data  # the one classified now
        self.cfg = cfg

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def prepare(self, train: Dataset) -> None:
        """Once before training: ``train`` yields ``(image, label)`` under the test transform."""

    def fit(self, features: torch.Tensor, labels: torch.Tensor, seed: int) -> None:
        """With ``fit_views``, once after :meth:`prepare`: ``features`` ``[N, crops, D]`` are the raw frozen
        features of every training image under that view, ``labels`` ``[N]`` their classes, ``seed`` the cell's."""

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        """Before training epoch ``epoch`` (0-based) of ``epochs``, which has ``steps`` optimizer steps."""

    def extra_state(self) -> Dict[str, torch.Tensor]:
        """Tensors training changes besides the trainable parameters; checkpointed with them."""
        return {}

    def load_extra_state(self, state: Dict[str, torch.Tensor]) -> None:
        """Restore :meth:`extra_state` from a checkpoint."""

    def adapt_to_new(self, images: Dataset) -> None:
        """After training, base-to-new only: ``images`` are the new classes' unlabelled training images
        (test transform, labels meaningless).  Only transductive methods use them; the card says so."""

    @classmethod
    def key_inputs(cls, cfg) -> dict:
        """Inputs outside the options that decide the results (a file's SHA-256): part of the cell key."""
        return {}

    @classmethod
    def canonical_options(cls, cfg):
        """The options in one form for the cell key, where several values run alike (CoOp's n_ctx
        null and 16): options that run the same then share one key. Default: as given."""
        return cfg

    @property
    def eval_batch_size(self) -> Optional[int]:
        """Test batch size this method's predictions depend on (None: any, the protocol's)."""
        return None

    def set_label_space(self, info: ClassInfo) -> None:
        """Classify among ``info.classnames`` from now on (learned parameters unchanged); per-class
        parameters follow ``info.training_index`` when the classes are a subset of the training ones."""
        raise BenchError(f"method {self.registry_name} cannot classify classes other than its training classes")

    @contextlib.contextmanager
    def one_label_space(self):
        """Inside, nothing that decides the text features changes (no training step, no label-space
        switch: a prediction pass), so a method whose text side does not depend on the images computes
        them once; the logits are the same as recomputing them for every batch."""
        self._text_memo = {} if SHORTCUTS.memoise_text and not self.text_depends_on_image else None
        try:
            yield
        finally:
            self._text_memo = None

    def use_label_space(self, info: ClassInfo) -> None:
        """:meth:`set_label_space`, unless ``info`` is already the current label space."""
        if info is not self.label_space:
            self.set_label_space(info)
            self.label_space = info

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels)

    def record_fields(self) -> dict:
        """Extra JSON fields for the result record (e.g. the prior a loss used)."""
        return {}

    def record_text_features(self) -> Optional[torch.Tensor]:
        """The current label space's class text features, one row per class (normalised by the caller),
        for records made with ``protocol.eval.text_features``: ``text_features()``, or None where there
        are none independent of the image (CoCoOp, LAMP; Candle's ``text_features`` is a buffer of
        template features that its fusion changes per batch)."""
        if type(self).text_depends_on_image or not callable(getattr(self, "text_features", None)):
            return None
        return self.text_features()

    def record_metrics(self) -> Dict[str, float]:
        """Numbers the method reports of itself (the record's ``method_metrics``), which report specs read as
        metrics and leaderboards leave out (MDPR: the statistics of its knowledge-base prior, Table 7)."""
        return {}

    def raw_image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Features from the frozen image encoder before normalisation (no gradient); the batch itself
        when it holds cached features."""
        if self.features_given:
            return images
        with torch.no_grad():
            return self.backbone.encode_image(images, normalize=False)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised features from the frozen image encoder (no gradient)."""
        return F.normalize(self.raw_image_features(images), dim=-1)

    def trainable_parameters(self) -> List[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def param_groups(self) -> List[Tuple[List[nn.Parameter], float]]:
        """The trainable parameters as optimizer groups ``[(params, lr_scale)]``: a group runs at the recipe's
        rate times its scale after the warm-up (the warm-up rate is the same for all, as Dassl's).
        One group by default."""
        return [(self.trainable_parameters(), 1.0)]

    def trainable_state(self) -> Dict[str, torch.Tensor]:
        names = {name for name, p in self.named_parameters() if p.requires_grad}
        return {k: v.detach().clone() for k, v in self.state_dict().items() if k in names}

    def load_trainable_state(self, state: Dict[str, torch.Tensor]) -> None:
        missing = {name for name, p in self.named_parameters() if p.requires_grad} - set(state)
        if missing:
            raise ValueError(f"checkpoint lacks trainable parameters {sorted(missing)}")
        self.load_state_dict(state, strict=False)


class DeepPromptCLIP(Method):
    """CLIP with prompts in both towers (MaPLe, IVLP): ``self.prompt_learner`` has ``text``
    (:class:`bench.model.text_prompts.ClassPrompts`), ``deep_text`` (prompts for text layers 1, 2, ...)
    and ``vision() -> (first, deep)`` (``(None, [])`` for an untouched image tower)."""

    def set_label_space(self, info: ClassInfo) -> None:
        self.prompt_learner.text.set_classnames(info.classnames, info.training_index)

    def text_features(self) -> torch.Tensor:
        text = self.prompt_learner.text
        return encode_text_deep(self.backbone, text(), text.tokens, deep=list(self.prompt_learner.deep_text))

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        first, deep = self.prompt_learner.vision()
        if first is None:
            return super().image_features(images)
        return encode_image_deep(self.backbone, images, first=first, deep=deep)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.image_features(images)
        return self.backbone.logit_scale * feats @ self.text_features().t().to(feats.dtype)


def optimizer_groups(method: Method, lr: float) -> List[dict]:
    """``method.param_groups()`` as torch optimizer groups at ``lr`` times each one's ``lr_scale``; every
    trainable parameter in exactly one."""
    groups = [{"params": list(params), "lr": lr * scale, "lr_scale": float(scale)}
              for params, scale in method.param_groups()]
    grouped = [id(p) for g in groups for p in g["params"]]
    if sorted(grouped) != sorted(id(p) for p in method.trainable_parameters()):
        raise BenchError(f"method {method.registry_name}: param_groups() must hold each trainable parameter once")
    return [g for g in groups if g["params"]]


def method_problems(cls) -> List[str]:
    """What keeps ``cls`` from being a method the suite can run and report on (empty: nothing):
    checked where a plugin registers it, so a mistake is named before any cell runs."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        return ["is not a subclass of bench.api.Method"]
    if not (isinstance(cls.Config, type) and dataclasses.is_dataclass(cls.Config)):
        return ["Config must be a @dataclass class (its fields are the method's options)"]
    try:
        cls.Config()
    except TypeError as err:
        return [f"Config needs a default for every field ({err})"]
    card = cls.card
    if not isinstance(card, MethodCard):
        return ["card must be a MethodCard(paper=..., code=..., recipes=..., reported=...)"]
    problems = [f"card.{name} must be a non-empty string" for name in ("paper", "code")
                if not isinstance(getattr(card, name), str) or not getattr(card, name).strip()]
    problems += ["card.label must be a string (how tables name the method)"] * (not isinstance(card.label, str))
    for family, recipe in dict(card.recipes).items():
        if family not in FAMILIES:
            problems.append(f"card.recipes: unknown protocol family '{family}'{suggest(str(family), FAMILIES)} "
                            f"(families: {', '.join(FAMILIES)})")
        elif not isinstance(recipe, Recipe):
            problems.append(f"card.recipes.{family} must be a Recipe(source=..., train=..., options=...)")
        else:
            try:
                check_fields(cls.Config, recipe.options, f"card.recipes.{family}.options")
                check_fields(TrainRecipe, recipe.train, f"card.recipes.{family}.train")
            except ConfigError as err:
                problems.append(str(err))
    for protocol, reported in dict(card.reported).items():
        if not isinstance(reported, Reported):
            problems.append(f"card.reported.{protocol} must be a Reported(source, metrics)")
        elif any(v is not None and (not isinstance(v, (int, float)) or not 0 <= v <= 100)
                 for v in reported.metrics.values()):
            problems.append(f"card.reported.{protocol}: metrics must be percentages from 0 to 100 "
                            "(None: the paper printed '–', which the note explains)")
    problems += [f"card.ablations[{i}] must be an Ablation(...)" for i, row in enumerate(card.ablations)
                 if not isinstance(row, Ablation)]
    if cls.fit_views is not None and (cls.trains or cls.fit_views not in VIEWS):
        problems.append(f"fit_views must be one of {', '.join(VIEWS)}, on a method with trains = False "
                        "(it fits itself instead of the epoch loop)")
    return problems
