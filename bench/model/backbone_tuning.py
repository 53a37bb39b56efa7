"""Trainable copies of named backbone parameters (LASP's vision LayerNorms).

The backbone is frozen and shared by every cell a runner builds, so a method that fine-tunes some of
its parameters never un-freezes them in place: it keeps its own copies, starting from the backbone's
values, and runs a backbone module with the copies in their place (``torch.func.functional_call``).
The copies are ordinary parameters of the method, so they are trained, counted and checkpointed with
the rest (``Method.trainable_state``), and the shared backbone is left as it was::

    tuned = TunedParameters(backbone.model.visual, layer_norm_names(backbone.model.visual, ("ln_1", "ln_2")))
    feats = tuned(images)                        # backbone.model.visual(images) with the copies
"""
from __future__ import annotations

import re
from typing import Dict, List, Sequence

import torch
import torch.nn as nn

from bench.core.errors import BenchError


def block_parameter_names(module: nn.Module, children: Sequence[str]) -> List[str]:
    """Names of the parameters of each residual block's ``children`` ("ln_1") under ``module``
    (a tower: ``transformer.resblocks.<i>.<child>.<weight|bias>``), in block order."""
    pattern = re.compile(r"transformer\.resblocks\.\d+\.(%s)\.\w+" % "|".join(map(re.escape, children)))
    return [name for name, _ in module.named_parameters() if pattern.fullmatch(name)]


class TunedParameters(nn.Module):
    """Trainable copies of ``names`` (parameters of ``module``); calling it runs ``module`` with them."""

    def __init__(self, module: nn.Module, names: Sequence[str]):
        super().__init__()
        self.module_ref = [module]  # a list: the backbone is not a submodule of this one
        known = dict(module.named_parameters())
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise BenchError(f"cannot tune backbone parameters {unknown or 'none named'}: "
                             f"{type(module).__name__} has no such parameters")
        self.names = list(names)
        self.copies = nn.ParameterList(nn.Parameter(known[n].detach().clone().float()) for n in self.names)

    def overrides(self) -> Dict[str, torch.Tensor]:
        return {name: p.to(self.module_ref[0].get_parameter(name).dtype) for name, p in zip(self.names, self.copies)}

    def forward(self, *args, **kwargs):
        return torch.func.functional_call(self.module_ref[0], self.overrides(), args, kwargs)
