"""Logit adjustment (Menon et al., ICLR 2021) as pure functions (methods_spec §2).

With ``n_c`` training images of class ``c`` and ``pi_c = n_c / sum(n)``, the offsets are
``log(pi_c ** tau + eps)`` as in ``google-research/google-research:logit_adjustment/utils.py``
at 1d4d2f1aa6f2883a790d2ae46a6ee8ab150d8f31 (``eps = 1e-12``).  Candle's losses use no
epsilon (``eps=0``: an empty class gets ``-inf`` and zero probability) and its
compensating variant adds one to every count (``add_one``: MDPR's "CLA").

- LA loss: ``CE(z + offsets, y)``; predict with the raw ``z``.
- Post-hoc LA: train with CE; predict ``argmax(z - offsets)``.

    offsets = la_offsets([500, 5])           # log([500/505, 5/505])
    loss = la_loss(logits, labels, offsets)

Also DeKg's HSIC term (:func:`hsic`), a class-level regulariser between two sets of class embeddings.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def la_offsets(counts: Sequence[int], tau: float = 1.0, add_one: bool = False, eps: float = 1e-12) -> torch.Tensor:
    """``tau``-scaled log prior of the training counts, one value per class."""
    n = torch.as_tensor(counts, dtype=torch.float64) + (1.0 if add_one else 0.0)
    if (n < 0).any() or n.sum() <= 0:
        raise ValueError(f"counts must be non-negative with a positive total, got {list(counts)}")
    return torch.log((n / n.sum()) ** tau + eps).float()


def la_loss(logits: torch.Tensor, labels: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on logits shifted by the log prior (training only)."""
    return F.cross_entropy(logits + offsets.to(logits.device, logits.dtype), labels)


def posthoc_adjust(logits: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Logits with the log prior removed, for prediction."""
    return logits - offsets.to(logits.device, logits.dtype)


def hsic(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """DeKg's linear-kernel HSIC between two row sets ``[C, d]`` of the same C classes (spec_cpt_mdpr_baselines
    §3.3; ``cnunlp/DeKg:trainers/loss.py`` ``HSICLoss``): ``tr(H K_a H K_b)`` with ``K = Ŵ Ŵᵀ``,
    ``Ŵ = W / ‖W‖_F`` (the whole matrix) and ``H = I − 11ᵀ/C``, without the usual ``(C − 1)⁻²`` factor.
    Computed in fp32 (or the inputs' wider type) as ``‖(HŴ_a)ᵀ (HŴ_b)‖_F²``, the same value."""
    dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
    a, b = a.to(dtype), b.to(a.device, dtype)
    a, b = a / a.norm(), b / b.norm()
    # H W centres the columns; tr(H K_a H K_b) = ‖(H Ŵ_a)ᵀ (H Ŵ_b)‖_F² as H is symmetric and idempotent.
    cross = (a - a.mean(dim=0)).t() @ (b - b.mean(dim=0))
    return (cross * cross).sum()
