"""MMA: multi-modal adapters beside the blocks of both CLIP towers (Yang et al., CVPR 2024).

Follows ``ZjjConan/Multi-Modal-Adapter:trainers/mmadapter.py`` (``AdapterLearner``, ``CustomCLIP``) and
``clip/model.py`` (``ModifiedResidualAttentionBlock``) at 547ee345a4dc5d60d43d3aa54e8eee50a107f591
(spec_lamp_baselines.md §5).  In each adapted block ``i`` (0-based ``first_layer .. last_layer``, the
official 1-based ADAPTER_START 5 .. ADAPTER_END 12) of both towers, with ``x`` the block's input::

    out_i = block_i(x) + s · U^m_i(S_i(D^m_i(ln_1,i(x))))        m = text or vision,  s = adapter_scale

``D^m_i`` = Linear(d_m → 32) + ReLU, ``S_i`` = Linear(32 → 32) + ReLU shared by the two towers at block
``i``, ``U^m_i`` = Linear(32 → d_m); ``ln_1,i`` is the block's own frozen LayerNorm.  Gradient-scale
layers (``clip/gsl.py``: identity forward, gradient × c backward) wrap the branch, ``GSL(x, s)`` before
``ln_1`` and ``GSL(·, 1/s)`` after ``U``, so the adapters' gradients are 1/s = 1000 times the plain ones
(as if the branch had scale 1) while the forward contribution stays s-small (spec B10).  At
``adapter_scale: 0`` the branch adds exactly zero and the GSLs, whose 1/s is undefined, are left out.
The text input is the token embeddings of "a photo of a {c}." for every dataset (no learned context);
logits are ``100 · cos(f(x), t_c)`` and the loss is cross-entropy.  The image tower carries trainable
adapters, so image features cannot be cached; text features are encoded once per prediction pass over
a label space (the official cache is never cleared, stale after a class change; spec §11.4).  The
official slot 0 (ADAPTER_START 0: adapters on the text token embeddings and after the vision ``ln_pre``)
is not ported: no released config uses it, and ``first_layer: 0`` here is ADAPTER_START 1.  The paper's
own equations could not be read (spec §0.2); this follows the code, which produced its numbers.

Trainable at ViT-B/16 with the defaults: 8 · (16,416 + 16,896 + 24,608 + 25,344 + 1,056) = 674,560
(LAMP Table 5: 674K), whatever the number of classes.  Adapters are fp32 under the trainer's autocast,
as the official ``PREC: amp``.

    bench run --protocol smoke --method mma      # the smoke protocols adapt blocks 0..1 of the tiny model
    bench run --protocol smoke_b2n --method mma --set mma.adapter_scale=0.01
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List

import torch
import torch.nn as nn

from bench.api import (METHODS, Ablation, ClassInfo, ConfigError, Method, MethodCard, Recipe, check_init_text,
                       encode_image_hooked, encode_text_hooked, grad_scale, pooled_span, text_layers,
                       vision_layers, vision_tower, vision_width)

from .lamp_tables import balanced_reported, few_shot_reported

CODE = "ZjjConan/Multi-Modal-Adapter:trainers/mmadapter.py@547ee345a4dc5d60d43d3aa54e8eee50a107f591"
PAPER = "Yang, Zhang, Wang, Xie. MMA: Multi-Modal Adapter for Vision-Language Models. CVPR 2024, pp. 23826-23837"
SPEC = "spec_lamp_baselines.md §5"


@dataclass
class MMAConfig:
    first_layer: int = field(default=4, metadata={"min": 0})  # adapted blocks, 0-based, both towers
    last_layer: int = field(default=11, metadata={"min": 0})
    adapter_dim: int = field(default=32, metadata={"min": 1})  # ADAPTER_DIM: the joint (shared) width
    adapter_scale: float = field(default=0.001, metadata={"min": 0, "max": 1e3})  # ADAPTER_SCALE s
    prompt_prefix: str = "a photo of a"  # TEXT_CTX_INIT: each class's text is "<prefix> <name>."

    def validate(self, where: str) -> None:
        if self.first_layer > self.last_layer:
            raise ConfigError(f"{where}.first_layer", f"must not exceed last_layer ({self.last_layer})")
        check_init_text(self.prompt_prefix, where)


def check_layers(backbone, cfg: MMAConfig, where: str) -> None:
    """The adapted blocks must exist in both towers (the official builder raises IndexError otherwise)."""
    vision_tower(backbone)  # a ViT: the adapters run beside its blocks
    for tower, layers in (("text", text_layers(backbone)), ("vision", vision_layers(backbone))):
        if cfg.last_layer >= layers:
            raise ConfigError(f"{where}.last_layer", f"is {cfg.last_layer} but the {tower} transformer has {layers} "
                              f"blocks; the adapted blocks first_layer..last_layer are 0-based and must lie in "
                              f"0..{layers - 1}")


def down_up(width: int, dim: int, device) -> nn.Sequential:
    """One tower's adapter at one block: ``down`` (Linear + ReLU) into the joint width, ``up`` back."""
    return nn.Sequential(OrderedDict([
        ("down", nn.Sequential(nn.Linear(width, dim, device=device), nn.ReLU())),
        ("up", nn.Linear(dim, width, device=device)),
    ]))


def kaiming_fan_out(modules: nn.Module) -> nn.Module:
    """Official init: every Linear ``kaiming_normal_(fan_out, relu)``, zero bias, after the list is built
    (so, seed for seed, the same draws as the official builder)."""
    for m in modules.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return modules


class MultiModalAdapters(nn.Module):
    """``text[k]``, ``visual[k]`` and ``shared[k]`` serve block ``first + k`` of the towers (built in the
    official order: text, visual, shared)."""

    def __init__(self, d_text: int, d_vision: int, blocks: range, dim: int, device):
        super().__init__()
        self.first = blocks.start
        self.text = kaiming_fan_out(nn.ModuleList([down_up(d_text, dim, device) for _ in blocks]))
        self.visual = kaiming_fan_out(nn.ModuleList([down_up(d_vision, dim, device) for _ in blocks]))
        self.shared = kaiming_fan_out(nn.ModuleList(
            [nn.Sequential(nn.Linear(dim, dim, device=device), nn.ReLU()) for _ in blocks]))

    def at(self, tower: str, block: int):
        """``(adapter, shared)`` of ``block`` in ``tower`` ("text" or "visual"), or None if not adapted."""
        k = block - self.first
        adapters = self.text if tower == "text" else self.visual
        return (adapters[k], self.shared[k]) if 0 <= k < len(adapters) else None

    def branch(self, tower: str, blocks: nn.Module, scale: float):
        """``branch(i, x)`` for :func:`bench.api.run_blocks`: the adapter term of block ``i`` from its input."""
        def run(i: int, x: torch.Tensor):
            pair = self.at(tower, i)
            if pair is None:
                return None
            adapter, shared = pair
            y = grad_scale(x, scale) if scale else x
            y = adapter.up(shared(adapter.down(blocks[i].ln_1(y)))) * scale
            return grad_scale(y, 1.0 / scale) if scale else y
        return run


# The released configs' TRAINER.MMADAPTER (train.py's extend_cfg defaults, start 4 and scale 0.1, are never run: B12)
ADAPTERS = {"first_layer": 4, "last_layer": 11, "adapter_dim": 32, "adapter_scale": 0.001,
            "prompt_prefix": "a photo of a"}
SGD = {"optimizer": "sgd", "lr": 0.0015, "momentum": 0.9, "weight_decay": 5e-4, "scheduler": "cosine",
       "warmup_epochs": 0, "epochs": 5, "batch_size": 16, "precision": "amp"}
EP5 = "MMA configs/trainers/MultiModalAdapter/vit_b16_ep5.yaml"
IMNET = "MMA configs/trainers/MultiModalAdapter/vit_b16_ep5_imnet.yaml"
IMAGENET_BATCH = {"ImageNet": {"train": {"batch_size": 128}}}  # run_examples.sh trains ImageNet with IMNET


def recipes(suffix: str = "") -> Dict[str, Recipe]:
    """MMA's recipes per family (spec §5.4); ``suffix`` says what a variant adds ("+ LA tau 1")."""
    def at(source: str, **train) -> dict:
        return dict(source=f"{source}{suffix}", options=dict(ADAPTERS), train={**SGD, **train})
    return {
        "b2n_lt100": Recipe(**at(f"{EP5}; ImageNet {IMNET} (LAMP: 'provided settings')"), by_dataset=IMAGENET_BATCH),
        "b2n_lt16": Recipe(**at(f"{EP5}; ImageNet {IMNET} (project choice: as b2n_lt100)"),
                           by_dataset=IMAGENET_BATCH),
        "b2n_fs": Recipe(**at(f"{EP5} with 1-8 shots; ImageNet {IMNET} (project choice, LAMP Tables 12-15)"),
                         by_dataset=IMAGENET_BATCH),
        # scripts/mmadapter/xd_train.sh takes the config as an argument: the repo's ImageNet one (spec B13)
        **{family: Recipe(**at(f"{IMNET} (project choice for the ImageNet source, spec B13)", batch_size=128))
           for family in ("xd_lt100", "xd_lt16")},
        "lt": Recipe(**at(f"project choice: {IMNET} (no MMA run on these sets, spec B25)", batch_size=128)),
    }


CARD = MethodCard(
    label="MMA",
    paper=PAPER,
    code=CODE,
    spec=SPEC,
    recipes=recipes(),
    reported={**balanced_reported("mma"), **few_shot_reported("mma")},
    ablations=[Ablation("MMA README", "b2n_cpt/*/tau1", {}, {"base": 83.20, "new": 76.80, "hm": 79.87},
                        "MMA's own balanced 16-shot base-to-new average over the 11 datasets "
                        "(ZjjConan/Multi-Modal-Adapter:README.md:38); HM of the base and new means; "
                        "official precision amp")],
)


@METHODS.register("mma")
class MMA(Method):
    """MMA: adapters beside the blocks of both towers, joined by a shared projection (Yang et al., 2024)."""

    Config = MMAConfig
    card = CARD
    frozen_image_tower = False  # adapters inside the image tower: no feature cache

    def __init__(self, backbone, data: ClassInfo, cfg: MMAConfig):
        super().__init__(backbone, data, cfg)
        check_layers(backbone, cfg, f"method {self.registry_name}")
        blocks = range(cfg.first_layer, cfg.last_layer + 1)
        self.adapters = MultiModalAdapters(backbone.width, vision_width(backbone), blocks, cfg.adapter_dim,
                                           backbone.device)
        self.set_label_space(data)

    def prompt_names(self, info: ClassInfo) -> List[str]:
        """The classes whose text is encoded for label space ``info``, its own first."""
        return list(info.classnames)

    def set_label_space(self, info: ClassInfo) -> None:
        names = [name.replace("_", " ") for name in self.prompt_names(info)]
        tokens = self.backbone.tokenize([f"{self.cfg.prompt_prefix} {name}." for name in names])
        self.register_buffer("tokens", tokens, persistent=False)
        self.n_classes = len(info.classnames)

    def text_features(self) -> torch.Tensor:
        # Attention is causal and the branch token-wise: positions after the last EOT change no feature.
        tokens = self.tokens[:, :pooled_span(self.backbone, self.tokens)]
        with torch.no_grad():
            embeddings = self.backbone.embed_tokens(tokens)
        branch = self.adapters.branch("text", self.backbone.text.transformer.resblocks, self.cfg.adapter_scale)
        return encode_text_hooked(self.backbone, embeddings, tokens, branch=branch)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        blocks = vision_tower(self.backbone).transformer.resblocks
        return encode_image_hooked(self.backbone, images, branch=self.adapters.branch("visual", blocks,
                                                                                       self.cfg.adapter_scale))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.image_features(images)
        logits = self.backbone.logit_scale * feats @ self.text_features().t().to(feats.dtype)
        return logits if self.training else logits[:, :self.n_classes]

    def record_text_features(self) -> torch.Tensor:
        return self.text_features()[:self.n_classes]
