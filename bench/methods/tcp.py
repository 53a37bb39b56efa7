"""TCP: textual-based class-aware prompt tuning (Yao, Zhang, Xu, CVPR 2024).

Follows ``htyao89/Textual-based_Class-aware_prompt_tuning:trainers/tcp.py`` (``PromptLearner``,
``CustomCLIP``) and ``trainers/clip_text/model.py`` (``ResidualAttentionBlock_MaPLe``) at
bd97bec6bd4901baaf318e9e8f073f618d12066e (spec_lamp_baselines.md §4).  With ``ORI`` and ``PROMPT`` the
dataset's two templates (:data:`ORI_TEMPLATES`, :data:`PROMPT_TEMPLATES`):

    Tori_c = norm(E_txt(ORI.format(c)))                         frozen, [C, d]
    Q      = reshape(TKE(Tori), [C, 4, D])                      TKE: Linear(d, d/4), QuickGELU, Linear(d/4, 4·D)
    P_c    = PROMPT.format(c) with its tokens 1..4 replaced by the learned context v_1..v_4
    x^k[:, 1:5] ← w·Q + (1 − w)·x^k[:, 1:5]                   at the input of text block k = insert_layer (8)
    L      = CE(s · cos(f(x), g(P_c)), y) + kg_weight · (1 − mean_c cos(g(P_c), Tori_c))

with ``w = tke_fusion`` (1: the official code overwrites its W with a literal 1.0), ``kg_weight`` 8
(a literal in the official loss; the config's W never reaches it, spec B1) and the mean over every
class of the classifier.  For other classes (new ones, a cross-dataset target) ``Tori`` and so ``Q``
are recomputed from their names with the trained TKE ("TKE dynamically generates class-aware prompts
related to the unseen classes", abstract), and both templates follow the evaluated dataset.
Ported choices (spec §11): ``insert_layer`` is an option checked against the text tower (the
official literal 8 silently does nothing on a tower of 8 or fewer blocks), and TKE's output width is
the tower's (the official reshape hard-codes 512).  The context is 4 random N(0, 0.02) vectors
(official ``CTX_INIT: False``); ``init_text`` starts it from 4 words instead (PromptLT's choice).
Precision: the official runs are pure fp16 (``Tori`` from a second fp16 CLIP copy); here fp32
parameters with the trainer's autocast, ``Tori`` in fp32.  The official optimiser is Adam with
eps 1e-3 and L2 weight decay coupled into the gradient (a README patch to Dassl); ``tcp@eps1e-8``
trains with torch's default eps (spec B2).

Trainable at ViT-B/16: ``2,048 + 65,664 + 264,192 = 331,904`` parameters, for any number of classes.

    bench run --protocol smoke_b2n --method tcp tcp@eps1e-8      # the smoke protocols set insert_layer 1
    bench run --protocol 'b2n_lamp/dtd/imb10' --method tcp --data-root $DATA
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import List, NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.api import (METHODS, BenchError, ClassPrompts, ConfigError, Method, MethodCard, Recipe,
                       check_init_text, dataset_template, pooled_span, run_blocks, text_layers, text_output,
                       text_tokens)

from .coop import CARD as COOP_CARD
from .kgcoop import hand_crafted_features, kg_loss
from .lamp_tables import balanced_reported

N_TOKENS = 4  # context and class tokens (both literal 4 in the official code, spec B4)

# TKE's input and the KG target (tcp.py:42-58).
ORI_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of an aircraft {}.",
    "DescribableTextures": "a photo of a {}, a type of texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of a {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}
# The learned prompt's text: its first 4 tokens become the context (tcp.py:60-76; Cars has no period).
PROMPT_TEMPLATES = {
    "OxfordPets": "X X X X {}, a type of pet.",
    "OxfordFlowers": "X X X X {}, a type of flower.",
    "FGVCAircraft": "X X X X {}, a type of aircraft.",
    "DescribableTextures": "X X X X {} texture.",
    "EuroSAT": "X X X X {}.",
    "StanfordCars": "X X X X {}, a type of car",
    "Food101": "X X X X {}, a type of food.",
    "SUN397": "X X X X {}.",
    "Caltech101": "X X X X {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}
DEFAULT_PROMPT = "X X X X {}."  # datasets outside both tables (spec §7.2); ORI falls back to the label space's


@dataclass
class TCPConfig:
    # Words whose 4 token embeddings start the context; null: N(0, 0.02) (official CTX_INIT: False).
    init_text: Optional[str] = None
    # The 0-based text block at whose input the class tokens replace positions 1..4 (official: 8 of 12).
    insert_layer: int = field(default=8, metadata={"min": 1})
    tke_fusion: float = field(default=1.0, metadata={"min": 0, "max": 1})  # w: the class tokens' share
    kg_weight: float = field(default=8.0, metadata={"min": 0})

    def validate(self, where: str) -> None:
        check_init_text(self.init_text, where)


class TCPOutput(NamedTuple):
    """Training-mode output: the logits and the normalised class text features L_kg compares."""

    logits: torch.Tensor  # [B, C]
    text: torch.Tensor  # [C, d]


def n_tokens(backbone, text: str) -> int:
    """BPE tokens of ``text`` without the start and end tokens."""
    return int((backbone.tokenize([text])[0] != 0).sum().item()) - 2


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class TemplatePrompts(ClassPrompts):
    """Class prompts from a template: the template's first ``n_ctx`` tokens after SOS are the context."""

    def __init__(self, backbone, classnames: List[str], template: str, init_text: Optional[str], where: str):
        self.template = template  # read by set_classnames, which ClassPrompts.__init__ calls
        super().__init__(backbone, classnames, N_TOKENS, init_text, where=where)

    def set_classnames(self, classnames: List[str], training_index: Optional[List[int]] = None) -> None:
        backbone = self.backbone_ref[0]
        if n_tokens(backbone, self.template.split("{}", 1)[0]) < self.n_ctx:
            raise BenchError(f"{self.where}: the prompt template '{self.template}' has fewer than {self.n_ctx} "
                             "tokens before the class name, which the context would replace")
        texts = [self.template.format(name) for name in classnames]
        self.check_length(max(n_tokens(backbone, text) for text in texts) + 2)
        self.classnames, self.name_lens = list(classnames), [n_tokens(backbone, name) for name in classnames]
        tokens = backbone.tokenize(texts)
        with torch.no_grad():
            embedding = backbone.embed_tokens(tokens)
        device = self.ctx.device if getattr(self, "ctx", None) is not None else tokens.device
        self.register_buffer("tokens", tokens.to(device), persistent=False)
        self.register_buffer("token_prefix", embedding[:, :1].to(device), persistent=False)
        self.register_buffer("token_suffix", embedding[:, 1 + self.n_ctx:].to(device), persistent=False)


class TCPPrompts(nn.Module):
    """The context (in ``text``), TKE, and the frozen ORI features ``ori`` of the current classes."""

    def __init__(self, backbone, info, classnames: List[str], cfg: TCPConfig, where: str):
        super().__init__()
        layers = text_layers(backbone)
        if not 1 <= cfg.insert_layer <= layers - 1:
            raise ConfigError(f"{where}.insert_layer", f"must be between 1 and {layers - 1}: the class tokens replace "
                              f"the input of a text block after the first, and the text transformer has {layers}")
        if cfg.init_text and n_tokens(backbone, cfg.init_text) != N_TOKENS:
            raise ConfigError(f"{where}.init_text", f"must be {N_TOKENS} tokens (the context positions the class "
                              f"tokens replace); '{cfg.init_text}' has {n_tokens(backbone, cfg.init_text)}")
        self.backbone_ref = [backbone]  # not a submodule
        self.text = TemplatePrompts(backbone, classnames, dataset_template(info, PROMPT_TEMPLATES, DEFAULT_PROMPT),
                                    cfg.init_text, where)
        embed, width = backbone.embed_dim, backbone.width
        self.tke = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(embed, embed // 4, device=backbone.device)),
            ("act", QuickGELU()),
            ("linear2", nn.Linear(embed // 4, N_TOKENS * width, device=backbone.device)),
        ]))
        self.register_buffer("ori", hand_crafted_features(backbone, classnames, dataset_template(info, ORI_TEMPLATES)),
                             persistent=False)

    def use(self, info, classnames: List[str]) -> None:
        """Prompts and ORI features for ``classnames`` with the templates of ``info``'s dataset."""
        self.text.template = dataset_template(info, PROMPT_TEMPLATES, DEFAULT_PROMPT)
        self.text.set_classnames(classnames)
        self.ori = hand_crafted_features(self.backbone_ref[0], classnames, dataset_template(info, ORI_TEMPLATES))

    def class_tokens(self) -> torch.Tensor:
        """Q ``[C, 4, D]``: TKE of the ORI features."""
        return self.tke(self.ori).reshape(self.ori.shape[0], N_TOKENS, -1)


def encode_with_class_tokens(backbone, prompts: torch.Tensor, tokens: torch.Tensor, class_tokens: torch.Tensor,
                             layer: int, fusion: float, normalize: bool = True) -> torch.Tensor:
    """Text features ``[C, d]`` (normalised unless told) of prompt embeddings ``[C, L, D]`` whose positions
    ``1..n`` take ``fusion · class_tokens + (1 − fusion) · x`` at the input of text block ``layer``."""
    n = class_tokens.shape[1]
    span = max(pooled_span(backbone, tokens), 1 + n)

    def hook(i: int, x: torch.Tensor) -> torch.Tensor:
        if i != layer:
            return x
        mixed = fusion * class_tokens.to(x.dtype) + (1 - fusion) * x[:, 1:1 + n]
        return torch.cat([x[:, :1], mixed, x[:, 1 + n:]], dim=1)

    x = run_blocks(backbone.text.transformer, text_tokens(backbone, prompts[:, :span]), hook,
                   attn_mask=backbone.text.attn_mask)
    return text_output(backbone, x, tokens[:, :span], normalize)


TCP_CODE = "htyao89/Textual-based_Class-aware_prompt_tuning:trainers/tcp.py@bd97bec6bd4901baaf318e9e8f073f618d12066e"
TCP_PAPER = ("Yao, Zhang, Xu. TCP: Textual-based Class-aware Prompt tuning for Visual-Language Model. "
             "CVPR 2024 (arXiv:2311.18231)")
TCP_SPEC = ("spec_lamp_baselines.md §4 (B1-B5, B7, B9); precision: official pure fp16, here fp32 + autocast, "
            "Tori in fp32 (§7.4, §11.3)")
TCP_SOURCE = "TCP configs/trainers/TCP/vit_b16_ep100_ctxv1.yaml + scripts/base2new_train.sh + README Adam eps"
# Adam (Dassl's: coupled L2 5e-4) with eps 1e-3, lr 0.002, batch 32, 50 epochs, 1 constant warm-up epoch at
# 1e-5, cosine; train.py:136-137 trains ImageNet and SUN397 25 epochs whatever the config says (spec B3).
TCP_B2N = dict(options={"insert_layer": 8, "tke_fusion": 1.0, "kg_weight": 8.0, "init_text": None},
               train={"optimizer": "adam", "eps": 1e-3, "lr": 0.002, "weight_decay": 5e-4, "batch_size": 32,
                      "epochs": 50},
               by_dataset={name: {"train": {"epochs": 25}} for name in ("ImageNet", "SUN397")})


def tcp_recipes(note: str = "", options: Optional[dict] = None) -> dict:
    """TCP's recipe per family (spec §4.5); ``note`` is added to each source, ``options`` to each recipe's."""
    b2n = {**TCP_B2N, "options": {**TCP_B2N["options"], **(options or {})}}
    return {
        "b2n_lt100": Recipe(source=f"{TCP_SOURCE} (LAMP §4.1 'provided settings'){note}", **b2n),
        "b2n_lt16": Recipe(source=f"{TCP_SOURCE}; project choice: CPT did not run TCP{note}", **b2n),
        **{family: Recipe(source=f"{TCP_SOURCE} on the ImageNet source (25 epochs); project choice: the repo has "
                                 f"no cross-dataset config (spec B9){note}", **b2n)
           for family in ("xd_lt100", "xd_lt16")},
        "lt": Recipe(source=f"project choice: CoOp's lt recipe (MDPR App. A.1.2) with TCP's options{note}",
                     options=dict(b2n["options"]), train=dict(COOP_CARD.recipes["lt"].train)),
    }


CARD = MethodCard(label="TCP", paper=TCP_PAPER, code=TCP_CODE, spec=TCP_SPEC, recipes=tcp_recipes(),
                  reported=balanced_reported("tcp"))


@METHODS.register("tcp")
class TCP(Method):
    """TCP: CoOp context plus class-aware tokens mapped from the class embeddings by TKE (Yao et al., 2024)."""

    Config = TCPConfig
    card = CARD
    frozen_image_tower = True  # prompts only in the text tower: features may come from a cache

    def __init__(self, backbone, data, cfg: TCPConfig):
        super().__init__(backbone, data, cfg)
        self.prompt_learner = TCPPrompts(backbone, data, self.classes_of(data), cfg, f"method {self.registry_name}")

    def classes_of(self, info) -> List[str]:
        """The classes the classifier holds for label space ``info``."""
        return list(info.classnames)

    def set_label_space(self, info) -> None:
        self.prompt_learner.use(info, self.classes_of(info))

    def text_features(self) -> torch.Tensor:
        learner = self.prompt_learner
        return encode_with_class_tokens(self.backbone, learner.text(), learner.text.tokens, learner.class_tokens(),
                                        self.cfg.insert_layer, self.cfg.tke_fusion)

    def forward(self, images: torch.Tensor):
        """Logits ``[B, C]``; in training a :class:`TCPOutput`."""
        feats = self.image_features(images)
        text = self.text_features()
        logits = self.backbone.logit_scale * feats @ text.t().to(feats.dtype)
        return TCPOutput(logits, text) if self.training else logits

    def class_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels)

    def loss(self, output: TCPOutput, labels: torch.Tensor) -> torch.Tensor:
        kg = kg_loss(output.text, self.prompt_learner.ori)
        return self.class_loss(output.logits, labels) + self.cfg.kg_weight * kg


def with_eps(recipes: dict, eps: float) -> dict:
    """``recipes`` with Adam's eps set to ``eps`` wherever they train with Adam."""
    return {family: dataclasses.replace(r, train={**r.train, "eps": eps}) if r.train.get("optimizer") == "adam" else r
            for family, r in recipes.items()}


EPS8_CARD = MethodCard(label="TCP (Adam eps 1e-8)", paper=TCP_PAPER, code=TCP_CODE,
                       spec=f"{TCP_SPEC}; B2: torch's default Adam eps instead of the official 1e-3",
                       recipes=with_eps(tcp_recipes(", eps 1e-8 (spec B2 variant)"), 1e-8))


@METHODS.register("tcp@eps1e-8")
class TCPEps8(TCP):
    """TCP trained with Adam eps 1e-8 (torch's default) instead of the official 1e-3 (spec B2)."""

    card = EPS8_CARD
