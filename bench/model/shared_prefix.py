"""Text sequences that begin alike, with the shared beginning run once (exact under a causal mask).

Under CLIP's causal mask, position ``i`` attends only to positions ``<= i``.  When many sequences share
their first ``P`` positions (the start token and one image's prompt tokens, before any class name), the
hidden states there are the same in every one of them at every block.  :func:`run_prefix` runs that
prefix once per group (an image, or a selection of pool entries) and keeps each block's keys and values;
:func:`run_suffix` runs only the remaining positions of every (group, class) sequence against them.
The outputs equal those of the full sequences to float rounding; the cost per class is that of its own
positions (LAMP: about 6 of 25, CoCoOp: 6 of 11).  ``naive()`` (bench.model.shortcuts) turns it off::

    if splittable(backbone):
        _, cache = run_prefix(text.transformer, prefix, hook=prompts_in)         # prefix [G, P, D]
        feats = encode_suffixes(backbone, suffix, pooled - P, cache)             # suffix [C, S, D]: [G, C, E]
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .prompting import text_pooling
from .shortcuts import ACTIVE as SHORTCUTS

KeysValues = List[Tuple[torch.Tensor, torch.Tensor]]  # per block run: keys and values [G, heads, P, head_dim]


def splittable(backbone) -> bool:
    """Whether the text tower is causal, pools one position per sequence, and its blocks are open_clip's
    plain self-attention blocks, whose attention this module can run in two parts (and the shortcut is on)."""
    text = backbone.text
    transformer = text.transformer
    if not (SHORTCUTS.share_prefix and getattr(text, "attn_mask", None) is not None
            and text_pooling(text)[0] in ("argmax", "eos") and getattr(transformer, "batch_first", True)):
        return False
    return all(_plain(block) for block in transformer.resblocks)


def _plain(block: nn.Module) -> bool:
    attn = getattr(block, "attn", None)
    return (isinstance(attn, nn.MultiheadAttention) and attn.batch_first and attn._qkv_same_embed_dim
            and attn.bias_k is None and not attn.add_zero_attn and attn.dropout == 0
            and not hasattr(block, "ln_1_kv") and not hasattr(block, "ln_attn")
            and all(hasattr(block, name) for name in ("ln_1", "ls_1", "ln_2", "mlp", "ls_2")))


def shared_length(tokens: torch.Tensor, pooled: torch.Tensor) -> int:
    """How many leading positions every row of ``tokens`` ``[N, L]`` has in common, stopping before the
    first ``pooled`` position: the pooled token and everything after it stay per sequence."""
    same = (tokens == tokens[:1]).all(dim=0)
    differ = int(same.logical_not().int().argmax()) if not bool(same.all()) else tokens.shape[1]
    return min(differ, int(pooled.min()))


def _heads(block: nn.Module, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries, keys and values ``[..., heads, L, head_dim]`` of ``x`` ``[..., L, D]``."""
    attn = block.attn
    qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
    return tuple(t.unflatten(-1, (attn.num_heads, -1)).transpose(-3, -2) for t in qkv.chunk(3, dim=-1))


def _rest(block: nn.Module, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
    """The block after its attention: output projection, residual, MLP, residual."""
    x = x + block.ls_1(block.attn.out_proj(attended.transpose(-3, -2).flatten(-2)))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def _causal(queries: int, keys: int, device) -> torch.Tensor:
    """Query ``i`` (the last ``queries`` of ``keys`` positions) sees key ``j`` iff ``j <= keys - queries + i``."""
    return torch.ones(queries, keys, dtype=torch.bool, device=device).tril(diagonal=keys - queries)


def run_prefix(transformer: nn.Module, x: torch.Tensor, hook=None, start: int = 0,
               stop: Optional[int] = None) -> Tuple[torch.Tensor, KeysValues]:
    """Blocks ``start .. stop - 1`` on the shared positions ``x`` ``[G, P, D]`` (``hook(i, x)`` gives block
    ``i``'s input, as in :func:`bench.model.prompting.run_blocks`), and each block's keys and values."""
    cache: KeysValues = []
    for block in transformer.resblocks[start:stop]:
        if hook is not None:
            x = hook(start + len(cache), x)
        q, k, v = _heads(block, x)
        mask = _causal(x.shape[-2], x.shape[-2], x.device)
        x = _rest(block, x, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
        cache.append((k, v))
    return x, cache


def run_suffix(transformer: nn.Module, x: torch.Tensor, cache: KeysValues, start: int = 0,
               last_only: bool = False) -> torch.Tensor:
    """The same blocks on the per-sequence positions ``x`` ``[G or 1, C, S, D]`` that follow group ``g``'s
    prefix (``cache`` from :func:`run_prefix`): ``[G, C, S, D]``.  ``last_only``: the last block computes
    only the last position (the pooled one, when every sequence ends in its end-of-text token)."""
    for i, (block, (k_pre, v_pre)) in enumerate(zip(transformer.resblocks[start:], cache)):
        q, k, v = _heads(block, x)
        if last_only and i == len(cache) - 1:
            q, x = q[..., -1:, :], x[..., -1:, :]  # the other positions' outputs are never read
        x = _rest(block, x, _attend_after_prefix(q.expand(k_pre.shape[0], *q.shape[1:]), k_pre, v_pre, k, v))
    return x


def _attend_after_prefix(q: torch.Tensor, k_pre: torch.Tensor, v_pre: torch.Tensor, k: torch.Tensor,
                         v: torch.Tensor) -> torch.Tensor:
    """Causal attention of queries ``q`` ``[G, C, heads, Q, d]`` (the last ``Q`` of each class's ``S``
    positions) over group ``g``'s prefix keys ``[G, heads, P, d]`` and the class's own keys
    ``[G or 1, C, heads, S, d]``, as one softmax over both.  The prefix keys are shared by every class: a
    product with all classes' queries at once, never a copy per class (which costs G x C x P x D
    memory per block, kept for the backward pass)."""
    groups, classes, heads, queries, dim = q.shape
    prefix, own = k_pre.shape[-2], k.shape[-2]
    by_head = q.transpose(1, 2).reshape(groups, heads, classes * queries, dim)
    s_pre = (by_head @ k_pre.transpose(-1, -2)).view(groups, heads, classes, queries, prefix).transpose(1, 2)
    s_own = (q @ k.transpose(-1, -2)).masked_fill(~_causal(queries, own, q.device), float("-inf"))
    weights = (torch.cat([s_pre, s_own], dim=-1).float() * dim ** -0.5).softmax(dim=-1).to(q.dtype)
    w_pre, w_own = weights.split([prefix, own], dim=-1)
    w_pre = w_pre.transpose(1, 2).reshape(groups, heads, classes * queries, prefix)
    out_pre = (w_pre @ v_pre).view(groups, heads, classes, queries, dim).transpose(1, 2)
    return out_pre + w_own @ v


def encode_suffixes(backbone, x: torch.Tensor, pooled: torch.Tensor, cache: KeysValues, start: int = 0,
                    per_pass: int = 4096, normalize: bool = True) -> torch.Tensor:
    """Text features ``[G, C, embed_dim]`` of every (group, class) sequence: class ``c``'s own positions are
    ``x[c, :pooled[c] + 1]`` (``x`` ``[C, S, D]``, the input of block ``start``; ``pooled[c]``: its pooled
    position among them), after group ``g``'s prefix (``cache``).  Classes run in buckets of one length,
    so no class runs another's padding, and the last block computes the pooled position alone; a pass
    takes at most ``per_pass`` sequences (bounded memory at many groups x classes)."""
    groups = cache[0][0].shape[0]
    order, parts = [], []
    for length in torch.unique(pooled).tolist():
        members = (pooled == length).nonzero().flatten()
        for chunk in members.split(max(1, per_pass // groups)):
            hidden = run_suffix(backbone.text.transformer, x[chunk.to(x.device), : length + 1].unsqueeze(0), cache,
                                start, last_only=True)
            parts.append(pooled_features(backbone, hidden[:, :, -1], normalize))
            order.append(chunk)
    inverse = torch.empty_like(pooled).scatter_(0, torch.cat(order), torch.arange(len(pooled)))
    return torch.cat(parts, dim=1).index_select(1, inverse.to(x.device))


def pooled_features(backbone, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Text features from the last block's output at the pooled positions ``x`` ``[..., D]``."""
    text = backbone.text
    x = text.ln_final(x)
    proj = text.text_projection
    if proj is not None:
        x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
    return F.normalize(x, dim=-1) if normalize else x
