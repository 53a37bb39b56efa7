"""Every output token of an open_clip ViT's last block, and that block's attention, for methods that read
local image features (TextRefiner, spec_cpt_mdpr_baselines.md §2 and §8.2).

open_clip pools the class token before ``ln_post`` and ``proj``; here the last block runs with its attention
probabilities returned (averaged over heads, as ``nn.MultiheadAttention`` averages them) and every token goes
through ``ln_post`` and ``proj``, as ``xjjxmu/TextRefiner:clip/model.py`` (``VisionTransformer.forward`` with
``all_layer_outputs``) at fd1e6938acbf1c2800087d1e8a41aa109e6d5fef does for the last block.  Earlier blocks
are open_clip's own::

    tokens, attn = last_block_tokens(backbone, images)   # [B, 1 + patches, embed_dim], [B, L, L]
    f = F.normalize(tokens[:, 0], dim=-1)                # = backbone.encode_image(images)
    cls_to_patches = attn[:, 0, 1:]                      # [B, patches]
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn

from .prompting import image_tokens, run_blocks, vision_tower


def block_with_attention(block: nn.Module, x: torch.Tensor,
                         attn_mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """An open_clip residual attention block on batch-first ``x`` ``[N, L, D]``: its output, and its
    attention probabilities averaged over heads ``[N, L, L]`` (rows: queries, columns: keys)."""
    batch_first = getattr(block.attn, "batch_first", False)
    h = block.ln_1(x)
    h = h if batch_first else h.transpose(0, 1)
    mask = None if attn_mask is None else attn_mask.to(h.dtype)
    y, weights = block.attn(h, h, h, need_weights=True, average_attn_weights=True, attn_mask=mask)
    y = y if batch_first else y.transpose(0, 1)
    x = x + block.ls_1(y)
    return x + block.ls_2(block.mlp(block.ln_2(x))), weights


def project_tokens(backbone, x: torch.Tensor) -> torch.Tensor:
    """``ln_post`` and ``proj`` on every token of the last block's output ``[B, L, width]`` -> ``[B, L, embed_dim]``
    (token 0 is what open_clip pools: its row equals ``encode_image(normalize=False)``)."""
    visual = vision_tower(backbone)
    x = visual.ln_post(x)
    return x @ visual.proj if visual.proj is not None else x


def last_block_tokens(backbone, images: torch.Tensor, hook=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(tokens, attn)``: every output token of the image tower's last block through ``ln_post`` and ``proj``
    ``[B, L, embed_dim]``, and that block's head-averaged attention probabilities ``[B, L, L]``.
    ``hook(i, x)`` changes the input of block ``i`` (see :func:`bench.model.prompting.run_blocks`)."""
    blocks = vision_tower(backbone).transformer.resblocks
    last = len(blocks) - 1
    x = run_blocks(vision_tower(backbone).transformer, image_tokens(backbone, images), hook, stop=last)
    if hook is not None:
        x = hook(last, x)
    x, attn = block_with_attention(blocks[last], x)
    return project_tokens(backbone, x), attn
