"""open_clip backbones, with a text encoder that accepts prompt embeddings.

Prompt-learning methods (CoOp and friends) build token *embeddings* with
learnable context vectors in them; :meth:`ClipBackbone.encode_prompts` runs
those through CLIP's frozen text transformer.  Weights trained with QuickGELU
(every OpenAI tag) get it, which open_clip 3.x would not do by itself::

    backbone = OpenClip.build(OpenClipConfig(model="ViT-B-16", pretrained="openai"))
    backbone.activation                      # "quick_gelu"
    tokens = backbone.tokenize(["a photo of a tiger."])
    text = backbone.encode_prompts(backbone.embed_tokens(tokens), tokens)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

import open_clip
import open_clip.pretrained
import torch
import torch.nn as nn

from open_clip.transformer import QuickGELU

from bench.core.coerce import ENV
from bench.core.errors import BenchError, ConfigError, reason
from bench.core.registry import BACKBONES, suggest
from .prompting import encode_text_deep

# Tiny configs for tests and the smoke protocol (bench/model_configs/*.json).
open_clip.add_model_config(Path(__file__).parent / "model_configs")


@dataclass
class OpenClipConfig:
    model: str = "ViT-B-16"
    # An open_clip pretrained tag (e.g. "openai"), a local checkpoint path, or
    # null for random weights (tests and the smoke protocol only).
    pretrained: Optional[str] = "openai"
    # MLP activation: null takes the pretrained tag's (QuickGELU for every openai
    # tag); a checkpoint file must say (OpenAI-trained weights need true).
    quick_gelu: Optional[bool] = None
    # Random weights (pretrained: null) are drawn from this seed, so equal result keys mean equal weights.
    init_seed: int = field(default=0, metadata={"min": 0, "max": 2**63 - 1})
    cache_dir: Optional[str] = field(default=None, metadata=ENV)

    def validate(self, where: str) -> None:
        check_model_name(self.model, f"{where}.model")
        if self.pretrained and self.init_seed:
            raise ConfigError(f"{where}.init_seed", "seeds random weights only (pretrained: null); "
                              f"'{self.pretrained}' weights are loaded, not drawn")
        if not self.pretrained or ":" in self.model:  # random weights, or hf-hub:/local-dir: names
            return
        tag = open_clip.pretrained.get_pretrained_cfg(self.model, self.pretrained)
        if not tag and not Path(self.pretrained).is_file():
            tags = open_clip.list_pretrained_tags_by_model(self.model)
            raise ConfigError(f"{where}.pretrained", f"'{self.pretrained}' is neither a pretrained tag of "
                              f"{self.model}{suggest(self.pretrained, tags)} (tags: {', '.join(tags) or 'none'}) "
                              "nor an existing checkpoint file")
        if not tag and self.quick_gelu is None:
            raise ConfigError(f"{where}.quick_gelu", "required with a checkpoint file: true for weights trained "
                              "with QuickGELU (OpenAI's), false for GELU")
        if tag and self.quick_gelu is not None and self.quick_gelu != bool(tag.get("quick_gelu")):
            raise ConfigError(f"{where}.quick_gelu", f"'{self.pretrained}' weights were trained with "
                              f"{'QuickGELU' if tag.get('quick_gelu') else 'GELU'}; leave quick_gelu unset")


class ClipBackbone(nn.Module):
    """A frozen open_clip model plus its tokenizer.

    ``OpenClip.build(OpenClipConfig("ViT-B-16", "openai"))`` gives one; methods
    call ``encode_image``, ``encode_text`` and ``encode_prompts`` on it.
    """

    def __init__(self, model: nn.Module, tokenizer: Callable):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        tower = getattr(model, "text", None)
        self.text = tower if tower is not None and hasattr(tower, "token_embedding") else model
        needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")
        missing = [name for name in needed if not hasattr(self.text, name)]
        if missing or getattr(self.text, "cls_emb", None) is not None:
            raise BenchError(f"this open_clip model's text tower is not supported for prompt learning (lacks {missing or 'cls_emb'})")
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.eval()  # the wrapper too, not only the model: nothing here ever trains

    def train(self, mode: bool = True):
        # The backbone stays in eval mode: methods learn prompts, not CLIP.
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return self.text.positional_embedding.device

    @property
    def width(self) -> int:
        """Width of the text token embeddings (context vectors have this size)."""
        return self.text.token_embedding.weight.shape[1]

    @property
    def embed_dim(self) -> int:
        """Size of the joint image-text feature space."""
        proj = self.text.text_projection
        return proj.out_features if isinstance(proj, nn.Linear) else proj.shape[1]

    @property
    def context_length(self) -> int:
        return self.text.positional_embedding.shape[0]

    @property
    def image_size(self) -> int:
        """Side of the square input images the image encoder expects."""
        return side(self.model.visual.image_size)

    @property
    def activation(self) -> str:
        return activation_of(self.model)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()

    @property
    def log_logit_scale(self) -> torch.Tensor:
        """The stored log temperature, as the checkpoint holds it (a method that learns it starts here)."""
        return self.model.logit_scale.detach()

    def tokenize(self, texts: List[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts)
        return tokens.to(self.device)

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text.token_embedding(tokens)

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return self.model.encode_image(images, normalize=normalize)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return self.encode_prompts(self.embed_tokens(tokens), tokens, normalize=normalize)

    @torch.no_grad()
    def encode_texts(self, texts: List[str], normalize: bool = True, batch_size: int = 256) -> torch.Tensor:
        """Frozen text features ``[N, embed_dim]`` of ``texts``, ``batch_size`` at a time (bounded memory
        for thousands of class prompts or knowledge sentences)."""
        parts = [self.encode_text(self.tokenize(texts[i:i + batch_size]), normalize=normalize)
                 for i in range(0, len(texts), batch_size)]
        return torch.cat(parts)

    def encode_prompts(self, embeddings: torch.Tensor, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Text features from token embeddings ``[N, L, D]``.

        ``tokens`` ``[N, L]`` are the token ids the embeddings were built from;
        they locate the end-of-text token whose output is pooled.
        """
        return encode_text_deep(self, embeddings, tokens, normalize=normalize)


def activation_of(model: nn.Module) -> str:
    """``"quick_gelu"`` or ``"gelu"``: the activation of the transformer MLPs."""
    kinds = {type(m) for m in model.modules() if isinstance(m, (QuickGELU, nn.GELU))}
    if kinds == {QuickGELU}:
        return "quick_gelu"
    if kinds == {nn.GELU}:
        return "gelu"
    return "mixed" if kinds else "other"


def needs_quick_gelu(name: str, pretrained: Optional[str]) -> bool:
    """Whether model ``name`` must be forced to QuickGELU for weights ``pretrained``.

    OpenAI's CLIP weights were (x * sigmoid(1.702 x)); open_clip 3.x builds
    ``ViT-B-16`` with exact GELU and only warns when the tag says otherwise,
    which silently changes every feature.  open_clip's pretrained registry
    records the activation per tag, so we read it from there.
    """
    if name.endswith("-quickgelu") or not pretrained:
        return False  # the config says quick_gelu already, or there are no weights to match
    cfg = open_clip.pretrained.get_pretrained_cfg(name, pretrained)
    return bool(cfg.get("quick_gelu", False))


def side(size) -> int:
    """open_clip gives image sizes as an int or an (h, w) pair; ours are square."""
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def planned_setup(name: str, pretrained: Optional[str], quick_gelu: Optional[bool] = None) -> dict:
    """Input size and activation a model will be built with, from its config (no weights);
    None where only loading can tell (hf-hub: models)."""
    cfg = open_clip.get_model_config(name) if ":" not in name else None
    if not cfg:
        return {"image_size": None, "activation": None}
    quick = quick_gelu if quick_gelu is not None else cfg.get("quick_gelu", False) or needs_quick_gelu(name, pretrained)
    return {"image_size": side(cfg["vision_cfg"]["image_size"]), "activation": "quick_gelu" if quick else "gelu"}


def check_model_name(name: str, where: str = "") -> None:
    if ":" in name:  # hf-hub:..., local-dir:...
        return
    known = open_clip.list_models()
    if name not in known:
        raise ConfigError(where, f"unknown open_clip model '{name}'{suggest(name, known)} (see open_clip.list_models())")


def create_open_clip(name: str, pretrained: Optional[str], device: str = "cpu", cache_dir: Optional[str] = None,
                     quick_gelu: Optional[bool] = None, init_seed: int = 0):
    """``(model, tokenizer)`` with the activation the weights were trained with; random weights
    (``pretrained`` None) drawn from ``init_seed``; load failures as one BenchError line."""
    check_model_name(name)
    quick_gelu = quick_gelu if quick_gelu is not None else needs_quick_gelu(name, pretrained)
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # random weights warn; missing weights log an ERROR: our one line says it
    try:
        with torch.random.fork_rng(devices=[]):  # the global generator is left as it was
            torch.manual_seed(init_seed)
            model = open_clip.create_model(
                name, pretrained=pretrained, cache_dir=cache_dir, device="cpu", force_quick_gelu=quick_gelu
            ).to(device)
    except Exception as err:  # weights download/load failures come in many types
        raise load_error(name, pretrained, cache_dir, err) from None
    finally:
        logger.setLevel(level)
    # False defers to the config, so a "-quickgelu" model name keeps its QuickGELU.
    expected = planned_setup(name, pretrained, quick_gelu or None)["activation"]
    if expected and activation_of(model) != expected:  # e.g. open_clip ignored force_quick_gelu
        raise BenchError(f"open_clip built '{name}' with {activation_of(model)}, but '{pretrained}' needs {expected}")
    return model, open_clip.get_tokenizer(name)


def load_error(name: str, pretrained: Optional[str], cache_dir: Optional[str], err: Exception) -> BenchError:
    """One complete line: what failed, where the weights are looked for, how to point at a local file."""
    tag = open_clip.pretrained.get_pretrained_cfg(name, pretrained) if pretrained else {}
    if not tag:  # random weights, or a checkpoint file
        return BenchError(f"could not load open_clip '{name}' with pretrained={pretrained!r}: {reason(err)}")
    hub = tag.get("hf_hub", "").rstrip("/")
    where = (f"the Hugging Face cache ({hf_cache(cache_dir)}) as '{hub}'" if hub
             else f"{cache_dir or '~/.cache/clip'} (from {tag.get('url') or 'its URL'})")
    quick = "true" if tag.get("quick_gelu") else "false"
    return BenchError(f"open_clip '{name}' weights '{pretrained}' are not in {where} and could not be downloaded "
                      f"({type(err).__name__}); fetch them once where there is network and copy that cache here, or "
                      "point --set protocol.backbone.cache_dir=DIR at a copy (the result key stays the same); a "
                      f"checkpoint file{f' (open_clip_model.safetensors of huggingface.co/{hub})' if hub else ''} "
                      "also works, as another configuration with its own key: --set protocol.backbone.pretrained=FILE "
                      f"--set protocol.backbone.quick_gelu={quick}")


def hf_cache(cache_dir: Optional[str]) -> str:
    if cache_dir:
        return cache_dir
    import os

    home = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"), "hub")
    return home


@BACKBONES.register("open_clip")
class OpenClip:
    """Any open_clip_torch CLIP model (frozen), e.g. ViT-B-16 / openai."""

    Config = OpenClipConfig

    @staticmethod
    def build(cfg: OpenClipConfig, device: str = "cpu") -> ClipBackbone:
        return ClipBackbone(*create_open_clip(cfg.model, cfg.pretrained, device, cfg.cache_dir, cfg.quick_gelu,
                                              cfg.init_seed))

    @staticmethod
    def planned_setup(cfg: OpenClipConfig) -> dict:
        return planned_setup(cfg.model, cfg.pretrained, cfg.quick_gelu)
