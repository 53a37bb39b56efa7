"""Candle: feature-space prototypes, cross-modal fusion and a compensating LA loss (Shi et al., KDD 2024).

Follows ``shijxcs/Candle:trainers/candle.py`` (``Fusion``, ``Head``, ``Candle``) and
``trainers/losses.py`` (``CompensatingLogitAdjustedLoss``) at d285eb35d3af45c3db060377add15930c4ff2b78
(methods_spec §2, §6).  CLIP is a frozen black box; only feature-space modules are trained.
With ``T`` the raw text features of ``template(c)`` for base ∪ new classes (the new classes' rows are
the virtual prototypes' current values with ``virtual_init: text``, as the code's shared storage makes
them), ``V`` the base visual prototypes (per-class means of raw image features, test transform, in
:meth:`prepare`) followed by learnable virtual prototypes for the new classes, and ``I`` the raw image
features::

    I, P, T  = f(x) W_img,  [V; V_virt] W_img,  T W_txt            (W_* start at identity)
    z0       = s · norm([I; P]) norm(T)ᵀ                              (pre-fusion)
    I', P', T' = split(LN(F) + ratio · MHA(LN(F))),  F = [I; P; T]   (one sequence)
    z_vt     = s · norm([I'; P']) norm(T')ᵀ,  z_vv = s·scale · norm([I'; P']) norm(P')ᵀ

Training adds one prototype "sample" per class (labels ``0 .. C_all-1``) to every batch and
minimises ``CLA(z0) + CLA(z_vt) + CLA(z_vv)``, with ``CLA(z, y) = CE(z + tau·log π', y)``,
``π' ∝ n_c + 1`` over base counts and zeros for the new classes (no epsilon).  Prediction runs
the same fusion over ``[test images; P; T]`` and returns ``z_vt + z_vv`` for the images,
sliced to the base, the new or all columns (``set_label_space``).

Class-name transductive: the names of the new classes (``ClassInfo.new_classnames``) are used
at training time, as text features and virtual prototypes, so Candle can classify only the
classes named then.  With ``test_mask: none`` (official) test images attend to each other in
the fusion, so a prediction depends on the rest of its evaluation batch; ``test_mask: images``
(spec A31 variant) lets each image see only itself, the prototypes and the texts.

    bench run --protocol smoke --method candle --set candle.scale=0.5
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from bench.api import METHODS, BenchError, ConfigError, Method, MethodCard, Recipe, Reported, la_loss, la_offsets

from .lamp_tables import BASELINE, b2n_reported, balanced_reported, xd_dg_reported

VISUAL_INIT_STD = 0.05  # official Head: virtual = mean(V_base) + N(0, 0.05)
PROTOTYPE_BATCH = 64  # images per batch when computing the prototypes (no effect on the result)


@dataclass
class CandleConfig:
    tau: float = field(default=1.0, metadata={"min": 0})  # CLA offsets tau · log π'
    # Vision-vision logit scale is s · scale: official run_example.sh 1.0 (train.py default 0.5).
    scale: float = field(default=1.0, metadata={"min": 0})
    virtual_init: Literal["text", "visual"] = "text"  # new-class prototypes: their text features, or mean V + noise
    # virtual_init text: "shared" (official) makes the new classes' text rows the virtual prototypes' current
    # values (its Parameter is a view of those rows); "fixed" keeps the template text (spec §6's frozen T_all).
    virtual_text: Literal["shared", "fixed"] = "shared"
    # "images": at test time mask image→other-image and class-token→image attention (spec A31).
    test_mask: Literal["none", "images"] = "none"
    fusion_ratio_init: float = 0.1  # learned weight of the attention output in the residual
    # With test_mask none a prediction depends on its test batch: official DATALOADER.TEST.BATCH_SIZE 100.
    test_batch_size: int = field(default=100, metadata={"min": 1})
    heads: int = field(default=8, metadata={"min": 1})  # must divide the embedding width
    dropout: float = field(default=0.1, metadata={"min": 0, "max": 1})  # attention-weight dropout


class Fusion(nn.Module):
    """Official ``Fusion``: ``LN(F) + ratio · MHA(LN(F))`` (the residual is the normalised input)."""

    def __init__(self, width: int, cfg: CandleConfig, device):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, cfg.heads, dropout=cfg.dropout, device=device)
        self.ratio = nn.Parameter(torch.tensor([float(cfg.fusion_ratio_init)], device=device))
        self.norm = nn.LayerNorm(width, device=device)

    def forward(self, tokens: torch.Tensor, mask=None) -> torch.Tensor:
        x = self.norm(tokens)
        out, _ = self.attn(x, x, x, need_weights=False, attn_mask=mask)  # unbatched: one (L, width) sequence
        return self.ratio * out + x


B2N_SOURCE = "Candle run_example.sh + configs/trainers/Candle/vit_b16_bs128_lr0.0003.yaml"
RECIPE = dict(options={"scale": 1.0, "virtual_init": "text", "test_mask": "none"},
              train={"epochs": 50, "batch_size": 128, "lr": 3e-4})

CARD = MethodCard(
    label="Candle",
    paper="Shi, Zhang, Wei, Li. Efficient and Long-Tailed Generalization for Pre-trained Vision-Language "
          "Model. KDD 2024 (arXiv:2406.12638). Class-name transductive: uses the new class names in training",
    code="shijxcs/Candle:trainers/candle.py@d285eb35d3af45c3db060377add15930c4ff2b78",
    spec="methods_spec §2, §6 (virtual_text: shared follows the code, whose new-class text rows share the "
         "virtual prototypes' storage; fixed is §6's frozen T_all)",
    recipes={
        "lt": Recipe(source=f"{B2N_SOURCE} (MDPR gives none for its Candle rows; spec §11)", **RECIPE),
        "b2n_lt100": Recipe(source=B2N_SOURCE, **RECIPE),
        "b2n_lt16": Recipe(source=f"{B2N_SOURCE} (project choice, spec §11)", **RECIPE),
    },
    reported={
        **b2n_reported("candle", BASELINE),
        **balanced_reported("candle"),
        "cifar100_lt_ir10": Reported("MDPR Table 2", {"all": 75.77, "many": 76.71, "medium": 73.68}),
        "cifar100_lt_ir50": Reported("MDPR Table 2", {"all": 73.14, "many": 77.15, "medium": 70.17, "few": 70.78}),
        "cifar100_lt_ir100": Reported("MDPR Table 2", {"all": 72.42, "many": 76.14, "medium": 72.54, "few": 67.93}),
        "imagenet_lt": Reported("MDPR Table 3", {"all": 71.28, "many": 76.38, "medium": 69.55, "few": 62.91}),
        "places_lt": Reported("MDPR Table 3", {"all": 45.81, "many": 46.97, "medium": 45.42, "few": 44.56}),
        "xd_dg_lamp/imb100": xd_dg_reported("candle", "the official code trains one Candle per cross-dataset target "
                                                      "with the target's class names (xd_imb_train.sh); this suite "
                                                      "leaves Candle out of protocols whose targets share one run"),
    },
)


@METHODS.register("candle")
class Candle(Method):
    """Candle: prototypes + cross-modal fusion + compensating LA on frozen CLIP features (Shi et al., 2024)."""

    Config = CandleConfig
    text_depends_on_image = True  # text and image features are fused over the test batch
    card = CARD
    frozen_image_tower = True  # raw frozen image features (prepare() still reads the images)
    code_revision = "candle.1"  # 1: the new classes' text rows follow the virtual prototypes (virtual_text)

    def __init__(self, backbone, data, cfg: CandleConfig):
        super().__init__(backbone, data, cfg)
        device = backbone.device
        self.n_base, self.n_new = len(data.classnames), len(data.new_classnames)
        names = list(data.classnames) + list(data.new_classnames)
        with torch.no_grad():
            text = backbone.encode_text(backbone.tokenize([data.template.format(c) for c in names]), normalize=False)
        width = text.shape[1]
        if width % cfg.heads:
            raise ConfigError(f"method {self.registry_name}.heads",
                              f"must divide the embedding width {width} of this backbone, got {cfg.heads}")
        self.register_buffer("text_features", text.float(), persistent=False)
        self.register_buffer("base_prototypes", torch.zeros(self.n_base, width, device=device), persistent=False)
        self.proj_image = nn.Parameter(torch.eye(width, device=device))
        self.proj_text = nn.Parameter(torch.eye(width, device=device))
        self.fusion = Fusion(width, cfg, device)
        # Drawn here (seeded like the attention weights), not in prepare: prepare adds the mean prototype.
        noise = torch.zeros(self.n_new, width) if cfg.virtual_init == "text" else \
            torch.empty(self.n_new, width).normal_(std=VISUAL_INIT_STD)
        noise = noise.to(device)
        self.register_buffer("virtual_noise", noise, persistent=False)
        start = text[self.n_base:] if cfg.virtual_init == "text" else noise
        self.virtual_prototypes = nn.Parameter(start.detach().clone().float())
        self.prior_counts = list(data.train_counts) + [0] * self.n_new
        offsets = la_offsets(self.prior_counts, tau=cfg.tau, add_one=True, eps=0.0)
        self.register_buffer("offsets", offsets.to(device), persistent=False)
        self.columns = slice(0, self.n_base)
        self.prepared = False

    @torch.no_grad()
    def prepare(self, train) -> None:
        """Base prototypes: the mean raw image feature of each training class (all its images)."""
        width = self.base_prototypes.shape[1]
        sums = torch.zeros(self.n_base, width, dtype=torch.float64)
        counts = torch.zeros(self.n_base, dtype=torch.long)
        for images, labels in DataLoader(train, batch_size=PROTOTYPE_BATCH, shuffle=False):
            feats = self.backbone.encode_image(images.to(self.backbone.device), normalize=False)
            labels = torch.as_tensor(labels, dtype=torch.long)
            sums.index_add_(0, labels, feats.double().cpu())  # on the CPU: deterministic
            counts += torch.bincount(labels, minlength=self.n_base)
        empty = [self.data.classnames[c] for c in (counts == 0).nonzero().flatten().tolist()]
        if empty:
            raise BenchError(f"method {self.registry_name}: no training images for {len(empty)} class(es) "
                             f"({', '.join(empty[:5])}), so they have no visual prototype")
        prototypes = (sums / counts[:, None]).float().to(self.backbone.device)
        self.base_prototypes.copy_(prototypes)
        if self.cfg.virtual_init == "visual":
            self.virtual_prototypes.copy_(prototypes.mean(0) + self.virtual_noise)
        self.prepared = True

    @property
    def eval_batch_size(self):
        return self.cfg.test_batch_size if self.cfg.test_mask == "none" else None

    def set_label_space(self, info) -> None:
        if info.training_index is not None:  # a subset of the training classes
            self.columns = list(info.training_index)
            return
        base, new = list(self.data.classnames), list(self.data.new_classnames)
        spaces = [(base, slice(0, self.n_base)), (new, slice(self.n_base, None)), (base + new, slice(None))]
        for names, columns in spaces:
            if names and list(info.classnames) == names:
                self.columns = columns
                return
        raise BenchError(f"method {self.registry_name} can classify only the classes named at training time: "
                         f"its {self.n_base} training classes, the {self.n_new} new classes of ClassInfo.new_classnames, "
                         "or both, in that order; got other class names (for a cross-dataset target the official "
                         "code trains one Candle per target, naming the target's classes at training time, "
                         "shijxcs/Candle:scripts/candle/xd_imb_train.sh; a protocol whose targets share one "
                         "training run cannot do that)")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Training: logits ``[3, B + C_all, C_all]`` (z0, z_vt, z_vv; prototype rows last).
        Evaluation: ``z_vt + z_vv`` ``[B, C]`` over the current label space."""
        if not self.prepared:
            raise BenchError(f"method {self.registry_name}: prepare(train) must run before forward "
                             "(it computes the visual prototypes)")
        feats = self.raw_image_features(images)
        prototypes = torch.cat([self.base_prototypes, self.virtual_prototypes])
        img, proto = feats @ self.proj_image, prototypes @ self.proj_image
        text = self.class_text() @ self.proj_text
        batch, n = img.shape[0], proto.shape[0]
        mask = None if self.training or self.cfg.test_mask == "none" else self.isolating_mask(batch, n, img.device)
        fused = self.fusion(torch.cat([img, proto, text]), mask)
        img2, proto2, text2 = fused[:batch], fused[batch:batch + n], fused[batch + n:]
        if not self.training:
            vt, vv = self.similarities(img2, proto2, text2)
            return (vt + vv)[:, self.columns]
        z0 = self.similarities(torch.cat([img, proto]), proto, text)[0]
        return torch.stack([z0, *self.similarities(torch.cat([img2, proto2]), proto2, text2)])

    def class_text(self) -> torch.Tensor:
        """Raw text features of every class.  With ``virtual_init: text`` the official ``Head`` builds the
        virtual prototypes as a Parameter over the new classes' rows of the text buffer, which it reads
        through ``.data``: each step that moves the prototypes moves those rows, with no gradient through
        the text path.  ``virtual_text: shared`` does the same without sharing storage."""
        if self.cfg.virtual_init == "text" and self.cfg.virtual_text == "shared" and self.n_new:
            return torch.cat([self.text_features[:self.n_base], self.virtual_prototypes.detach()])
        return self.text_features

    def similarities(self, queries, prototypes, text):
        """``(s · cos(queries, text), s · scale · cos(queries, prototypes))``."""
        q, s = F.normalize(queries, dim=-1), self.backbone.logit_scale
        return s * q @ F.normalize(text, dim=-1).t(), s * self.cfg.scale * q @ F.normalize(prototypes, dim=-1).t()

    @staticmethod
    def isolating_mask(batch: int, classes: int, device) -> torch.Tensor:
        """Attention mask (True = blocked): no token attends to an image other than itself."""
        total = batch + 2 * classes
        mask = torch.zeros(total, total, dtype=torch.bool, device=device)
        mask[:, :batch] = True
        mask[torch.arange(batch), torch.arange(batch)] = False
        return mask

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """CLA summed over the three logit sets; targets are ``labels`` then ``0 .. C_all-1``."""
        n = self.n_base + self.n_new
        if logits.dim() != 3 or logits.shape[:2] != (3, labels.shape[0] + n):
            raise BenchError(f"method {self.registry_name}: loss takes the training-mode output of forward "
                             f"[3, batch + {n}, {n}], got {list(logits.shape)}")
        targets = torch.cat([labels, torch.arange(n, device=labels.device)])
        return sum(la_loss(z, targets, self.offsets) for z in logits)

    def record_fields(self) -> dict:
        return {"la_prior_counts": self.prior_counts, "la_add_one": True, "la_offsets": self.offsets.tolist(),
                "new_classes_in_training": self.n_new}
