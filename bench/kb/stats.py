"""The knowledge-base prior ``M`` (MDPR Eq. 4) and its statistics (MDPR Table 7)::

    raw, prior = prior_matrix(backbone, sentences, names, DIMENSIONS)   # (C, 5, d) and M (C, 5)
    prior_stats(prior)   # {"mean": 0.84, "std": 0.04, "median": 0.85} for an LLM knowledge base

``M[c, v]`` is the cosine between class ``c``'s sentence of dimension ``v`` and the frozen text feature of
``frame.format(c)`` ("a photo of a {c}." in the paper, the bare name in its code).
"""
from __future__ import annotations

from typing import Dict, Mapping, Sequence, Tuple

import torch
import torch.nn.functional as F

from .confusion import template_features


@torch.no_grad()
def prior_matrix(backbone, sentences: Mapping[str, Mapping[str, str]], names: Sequence[str],
                 dimensions: Sequence[str], frame: str = "a photo of a {}.") -> Tuple[torch.Tensor, torch.Tensor]:
    """The raw sentence features ``F_p`` (C, V, d; float32, not normalised) and ``M`` (C, V)."""
    texts = [sentences[n][d] for n in names for d in dimensions]
    raw = backbone.encode_texts(texts, normalize=False).float().view(len(names), len(dimensions), -1)
    anchor = template_features(backbone, names, frame).to(raw.device)
    return raw, (F.normalize(raw, dim=-1) @ anchor.unsqueeze(-1)).squeeze(-1)


def prior_stats(prior: torch.Tensor) -> Dict[str, float]:
    """Mean, standard deviation (over all C x V entries, n - 1) and median of ``M``, as MDPR Table 7."""
    values = prior.flatten().double()
    # quantile, not median(): torch's median of an even count is the lower middle value
    return {"mean": float(values.mean()), "std": float(values.std()), "median": float(values.quantile(0.5))}
