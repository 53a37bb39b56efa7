"""Deep prompts in both towers of an open_clip ViT: the one place that knows the transformer internals.

MaPLe, IVLP (and later LAMP, CPT, MDPR-MaPLe) run CLIP's frozen towers with learnable tokens that
enter at layer 0 and are *replaced* at the input of the next ``len(deep)`` layers, as in
``muzairkhattak/multimodal-prompt-learning:clip/model.py`` (``ResidualAttentionBlock_MaPLe``,
``VisionTransformer_MaPLe``) at 69bce21ae8eda80ad6187534b2dce09cf6c59e17 and
``muzairkhattak/PromptSRC:clip/model.py`` (``ResidualAttentionBlock_IVLP``) at bb95c77b634d63488f2cad81ff4a72d53bdd06d5:

- text: the layer-0 prompts are already in the token embeddings (positions ``1..n`` after SOS, see
  :mod:`bench.model.text_prompts`); ``deep[k]`` replaces those positions at the input of layer ``k + 1``.
  Positional embeddings are added once, the causal mask and EOT pooling are CLIP's.
- vision: ``first`` is appended after the positional embedding (prompts get none) and goes through
  ``ln_pre``; ``deep[k]`` replaces the last ``n`` tokens at the input of layer ``k + 1``.  The class
  token is pooled, so prompts act only through attention.

``backbone`` is a :class:`bench.model.backbone.ClipBackbone` (not imported: the backbone runs plain prompts
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

from bench.core.errors import BenchError, ConfigError, Unfit
from .shortcuts import ACTIVE as SHORTCUTS


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
        raise Unfit(f"its vision prompts need an open_clip VisionTransformer image tower, "
                    f"not {type(visual).__name__}; use a ViT backbone (e.g. ViT-B-16)")
    if visual.attn_pool is not None or visual.pool_type != "tok":
        raise Unfit("vision prompts need a ViT that pools its class token (OpenAI CLIP ViTs do); "
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
    if len(deep) >= len(transformer.resblocks):
        raise BenchError(f"{len(deep)} deep prompt layers for a {len(transformer.resblocks)}-layer transformer")

    def hook(i: int, x: torch.Tensor) -> torch.Tensor:
        if 1 <= i <= len(deep) and deep[i - 1] is not None:
            return replace(x, _batched(deep[i - 1], x.shape[0], x.dtype))
        return x

    return run_blocks(transformer, x, hook, attn_mask=attn_mask)


def encode_text_deep(backbone, embeddings: torch.Tensor, tokens: torch.Tensor,
                     deep: Sequence[Optional[torch.Tensor]] = (), start: int = 1,
                     normalize: bool = True) -> torch.Tensor:
    """Text features ``[N, embed_dim]`` of prompt embeddings ``[N, L, D]``.

    ``deep[k]`` (``[n, D]`` or ``[N, n, D]``) replaces positions ``start .. start + n`` at the
    input of layer ``k + 1``; ``tokens`` locate the EOT token that is pooled.
    """
    def replace(x, prompt):
        return torch.cat([x[:, :start], prompt, x[:, start + prompt.shape[1]:]], dim=1)

    prompted = max([start + p.shape[-2] for p in deep if p is not None], default=0)
    span = max(pooled_span(backbone, tokens), prompted)
    x = _run_blocks(backbone.text.transformer, text_tokens(backbone, embeddings[:, :span]), deep, replace,
                    attn_mask=backbone.text.attn_mask)
    return text_output(backbone, x, tokens[:, :span], normalize)


def encode_image_deep(backbone, images: torch.Tensor, first: Optional[torch.Tensor] = None,
                      deep: Sequence[Optional[torch.Tensor]] = (), normalize: bool = True) -> torch.Tensor:
    """Image features ``[B, embed_dim]`` with ``first`` appended before ``ln_pre`` and ``deep[k]``
    replacing the last ``n`` tokens at the input of layer ``k + 1``."""
    visual = vision_tower(backbone)
    if first is None and any(p is not None for p in deep):
        raise BenchError("deep vision prompts replace the layer-0 prompts; give first= as well")
    x = image_embeddings(backbone, images)
    if first is not None:
        x = torch.cat([x, _batched(first, x.shape[0], x.dtype)], dim=1)

    def replace(x, prompt):
        return torch.cat([x[:, : x.shape[1] - prompt.shape[1]], prompt], dim=1)

    x = _run_blocks(visual.transformer, visual.ln_pre(x), deep, replace)
    return image_output(backbone, x, normalize)


# Hooked tower runners: a method that decides its prompts inside the tower (LAMP routes on the
# class token of each layer) runs the blocks itself and changes the tokens at their inputs.
#
#     x = image_tokens(backbone, images)                          # input of block 0
#     x = run_blocks(vision_tower(backbone).transformer, x, hook)  # hook(i, x) -> x before block i
#     f = image_output(backbone, x)
#
# A method that runs modules beside the blocks (MMA's adapters) passes ``branch(i, x)``: its term is
# added to block i's output; ``grad_scale`` rescales the gradient of such a branch without changing it.


def run_blocks(transformer: nn.Module, x: torch.Tensor, hook=None, attn_mask: Optional[torch.Tensor] = None,
               start: int = 0, stop: Optional[int] = None, branch=None) -> torch.Tensor:
    """Blocks ``start .. stop - 1`` of an open_clip transformer on batch-first ``x`` ``[N, L, D]``;
    ``hook(i, x)`` returns the input of block ``i`` (it may change the sequence length).  ``branch(i, x)``
    runs beside block ``i`` on its input (after ``hook``) and returns a term added to the block's output,
    or None (adapters in parallel with the blocks, MMA's)."""
    batch_first = getattr(transformer, "batch_first", True)
    blocks = transformer.resblocks
    for i in range(start, len(blocks) if stop is None else stop):
        if hook is not None:
            x = hook(i, x)
        extra = None if branch is None else branch(i, x)
        mask = None if attn_mask is None else attn_mask[: x.shape[1], : x.shape[1]]  # causal: a shorter text's mask
        if batch_first:
            x = blocks[i](x, attn_mask=mask)
        else:  # open_clip <= 2.24 runs its blocks sequence-first
            x = blocks[i](x.transpose(0, 1), attn_mask=mask).transpose(0, 1)
        if extra is not None:
            x = x + extra
    return x


class _GradScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def grad_scale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` unchanged, with its gradient multiplied by ``scale`` on the way back (a gradient-scale layer,
    ``ZjjConan/Multi-Modal-Adapter:clip/gsl.py`` at 547ee345a4dc5d60d43d3aa54e8eee50a107f591)."""
    return _GradScale.apply(x, scale)


def image_embeddings(backbone, images: torch.Tensor) -> torch.Tensor:
    """``[B, 1 + patches, width]``: class token and patches with positional embeddings (before ``ln_pre``)."""
    visual = vision_tower(backbone)
    x = visual.conv1(images.to(visual.conv1.weight.dtype))
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    return visual.patch_dropout(x)


def image_tokens(backbone, images: torch.Tensor) -> torch.Tensor:
    """The vision tower's input to block 0: :func:`image_embeddings` after ``ln_pre``."""
    return vision_tower(backbone).ln_pre(image_embeddings(backbone, images))


def image_output(backbone, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Image features ``[B, embed_dim]`` from the last block's output (class-token pooling, projection)."""
    visual = vision_tower(backbone)
    pooled, _ = visual._pool(x)
    if visual.proj is not None:
        pooled = pooled @ visual.proj
    return F.normalize(pooled, dim=-1) if normalize else pooled


def text_tokens(backbone, embeddings: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """The text tower's input to block 0: token embeddings ``[..., L, D]`` plus the positional embeddings
    of positions ``offset .. offset + L`` (``L`` may be shorter than the context: see :func:`pooled_span`;
    an offset places the later part of a sequence, see :mod:`bench.model.shared_prefix`)."""
    text = backbone.text
    cast_dtype = text.transformer.get_cast_dtype()
    return embeddings.to(cast_dtype) + text.positional_embedding[offset : offset + embeddings.shape[-2]].to(cast_dtype)


def pooled_span(backbone, tokens: torch.Tensor) -> int:
    """How many leading positions of texts ``tokens`` ``[N, L]`` decide their pooled features.

    With CLIP's causal mask, position ``i`` sees only positions ``<= i``, so everything after the
    last pooled EOT token is padding no pooled output depends on: running the tower on the first
    ``span`` positions gives the same features (to float rounding) and skips most of the text
    tower's work (a CoOp prompt is about 20 of ViT-B/16's 77 positions).  Towers that are not
    causal, or pool a fixed position, keep all ``L``."""
    text = backbone.text
    pool, eos = text_pooling(text)
    if not SHORTCUTS.truncate_text or getattr(text, "attn_mask", None) is None or tokens.numel() == 0:
        return tokens.shape[1]
    if pool == "argmax" or (pool == "eos" and eos is not None):
        return int(pooled_positions(text, tokens).max()) + 1
    return tokens.shape[1]


def pooled_positions(text: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Each row's pooled position (open_clip's ``text_global_pool`` for argmax and eos pooling)."""
    pool, eos = text_pooling(text)
    if pool == "eos" and eos is not None:
        return (tokens == eos).int().argmax(dim=-1)
    return tokens.argmax(dim=-1)


def text_pooling(text) -> tuple:
    """``(pool type, EOS id)`` of an open_clip text tower (the attribute names changed in 2.24)."""
    return (getattr(text, "text_pool_type", getattr(text, "pool_type", "argmax")),
            getattr(text, "text_eos_id", getattr(text, "eos_id", None)))


def text_output(backbone, x: torch.Tensor, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Text features ``[N, embed_dim]`` from the last block's output; ``tokens`` locate the pooled EOT."""
    text = backbone.text
    x = text.ln_final(x)
    pool, eos = text_pooling(text)
    x = open_clip.transformer.text_global_pool(x, tokens, pool, eos_token_id=eos)
    proj = text.text_projection
    if proj is not None:
        x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
    return F.normalize(x, dim=-1) if normalize else x


def encode_image_hooked(backbone, images: torch.Tensor, hook=None, normalize: bool = True,
                        branch=None) -> torch.Tensor:
    """:func:`image_tokens`, every block with ``hook`` at its input (and ``branch`` beside it, see
    :func:`run_blocks`), :func:`image_output`."""
    x = run_blocks(vision_tower(backbone).transformer, image_tokens(backbone, images), hook, branch=branch)
    return image_output(backbone, x, normalize)


def encode_text_hooked(backbone, embeddings: torch.Tensor, tokens: torch.Tensor, hook=None,
                       normalize: bool = True, branch=None) -> torch.Tensor:
    """:func:`text_tokens`, every block (causal mask) with ``hook`` at its input (and ``branch`` beside it,
    see :func:`run_blocks`), :func:`text_output`.
    A hook that moves the EOT token must be matched by ``tokens`` (see :func:`shift_tokens`)."""
    text = backbone.text
    x = run_blocks(text.transformer, text_tokens(backbone, embeddings), hook, attn_mask=text.attn_mask, branch=branch)
    return text_output(backbone, x, tokens, normalize)


def insert_after_first(x: torch.Tensor, prompt: torch.Tensor, replace: int = 0,
                       keep_length: bool = False) -> torch.Tensor:
    """``x`` ``[N, L, D]`` with ``prompt`` (``[n, D]`` or ``[N, n, D]``) right after token 0 (CLS, SOT),
    in place of the ``replace`` tokens there.  ``keep_length`` drops the last tokens to keep ``L``
    (text padding: with a causal mask no earlier token sees them)."""
    prompt = _batched(prompt, x.shape[0], x.dtype)
    end = x.shape[1] - (prompt.shape[1] - replace) if keep_length else x.shape[1]
    return torch.cat([x[:, :1], prompt, x[:, 1 + replace:end]], dim=1)


def shift_tokens(tokens: torch.Tensor, n: int) -> torch.Tensor:
    """Token ids ``[N, L]`` as they lie after :func:`insert_after_first` of ``n`` tokens with
    ``keep_length``: ``n`` zeros after SOT, the last ``n`` dropped, so the EOT index moves by ``n``."""
    nonzero = (tokens != 0).sum(dim=1)
    if n and int(nonzero.max()) + n > tokens.shape[1]:
        raise BenchError(f"{n} prompt tokens do not fit: the longest prompt has {int(nonzero.max())} tokens "
                         f"and the text encoder takes {tokens.shape[1]}")
    pad = tokens.new_zeros(tokens.shape[0], n)
    return torch.cat([tokens[:, :1], pad, tokens[:, 1:tokens.shape[1] - n]], dim=1)
