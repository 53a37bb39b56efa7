"""LAMP's prompt pool, modality-shared prompts and load balancing (methods_spec §8.1, §8.2, §8.4).

One :class:`PoolLayer` per prompted layer holds the pool of visual and text prompt entries
(``[M, L_e, D]`` each), the modality-shared prompts (``[S, D]``) and the two projectors
``Linear(D, D) -> ReLU -> Linear(D, width)`` into the vision and text widths.
:class:`LoadBalancer` keeps the routing bias ``b`` of every layer (a buffer, no gradient) and the
per-epoch load counters of loss-free balancing::

    layer = PoolLayer(pool_size=20, entry_length=2, shared_tokens=2, share_dim=32,
                      vision_width=768, text_width=512)
    balancer = LoadBalancer(layers=10, pool_size=20, top_k=6)
    idx = balancer.select(0, sim)                  # [B, K] pool entries of layer 0, bias added
    balancer.update([idx], step=0, total=100)      # after the forward pass
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn


def projector(share_dim: int, width: int, device=None) -> nn.Sequential:
    """PromptLT's ``compound_rep_tokens_r2vproj`` shape: ``Linear(D, D) -> ReLU -> Linear(D, width)``."""
    return nn.Sequential(nn.Linear(share_dim, share_dim, device=device), nn.ReLU(),
                         nn.Linear(share_dim, width, device=device))


def normal(*shape, device=None) -> nn.Parameter:
    return nn.Parameter(nn.init.normal_(torch.empty(*shape, device=device), std=0.02))


class PoolLayer(nn.Module):
    """The learnable prompts of one prompted layer; ``pool_size = 0`` / ``shared_tokens = 0`` leave
    the pool (MPP) / the shared prompts (MSP) out."""

    def __init__(self, pool_size: int, entry_length: int, shared_tokens: int, share_dim: int,
                 vision_width: int, text_width: int, device=None):
        super().__init__()
        self.vision_pool = normal(pool_size, entry_length, share_dim, device=device) if pool_size else None
        self.text_pool = normal(pool_size, entry_length, share_dim, device=device) if pool_size else None
        self.shared = normal(shared_tokens, share_dim, device=device) if shared_tokens else None
        self.to_vision = projector(share_dim, vision_width, device)
        self.to_text = projector(share_dim, text_width, device)

    def vision_entries(self) -> torch.Tensor:
        """``ϕ^v(V)``, ``[M, L_e, vision width]``; an entry's key is the mean of its tokens."""
        return self.to_vision(self.vision_pool)

    def text_entries(self) -> torch.Tensor:
        return self.to_text(self.text_pool)

    def prompts(self, entries: Optional[torch.Tensor], projector: nn.Module, idx: Optional[torch.Tensor],
                batch: int) -> torch.Tensor:
        """``ϕ(cat(pool[idx], S))``, ``[batch, K·L_e + S, width]``: projecting the selected entries
        equals selecting the projected ones (the projector acts per token)."""
        parts = []
        if entries is not None:
            # A one-hot product rather than entries[idx]: the gradient of indexing adds the rows of
            # entries chosen by several images in a thread-dependent order, and resumed runs must be
            # bit-identical.
            onehot = nn.functional.one_hot(idx, entries.shape[0]).to(entries.dtype)
            parts.append(torch.einsum("bkm,mlw->bklw", onehot, entries).flatten(1, 2))
        if self.shared is not None:
            shared = projector(self.shared)
            parts.append(shared.unsqueeze(0).expand(batch, -1, -1))
        return torch.cat(parts, dim=1)


def cosine_scores(query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """``cos(query[b], keys[m])`` in fp32, ``[B, M]`` (routing is decided in fp32 under autocast)."""
    q = nn.functional.normalize(query.float(), dim=-1)
    k = nn.functional.normalize(keys.float(), dim=-1)
    return q @ k.t()


def lbo_rate(gamma0: float, step: int, total: int) -> float:
    """``γ_t = γ0 · ½(1 + cos(π t / T))``; with no known ``T`` (a forward outside the train loop) ``γ0``."""
    if total <= 0:
        return gamma0
    return gamma0 * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


class LoadBalancer(nn.Module):
    """Routing biases ``b`` ``[layers, M]`` and the running mean load ``ā`` of the current epoch.

    ``sign="corrected"``: ``b ← b − γ·sign(ā − K/M)`` (an overloaded entry's bias falls; Loss-Free
    Balancing, spec A16); ``"printed"``: LAMP Eq. 9 as printed, ``b ← b + γ·sign(ā − K/M)``.
    """

    def __init__(self, layers: int, pool_size: int, top_k: int, gamma0: float = 5e-4, sign: str = "corrected",
                 device=None):
        super().__init__()
        self.top_k, self.gamma0 = top_k, gamma0
        self.direction = -1.0 if sign == "corrected" else 1.0
        self.register_buffer("bias", torch.zeros(layers, pool_size, device=device))
        self.register_buffer("load", torch.zeros(layers, pool_size, device=device))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long, device=device))  # G: steps this epoch

    @property
    def target(self) -> float:
        return self.top_k / self.bias.shape[1]  # a_cons = K / M

    def reset(self) -> None:
        """Epoch start: the load counters restart, the biases stay."""
        self.load.zero_()
        self.steps.zero_()

    def select(self, layer: int, scores: torch.Tensor, biased: bool = True) -> torch.Tensor:
        """The ``K`` entries of ``layer`` with the highest (biased) score, ``[B, K]``, in pool order
        (the set decides the prompt; the order of its tokens is the pool's)."""
        scores = scores.detach().float() + (self.bias[layer] if biased else 0.0)
        return scores.topk(self.top_k, dim=1).indices.sort(dim=1).values

    @torch.no_grad()
    def update(self, selections: Sequence[torch.Tensor], step: int, total: int) -> None:
        """One LBO step from every layer's selection ``[B, K]`` (load fractions: Σ_m a[m] = K)."""
        batch = selections[0].shape[0]
        counts = torch.zeros_like(self.load)
        for layer, idx in enumerate(selections):
            counts[layer].scatter_add_(0, idx.reshape(-1).to(counts.device),
                                       torch.ones(idx.numel(), device=counts.device))
        self.steps += 1
        g = self.steps.item()
        self.load.mul_((g - 1) / g).add_(counts / batch / g)
        rate = lbo_rate(self.gamma0, step, total)
        self.bias.add_(self.direction * rate * torch.sign(self.load - self.target))

    def state(self, prefix: str) -> dict:
        return {f"{prefix}bias": self.bias.clone(), f"{prefix}load": self.load.clone(),
                f"{prefix}steps": self.steps.clone()}

    def load_state(self, state: dict, prefix: str) -> None:
        for name in ("bias", "load", "steps"):
            getattr(self, name).copy_(state[f"{prefix}{name}"])


def group_by_signature(selections: List[torch.Tensor], batch: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Images with the same selection in every layer get the same text prompts: ``(first, inverse)``
    where ``first[g]`` is one image of group ``g`` and ``inverse[b]`` the group of image ``b`` (on the CPU)."""
    if not selections:
        return torch.zeros(1, dtype=torch.long), torch.zeros(batch, dtype=torch.long)
    signature = torch.cat([s.cpu() for s in selections], dim=1)
    _, inverse = torch.unique(signature, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), batch, dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(batch), reduce="amin")
    return first, inverse
