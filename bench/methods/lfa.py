"""LFA: linear feature alignment of frozen CLIP features (Ouali, Bulat, Martinez, Tzimiropoulos, ICCV 2023).

One matrix ``W`` (``D x D``, 262,144 parameters at ViT-B/16) maps L2-normalised frozen image features
``x`` to ``norm(x W)``, classified against frozen hand-crafted text features ``t_c`` of the evaluated
classes (each dataset's CoOp template; the ImageNet family an 8-template ensemble: each template
encoded and normalised, averaged, normalised again).  No training loop of the engine: ``fit`` runs on the
five crops of every training image (``fit_views``, ``bench.engine.fitting``), following
``saic-fi/LFA:feature_alignment.py`` and ``alignment_utils.py`` at 2ee3bba3e45bbe03c7b7c6c0b770e1b2ec7e781f
(spec_lamp_baselines.md §6):

1. beta-Procrustes (paper: closed-form initialisation): ``U S V^T = svd(X^T Y)``, ``W_P = U V^T``
   (orthogonal Procrustes, ``argmin ||X W - Y||_F``), ``W0 = (1 - beta) W_P + beta I``; ``X`` every crop
   of every image, ``Y = t_y``.  ``beta: cv`` picks beta among ``linspace(0, 1, 25)`` by top-1 on 3 random
   80/20 splits of the centre crops (the first best wins), then refits on all centre crops.
2. ``n_iters`` full-batch AdamW steps (cosine per iteration down to ``min_lr``), each on one crop index
   drawn for all images, with Gaussian noise and inverted dropout each switched on by a coin (p 0.5), on
   the adaptive re-ranking loss (``d_ic = ||v_i - t_c||``, ``n_i1..n_ik`` the k nearest classes):
   ``L = 1/(N k) sum_i sum_j max(0, d_{i,y_i} + (1 - t_{y_i} . t_{n_ij}) / scale - d_{i,n_ij})``.
3. An EMA of ``W`` from the identity, momentum ``0.9 + 0.1 (1 - exp(-5 min(t, H) / H))``, ``H = n_iters // 2``.

Prediction: ``norm(x W) . t_c / 0.07``.  ``lfa`` classifies the training classes with the refined ``W``
and new classes and cross-dataset / domain-shift targets with the EMA ("two mappings", the code's
base-to-new and target-set branch; spec B14); ``lfa@single_map`` uses the refined ``W`` everywhere.
No logit adjustment (LAMP's row is plain LFA, B17).

    bench run --protocol smoke_b2n --method lfa lfa@single_map --set lfa.n_iters=50
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Literal, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.api import (METHODS, BenchError, ClassInfo, ConfigError, Method, MethodCard, Recipe, dataset_template,
                       template_bank)

from .lamp_tables import b2n_reported

CODE = "saic-fi/LFA:feature_alignment.py@2ee3bba3e45bbe03c7b7c6c0b770e1b2ec7e781f"
PAPER = ("Ouali, Bulat, Martinez, Tzimiropoulos. Black Box Few-Shot Adaptation for Vision-Language Models. "
         "ICCV 2023 (arXiv:2304.01752)")
TEMPERATURE = 0.07  # alignment_utils.py get_acc: only the softmax sees it, never the argmax
CENTRE = 4  # torchvision's FiveCrop order: top-left, top-right, bottom-left, bottom-right, centre
CV_BETAS, CV_SPLITS, CV_TRAIN = 25, 3, 0.8  # cross_validation_beta_procrustes defaults
ADAM_EPS = 1e-8

# save_features.py CUSTOM_TEMPLATES: CoOp's per-dataset templates (UCF101 under LFA's key ImageUCF101),
# the ImageNet family an ensemble of 8 (CoOp's IMAGENET_TEMPLATES_SELECT and "a photo of a {}.").
IMAGENET_TEMPLATES = ["a photo of a {}.", "itap of a {}.", "a bad photo of the {}.", "a origami {}.",
                      "a photo of the large {}.", "a {} in a video game.", "art of the {}.",
                      "a photo of the small {}."]
TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    **{name: IMAGENET_TEMPLATES for name in ("ImageNet", "ImageNetSketch", "ImageNetV2", "ImageNetA", "ImageNetR")},
}

# README.md "Running LFA": --n-iters per dataset, base-to-new and 16-shot few-shot; domain generalisation 200.
B2N_ITERS = {"Caltech101": 40, "DescribableTextures": 100, "EuroSAT": 50, "Food101": 50, "FGVCAircraft": 100,
             "OxfordFlowers": 50, "OxfordPets": 10, "StanfordCars": 50, "SUN397": 50, "UCF101": 100, "ImageNet": 100}
FEW_SHOT_ITERS = {"Caltech101": 1000, "DescribableTextures": 1000, "EuroSAT": 100, "Food101": 100,
                  "FGVCAircraft": 1000, "OxfordFlowers": 100, "OxfordPets": 30, "StanfordCars": 2000, "SUN397": 100,
                  "UCF101": 200, "ImageNet": 200}
DEFAULT_ITERS = 200  # feature_alignment.py's --n-iters default (and the DG runs'): datasets the tables lack


@dataclass
class LFAConfig:
    # beta-Procrustes interpolation towards the identity, or "cv": chosen by cross-validation (§6.3)
    beta: Union[float, Literal["cv"]] = field(default=0.9, metadata={"min": 0, "max": 1})
    n_iters: int = field(default=DEFAULT_ITERS, metadata={"min": 0, "max": 100_000})  # full-batch refinement steps
    lr: float = field(default=5e-4, metadata={"min": 0, "max": 1e3})  # AdamW, cosine per iteration to min_lr
    weight_decay: float = field(default=5e-4, metadata={"min": 0, "max": 1e3})  # decoupled (AdamW)
    min_lr: float = field(default=1e-7, metadata={"min": 0, "max": 1e3})
    knn: int = field(default=3, metadata={"min": 1, "max": 1_000_000})  # re-ranking neighbours k
    scale: float = field(default=4.0, metadata={"min": 1e-6, "max": 1e6})  # margins (1 - t_y . t_n) / scale
    noise: float = field(default=0.035, metadata={"min": 0, "max": 1e3})  # Gaussian feature noise std (p 0.5)
    dropout: float = field(default=0.05, metadata={"min": 0, "max": 0.99})  # inverted feature dropout (p 0.5)
    # new classes and target sets through the EMA of W ("two mappings"); false: the refined W everywhere
    ema_for_new: bool = True

    def validate(self, where: str) -> None:
        if self.min_lr > self.lr:
            raise ConfigError(f"{where}.min_lr", "must not exceed lr")


@dataclass
class LFASingleMapConfig(LFAConfig):
    ema_for_new: bool = False


# -- the fit: closed form, cross-validation, refinement ----------------------------------------------------

def class_prototypes(backbone, info: ClassInfo) -> torch.Tensor:
    """``[C, D]`` normalised text features of ``info``'s classes: the dataset's template, or the mean of the
    normalised features of an ensemble's templates, normalised (save_features.py get_clip_text_features)."""
    templates = dataset_template(info, TEMPLATES)
    templates = [templates] if isinstance(templates, str) else list(templates)
    names = [name.replace("_", " ") for name in info.classnames]
    return F.normalize(template_bank(backbone, templates, names).mean(0), dim=-1)


def procrustes(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The orthogonal ``W`` minimising ``||x W - y||_F``: ``U V^T`` of ``svd(x^T y)``.  With fewer classes
    than dimensions ``x^T y`` is rank-deficient and the completion of ``W`` is the SVD routine's."""
    u, _, vh = torch.linalg.svd(x.T @ y, full_matrices=False)
    return u @ vh


def beta_procrustes(x: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:
    w = procrustes(x, y)
    return w - beta * (w - torch.eye(w.shape[0], device=w.device, dtype=w.dtype))


def top1(x: torch.Tensor, w: torch.Tensor, prototypes: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent rounded to 2 decimals, as the official cross-validation scores it."""
    correct = ((x @ w) @ prototypes.T).argmax(1).eq(labels).sum().item()
    return round(100.0 * correct / len(labels), 2)


def cross_validate_beta(x: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor,
                        generator: torch.Generator) -> Tuple[float, List[float]]:
    """The beta of ``linspace(0, 1, 25)`` with the best mean top-1 over 3 random 80/20 splits of ``x``
    (the first of equal bests), and every beta's score (feature_alignment.py cross_validation_beta_procrustes)."""
    n = len(x)
    cut = int(n * CV_TRAIN)
    if cut < 1 or cut == n:
        raise BenchError(f"lfa: beta 'cv' needs at least 2 training images to split 80/20 (got {n}); set a beta")
    best, best_score, scores = 0.0, -math.inf, []
    for beta in torch.linspace(0.0, 1.0, CV_BETAS).tolist():
        score = 0.0
        for _ in range(CV_SPLITS):
            order = torch.randperm(n, generator=generator, device=generator.device).to(x.device)
            fit, held = order[:cut], order[cut:]
            w = beta_procrustes(x[fit], prototypes[labels[fit]], beta)
            score += top1(x[held], w, prototypes, labels[held])
        scores.append(score / CV_SPLITS)
        if scores[-1] > best_score:
            best, best_score = beta, scores[-1]
    return best, scores


def arerank_loss(mapped: torch.Tensor, prototypes: torch.Tensor, labels: torch.Tensor, knn: int = 3,
                 scale: float = 4.0) -> torch.Tensor:
    """Adaptive re-ranking loss (alignment_utils.py adaptive_reranking_loss): for each row, a hinge
    between the distance to its class and the distance to each of its k nearest classes, with margin
    ``(1 - t_y . t_n) / scale``; the mean over ``N k`` terms (a neighbour that is the row's class gives 0)."""
    v, t = F.normalize(mapped, dim=-1), F.normalize(prototypes, dim=-1)
    k = min(knn, len(t))
    distances = torch.cdist(v, t)
    nearest, index = distances.topk(k, dim=1, largest=False)
    anchor = distances.gather(1, labels[:, None])
    margins = (1.0 - (t[index] * t[labels][:, None]).sum(-1)) / scale
    return (anchor + margins - nearest).clamp_min(0).mean()


def ema_momentum(step: int, n_iters: int) -> float:
    """``0.9 + 0.1 * (1 - exp(-5 min(step, H) / H))``, ``H = n_iters // 2`` (1 when H = 0): log_rampup."""
    half = n_iters // 2
    if half == 0:
        return 1.0
    return 0.9 + 0.1 * (1.0 - math.exp(-5.0 * min(max(step, 0), half) / half))


def cosine_lr(cfg: LFAConfig, step: int) -> float:
    """CosineAnnealingLR(T_max = n_iters, eta_min = min_lr) stepped after every iteration: step ``step``'s lr."""
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * step / cfg.n_iters))


def perturb(x: torch.Tensor, cfg: LFAConfig, generator: torch.Generator, coins: np.random.Generator) -> torch.Tensor:
    """Gaussian noise, then inverted dropout, each when its coin (``uniform() > 0.5``) says so."""
    if cfg.noise > 0 and coins.uniform() > 0.5:
        x = x + cfg.noise * torch.randn(x.shape, generator=generator, device=generator.device).to(x.device)
    if cfg.dropout > 0 and coins.uniform() > 0.5:
        keep = torch.rand(x.shape, generator=generator, device=generator.device).to(x.device) >= cfg.dropout
        x = x * keep / (1.0 - cfg.dropout)
    return x


def refine(w0: torch.Tensor, crops: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor, cfg: LFAConfig,
           generator: torch.Generator, coins: np.random.Generator) -> Tuple[torch.Tensor, torch.Tensor, List[float]]:
    """``n_iters`` full-batch AdamW steps from ``w0`` on one random crop of every image each
    (feature_alignment.py mapping_refinement); the refined W, its EMA and each step's loss."""
    w = w0.clone().requires_grad_(True)
    optimizer = torch.optim.AdamW([w], lr=cfg.lr, betas=(0.9, 0.999), eps=ADAM_EPS, weight_decay=cfg.weight_decay)
    ema = torch.eye(w.shape[0], device=w.device, dtype=w.dtype)
    losses = []
    for step in range(cfg.n_iters):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(cfg, step)
        crop = int(torch.randint(crops.shape[1], (), generator=generator, device=generator.device))
        loss = arerank_loss(perturb(crops[:, crop], cfg, generator, coins) @ w, prototypes, labels, cfg.knn, cfg.scale)
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            raise BenchError(f"lfa: the refinement diverged (loss {losses[-1]} at step {step + 1}); try a lower lr")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        momentum = ema_momentum(step, cfg.n_iters)
        ema = momentum * ema + (1.0 - momentum) * w.detach()
    return w.detach(), ema, losses


# -- card --------------------------------------------------------------------------------------------------

PRECISION = "features in fp32 (official: fp16 CLIP features cast to fp32)"
B2N = f"{CODE.split(':')[0]} README.md base-to-new (--beta-procrustes 0.9, --n-iters per dataset; {PRECISION})"
FEW_SHOT = f"{CODE.split(':')[0]} README.md few-shot (beta by cross-validation, --n-iters per dataset; {PRECISION})"
DG = f"{CODE.split(':')[0]} README.md domain generalisation (beta by cross-validation, --n-iters 200; {PRECISION})"
FP32 = {"eval_precision": "fp32"}  # LFA runs in fp32 on fp32 features (spec §7.4)
B2N_RECIPE = Recipe(source=B2N, options={"beta": 0.9, "n_iters": DEFAULT_ITERS}, train=FP32,
                    by_dataset={name: {"n_iters": n} for name, n in B2N_ITERS.items()})

CARD = MethodCard(
    label="LFA",
    paper=PAPER,
    code=CODE,
    spec="spec_lamp_baselines.md §6, B14-B17",
    recipes={
        # LAMP runs LFA on its long-tailed base-to-new data with the README settings (B17).
        "b2n_lt100": B2N_RECIPE,
        "b2n_lt16": B2N_RECIPE,
        "b2n_fs": Recipe(source=FEW_SHOT, options={"beta": "cv", "n_iters": DEFAULT_ITERS}, train=FP32,
                         by_dataset={name: {"n_iters": n} for name, n in FEW_SHOT_ITERS.items()}),
        **{family: Recipe(source=DG, options={"beta": "cv", "n_iters": 200}, train=FP32)
           for family in ("xd_lt100", "xd_lt16")},
        "lt": Recipe(source=f"project choice (LFA never ran long-tailed recognition, B25): few-shot settings, "
                            f"beta by cross-validation, --n-iters {DEFAULT_ITERS}; {PRECISION}",
                     options={"beta": "cv", "n_iters": DEFAULT_ITERS}, train=FP32),
    },
    reported=b2n_reported("lfa", "LAMP's run, mean of 5 runs; LAMP says it compares LFA on its first two "
                                 "benchmarks but prints it in Table 1 only (spec B19)"),
)
SINGLE_MAP_CARD = MethodCard(label="LFA (single map)", paper=PAPER, code=CODE,
                             spec="spec_lamp_baselines.md §6.5, B14: the refined W for every label space",
                             recipes=CARD.recipes)


# -- the method --------------------------------------------------------------------------------------------

@METHODS.register("lfa")
class LFA(Method):
    """LFA: a linear map of frozen CLIP image features, beta-Procrustes then re-ranked (Ouali et al., 2023)."""

    Config = LFAConfig
    card = CARD
    trains = False  # fits itself (fit_views): no epoch loop
    frozen_image_tower = True
    fit_views = "five_crop"

    def __init__(self, backbone, data: ClassInfo, cfg: LFAConfig):
        super().__init__(backbone, data, cfg)
        dim, device = backbone.embed_dim, backbone.device
        self.W = nn.Parameter(torch.eye(dim, device=device))  # the refined map (its trainable parameters)
        self.register_buffer("ema", torch.eye(dim, device=device))
        self.fitted: dict = {}
        self.set_label_space(data)

    def set_label_space(self, info: ClassInfo) -> None:
        self.register_buffer("prototypes", class_prototypes(self.backbone, info), persistent=False)
        self.on_training_classes = info == self.data

    def mapping(self) -> torch.Tensor:
        """The refined W on the training classes, the EMA elsewhere (unless ``ema_for_new`` is off)."""
        return self.W if self.on_training_classes or not self.cfg.ema_for_new else self.ema

    def fit(self, features: torch.Tensor, labels: torch.Tensor, seed: int) -> None:
        crops = F.normalize(features.float(), dim=-1)  # [N, 5, D]
        prototypes = class_prototypes(self.backbone, self.data).to(crops.device)
        generator = torch.Generator(device=crops.device).manual_seed(seed)
        coins = np.random.default_rng(seed)
        scores: Optional[List[float]] = None
        if self.cfg.beta == "cv":  # centre crops only, for the choice and the refit
            beta, scores = cross_validate_beta(crops[:, CENTRE], labels, prototypes, generator)
            w0 = beta_procrustes(crops[:, CENTRE], prototypes[labels], beta)
        else:
            beta = float(self.cfg.beta)
            w0 = beta_procrustes(crops.flatten(0, 1), prototypes[labels.repeat_interleave(crops.shape[1])], beta)
        w, ema, losses = refine(w0, crops, labels, prototypes, self.cfg, generator, coins)
        with torch.no_grad():
            self.W.copy_(w)
            self.ema.copy_(ema)
        self.fitted = {"lfa_beta": beta, "lfa_cv_scores": scores, "lfa_loss_history": losses,
                       "lfa_fit_images": len(labels), "lfa_fit_views": self.fit_views}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.image_features(images)
        mapped = F.normalize(feats @ self.mapping().to(feats.dtype), dim=-1)
        return mapped @ self.prototypes.t().to(mapped.dtype) / TEMPERATURE

    def record_text_features(self) -> torch.Tensor:
        return self.prototypes  # a buffer, which the base class does not call

    def record_fields(self) -> dict:
        return dict(self.fitted)


@METHODS.register("lfa@single_map")
class LFASingleMap(LFA):
    """LFA with the refined map for every label space (no EMA for new classes and targets): spec B14."""

    Config = LFASingleMapConfig
    card = SINGLE_MAP_CARD
