"""open_clip backbones, with a text encoder that accepts prompt embeddings.

Prompt-learning methods (CoOp and friends) build token *embeddings* with
learnable context vectors in them; :meth:`ClipBackbone.encode_prompts` runs
those through CLIP's frozen text transformer.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

import open_clip
import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ENV
from .errors import BenchError
from .registry import BACKBONES, suggest

# Tiny configs for tests and the smoke protocol (bench/model_configs/*.json).
open_clip.add_model_config(Path(__file__).parent / "model_configs")


@dataclass
class OpenClipConfig:
    model: str = "ViT-B-16"
    # An open_clip pretrained tag (e.g. "openai"), a local checkpoint path, or
    # null for random weights (tests and the smoke protocol only).
    pretrained: Optional[str] = "openai"
    cache_dir: Optional[str] = field(default=None, metadata=ENV)


class ClipBackbone(nn.Module):
    """A frozen open_clip model plus its tokenizer and image transforms."""

    def __init__(self, model: nn.Module, tokenizer: Callable, preprocess_train: Callable, preprocess_val: Callable):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.preprocess_train = preprocess_train
        self.preprocess_val = preprocess_val
        tower = getattr(model, "text", None)
        self.text = tower if tower is not None and hasattr(tower, "token_embedding") else model
        needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")
        missing = [name for name in needed if not hasattr(self.text, name)]
        if missing or getattr(self.text, "cls_emb", None) is not None:
            raise BenchError(f"this open_clip model's text tower is not supported for prompt learning (lacks {missing or 'cls_emb'})")
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model.eval()

    def train(self, mode: bool = True):
        # The backbone stays in eval mode: methods learn prompts, not CLIP.
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return self.text.positional_embedding.device

    @property
    def width(self) -> int:
        """Width of the text token embeddings (context vectors have this size)."""
        return self.text.token_embedding.weight.shape[1]

    @property
    def context_length(self) -> int:
        return self.text.positional_embedding.shape[0]

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()

    def tokenize(self, texts: List[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts)
        return tokens.to(self.device)

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text.token_embedding(tokens)

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return self.model.encode_image(images, normalize=normalize)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return self.encode_prompts(self.embed_tokens(tokens), tokens, normalize=normalize)

    def encode_prompts(self, embeddings: torch.Tensor, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Text features from token embeddings ``[N, L, D]``.

        ``tokens`` ``[N, L]`` are the token ids the embeddings were built from;
        they locate the end-of-text token whose output is pooled.
        """
        text = self.text
        cast_dtype = text.transformer.get_cast_dtype()
        x = embeddings.to(cast_dtype) + text.positional_embedding.to(cast_dtype)
        x = text.transformer(x, attn_mask=text.attn_mask)
        x = text.ln_final(x)
        x = open_clip.transformer.text_global_pool(
            x, tokens, getattr(text, "text_pool_type", getattr(text, "pool_type", "argmax")),
            eos_token_id=getattr(text, "text_eos_id", getattr(text, "eos_id", None)),
        )
        proj = text.text_projection
        if proj is not None:
            x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        return F.normalize(x, dim=-1) if normalize else x


def check_model_name(name: str) -> None:
    if ":" in name:  # hf-hub:..., local-dir:...
        return
    known = open_clip.list_models()
    if name not in known:
        raise BenchError(f"unknown open_clip model '{name}'{suggest(name, known)} (see open_clip.list_models())")


def create_open_clip(name: str, pretrained: Optional[str], device: str = "cpu", cache_dir: Optional[str] = None):
    """``(model, tokenizer, preprocess_train, preprocess_val)``, with load failures as BenchError."""
    check_model_name(name)
    logger = logging.getLogger()
    level = logger.level
    if pretrained is None:  # random weights on purpose: skip open_clip's warning
        logger.setLevel(logging.ERROR)
    try:
        model, pre_train, pre_val = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, cache_dir=cache_dir, device=device
        )
    except Exception as err:  # weights download/load failures come in many types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BenchError(f"could not load open_clip '{name}' with pretrained={pretrained!r}: {first}") from None
    finally:
        logger.setLevel(level)
    return model, open_clip.get_tokenizer(name), pre_train, pre_val


@BACKBONES.register("open_clip")
class OpenClip:
    """Any open_clip_torch CLIP model (frozen), e.g. ViT-B-16 / openai."""

    Config = OpenClipConfig

    @staticmethod
    def build(cfg: OpenClipConfig, device: str = "cpu") -> ClipBackbone:
        return ClipBackbone(*create_open_clip(cfg.model, cfg.pretrained, device, cfg.cache_dir))
