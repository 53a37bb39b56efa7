"""CoOp: learnable prompt context vectors (Zhou et al., IJCV 2022).

The prompt for class ``c`` is ``[SOS] v_1 ... v_M [CLASS] . [EOS]`` where the
``v_i`` are learned (shared by all classes, or one set per class with
``csc``); CLIP itself stays frozen.  ``class_token_position`` puts the class
name at the end, in the middle or at the front of the context.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch
import torch.nn as nn

from bench.errors import ConfigError
from bench.method import Method
from bench.registry import METHODS


@dataclass
class CoOpConfig:
    # Number of context tokens; defaults to 16, or to the length of init_text.
    n_ctx: Optional[int] = None
    # Initialise the context from these words (e.g. "a photo of a") instead of N(0, 0.02).
    init_text: Optional[str] = None
    class_token_position: Literal["end", "middle", "front"] = "end"
    csc: bool = False  # class-specific context

    def validate(self, where: str) -> None:
        if self.n_ctx is not None and self.n_ctx < 1:
            raise ConfigError(f"{where}.n_ctx", "must be at least 1")
        if self.init_text is not None and not self.init_text.strip():
            raise ConfigError(f"{where}.init_text", "must not be empty")


def token_length(backbone, text: str) -> int:
    """Number of BPE tokens of ``text`` (without start/end tokens)."""
    return int((backbone.tokenize([text])[0] != 0).sum().item()) - 2


class PromptLearner(nn.Module):
    def __init__(self, backbone, classnames, cfg: CoOpConfig, where: str = "method coop"):
        super().__init__()
        n_cls, width = len(classnames), backbone.width
        if cfg.init_text:
            init = cfg.init_text.replace("_", " ").strip()
            n_ctx = token_length(backbone, init)
            if cfg.n_ctx is not None and cfg.n_ctx != n_ctx:
                raise ConfigError(f"{where}.n_ctx", f"is {cfg.n_ctx} but init_text '{init}' has {n_ctx} tokens")
            with torch.no_grad():
                ctx = backbone.embed_tokens(backbone.tokenize([init]))[0, 1 : 1 + n_ctx].clone()
            if cfg.csc:
                ctx = ctx.unsqueeze(0).repeat(n_cls, 1, 1)
            prefix_text = init
        else:
            n_ctx = cfg.n_ctx or 16
            ctx = torch.empty((n_cls, n_ctx, width) if cfg.csc else (n_ctx, width), device=backbone.device)
            nn.init.normal_(ctx, std=0.02)
            prefix_text = " ".join(["X"] * n_ctx)
        self.ctx = nn.Parameter(ctx.float())
        self.n_ctx, self.position = n_ctx, cfg.class_token_position
        self.name_lens = [token_length(backbone, name) for name in classnames]
        longest = n_ctx + max(self.name_lens) + 3  # SOS, ".", EOS
        if longest > backbone.context_length:
            raise ConfigError(
                f"{where}.n_ctx",
                f"prompts need {longest} tokens but the text encoder takes {backbone.context_length}",
            )
        tokens = backbone.tokenize([f"{prefix_text} {name}." for name in classnames])
        with torch.no_grad():
            embedding = backbone.embed_tokens(tokens)
        self.register_buffer("tokens", tokens, persistent=False)
        self.register_buffer("token_prefix", embedding[:, :1].clone(), persistent=False)  # SOS
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx :].clone(), persistent=False)  # CLASS . EOS

    def forward(self) -> torch.Tensor:
        ctx = self.ctx
        n_cls = self.token_prefix.shape[0]
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(n_cls, -1, -1)
        ctx = ctx.to(self.token_prefix.dtype)
        prefix, suffix = self.token_prefix, self.token_suffix
        if self.position == "end":
            return torch.cat([prefix, ctx, suffix], dim=1)
        prompts = []
        half = self.n_ctx // 2
        for i, name_len in enumerate(self.name_lens):
            name, rest = suffix[i : i + 1, :name_len], suffix[i : i + 1, name_len:]
            if self.position == "middle":
                parts = [prefix[i : i + 1], ctx[i : i + 1, :half], name, ctx[i : i + 1, half:], rest]
            else:  # front
                parts = [prefix[i : i + 1], name, ctx[i : i + 1], rest]
            prompts.append(torch.cat(parts, dim=1))
        return torch.cat(prompts, dim=0)


@METHODS.register("coop")
class CoOp(Method):
    """CoOp: learned prompt context vectors on a frozen CLIP (Zhou et al., 2022)."""

    Config = CoOpConfig

    def __init__(self, backbone, data, cfg: CoOpConfig):
        super().__init__(backbone, data, cfg)
        self.prompt_learner = PromptLearner(backbone, data.classnames, cfg)

    def text_features(self) -> torch.Tensor:
        return self.backbone.encode_prompts(self.prompt_learner(), self.prompt_learner.tokens)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.image_features(images)
        text = self.text_features()
        return self.backbone.logit_scale * feats @ text.t().to(feats.dtype)
