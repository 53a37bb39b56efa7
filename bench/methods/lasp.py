"""LASP: language-aware soft prompting (Bulat & Tzimiropoulos, CVPR 2023), and LASP-V (virtual classes).

No official code was found (spec_cpt_mdpr_baselines.md §0, S1): this follows the **third-party**
re-implementation ``xytian1008/ArGue:trainers/lasp.py`` (``PromptLearner``, ``CustomCLIP``, ``LASP.build_model``)
with ``trainers/losses.py`` and ``configs/trainers/LASP/vit_b16_c4_ep25_batch32_cls_t2t_5_wcl_25_g1_b.yaml``
at ea80f71d2b630f0b6b3be5d15d105adaf0a44703 (spec §7).  The paper's equations were not readable; what is
below is that code:

    u_c  = norm(g(t_c) + w)                     CoOp prompt "[SOS] v_1..v_4 <c>. [EOS]", class-agnostic bias w
    f    = norm(E_i^LN(x))                      vision tower with its blocks' ln_1/ln_2 fine-tuned (lr × 0.1)
    L_ce = CE(s · f uᵀ, y)
    h_lj = norm(E_t(template_l(j)))             35 frozen hand-crafted prompts (LASP_PROMPTS, verbatim)
    L_tt = mean_{l,j} −log softmax_i(s · u_i · h̃_lj)[j],   h̃ = h + 0.05·N(0, I) with probability 0.5 per step
    L    = L_ce + α_L · L_tt                    (α_L 5)

``lasp`` classifies the hand-crafted features of the training classes only; ``lasp_v`` adds the names of
the classes evaluated later (``ClassInfo.new_classnames``: LASP's virtual classes), so it is class-name
transductive, as the ArGue code always is (it passes every class name of the dataset, spec S3).  Grouped
LASP (the paper's prompt groups) is not in any readable source and is not implemented (``groups`` 1, S2).
The LayerNorm copies are the method's own (the shared backbone stays frozen, bench.model.backbone_tuning).

Trainable at ViT-B/16: ctx 2,048 + w 512 + 24 LayerNorms × 1,536 = 39,424 parameters.

    bench run --protocol smoke --method lasp --set lasp.t2t_weight=2
    bench run --protocol smoke_b2n --method lasp_v
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, List, NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.api import (METHODS, ClassPrompts, ConfigError, Method, MethodCard, Recipe, Reported, TunedParameters,
                       block_parameter_names, check_init_text, template_bank, text_to_text_loss, vision_tower)

from .coop import CARD as COOP_CARD
from .mdpr_coop import mdpr_lt

# LASP_PROMPTS of the ep25/bs32 config, in its order, with its duplicate "a bad photo of the {}.".
LASP_PROMPTS = (
    "a photo of a {}, a type of flower.", "a photo of a person doing {}.", "a centered satellite photo of {}.",
    "a photo of a {}, a type of aircraft.", "{} texture.", "itap of a {}.", "a bad photo of the {}.",
    "a origami {}.", "a photo of the large {}.", "a {} in a video game.", "art of the {}.",
    "a photo of the small {}.", "a photo of a {}.", "a photo of many {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a pixelated photo of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a close-up photo of the {}.", "a low resolution photo of a {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a blurry photo of a {}.", "a pixelated photo of a {}.",
    "itap of the {}.", "a jpeg corrupted photo of the {}.", "a good photo of a {}.",
)


@dataclass
class LASPConfig:
    init_text: Optional[str] = "a photo of a"  # CTX_INIT; null: n_ctx vectors from N(0, 0.02)
    n_ctx: int = field(default=4, metadata={"min": 1})  # equal to init_text's token count when it is set
    t2t_weight: float = field(default=5.0, metadata={"min": 0})  # α_L (LASP_LOSS_WEIGHT)
    bias: bool = True  # the class-agnostic bias w (ENABLE_CORRECTION, TRAIN_W)
    tune_vision_ln: bool = True  # fine-tune ln_1/ln_2 of every vision block (FINETUNE_VIT_LN)
    ln_lr_scale: float = field(default=0.1, metadata={"min": 0})  # their rate: the recipe's lr times this
    noise_prob: float = field(default=0.5, metadata={"min": 0, "max": 1})  # chance per step of noising h
    noise_std: float = field(default=0.05, metadata={"min": 0})
    groups: int = 1  # grouped LASP: no readable source specifies it (spec S2), so only 1

    def validate(self, where: str) -> None:
        check_init_text(self.init_text, where)
        if self.groups != 1:
            raise ConfigError(f"{where}.groups", "grouped LASP is not implemented (no source specifies the "
                                                 "groups, spec_cpt_mdpr_baselines.md S2); use 1")


class LASPOutput(NamedTuple):
    """Training-mode output: the logits and the normalised learned features of the text-to-text classes."""

    logits: torch.Tensor  # [B, C]
    text: torch.Tensor  # [C_tt, d]; its first C rows are the classifier's


ARGUE = "xytian1008/ArGue configs/trainers/LASP/vit_b16_c4_ep25_batch32_cls_t2t_5_wcl_25_g1_b.yaml"
# SGD 0.032 (momentum 0.9, wd 5e-4: Dassl's), batch 32, 25 epochs, 3 warm-up epochs at 1e-5, amp, and the
# gradients' total norm clipped to 1.0 before each step (lasp.py:357-358).
B2N = dict(options={"t2t_weight": 5.0, "ln_lr_scale": 0.1},
           train={"optimizer": "sgd", "lr": 0.032, "batch_size": 32, "epochs": 25, "warmup_epochs": 3,
                  "warmup_lr": 1e-5, "weight_decay": 5e-4, "grad_clip": 1.0})
MDPR = "MDPR's run with its common recipe (AdamW 1e-3, 20 epochs, batch 128)"
# A third-party re-implementation (no official code was found): the card's spec says so.
CODE = "xytian1008/ArGue:trainers/lasp.py@ea80f71d2b630f0b6b3be5d15d105adaf0a44703"
PAPER = ("Bulat, Tzimiropoulos. LASP: Text-to-Text Optimization for Language-Aware Soft Prompting of Vision & "
         "Language Models. CVPR 2023 (arXiv:2210.01115)")
V_PAPER = ("Bulat, Tzimiropoulos. LASP: Text-to-Text Optimization for Language-Aware Soft Prompting of Vision & "
           "Language Models. CVPR 2023 (arXiv:2210.01115). Class-name transductive: uses the new class names in "
           "training")


def recipes(note: str = "") -> dict:
    b2n = {family: Recipe(source=f"{ARGUE} (spec §7.3, §11){note}", **B2N)
           for family in ("b2n_lt100", "b2n_lt16", "b2n_fs", "xd_lt100", "xd_lt16")}
    lt = Recipe(source="MDPR App. A.1.1 common recipe (spec §7.3, §11: LN group at lr × 0.1, α_L 5)",
                options=dict(B2N["options"]), train=dict(COOP_CARD.recipes["lt"].train))
    return {**b2n, "lt": lt}


CARD = MethodCard(
    label="LASP", paper=PAPER, code=CODE,
    spec="spec_cpt_mdpr_baselines.md §7 (S1-S6, B16-B17); code: a third-party re-implementation inside ArGue "
         "(CVPR 2024), no official LASP code was found; precision: amp as the ArGue config, fp32 master weights",
    recipes=recipes(),
    reported={
        "cifar100_lt_ir10": mdpr_lt(68.57, 72.64, 59.52, note=MDPR),
        "cifar100_lt_ir50": mdpr_lt(63.76, 76.49, 57.15, 49.83, note=MDPR),
        "cifar100_lt_ir100": mdpr_lt(61.29, 76.49, 60.17, 44.87, note=MDPR),
        "b2n_cpt/*/tau1": Reported(
            "MMA README (LASP row; spec §7, b2n_anchors §5.1)", {"base": 82.70, "new": 74.90, "hm": 78.61},
            "balanced 16-shot base-to-new, average of the 11 datasets as LASP's paper prints it (LASP-V or not "
            "is not stated there)"),
    },
)


@METHODS.register("lasp")
class LASP(Method):
    """LASP: CoOp prompts also classifying hand-crafted text prompts, with a bias and tuned vision LayerNorms."""

    Config = LASPConfig
    card = CARD
    virtual_classes: ClassVar[bool] = False  # lasp_v: the text-to-text loss also covers the new class names

    def __init__(self, backbone, data, cfg: LASPConfig):
        super().__init__(backbone, data, cfg)
        self.n_classes = len(data.classnames)
        self.prompt_learner = ClassPrompts(backbone, self.prompt_names(data), cfg.n_ctx, cfg.init_text,
                                           where=f"method {self.registry_name}")
        self.bias = nn.Parameter(torch.zeros(1, backbone.embed_dim, device=backbone.device)) if cfg.bias else None
        self.vision_ln = None
        if cfg.tune_vision_ln:
            visual = vision_tower(backbone)
            self.vision_ln = TunedParameters(visual, block_parameter_names(visual, ("ln_1", "ln_2")))
        self.register_buffer("bank", template_bank(backbone, LASP_PROMPTS, self.t2t_names()), persistent=False)

    def t2t_names(self) -> List[str]:
        """The class names the text-to-text loss classifies (lasp_v: the training and the new classes)."""
        names = list(self.data.classnames)
        return names + [n for n in self.data.new_classnames if n not in names] if self.virtual_classes else names

    def prompt_names(self, info) -> List[str]:
        """The training label space's prompts cover the text-to-text names (the classifier uses the first C)."""
        return self.t2t_names() if list(info.classnames) == list(self.data.classnames) else list(info.classnames)

    def set_label_space(self, info) -> None:
        self.n_classes = len(info.classnames)
        self.prompt_learner.set_classnames(self.prompt_names(info))

    def class_features(self) -> torch.Tensor:
        """``norm(g(t) + w)`` for every prompt of the prompt learner."""
        text = self.backbone.encode_prompts(self.prompt_learner(), self.prompt_learner.tokens, normalize=False)
        return F.normalize(text if self.bias is None else text + self.bias.to(text.dtype), dim=-1)

    def text_features(self) -> torch.Tensor:
        return self.class_features()[: self.n_classes]

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        if self.vision_ln is None:
            return super().image_features(images)
        return F.normalize(self.vision_ln(images), dim=-1)

    def forward(self, images: torch.Tensor):
        """Logits ``[B, C]``; in training a :class:`LASPOutput`."""
        feats = self.image_features(images)
        text = self.class_features() if self.training else self.text_features()
        logits = self.backbone.logit_scale * feats @ text[: self.n_classes].t().to(feats.dtype)
        return LASPOutput(logits, text) if self.training else logits

    def loss(self, output: LASPOutput, labels: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(output.logits, labels)
        if self.cfg.t2t_weight == 0:
            return ce
        return ce + self.cfg.t2t_weight * text_to_text_loss(output.text, self.noisy_bank(), self.backbone.logit_scale)

    def noisy_bank(self) -> torch.Tensor:
        """The hand-crafted features, noised on a coin flip drawn as ArGue draws it (lasp.py:221-223)."""
        if torch.rand(1).item() < self.cfg.noise_prob:
            return self.bank + self.cfg.noise_std * torch.randn_like(self.bank)
        return self.bank

    def param_groups(self):
        tuned = [] if self.vision_ln is None else list(self.vision_ln.parameters())
        rest = [p for p in self.trainable_parameters() if all(p is not q for q in tuned)]
        return [(rest, 1.0), (tuned, self.cfg.ln_lr_scale)]


@METHODS.register("lasp_v")
class LASPV(LASP):
    """LASP-V: LASP whose text-to-text loss also classifies the new classes' names (class-name transductive)."""

    virtual_classes = True
    card = MethodCard(
        label="LASP-V", paper=V_PAPER, code=CODE,
        spec=CARD.spec + "; virtual classes = ClassInfo.new_classnames (S3)",
        recipes=recipes("; text-to-text loss over base and new names, as the ArGue code always trains"),
    )
