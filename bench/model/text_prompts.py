"""Class prompts with learnable context tokens, as CoOp's prompt learner builds them.

The prompt of class ``c`` is ``[SOS] v_1 .. v_n <rest> <name> . [EOS]`` (CoOp Eq. 2,
``KaiyangZhou/CoOp:trainers/coop.py`` ``PromptLearner`` at ff61507c790454bce7c5052c3ac39e60772f1f89).
The ``v_i`` come from ``init_text``'s first ``n`` token embeddings or from N(0, 0.02); ``<rest>`` is the
part of ``init_text`` beyond them, kept frozen (MaPLe's n_ctx 2 with "a photo of a" learns "a photo"
and keeps "of a").  The class-dependent token buffers are rebuilt by :meth:`set_classnames`, so learned
context carries over to new classes; class-specific context (``csc``) serves only a subset of the
training classes (by their ``training_index``)::

    prompts = ClassPrompts(backbone, ["cat", "dog"], n_ctx=4, init_text="a photo of a")
    text = backbone.encode_prompts(prompts(), prompts.tokens)       # [2, embed_dim]
    prompts.set_classnames(["fox"])
"""
from __future__ import annotations

import dataclasses
from typing import Any, List, Optional

import torch
import torch.nn as nn

from bench.core.errors import BenchError, ConfigError


def check_init_text(init_text: Optional[str], where: str) -> None:
    """For the methods' Config.validate: init_text is words or null, never blank."""
    if init_text is not None and not init_text.strip():
        raise ConfigError(f"{where}.init_text", "must not be empty (null for random context)")


def token_length(backbone, text: str) -> int:
    """Number of BPE tokens of ``text`` (without start/end tokens)."""
    return int((backbone.tokenize([text])[0] != 0).sum().item()) - 2


DEFAULT_N_CTX = 16  # context tokens without n_ctx or init_text


def prompt_init(init_text: Optional[str]) -> Optional[str]:
    """``init_text`` as the prompts read it (``a_photo_of_a`` as CoOp's configs write it: spaces)."""
    return init_text.replace("_", " ").strip() if init_text else None


class ClassPrompts(nn.Module):
    """Token embeddings ``[C, L, D]`` of every class prompt, with the context ``ctx`` learnable.

    ``partial_init`` lets ``n_ctx`` be shorter than ``init_text`` (MaPLe, IVLP); CoOp requires them equal.
    """

    @staticmethod
    def canonical_context(cfg: Any) -> Any:
        """Options ``cfg`` (``n_ctx``, ``init_text``; no ``partial_init``) written in one form for the cell key:
        init_text as the prompts read it (CLIP's tokenizer collapses runs of spaces), and n_ctx null where null runs the same: without init_text null is
        16, and with it the one n_ctx accepted is init_text's token count, which null means (another fails
        when the prompts are built)."""
        init = " ".join((prompt_init(cfg.init_text) or "").split()) or None  # the tokenizer's spacing
        n_ctx = None if init or cfg.n_ctx == DEFAULT_N_CTX else cfg.n_ctx
        return dataclasses.replace(cfg, n_ctx=n_ctx, init_text=init)

    def __init__(self, backbone, classnames: List[str], n_ctx: Optional[int] = None, init_text: Optional[str] = None,
                 csc: bool = False, position: str = "end", where: str = "method", partial_init: bool = False,
                 n_ctx_field: str = "n_ctx"):
        super().__init__()
        self.backbone_ref = [backbone]  # a list: not a submodule, so not in state_dict or .to()
        init = prompt_init(init_text)
        init_len = token_length(backbone, init) if init else None
        n_ctx = n_ctx or init_len or DEFAULT_N_CTX
        if init and (n_ctx > init_len or (n_ctx != init_len and not partial_init)):
            raise ConfigError(f"{where}.{n_ctx_field}", f"is {n_ctx} but init_text '{init}' has {init_len} tokens"
                              + ("; set init_text: null for random context" if partial_init else ""))
        if position != "end" and init and n_ctx != init_len:
            raise ConfigError(f"{where}.{n_ctx_field}", "the class name can move into the context only when "
                              "init_text is all context; use class_token_position: end")
        self.n_ctx, self.position, self.where, self.n_ctx_field = n_ctx, position, where, n_ctx_field
        self.check_length(n_ctx + 3)  # before an n_ctx-long placeholder string is built
        self.prefix_text = init or " ".join(["X"] * n_ctx)
        self.training_classnames, self.rows = list(classnames), None
        self.set_classnames(classnames)  # checks the prompts fit before anything is allocated
        if init:
            with torch.no_grad():
                ctx = backbone.embed_tokens(backbone.tokenize([init]))[0, 1 : 1 + n_ctx].clone()
        else:
            shape = (len(classnames), n_ctx, backbone.width) if csc else (n_ctx, backbone.width)
            ctx = nn.init.normal_(torch.empty(shape, device=backbone.device), std=0.02)
        self.ctx = nn.Parameter(ctx.float())

    def set_classnames(self, classnames: List[str], training_index: Optional[List[int]] = None) -> None:
        """Rebuild the class tokens (on the context's device) for ``classnames``; the context is kept.
        Class-specific context follows ``training_index`` (the classes' positions among the training ones)."""
        if getattr(self, "ctx", None) is not None and self.ctx.dim() == 3:
            self.rows = self.csc_rows(classnames, training_index)
        backbone = self.backbone_ref[0]
        self.classnames = list(classnames)
        self.name_lens = [token_length(backbone, name) for name in classnames]
        self.check_length(token_length(backbone, self.prefix_text) + max(self.name_lens) + 3)  # SOS, ".", EOS
        tokens = backbone.tokenize([f"{self.prefix_text} {name}." for name in classnames])
        with torch.no_grad():
            embedding = backbone.embed_tokens(tokens)
        device = self.ctx.device if getattr(self, "ctx", None) is not None else tokens.device
        self.register_buffer("tokens", tokens.to(device), persistent=False)
        self.register_buffer("token_prefix", embedding[:, :1].to(device), persistent=False)  # SOS
        self.register_buffer("token_suffix", embedding[:, 1 + self.n_ctx :].to(device), persistent=False)

    def csc_rows(self, classnames: List[str], training_index: Optional[List[int]]) -> Optional[torch.Tensor]:
        """Which rows of class-specific context serve ``classnames`` (None: all, in training order)."""
        if training_index is not None:
            return torch.as_tensor(training_index, dtype=torch.long, device=self.ctx.device)
        if list(classnames) == self.training_classnames:
            return None
        raise BenchError(f"{self.where}: class-specific context (csc) is learned per training class and "
                         "cannot classify classes it was not trained on; use csc: false")

    def check_length(self, longest: int) -> None:
        limit = self.backbone_ref[0].context_length
        if longest > limit:
            raise ConfigError(f"{self.where}.{self.n_ctx_field}", f"prompts need {longest} tokens but the text "
                                                                   f"encoder takes {limit}")

    def context(self) -> torch.Tensor:
        """The context per class, ``[C, n_ctx, D]``."""
        ctx = self.ctx
        if ctx.dim() == 3 and self.rows is not None:
            ctx = ctx[self.rows]
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(self.token_prefix.shape[0], -1, -1)
        return ctx.to(self.token_prefix.dtype)

    def forward(self, ctx: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Prompt embeddings ``[C, L, D]``; ``ctx`` ``[C, n_ctx, D]`` overrides the learned context (CoCoOp)."""
        ctx = self.context() if ctx is None else ctx.to(self.token_prefix.dtype)
        prefix, suffix = self.token_prefix, self.token_suffix
        if self.position == "end":
            return torch.cat([prefix, ctx, suffix], dim=1)
        prompts = []
        half = self.n_ctx // 2
        for i, name_len in enumerate(self.name_lens):
            name, rest = suffix[i : i + 1, :name_len], suffix[i : i + 1, name_len:]
            if self.position == "middle":
                parts = [prefix[i : i + 1], ctx[i : i + 1, :half], name, ctx[i : i + 1, half:], rest]
            else:  # front
                parts = [prefix[i : i + 1], name, ctx[i : i + 1], rest]
            prompts.append(torch.cat(parts, dim=1))
        return torch.cat(prompts, dim=0)
