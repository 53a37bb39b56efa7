"""A tiny open_clip model pretrained in code on synthetic image-caption pairs.

Randomly initialised CLIP gives chance-level zero-shot accuracy and features
that prompts cannot steer, which makes a smoke leaderboard say nothing.  This
backbone instead runs a short CLIP-style contrastive pretraining of a tiny
open_clip config on the synthetic concepts of :mod:`bench.data.synthetic`
(captions such as "a picture of a tiger."), so zero-shot works above chance
and methods have something to learn.  The weights are cached on disk, keyed
by the config and code version; nothing is downloaded.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from bench import __version__
from bench.config.catalog import cache_root as default_cache_root
from bench.core.atomic import save_torch, set_aside_note
from bench.core.coerce import ENV, identity
from bench.core.errors import BenchError, ConfigError, reason, warn
from bench.core.registry import BACKBONES
from bench.data.synthetic import WORDS, prototype, render
from .backbone import ClipBackbone, check_model_name, create_open_clip, planned_setup

CAPTIONS = ["a photo of a {}.", "a picture of a {}.", "an image of the {}.", "a {}."]


@dataclass
class SyntheticClipConfig:
    model: str = "bench-tiny-vit"
    # pretrain on the first N words of the synthetic vocabulary
    concepts: int = field(default=len(WORDS), metadata={"min": 2, "max": len(WORDS)})
    steps: int = field(default=300, metadata={"min": 0, "max": 1_000_000})
    lr: float = field(default=1e-3, metadata={"max": 1e3})
    noise: float = field(default=0.35, metadata={"max": 100})
    max_shift: int = field(default=3, metadata={"min": 0, "max": 512})
    seed: int = field(default=0, metadata={"min": 0})
    # Where pretrained weights are cached; default $BENCH_CACHE or ~/.cache/lt-prompt-bench.
    cache_dir: Optional[str] = field(default=None, metadata=ENV)

    def validate(self, where: str) -> None:
        check_model_name(self.model, f"{where}.model")
        if self.lr <= 0:
            raise ConfigError(f"{where}.lr", "must be positive")


def cache_root(cfg: SyntheticClipConfig) -> Path:
    return Path(cfg.cache_dir) if cfg.cache_dir else default_cache_root()


def weights_path(cfg: SyntheticClipConfig) -> Path:
    ident = {**identity(cfg), "code_version": __version__}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    return cache_root(cfg) / f"synthetic_clip-{cfg.model}-{digest}.pt"


def pretrain(model, tokenizer, cfg: SyntheticClipConfig, image_size: int) -> list:
    """Contrastive pretraining; each step sees every concept once (no duplicate pairs)."""
    words = WORDS[: cfg.concepts]
    gen = torch.Generator().manual_seed(cfg.seed)
    protos = torch.stack([prototype(w, image_size) for w in words])
    tokens = torch.stack([tokenizer([c.format(w) for w in words]) for c in CAPTIONS])  # [T, C, L]
    mean = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.1)
    target = torch.arange(len(words))
    losses = []
    model.train()
    for _ in range(cfg.steps):
        labels = torch.randperm(len(words), generator=gen)
        images = render(protos, labels.tolist(), cfg.noise, cfg.max_shift, gen)
        images = (images.permute(0, 3, 1, 2).float() / 255 - mean) / std
        caption = torch.randint(len(CAPTIONS), (len(words),), generator=gen)
        text = tokens[caption, labels]
        img = model.encode_image(images, normalize=True)
        txt = model.encode_text(text, normalize=True)
        logits = model.logit_scale.exp() * img @ txt.t()
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses


def load_cached(model, path: Path) -> bool:
    """Load cached weights into ``model``; a damaged cache file is set aside (and rebuilt by the caller)."""
    if not path.exists():
        return False
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not all(torch.is_tensor(v) and torch.isfinite(v).all() for v in state.values()):
            raise ValueError("it holds NaN, infinite or non-tensor weights")
        model.load_state_dict(state)
        return True
    except Exception as err:  # truncated, empty, or another model's weights
        model.load_state_dict(initial)  # pretraining starts from the seeded init, not from a partial load
        warn(f"backbone cache '{path}' cannot be used ({reason(err)}); "
             f"{set_aside_note(path)}, pretraining again")
        return False


@BACKBONES.register("synthetic_clip")
class SyntheticClip:
    """Tiny open_clip model pretrained in code on synthetic concepts (smoke tests)."""

    Config = SyntheticClipConfig

    @staticmethod
    def build(cfg: SyntheticClipConfig, device: str = "cpu") -> ClipBackbone:
        with torch.random.fork_rng():  # the caller's RNG (a cell's seed) is left as it was
            torch.manual_seed(cfg.seed)
            model, tokenizer = create_open_clip(cfg.model, pretrained=None)
            path = weights_path(cfg)
            if not load_cached(model, path):
                pretrain(model, tokenizer, cfg, planned_setup(cfg.model, None)["image_size"])
                if not all(torch.isfinite(p).all() for p in model.parameters()):
                    raise BenchError(f"backbone pretraining diverged (non-finite weights); lower backbone.lr "
                                     f"(now {cfg.lr})")
                try:
                    save_torch(path, model.state_dict())
                except OSError as err:  # the weights are in memory: only the next build pays
                    warn(f"cannot cache backbone weights at '{path}' ({err.strerror or reason(err)}); "
                         "set BENCH_CACHE to a writable folder")
        return ClipBackbone(model.to(device), tokenizer)

    @staticmethod
    def planned_setup(cfg: SyntheticClipConfig) -> dict:
        return planned_setup(cfg.model, None)
