"""TextRefiner: CoOp's class text features refined by a memory of local visual features (Xie, Zhang, Peng, Huang,
Cao; AAAI 2025), the CoOp-based trainer (spec_cpt_mdpr_baselines.md §8, ambiguity T5).

Follows ``xjjxmu/TextRefiner:trainers/textrefiner.py`` (``CustomCLIP``, ``Memory``, ``TextRefiner``) and its
tower code ``clip/model.py`` at fd1e6938acbf1c2800087d1e8a41aa109e6d5fef (the paper's method section could not
be read: the port is code-first, spec §0).  With ``t`` the normalised CoOp text features (4 context tokens from
"a photo of a"), ``f`` the normalised image feature, ``Z`` every output token of the last vision block through
``ln_post`` and ``proj`` and ``A`` that block's head-averaged attention of the class token to the patches:

    read     P = softmax_slots(norm(t) · cacheᵀ),   t̃ = α · W_e [t ; P · cache] + t     (t̃ not re-normalised)
    logits   z = s · f · t̃ᵀ
    local    Z' = MLP_BN(Z) (training only),  loc = [Z'_cls, Z'_top-k(A), mean_tokens Z']  (k + 2 per image)
    loss     L = CE(z, y) + CE(s · loc · tᵀ, y repeated k + 2 times) / β + γ · mean |norm(t̃) − t|
    write    after the read, without gradient: every token of norm(Z') moves its nearest slot (momentum 0.8,
             weights softmax over tokens / their maximum), then the cache rows are re-normalised

β 50, γ 20, α 0.2 and 25 slots are ``train.py:228-240``'s argparse defaults (no script passes them); momentum
0.8 and k 5 are hard-coded.  The cache starts as ``norm(U[0, 1))`` drawn from the run seed; it is state, not a
parameter: :meth:`TextRefiner.extra_state` saves it (and the unused BatchNorm statistics) with every checkpoint,
as the official ``save_model`` stores ``memory_item``.  At test time the local branch is skipped and the stored
cache refines any class names (new classes included).

Trainable at ViT-B/16: 1,052,672 during training = context 2,048 + extractor W_e 524,288 (used at test:
526,336) + the local MLP 526,336 (two 512×512 linear layers with bias and a BatchNorm; training only, the
official ``load_model`` drops it).  Precision: the official code runs only in pure fp16 (spec §17.8); here fp32
master weights under the trainer's autocast, the cache in fp32.

    bench run --protocol smoke --method textrefiner --set textrefiner.alpha=0.1
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.api import METHODS, ConfigError, MethodCard, Recipe, last_block_tokens, vision_tower

from .coop import CARD as COOP_CARD, CoOp, CoOpConfig
from .mdpr_coop import mdpr_lt


@dataclass
class TextRefinerConfig(CoOpConfig):
    init_text: Optional[str] = "a photo of a"  # the official CTX_INIT (4 tokens)
    local_divisor: float = field(default=50.0, metadata={"min": 0})  # β: L_loc / β (official --loss-factor)
    reg_weight: float = field(default=20.0, metadata={"min": 0})  # γ: weight of L_reg (official --distill-factor)
    alpha: float = 0.2  # weight of the memory term in t̃ (official --alpha)
    cache_size: int = field(default=25, metadata={"min": 1})  # memory slots (official --memory-size)
    momentum: float = field(default=0.8, metadata={"min": 0, "max": 1})  # cache update momentum (hard-coded)
    top_k: int = field(default=5, metadata={"min": 1})  # patches with the highest class-token attention (hard-coded)

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.local_divisor <= 0:
            raise ConfigError(f"{where}.local_divisor", "must be positive (the local loss is divided by it)")


class TextRefinerOutput(NamedTuple):
    """Training-mode output."""

    logits: torch.Tensor  # [B, C]: s · f · t̃ᵀ
    local_logits: torch.Tensor  # [B · (top_k + 2), C]: s · loc · tᵀ, image by image
    reg: torch.Tensor  # mean |norm(t̃) − t|


class LocalHead(nn.Module):
    """The official ``mid_image_trans`` (1×1 conv, BatchNorm, ReLU, 1×1 conv on single pixels), written as
    linear layers over tokens: BatchNorm statistics over all B·L tokens of the batch."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc1, self.bn, self.fc2 = nn.Linear(dim, dim), nn.BatchNorm1d(dim), nn.Linear(dim, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, n, d = tokens.shape
        return self.fc2(F.relu(self.bn(self.fc1(tokens.reshape(b * n, d))))).reshape(b, n, d)


def local_set(local: torch.Tensor, cls_attention: torch.Tensor, k: int) -> torch.Tensor:
    """``[B, k + 2, D]``: the class token, the ``k`` patches the class token attends to most (``cls_attention``
    ``[B, patches]``; token index = patch index + 1) and the mean of all tokens, un-normalised."""
    top = cls_attention.topk(k, dim=-1).indices + 1
    index = torch.cat([torch.zeros_like(top[:, :1]), top], dim=1)
    picked = local.gather(1, index.unsqueeze(-1).expand(-1, -1, local.shape[-1]))
    return torch.cat([picked, local.mean(dim=1, keepdim=True)], dim=1)


class TextMemory(nn.Module):
    """The official ``Memory``: a cache of local features (a buffer) and the extractor that mixes it into t."""

    def __init__(self, dim: int, size: int, alpha: float, momentum: float):
        super().__init__()
        self.alpha, self.momentum = alpha, momentum
        self.register_buffer("cache", F.normalize(torch.rand(size, dim), dim=-1))
        self.extractor = nn.Linear(2 * dim, dim, bias=False)

    def read(self, text: torch.Tensor) -> torch.Tensor:
        """``[C, D]``: each class's softmax-weighted mean of the slots (softmax over slots)."""
        cache = self.cache.to(text.dtype)
        return (F.normalize(text, dim=-1) @ cache.t()).softmax(dim=1) @ cache

    def refine(self, text: torch.Tensor) -> torch.Tensor:
        """t̃ = α · W_e [t ; read(t)] + t."""
        return self.alpha * self.extractor(torch.cat([text, self.read(text)], dim=-1)) + text

    @torch.no_grad()
    def write(self, local: torch.Tensor) -> None:
        """Every token of ``local`` ``[B, L, D]`` moves the slot it is nearest to (official ``Memory.write``)."""
        u = F.normalize(local.reshape(-1, local.shape[-1]).float(), dim=-1)
        scores = u @ self.cache.t()  # [tokens, slots]
        by_token = scores.softmax(dim=0)
        nearest = F.one_hot(scores.softmax(dim=1).argmax(dim=1), self.cache.shape[0]).to(u.dtype)
        weights = nearest * by_token / by_token.max(dim=0).values  # max over all tokens, as the official code
        moved = self.momentum * self.cache + (1 - self.momentum) * (weights.t() @ u)
        hit = nearest.sum(dim=0, keepdim=True).t() > 0
        # a new tensor, not an in-place copy: this step's read still holds the old one for its backward
        self.cache = F.normalize(torch.where(hit, moved, self.cache), dim=-1)


TR_OPTIONS = {"init_text": "a photo of a", "n_ctx": 4, "local_divisor": 50.0, "reg_weight": 20.0, "alpha": 0.2,
              "cache_size": 25}
# vit_b16_ep10_ctxv1.yaml: SGD 0.002, batch 32, 10 epochs, 1 constant warm-up epoch at 1e-5, cosine (Dassl's
# momentum 0.9 and weight decay 5e-4: TrainRecipe's defaults).  The official run keeps the best-val epoch; the
# suite reports the last (spec T1, B18).
TR_B2N = dict(options=TR_OPTIONS, train={"epochs": 10, "batch_size": 32, "lr": 0.002, "optimizer": "sgd"})
TR_SOURCE = ("TextRefiner configs/trainers/TextRefiner/vit_b16_ep10_ctxv1.yaml + train.py defaults "
             "(β 50, γ 20, α 0.2)")
MDPR_NOTE = "MDPR's run with its common recipe (AdamW 1e-3, 20 epochs, batch 128)"

CARD = MethodCard(
    label="TextRefiner",
    paper="Xie, Zhang, Peng, Huang, Cao. TextRefiner: Internal Visual Feature as Efficient Refiner for "
          "Vision-Language Models Prompt Tuning. AAAI 2025",
    code="xjjxmu/TextRefiner:trainers/textrefiner.py@fd1e6938acbf1c2800087d1e8a41aa109e6d5fef",
    spec="spec_cpt_mdpr_baselines.md §8 (T1-T5), §11, §17.8; 1,052,672 trainable in training, of which the local "
         "MLP (526,336) is training-only; precision: official pure fp16, here fp32 + autocast",
    recipes={
        "lt": Recipe(source="MDPR App. A.1.1 (common recipe, as CoOp's lt) with TextRefiner's official "
                            "architecture (spec §8.3, B20); last epoch",
                     options=dict(TR_OPTIONS), train=dict(COOP_CARD.recipes["lt"].train)),
        "b2n_lt16": Recipe(source=f"{TR_SOURCE} (base2new_train.sh); project choice: CPT does not run it", **TR_B2N),
        "b2n_lt100": Recipe(source=f"{TR_SOURCE} (base2new_train.sh); project choice: LAMP does not run it",
                            **TR_B2N),
        **{family: Recipe(source=f"{TR_SOURCE} (xd_train.sh: ImageNet, epoch 10 for every target)", **TR_B2N)
           for family in ("xd_lt100", "xd_lt16")},
    },
    reported={
        "cifar100_lt_ir10": mdpr_lt(74.22, 78.12, 65.55, note=MDPR_NOTE),
        "cifar100_lt_ir50": mdpr_lt(67.70, 81.83, 62.51, 47.33, note=MDPR_NOTE),
        "cifar100_lt_ir100": mdpr_lt(64.32, 83.00, 66.03, 40.53, note=MDPR_NOTE),
        "imagenet_lt": mdpr_lt(66.74, 81.75, 62.45, 39.40, "MDPR Table 3", MDPR_NOTE),
        "places_lt": mdpr_lt(38.01, 52.76, 32.79, 22.79, "MDPR Table 3", MDPR_NOTE),
    },
)


@METHODS.register("textrefiner")
class TextRefiner(CoOp):
    """TextRefiner: CoOp text features refined from a cache of local visual features (Xie et al., 2025)."""

    Config = TextRefinerConfig
    card = CARD
    frozen_image_tower = False  # training reads every token and the attention of the last vision block

    def __init__(self, backbone, data, cfg: TextRefinerConfig):
        super().__init__(backbone, data, cfg)
        patches = vision_tower(backbone).positional_embedding.shape[0] - 1
        if cfg.top_k > patches:
            raise ConfigError(f"method {self.registry_name}.top_k",
                              f"must be at most {patches}, the number of image patches of this backbone")
        dim = backbone.embed_dim
        # the official order of construction (context, local MLP, cache, extractor): the same seed draws the same
        self.local_head = LocalHead(dim).to(backbone.device)
        self.memory = TextMemory(dim, cfg.cache_size, cfg.alpha, cfg.momentum).to(backbone.device)

    def class_text(self) -> torch.Tensor:
        """t: CoOp's normalised text features ``[C, D]``."""
        return self.backbone.encode_prompts(self.prompt_learner(), self.prompt_learner.tokens)

    def text_features(self) -> torch.Tensor:
        """t̃, the refined class features (what the logits use)."""
        return self.memory.refine(self.class_text())

    def forward(self, images: torch.Tensor):
        """Logits ``[B, C]``; in training a :class:`TextRefinerOutput`, after which the cache has been written."""
        scale = self.backbone.logit_scale
        if not self.training:
            feats = self.image_features(images)
            return scale * feats @ self.text_features().t().to(feats.dtype)
        with torch.no_grad():
            tokens, attn = last_block_tokens(self.backbone, images)
        feats = F.normalize(tokens[:, 0], dim=-1)
        text = self.class_text()
        refined = self.memory.refine(text)  # read before this step's write
        local = self.local_head(tokens)
        picked = local_set(local, attn[:, 0, 1:], self.cfg.top_k)
        self.memory.write(local.detach())
        return TextRefinerOutput(
            logits=scale * feats @ refined.t().to(feats.dtype),
            local_logits=scale * picked.reshape(-1, picked.shape[-1]) @ text.t().to(picked.dtype),
            reg=F.l1_loss(F.normalize(refined, dim=-1), text),
        )

    def loss(self, output: TextRefinerOutput, labels: torch.Tensor) -> torch.Tensor:
        per_image = output.local_logits.shape[0] // labels.shape[0]
        local = F.cross_entropy(output.local_logits, labels.repeat_interleave(per_image))
        return (F.cross_entropy(output.logits, labels) + local / self.cfg.local_divisor
                + self.cfg.reg_weight * output.reg)

    def extra_state(self) -> dict:
        """The cache and the local MLP's BatchNorm statistics (never used at test, but training updates them)."""
        return {name: buf.detach().clone() for name, buf in self.named_buffers()
                if name.startswith(("memory.", "local_head."))}

    def load_extra_state(self, state: dict) -> None:
        buffers = dict(self.named_buffers())
        for name in self.extra_state():
            buffers[name].copy_(state[name])
