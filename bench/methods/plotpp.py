"""PLOT++: prompt learning with optimal transport, ViT variant (Chen et al., ICLR 2023).

Follows ``CHENGY12/PLOT:plot-pp/trainers/plotpp.py`` (``MultiModalPromptLearner``, ``CustomCLIP``) and
``plot-pp/clip/model.py`` (``VisionTransformer.forward`` with prompts) at
728539feac3f8471a1663ce79020b236880e5e7b (spec_cpt_mdpr_baselines.md §6, §17.4-17.7).  CLIP is frozen:

- text: ``N`` learned contexts, one per template of the dataset's list, shared by all classes; the
  ``N·C`` prompts ``[SOT, ctx_n, <rest of template n>, name, ".", EOT]`` go through the text tower in one batch;
- vision: ``M`` passes of the image tower, pass ``m`` with its own 2 prompt tokens appended after the
  positional embedding (before ``ln_pre``, none of their own), class token pooled;
- per (image b, class c), the Sinkhorn plan ``T*`` between the ``M`` image features and the ``N`` class
  features under cost ``1 - cos`` (ε = 0.1, uniform marginals; no gradient, the official stopping rule:
  :func:`bench.model.transport.sinkhorn`), and ``z_ot = s Σ_mn T*_mn cos(f_m, t_n)`` (gradient through
  the cosines only); ``z_glob = s cos(mean_m f_m, mean_n t_n)``.

Two stages, each a method of its own with cells of its own (``bench.engine.stages``):
``plotpp@stage1`` trains the visual prompts alone on ``z_ot + z_glob`` (the text contexts stay at their
template initialisation); ``plotpp`` (stage 2) starts from stage 1's final state of the same protocol,
seed and settings and trains both on ``z_ot``, which it is scored on.  The loss is cross-entropy in both.
A stage-1 result is scored on ``z_ot + z_glob``, as the official code scores it under its own config
(§17.5).  ``plotpp@joint_only`` is stage 2 without stage 1.

REC fix (§6.1, L5): the official context length is the word count of the list's first template, and a
shorter template's context takes its EOT/padding embeddings while the first BPE token of every class name
is lost under the context (ImageNet's "this is a").  Here such a template is padded with placeholder
tokens whose context vectors are drawn from N(0, 0.02), so every name token stays;
``plotpp@quirk_truncate_name`` (``truncate_name: true``) reproduces the official prompts.  A template
longer than the context keeps its last tokens fixed behind it (EuroSAT's "of" / "a", §17.7).

Trainable at ViT-B/16 (stage 2): ``N·n_ctx·512 + M·2·768`` = 14,336 for 4-word templates (16,384 for 5
words, 18,432 for 6); stage 1: 6,144.  Predictions depend on the test batch (one stopping test for the
whole batch), so evaluation runs in the official test batch of 100.

    bench run --protocol smoke --method plotpp          # runs plotpp@stage1 first, once per seed
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.api import (METHODS, BenchError, ConfigError, Method, MethodCard, Recipe, dataset_template,
                       encode_image_hooked, sinkhorn, vision_tower, vision_width)

from .coop import CARD as COOP_CARD
from .mdpr_coop import mdpr_lt

# The per-dataset template lists (plotpp.py:73-83, CoOp's dataset class names), verbatim.
TEMPLATES: Dict[str, Tuple[str, ...]] = {
    "Caltech101": ("a photo of a", "this is a photo", "this is picture of", "one picture of a"),
    "DescribableTextures": ("a photo of a texture", "this is a photo texture", "this is a picture texture",
                            "one picture of a texture"),
    "EuroSAT": ("a centered satellite photo of", "a centered satellite picture of",
                "this is centered satellite photo of", "one centered satellite photo of a"),
    "FGVCAircraft": ("a photo of an aircraft", "a picture of an aircraft", "this is aircraft picture of",
                     "one picture of an aircraft"),
    "Food101": ("a photo of a food", "this is a food photo", " this is food picture of", "one picture of a food"),
    "ImageNet": ("a photo of a", "this is a photo ", "this is a", "one picture of a"),
    "OxfordFlowers": ("a photo of a flower", "one picture of a flower", "this is flower picture of",
                      "one picture of a flower"),
    "OxfordPets": ("a photo of a pet", "one picture of a pet", "this is pet picture of", "one picture of a pet"),
    "StanfordCars": ("a photo of a", "this is a photo ", "this is picture of", "one picture of a"),
    "SUN397": ("a photo of a", "this is a photo", "this is picture of", "one picture of a"),
    "UCF101": ("a photo of a person doing", "this is a photo people doing", "this is picture of people doing",
               "one picture of a person doing"),
}
# CIFAR-100, Places-LT and the synthetic sets have no entry (the official code raises KeyError): REC (L4)
# the Caltech101/SUN397 list.  ImageNet-LT is "ImageNet" (its classes are ImageNet's).
DEFAULT_TEMPLATES = TEMPLATES["SUN397"]


@dataclass
class PlotppConfig:
    n_text: int = field(default=4, metadata={"min": 1, "max": 4})  # N: text prompts (templates) per class
    n_visual: int = field(default=4, metadata={"min": 1, "max": 64})  # M: prompted passes of the image tower
    n_ctx_vision: int = field(default=2, metadata={"min": 1, "max": 64})  # visual prompt tokens per pass
    epsilon: float = field(default=0.1, metadata={"min": 1e-6, "max": 1e6})  # entropic regularisation
    sinkhorn_tol: float = field(default=1e-2, metadata={"min": 0, "max": 1e3})  # on mean |r - r_prev|
    sinkhorn_max_iter: int = field(default=100, metadata={"min": 1, "max": 100_000})
    # The official prompts: a template shorter than the context loses the first token of each class name.
    truncate_name: bool = False

    def validate(self, where: str) -> None:
        if not 1 <= self.n_text <= 4:
            raise ConfigError(f"{where}.n_text", "must be between 1 and 4, the length of the template lists")


def ot_logits(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor, cfg: PlotppConfig,
              with_global: bool) -> torch.Tensor:
    """Logits ``[B, C]`` from raw image features ``[M, B, d]`` and raw text features ``[N, C, d]``:
    ``z_ot``, plus ``z_glob`` with ``with_global`` (spec §6.2)."""
    M, B, N, C = image.shape[0], image.shape[1], text.shape[0], text.shape[1]
    f, t = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
    sim = torch.einsum("mbd,ncd->bcmn", f, t).reshape(B * C, M, N)
    with torch.no_grad():
        plan = sinkhorn(torch.exp(-(1 - sim) / cfg.epsilon), sim.new_full((B * C, M), 1 / M),
                        sim.new_full((B * C, N), 1 / N), cfg.sinkhorn_tol, cfg.sinkhorn_max_iter)
    if torch.isnan(plan).any():
        raise BenchError(f"PLOT++'s transport plan has NaN entries (epsilon {cfg.epsilon} underflows "
                         "exp(-cost/epsilon)); raise plotpp.epsilon")
    logits = scale * (plan * sim).sum(dim=(1, 2)).view(B, C)
    if with_global:
        pooled_f, pooled_t = F.normalize(image.mean(0), dim=-1), F.normalize(text.mean(0), dim=-1)
        logits = logits + scale * pooled_f @ pooled_t.t()
    return logits


def token_count(backbone, text: str) -> int:
    """BPE tokens of ``text`` without SOT/EOT."""
    return int((backbone.tokenize([text])[0] != 0).sum()) - 2


def prompt_texts(backbone, templates, n_ctx: int, truncate: bool) -> List[Tuple[str, int]]:
    """Each template as its prompts start, and how many of its tokens initialise the context: a shorter
    template is padded with "X" (REC) or, ``truncate``, left short (the official prompts)."""
    out = []
    for template in templates:
        count = token_count(backbone, template)
        if count < n_ctx and not truncate:
            out.append((f"{template.strip()} " + " ".join(["X"] * (n_ctx - count)), count))
        else:
            out.append((template, n_ctx))
    return out


class PlotppText(nn.Module):
    """The ``N`` contexts and the class-dependent token buffers of the ``N·C`` prompts (n-major)."""

    def __init__(self, backbone, classnames: List[str], templates, cfg: PlotppConfig):
        super().__init__()
        self.backbone_ref = [backbone]  # not a submodule
        self.n_ctx = len(templates[0].split())  # word count of the first template, as the official code
        self.texts = prompt_texts(backbone, templates[:cfg.n_text], self.n_ctx, cfg.truncate_name)
        contexts = []
        for text, kept in self.texts:
            with torch.no_grad():
                ctx = backbone.embed_tokens(backbone.tokenize([text]))[0, 1:1 + self.n_ctx].clone().float()
            ctx[kept:] = nn.init.normal_(torch.empty_like(ctx[kept:]), std=0.02)  # REC padding only
            contexts.append(ctx)
        self.ctx = nn.Parameter(torch.stack(contexts))  # [N, n_ctx, width]
        self.set_classnames(classnames)

    def set_classnames(self, classnames: List[str]) -> None:
        backbone = self.backbone_ref[0]
        sentences = [f"{text} {name}." for text, _ in self.texts for name in classnames]
        longest = max(token_count(backbone, s) for s in sentences) + 2
        if longest > backbone.context_length:
            raise BenchError(f"PLOT++ prompts need {longest} tokens but the text encoder takes "
                             f"{backbone.context_length}")
        tokens = backbone.tokenize(sentences).to(self.ctx.device)
        with torch.no_grad():
            embedding = backbone.embed_tokens(tokens)
        self.classes = len(classnames)
        self.register_buffer("tokens", tokens, persistent=False)
        self.register_buffer("token_prefix", embedding[:, :1], persistent=False)
        self.register_buffer("token_suffix", embedding[:, 1 + self.n_ctx:], persistent=False)

    def forward(self) -> torch.Tensor:
        """Prompt embeddings ``[N·C, L, width]``."""
        n, n_ctx, width = self.ctx.shape
        ctx = self.ctx.unsqueeze(1).expand(n, self.classes, n_ctx, width).reshape(n * self.classes, n_ctx, width)
        return torch.cat([self.token_prefix, ctx.to(self.token_prefix.dtype), self.token_suffix], dim=1)


class PLOTPPBase(Method):
    """PLOT++'s model; the subclasses fix the stage."""

    Config = PlotppConfig
    stage: ClassVar[int] = 2
    depends_on: ClassVar[Tuple[str, ...]] = ()

    def __init__(self, backbone, data, cfg: PlotppConfig):
        super().__init__(backbone, data, cfg)
        vision_tower(backbone)  # a ViT pooling its class token, or Unfit
        self.templates = dataset_template(data, TEMPLATES, DEFAULT_TEMPLATES)
        self.prompt_learner = PlotppText(backbone, data.classnames, self.templates, cfg)
        shape = (cfg.n_visual, cfg.n_ctx_vision, vision_width(backbone))
        self.ctx_vision = nn.Parameter(nn.init.normal_(torch.empty(shape, device=backbone.device), std=0.02))
        self.prompt_learner.to(backbone.device)
        if self.stage == 1:  # stage 1 trains the visual prompts only (plotpp.py:290-296, MODEL_UPD "vision")
            self.prompt_learner.ctx.requires_grad_(False)

    @property
    def with_global(self) -> bool:
        return self.stage == 1  # TRADE_OFF: True in stage 1, False in stage 2

    @property
    def eval_batch_size(self) -> Optional[int]:
        return 100  # vit.yaml's test batch: the stopping test spans the batch

    def set_label_space(self, info) -> None:
        self.prompt_learner.set_classnames(info.classnames)

    def text_features(self) -> torch.Tensor:
        """Raw text features ``[N, C, d]``."""
        text = self.prompt_learner
        feats = self.backbone.encode_prompts(text(), text.tokens, normalize=False)
        return feats.view(text.ctx.shape[0], text.classes, -1)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Raw image features ``[M, B, d]``: the ``M`` prompted passes as one batch of ``M·B``."""
        visual, prompts = vision_tower(self.backbone), self.ctx_vision
        M, B = prompts.shape[0], images.shape[0]

        def append_prompts(i: int, x: torch.Tensor) -> torch.Tensor:
            if i != 0:
                return x
            # ln_pre acts token by token, so normalising the prompts apart equals the official ln_pre(cat)
            p = visual.ln_pre(prompts.to(x.dtype)).to(x.dtype).unsqueeze(1).expand(M, B, -1, -1)
            return torch.cat([x.unsqueeze(0).expand(M, -1, -1, -1), p], dim=2).reshape(M * B, -1, x.shape[-1])

        return encode_image_hooked(self.backbone, images, append_prompts, normalize=False).view(M, B, -1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        image = self.image_features(images).float()
        return ot_logits(image, self.text_features().float(), self.backbone.logit_scale.float(), self.cfg,
                         self.with_global)

    def record_text_features(self) -> torch.Tensor:
        return self.text_features().mean(0)  # the pooled class features z_glob uses

    def record_fields(self) -> dict:
        return {"stage": self.stage, "scored": "z_ot + z_glob" if self.with_global else "z_ot",
                "templates": [text for text, _ in self.prompt_learner.texts], "n_ctx": self.prompt_learner.n_ctx}


MDPR_NOTE = "MDPR's run with its common recipe (AdamW 1e-3, 20 epochs, batch 128)"
LT = Recipe(source="MDPR App. A.1.1 common recipe for each stage (spec §6.4, B14); architecture from "
                   "plot-pp/scripts (M 4, N 4, N_CTX_V 2)", train=dict(COOP_CARD.recipes["lt"].train))
# vit.yaml (SGD 0.002, batch 32, 1 constant warm-up epoch, cosine: Dassl's defaults) with train.py's
# epochs per shot count (§17.4): 50 at 1 shot, 100 at 2 and 4, 200 at 8 and 16; 50 on ImageNet.
FEW_SHOT = dict(train={"epochs": 200, "batch_size": 32, "lr": 0.002},
                by_shots={1: {"epochs": 50}, 2: {"epochs": 100}, 4: {"epochs": 100}},
                by_dataset={"ImageNet": {"train": {"epochs": 50}}})
OFFICIAL = "plot-pp/configs/trainers/PLOTPP/vit.yaml + train.py epochs per shot count, per stage"
RECIPES = {
    "lt": LT,
    "b2n_fs": Recipe(source=OFFICIAL, **FEW_SHOT),
    **{family: Recipe(source=f"{OFFICIAL} (16 shots); project choice: the repo has no base-to-new or "
                             "cross-dataset scripts, and no seed paper ran PLOT++ there", **FEW_SHOT)
       for family in ("b2n_lt16", "b2n_lt100")},
}
PAPER = ("Chen, Yao, Song, Li, Rao, Zhang. PLOT: Prompt Learning with Optimal Transport for Vision-Language "
         "Models. ICLR 2023 (arXiv:2210.01253)")
CODE = "CHENGY12/PLOT:plot-pp/trainers/plotpp.py@728539feac3f8471a1663ce79020b236880e5e7b"
SPEC = "spec_cpt_mdpr_baselines.md §6, §17.4-17.7 (B13-B15); official pure fp16, here fp32 + autocast"


# one card per registered name, each a MethodCard(paper=...) statement so `bench list` reads it from source
STAGE1_CARD = MethodCard(label="PLOT++ (stage 1)", paper=PAPER, code=CODE, spec=SPEC, recipes=RECIPES)
CARD = MethodCard(label="PLOT++", paper=PAPER, code=CODE, spec=SPEC, recipes=RECIPES, reported={
    "cifar100_lt_ir10": mdpr_lt(75.52, 78.83, 68.16, note=MDPR_NOTE),
    "cifar100_lt_ir50": mdpr_lt(70.73, 82.95, 64.54, 57.00, note=MDPR_NOTE),
    "cifar100_lt_ir100": mdpr_lt(68.37, 81.89, 67.54, 53.57, note=MDPR_NOTE),
})
JOINT_CARD = MethodCard(label="PLOT++ (joint only)", paper=PAPER, code=CODE, spec=SPEC, recipes=RECIPES)
STAGE1_QUIRK_CARD = MethodCard(label="PLOT++ (stage 1, official truncated names)", paper=PAPER, code=CODE,
                               spec=SPEC, recipes=RECIPES)
QUIRK_CARD = MethodCard(label="PLOT++ (official truncated names)", paper=PAPER, code=CODE, spec=SPEC,
                        recipes=RECIPES)


@METHODS.register("plotpp@stage1")
class PLOTPPStage1(PLOTPPBase):
    """PLOT++ stage 1: the M visual prompts trained alone on z_ot + z_glob (plotpp starts from its cells)."""

    stage = 1
    card = STAGE1_CARD

    def extra_state(self) -> Dict[str, torch.Tensor]:
        return {"prompt_learner.ctx": self.prompt_learner.ctx.detach().clone()}  # frozen here; stage 2 starts from it

    def load_extra_state(self, state: Dict[str, torch.Tensor]) -> None:
        if "prompt_learner.ctx" in state:
            with torch.no_grad():
                self.prompt_learner.ctx.copy_(state["prompt_learner.ctx"])


@METHODS.register("plotpp")
class PLOTPP(PLOTPPBase):
    """PLOT++: N text and M visual prompts matched per class by optimal transport, in two stages (Chen et al., 2023)."""

    depends_on = ("plotpp@stage1",)
    card = CARD


@METHODS.register("plotpp@joint_only")
class PLOTPPJointOnly(PLOTPPBase):
    """PLOT++ without stage 1: both prompt sets trained on z_ot from their initialisation."""

    card = JOINT_CARD


@dataclass
class TruncatedConfig(PlotppConfig):
    truncate_name: bool = True


@METHODS.register("plotpp@stage1_quirk_truncate_name")
class PLOTPPStage1Truncated(PLOTPPStage1):
    """PLOT++ stage 1 with the official prompts (the stage plotpp@quirk_truncate_name starts from)."""

    Config = TruncatedConfig
    card = STAGE1_QUIRK_CARD


@METHODS.register("plotpp@quirk_truncate_name")
class PLOTPPTruncated(PLOTPP):
    """PLOT++ with the official prompts: a template shorter than the context drops each class name's first token."""

    Config = TruncatedConfig
    depends_on = ("plotpp@stage1_quirk_truncate_name",)
    card = QUIRK_CARD
