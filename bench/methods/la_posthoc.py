"""Post-hoc logit adjustment (Menon et al., ICLR 2021) of any method's logits, as a variant.

``<method>@la_posthoc`` is ``<method>`` trained exactly as it is (same card, same options, same
loss) whose predictions over its training classes are ``argmax_c z_c - log(pi_c ** tau + 1e-12)``,
with ``pi`` the prior of the exact training subset: ``logit_adjustment/main.py`` mode ``posthoc``
and ``utils.py`` in ``google-research/google-research`` at 1d4d2f1aa6f2883a790d2ae46a6ee8ab150d8f31
(methods_spec §2).  A subset of the training classes (ImageNet-A's 200 of ImageNet's 1000) is adjusted
by their own priors; other label spaces (new classes, with no training images) have a uniform prior
and are left as they are.  ``la_posthoc`` itself is zero-shot CLIP adjusted this way.

    bench run --protocol smoke --method la_posthoc coop@la_posthoc --set la_posthoc.tau=0.5
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from bench.api import METHODS, VARIANTS, MethodCard, describe, la_offsets, posthoc_adjust

from .coop_la import LAOptions
from .zeroshot import ZeroShotCLIP

CODE = "google-research/google-research:logit_adjustment/main.py@1d4d2f1aa6f2883a790d2ae46a6ee8ab150d8f31"
PAPER = "Menon, Jayasumana, Rawat, Jain, Veit, Kumar. Long-tail learning via logit adjustment. ICLR 2021"


@VARIANTS.register("la_posthoc")
def la_posthoc(base: type) -> type:
    """Post-hoc logit adjustment by the training prior (Menon et al., 2021); predictions only."""

    @dataclass
    class Config(base.Config, LAOptions):
        pass

    class PostHocLA(base):
        __doc__ = f"{describe(base).rstrip('.')}, then post-hoc logit adjustment by the training prior"

        def __init__(self, backbone, data, cfg):
            super().__init__(backbone, data, cfg)
            self.register_buffer("posthoc_offsets", la_offsets(data.train_counts, tau=cfg.tau), persistent=False)
            self.adjusting = slice(None)  # the offsets of the current classes; None: no adjustment

        def set_label_space(self, info) -> None:
            super().set_label_space(info)
            if info.training_index is not None:  # training classes, or a subset of them
                self.adjusting = info.training_index
            elif list(info.classnames) == list(self.data.classnames):
                self.adjusting = slice(None)
            else:  # classes never trained on: a uniform prior
                self.adjusting = None

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            logits = super().forward(images)
            if self.training or self.adjusting is None:
                return logits
            return posthoc_adjust(logits, self.posthoc_offsets[self.adjusting])

        def record_fields(self) -> dict:
            return {**super().record_fields(), "posthoc_prior_counts": list(self.data.train_counts),
                    "posthoc_offsets": self.posthoc_offsets.tolist()}

    Config.__name__ = f"{base.Config.__name__}PostHocLA"
    PostHocLA.Config = Config
    PostHocLA.card = dataclasses.replace(
        base.card, paper=f"{PAPER}; on {base.card.paper}", code=CODE, spec=f"methods_spec §2; {base.card.spec}",
        reported={}, label=f"{base.card.label} + post-hoc LA" if base.card.label else "")
    PostHocLA.__name__ = PostHocLA.__qualname__ = f"{base.__name__}PostHocLA"
    return PostHocLA


CARD = MethodCard(
    label="Zero-shot + post-hoc LA",
    paper="Menon, Jayasumana, Rawat, Jain, Veit, Kumar. Long-tail learning via logit adjustment. ICLR 2021; "
          "on zero-shot CLIP (Radford et al., ICML 2021)",
    code=CODE,
    spec="methods_spec §2, §3",
    recipes=ZeroShotCLIP.card.recipes,
)


@METHODS.register("la_posthoc")
class ZeroShotPostHocLA(la_posthoc(ZeroShotCLIP)):
    """Zero-shot CLIP with post-hoc logit adjustment by the training prior (Menon et al., 2021)."""

    card = CARD
