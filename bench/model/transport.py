"""Entropic optimal transport by Sinkhorn's matrix scaling, as PLOT/PLOT++ run it.

``sinkhorn(K, a, b)`` scales a batch of positive kernels ``K`` ``[P, M, N]`` (``K = exp(-cost / eps)``)
into plans ``T = diag(r) K diag(c)`` whose column sums approach ``b`` ``[P, N]`` and row sums ``a``
``[P, M]``.  The update order, the stopping rule and the cap follow ``CHENGY12/PLOT:plot-pp/trainers/
plotpp.py`` (``CustomCLIP.Sinkhorn``) at 728539feac3f8471a1663ce79020b236880e5e7b: ``r = a / (K c)`` then
``c = b / (Kᵀ r)``, stopping when the mean of ``|r - r_prev|`` over the **whole batch** drops below
``tol`` (one test for all ``P`` problems, spec_cpt_mdpr_baselines.md §17.6).  After the last ``c`` update
the column marginals hold exactly; the row marginals only to the loose default ``tol = 1e-2``::

    T = sinkhorn(torch.exp(-(1 - sim) / 0.1), torch.full((P, M), 1 / M), torch.full((P, N), 1 / N))
"""
from __future__ import annotations

from typing import Tuple

import torch


def sinkhorn(K: torch.Tensor, a: torch.Tensor, b: torch.Tensor, tol: float = 1e-2,
             max_iter: int = 100) -> torch.Tensor:
    """The transport plans ``[P, M, N]`` of kernels ``K`` ``[P, M, N]`` between marginals ``a`` ``[P, M]``
    and ``b`` ``[P, N]`` (see the module docstring)."""
    r, c = sinkhorn_scalings(K, a, b, tol, max_iter)
    return r.unsqueeze(-1) * K * c.unsqueeze(-2)


def sinkhorn_scalings(K: torch.Tensor, a: torch.Tensor, b: torch.Tensor, tol: float = 1e-2,
                      max_iter: int = 100) -> Tuple[torch.Tensor, torch.Tensor]:
    """The scalings ``(r [P, M], c [P, N])`` of :func:`sinkhorn`."""
    r, c = torch.ones_like(a), torch.ones_like(b)
    for _ in range(max_iter):
        previous = r
        r = a / (K @ c.unsqueeze(-1)).squeeze(-1)
        c = b / (K.transpose(-1, -2) @ r.unsqueeze(-1)).squeeze(-1)
        if (r - previous).abs().mean().item() < tol:
            break
    return r, c
