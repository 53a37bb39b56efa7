"""Deep prompts in both towers of an open_clip ViT: the one place that knows the transformer internals.

MaPLe, IVLP (and later LAMP, CPT, MDPR-MaPLe) run CLIP's frozen towers with learnable tokens that
enter at layer 0 and are *replaced* at the input of the next ``len(deep)`` layers, as in
``muzairkhattak/multimodal-prompt-learning:clip/model.py`` (``ResidualAttentionBlock_MaPLe``,
``VisionTransformer_MaPLe``) at 69bce21ae8eda80ad6187534b2dce09cf6c59e17 and
``muzairkhattak/PromptSRC:clip/model.py`` (``ResidualAttentionBlock_IVLP``) at bb95c77b634d63488f2cad81ff4a72d53bdd06d5:

- text: the layer-0 prompts are already in the token embeddings (positions ``1..n`` after SOS, see
  :mod:`bench.text_prompts`); ``deep[k]`` replaces those positions at the input of layer ``k + 1``.
  Positional embeddings are added once, the causal mask and EOT pooling are CLIP's.
- vision: ``first`` is appended after the positional embedding (prompts get none) and goes through
  ``ln_pre``; ``deep[k]`` replaces the last ``n`` tokens at the input of layer ``k + 1``.  The class
  token is pooled, so prompts act only through attention.

``backbone`` is a :class:`bench.backbone.ClipBackbone` (not imported: the backbone runs plain prompts
through :func:`encode_text_deep`).  Prompts are ``[n, width]`` (shared by the batch) or ``[batch, n, width]``.  With no prompts both
functions return exactly what ``encode_text`` / ``encode_image`` return::

    t = encode_text_deep(backbone, embeddings, tokens, deep=[p1, p2])        # [C, embed_dim]
    v = encode_image_deep(backbone, images, first=q0, deep=[q1, q2])        # [B, embed_dim]
"""
from __future__ import annotations

from typing import Optional, Sequence

import open_clip
import torch
import torch.nn as nn
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer

from .errors import BenchError, ConfigError


def text_layers(backbone) -> int:
    return len(backbone.text.transformer.resblocks)


def vision_layers(backbone) -> int:
    return len(vision_tower(backbone).transformer.resblocks)


def vision_width(backbone) -> int:
    return vision_tower(backbone).class_embedding.shape[0]


def vision_tower(backbone) -> VisionTransformer:
    """The image tower, if deep prompts can enter it: a ViT that pools its class token."""
    visual = backbone.model.visual
    if not isinstance(visual, VisionTransformer):
        raise BenchError(f"vision prompts need an open_clip VisionTransformer image tower, "
                         f"not {type(visual).__name__}; use a ViT backbone")
    if visual.attn_pool is not None or visual.pool_type != "tok":
        raise BenchError("vision prompts need a ViT that pools its class token (OpenAI CLIP ViTs do); "
                         f"this one pools '{visual.pool_type or visual.attn_pool_type}'")
    return visual


def check_depth(depth: int, layers: int, where: str, tower: str) -> None:
    """Prompts enter at layer 0 and ``depth - 1`` more layers: 1 <= depth <= layers of ``tower``."""
    if not 1 <= depth <= layers:
        raise ConfigError(where, f"must be between 1 and {layers}, the number of layers of the {tower}")


def normal_prompts(count: int, n_tokens: int, width: int, device) -> nn.ParameterList:
    """``count`` learnable prompts ``[n_tokens, width]`` drawn from N(0, 0.02), as the official code draws them."""
    return nn.ParameterList(
        [nn.Parameter(nn.init.normal_(torch.empty(n_tokens, width, device=device), std=0.02)) for _ in range(count)]
    )


def _batched(prompt: torch.Tensor, batch: int, dtype: torch.dtype) -> torch.Tensor:
    prompt = prompt.to(dtype)
    return prompt.unsqueeze(0).expand(batch, -1, -1) if prompt.dim() == 2 else prompt


def _run_blocks(transformer: nn.Module, x: torch.Tensor, deep: Sequence[Optional[torch.Tensor]],
                replace, attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    blocks = transformer.resblocks
    if len(deep) >= len(blocks):
        raise BenchError(f"{len(deep)} deep prompt layers for a {len(blocks)}-layer transformer")
    batch_first = getattr(transformer, "batch_first", True)
    for i, block in enumerate(blocks):
        if 1 <= i <= len(deep) and deep[i - 1] is not None:
            x = replace(x, _batched(deep[i - 1], x.shape[0], x.dtype))
        if batch_first:
            x = block(x, attn_mask=attn_mask)
        else:  # open_clip <= 2.24 runs its blocks sequence-first
            x = block(x.transpose(0, 1), attn_mask=attn_mask).transpose(0, 1)
    return x


def encode_text_deep(backbone, embeddings: torch.Tensor, tokens: torch.Tensor,
                     deep: Sequence[Optional[torch.Tensor]] = (), start: int = 1,
                     normalize: bool = True) -> torch.Tensor:
    """Text features ``[N, embed_dim]`` of prompt embeddings ``[N, L, D]``.

    ``deep[k]`` (``[n, D]`` or ``[N, n, D]``) replaces positions ``start .. start + n`` at the
    input of layer ``k + 1``; ``tokens`` locate the EOT token that is pooled.
    """
    text = backbone.text
    cast_dtype = text.transformer.get_cast_dtype()
    x = embeddings.to(cast_dtype) + text.positional_embedding.to(cast_dtype)

    def replace(x, prompt):
        return torch.cat([x[:, :start], prompt, x[:, start + prompt.shape[1]:]], dim=1)

    x = _run_blocks(text.transformer, x, deep, replace, attn_mask=text.attn_mask)
    x = text.ln_final(x)
    x = open_clip.transformer.text_global_pool(
        x, tokens, getattr(text, "text_pool_type", getattr(text, "pool_type", "argmax")),
        eos_token_id=getattr(text, "text_eos_id", getattr(text, "eos_id", None)),
    )
    proj = text.text_projection
    if proj is not None:
        x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
    return F.normalize(x, dim=-1) if normalize else x


def encode_image_deep(backbone, images: torch.Tensor, first: Optional[torch.Tensor] = None,
                      deep: Sequence[Optional[torch.Tensor]] = (), normalize: bool = True) -> torch.Tensor:
    """Image features ``[B, embed_dim]`` with ``first`` appended before ``ln_pre`` and ``deep[k]``
    replacing the last ``n`` tokens at the input of layer ``k + 1``."""
    visual = vision_tower(backbone)
    if first is None and any(p is not None for p in deep):
        raise BenchError("deep vision prompts replace the layer-0 prompts; give first= as well")
    x = visual.conv1(images.to(visual.conv1.weight.dtype))
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    x = visual.patch_dropout(x)
    if first is not None:
        x = torch.cat([x, _batched(first, x.shape[0], x.dtype)], dim=1)
    x = visual.ln_pre(x)

    def replace(x, prompt):
        return torch.cat([x[:, : x.shape[1] - prompt.shape[1]], prompt], dim=1)

    x = _run_blocks(visual.transformer, x, deep, replace)
    pooled, _ = visual._pool(x)
    if visual.proj is not None:
        pooled = pooled @ visual.proj
    return F.normalize(pooled, dim=-1) if normalize else pooled
