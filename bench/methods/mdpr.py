"""MDPR: an LLM knowledge base and multi-dimensional dynamic prompt routing (Jia et al., Findings of EMNLP 2025).

Follows ``Sha843/MDPR:MDPR with Maple/mdpr_clip/`` (``module_maple.py``, ``loss.py``, ``trainer.py``,
``preprocess_semantic_knowledge.py``, ``generate_matrix_pretrain.py``) at 31fcb5fc4427a86c7d5c2c0907ef157c4da55856
with the REC choices of methods_spec §7 and §13 (A1-A12).  A plug-in on a base tuner (CoOp or MaPLe):
each class ``c`` has five knowledge sentences (GA, FT, FA, DF, CI; :mod:`bench.kb`) encoded once by the
frozen text encoder, ``F_p[c] (5, d)`` raw, ``f_avg[c]`` their mean (Eq. 3) and the prior
``M[c, v] = cos(F_p[c, v], E_t("a photo of a {c}."))`` (Eq. 4).  With ``f`` the normalised (prompted) image
feature and ``s`` a learnable scale shared by both heads, capped at 100 as the code caps it: the
parameter's data is clamped in place before each forward pass and used unclamped in the graph, so its
gradient flows at the cap and the scale can fall below 100 (``MDPRPluginMaPLe.forward``)::

    ŷ_cb = s · f T̂ᵀ                                     base tuner's logits
    f_rb[b, c], W_r[b, c] = C-MHA(query f[b], keys/values F_p[c])   one shared MHA, per class (Eq. 5)
    ŷ_rb[b, c] = s · cos(f_rb[b, c], f[b])               (Eq. 6)
    L = λ_base CE(ŷ_cb) + w(e) λ_sem CLA(ŷ_rb) + λ_pa mean(1 - cos(W_r, M)) + w(e) λ_ka KL(t ‖ s)   (Eq. 7-10)
    predict (1 - β) ŷ_cb + β ŷ_rb,  β = 0.5                (Eq. 11)

CLA is LA with add-one counts on ``ŷ_rb`` only; KL is teacher ``Proj(f_avg[y])`` (detached) to student
``Proj(norm(f_rb[b, y]))`` at temperature T, batch mean, no T²; ``w(e) = min(1, e / 5)`` (paper; the
code's linear-over-all-epochs warm-up is ``warmup: code_full``).  The attention is computed in the
efficient form of spec §7.7 (keys and values once per class, no batch repeat): equal to
``nn.MultiheadAttention`` on repeated tensors, which the tests check.

``mdpr_coop`` / ``mdpr_maple`` read a knowledge-base file (``kb``: an ``mdpr-kb/v1`` file or a folder of them,
from ``bench kb build``; its SHA-256 is part of the result key).  ``mdpr_coop_offlinekb`` /
``mdpr_maple_offlinekb`` build the offline template KB in memory and carry no paper numbers.

    bench kb build --dataset cifar100_lt_ir100 --backend llm --out kb/
    bench run --protocol cifar100_lt_ir100 --method mdpr_coop --set mdpr_coop.kb=kb/cifar100_lt_ir100.json
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.api import (DIMENSIONS, ENV, BenchError, ConfigError, MissingInput, OfflineTemplateBackend, build_kb,
                       extend_partners, file_sha256, la_loss, la_offsets, pool_partners, prior_matrix, prior_stats,
                       read_kb, require_file)

MAX_SCALE = 100.0  # the code clamps logit_scale's data at log(100) before every forward pass


@dataclass
class MDPROptions:
    kb: Optional[str] = field(default=None, metadata=ENV)  # file or folder; its hash (not path) is in the key
    lambda_base: float = field(default=1.0, metadata={"min": 0})
    lambda_sem: float = field(default=0.1, metadata={"min": 0})  # MDPR-CoOp 0.1, MDPR-MaPLe 1.0 (App. A.1.4)
    lambda_pa: float = field(default=0.05, metadata={"min": 0})
    lambda_ka: float = field(default=0.01, metadata={"min": 0})  # MDPR-CoOp 0.01, MDPR-MaPLe 0.005
    temperature: float = field(default=2.0, metadata={"min": 1e-6})  # KA distillation temperature T
    warmup: Literal["paper5", "code_full"] = "paper5"  # w(e) of λ_sem, λ_ka (spec A2)
    fusion_beta: float = field(default=0.5, metadata={"min": 0, "max": 1})
    predict: Literal["fuse", "base", "semantic"] = "fuse"  # which logits are scored (Figure 3 reads all three)
    dimensions: List[str] = field(default_factory=lambda: list(DIMENSIONS))  # Table 5: drop one
    prior_prompt: Literal["photo", "bare"] = "photo"  # M against "a photo of a {c}." (paper) or "{c}" (code)
    attn_dropout: float = field(default=0.1, metadata={"min": 0, "max": 1})  # paper 0.1, code 0.2 (A4)
    heads: int = field(default=8, metadata={"min": 1})
    proj_dim: int = field(default=128, metadata={"min": 1})
    learn_scale: bool = True  # the code trains CLIP's logit scale (A12)

    def validate(self, where: str) -> None:
        dims = list(self.dimensions)
        if not dims or len(set(dims)) != len(dims) or not set(dims) <= set(DIMENSIONS):
            raise ConfigError(f"{where}.dimensions", f"must be distinct names among {list(DIMENSIONS)}, got {dims}")


class Knowledge(NamedTuple):
    raw: torch.Tensor  # F_p [C, V, d], raw text features of the sentences
    mean: torch.Tensor  # f_avg [C, d]
    prior: torch.Tensor  # M [C, V]


class PromptRouter(nn.Module):
    """C-MHA (one shared ``nn.MultiheadAttention``) and the KA projection ``Proj``."""

    def __init__(self, width: int, heads: int, proj_dim: int, dropout: float, device):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, dropout=dropout, device=device)
        self.proj = nn.Linear(width, proj_dim, device=device)
        nn.init.normal_(self.proj.weight, std=0.02)  # module_maple.py
        nn.init.zeros_(self.proj.bias)

    def forward(self, query: torch.Tensor, keys: torch.Tensor):
        """``query`` [B, d], ``keys`` [C, V, d] -> routed features ``f_rb`` [B, C, d] and the head-averaged
        attention weights ``W_r`` [B, C, V] (after dropout, as ``nn.MultiheadAttention`` returns them)."""
        attn, (b, d), (c, v, _) = self.attn, query.shape, keys.shape
        h = attn.num_heads
        w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
        b_q, b_k, b_v = attn.in_proj_bias.chunk(3)
        q = F.linear(query, w_q.to(query.dtype), b_q.to(query.dtype)).view(b, h, d // h)
        k = F.linear(keys, w_k.to(keys.dtype), b_k.to(keys.dtype)).view(c, v, h, d // h)
        val = F.linear(keys, w_v.to(keys.dtype), b_v.to(keys.dtype)).view(c, v, h, d // h)
        weights = torch.einsum("bhe,cvhe->bchv", q, k.to(q.dtype)).div(math.sqrt(d // h)).softmax(-1)
        weights = F.dropout(weights, attn.dropout, self.training)
        out = torch.einsum("bchv,cvhe->bche", weights, val.to(weights.dtype)).reshape(b, c, d)
        return attn.out_proj(out), weights.mean(2)


class MDPROutput(NamedTuple):
    base: torch.Tensor  # ŷ_cb [B, C]
    semantic: torch.Tensor  # ŷ_rb [B, C]
    routing: torch.Tensor  # W_r [B, C, V]
    routed: torch.Tensor  # f_rb [B, C, d]
    knowledge: Knowledge


class MDPR:
    """Mixin over a base tuner with ``image_features(images)`` and ``text_features()`` (CoOp, MaPLe)."""

    offline_kb = False
    # 1: the logit scale learns at its cap (its data clamped before the forward pass, as the code does;
    # before, a clamp in the graph gave it no gradient), and MDPR-MaPLe starts from MDPR's own init.
    code_revision = "mdpr.1"

    def __init__(self, backbone, data, cfg):
        super().__init__(backbone, data, cfg)
        where = f"method {self.registry_name}"
        if self.offline_kb and cfg.kb is not None:
            raise ConfigError(f"{where}.kb", f"{self.registry_name} builds the offline template KB itself; "
                                             f"use {self.registry_name.replace('_offlinekb', '')} for a KB file")
        if not self.offline_kb and cfg.kb is None:
            raise MissingInput(f"{where}.kb", "needs a knowledge-base file: build one with 'bench kb build "
                                             "--dataset <protocol>' and pass --set <method>.kb=<file or folder>")
        self.sentences = self.read_files(cfg.kb) if cfg.kb is not None else {}
        width = backbone.embed_dim
        if width % cfg.heads:
            raise ConfigError(f"{where}.heads", f"must divide the embedding width {width}, got {cfg.heads}")
        self.router = PromptRouter(width, cfg.heads, cfg.proj_dim, cfg.attn_dropout, backbone.device)
        start = backbone.log_logit_scale.float().clone()  # CLIP's value; scale() caps it as the code does
        self.log_scale = nn.Parameter(start, requires_grad=cfg.learn_scale)
        offsets = la_offsets(data.train_counts, add_one=True, eps=0.0)  # CLA as loss.py: (n + 1) / (N + C)
        self.register_buffer("cla_offsets", offsets.to(backbone.device), persistent=False)
        self.partners: Dict[str, str] = {}  # offline KB: confusing class of each class, set in prepare
        self.cache: Dict[tuple, Knowledge] = {}  # by class names: encoded once per label space
        self.ramp = 1.0  # w(e)
        self.check_classes(data.classnames + list(data.new_classnames))

    @classmethod
    def key_inputs(cls, cfg) -> dict:
        if cfg.kb is None:
            return {}
        return {"kb_sha256": {p.name: file_sha256(p) for p in kb_files(cfg.kb)}}

    @staticmethod
    def read_files(location: str) -> Dict[str, Dict[str, str]]:
        """Class name -> dimension -> sentence, from one file or every ``*.json`` of a folder (sorted;
        the first file naming a class wins)."""
        out: Dict[str, Dict[str, str]] = {}
        for path in kb_files(location):
            kb = read_kb(path)
            for name in kb.entries:
                out.setdefault(name, kb.sentences(name))
        return out

    def check_classes(self, names: List[str]) -> None:
        missing = [n for n in names if n not in self.sentences] if not self.offline_kb else []
        if missing:
            raise BenchError(f"method {self.registry_name}: {len(missing)} class(es) missing from knowledge base "
                             f"'{self.cfg.kb}' ({', '.join(missing[:5])}); build a KB for this protocol with "
                             "'bench kb build --dataset <protocol>'")

    def set_label_space(self, info) -> None:
        self.check_classes(list(info.classnames))
        super().set_label_space(info)

    @torch.no_grad()
    def prepare(self, train) -> None:
        """Offline KB on a long-tailed protocol: DF partners from zero-shot confusions on the training images."""
        super().prepare(train)
        if self.offline_kb and not self.data.new_classnames:
            self.partners, _ = pool_partners(self.backbone, self.data.classnames, train)
            self.cache.clear()

    def offline_partners(self, names: List[str]) -> Dict[str, str]:
        """DF partners of ``names`` found as ``bench kb build`` finds them (spec §7.3): the training
        dataset's classes from :meth:`prepare`, else (base-to-new) by text among base and new classes;
        other classes by text among ``names``."""
        pool = list(self.data.classnames) + list(self.data.new_classnames)
        known = self.partners or pool_partners(self.backbone, pool)[0]
        found = extend_partners(self.backbone, known, names)
        return {name: found[name] for name in names}

    def offline_sentences(self, names: List[str]) -> Dict[str, Dict[str, str]]:
        kb = build_kb("", list(names), self.offline_partners(names), OfflineTemplateBackend())
        return {name: kb.sentences(name) for name in names}

    @torch.no_grad()
    def knowledge(self) -> Knowledge:
        names = list(self.label_space.classnames)
        if tuple(names) not in self.cache:
            sentences = self.offline_sentences(names) if self.offline_kb else self.sentences
            frame = "a photo of a {}." if self.cfg.prior_prompt == "photo" else "{}"
            raw, prior = prior_matrix(self.backbone, sentences, names, list(self.cfg.dimensions), frame)
            self.cache = {tuple(names): Knowledge(raw, raw.mean(1), prior)}
        return self.cache[tuple(names)]

    def scale(self) -> torch.Tensor:
        """``s = exp(log_scale)``, with the cap applied to the data first (a clamp in the graph would
        give the scale no gradient at the cap, where CLIP's value starts it)."""
        with torch.no_grad():
            self.log_scale.clamp_(max=math.log(MAX_SCALE))
        return self.log_scale.exp()

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        super().start_epoch(epoch, epochs, steps)
        self.ramp = min(1.0, epoch / 5) if self.cfg.warmup == "paper5" else min(1.0, 0.01 + 0.99 * epoch / epochs)

    def forward(self, images: torch.Tensor):
        f = self.image_features(images)
        s = self.scale().to(f.dtype)
        base = s * f @ self.text_features().t().to(f.dtype)
        kn = self.knowledge()
        routed, routing = self.router(f, kn.raw.to(f.dtype))
        semantic = s * F.cosine_similarity(routed, f.unsqueeze(1).to(routed.dtype), dim=-1)
        if self.training:
            return MDPROutput(base, semantic, routing, routed, kn)
        if self.cfg.predict == "base":
            return base
        if self.cfg.predict == "semantic":
            return semantic
        return (1 - self.cfg.fusion_beta) * base + self.cfg.fusion_beta * semantic.to(base.dtype)

    def loss(self, out: MDPROutput, labels: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        total = cfg.lambda_base * F.cross_entropy(out.base, labels)
        if cfg.lambda_sem:
            total = total + self.ramp * cfg.lambda_sem * la_loss(out.semantic, labels, self.cla_offsets)
        if cfg.lambda_pa:
            prior = out.knowledge.prior.to(out.routing.dtype).unsqueeze(0)
            total = total + cfg.lambda_pa * (1 - F.cosine_similarity(out.routing, prior, dim=-1)).mean()
        if cfg.lambda_ka:
            total = total + self.ramp * cfg.lambda_ka * self.distillation(out, labels)
        return total

    def distillation(self, out: MDPROutput, labels: torch.Tensor) -> torch.Tensor:
        """KL(softmax(z_t / T) ‖ softmax(z_s / T)), batch mean, teacher detached (loss.py, spec A3)."""
        student = self.router.proj(F.normalize(out.routed[torch.arange(len(labels)), labels], dim=-1))
        teacher = self.router.proj(out.knowledge.mean[labels].to(student.dtype)).detach()
        t = self.cfg.temperature
        return F.kl_div(F.log_softmax(student / t, -1), F.softmax(teacher / t, -1), reduction="batchmean")

    def record_metrics(self) -> Dict[str, float]:
        """MDPR Table 7: mean, std and median of the prior M over the training classes."""
        self.use_label_space(self.data)
        return {f"prior_{name}": value for name, value in prior_stats(self.knowledge().prior).items()}

    def record_fields(self) -> dict:
        kb = "offline-template-v1" if self.offline_kb else self.cfg.kb
        return {**super().record_fields(), "kb": kb, "cla_prior_counts": list(self.data.train_counts),
                "logit_scale": self.scale().item(), "df_partners": dict(self.partners)}


def kb_files(location: str) -> List[Path]:
    path = Path(location)
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise BenchError(f"knowledge-base folder '{path}' holds no *.json file; "
                             "build one with 'bench kb build --dataset <protocol>'")
        return files
    return [require_file(path)]  # read (and checked) when the method is built, before any cell runs
