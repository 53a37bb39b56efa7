"""Hand-crafted prompt banks and the text-to-text loss that classifies them with learned class prompts
(LASP's language-aware regulariser, spec_cpt_mdpr_baselines.md §7.2); the bank also gives the frozen
targets of KgCoOp/TCP (one template) and LFA's prototypes (an ensemble's mean)::

    bank = template_bank(backbone, ["a photo of a {}.", "art of the {}."], ["cat", "dog"])   # [2, 2, d]
    loss = text_to_text_loss(learned, bank, backbone.logit_scale)     # learned: normalised [2, d]
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


@torch.no_grad()
def template_bank(backbone, templates: Sequence[str], classnames: Sequence[str]) -> torch.Tensor:
    """Normalised frozen text features ``[L, C, d]`` (fp32) of each of the ``L`` templates filled with each
    class name."""
    texts = [t.format(c) for t in templates for c in classnames]
    return backbone.encode_texts(texts).float().view(len(templates), len(classnames), -1)


def text_to_text_loss(learned: torch.Tensor, bank: torch.Tensor, scale) -> torch.Tensor:
    """Mean over templates ``l`` and classes ``j`` of ``−log softmax_i(scale · learned_i · bank_{l,j})[j]``:
    each hand-crafted feature is classified among the learned class features ``learned`` ``[C, d]``."""
    logits = scale * torch.einsum("id,ljd->lij", learned, bank.to(learned.dtype))  # [L, C_i, C_j]
    target = torch.arange(bank.shape[1], device=bank.device).expand(bank.shape[0], -1)
    return F.cross_entropy(logits, target)
