"""LAMP: multimodal prompt pool (MPP), modality-shared prompts (MSP) and load-balancing optimisation (LBO).

An anonymous ICLR-style submission (seed 002, methods_spec §8); there is no public code, and the
shapes follow ``asaxuc/PromptLT`` (spec §8.0).  In every prompted layer ``l`` (1-indexed
``first_layer .. last_layer``, 3..12 by default) the class token at the input of the vision block
picks the ``K`` pool entries whose keys (mean of ``ϕ^v_l(V_l[m])``) are most similar to it, after a
routing bias ``b_l`` (no gradient) is added.  Their projected tokens and the projected shared
prompts ``ϕ^v_l(S_l)`` go right after CLS (inserted at the first prompted layer, replaced at later
ones).  The text prompts of each image are the same entries of the text pool and the same shared
prompts under ``ϕ^t_l``, right after SOT in the dataset's hand-crafted template (the last pad tokens
are dropped, the EOT moves).  The loss is ``CE + β Σ_l mean_b(1 − mean_k cos(cls, key))``; after
each training step the biases move toward equal load, ``b ← b − γ_t sign(ā − K/M)``.  On a
base-to-new protocol, ``lamp`` re-balances a copy of the biases on the unlabelled new-class images
(transductive, spec A21) and routes the new classes with it; ``lamp@no_newbias`` does not.

Images with the same selection in every layer share their text prompts, so the text tower runs
once per distinct selection and class (the same logits as one pass per image).
Trainable at ViT-B/16 with the defaults: ``10 · 46,976 = 469,760`` parameters (LAMP Table 5: 470K).

    bench run --protocol 'b2n_lamp/imagenet/imb10' --method lamp lamp@no_newbias --data-root $DATA
    bench run --protocol smoke_b2n --method lamp --set lamp.first_layer=1 --set lamp.last_layer=2
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import List, Literal, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from bench.api import (METHODS, BenchError, ClassInfo, ConfigError, Method, MethodCard, encode_image_hooked,
                       image_tokens, insert_after_first, la_loss, la_offsets, pooled_positions, pooled_span,
                       run_blocks, run_prefix, run_suffix, shared_length, shift_tokens, splittable, encode_suffixes,
                       text_layers, text_output, text_tokens, vision_layers, vision_tower, vision_width)

from .lamp_pool import LoadBalancer, PoolLayer, cosine_scores, group_by_signature
from .lamp_tables import ABLATIONS, RECIPES, reported

SEQUENCES_PER_PASS = 4096  # text sequences per encoder pass: bounds memory at many signatures x classes
NEW_PASS_BATCH = 100  # the new-class bias pass runs at LAMP's test batch size (Table 16)
NEW_PASS_SEED = 0  # its image order: shuffled once, the same for every run

# -- card (its data: bench/methods/lamp_tables.py) --------------------------------------------------------

CODE = "asaxuc/PromptLT:trainers/promptlt.py@54593992449d75c06d960fa628ae504b45267bc0"
SPEC = "methods_spec §8 (no public LAMP code: the card's code, PromptLT, fixes only the shapes, §8.0)"
CARD = MethodCard(
    label="LAMP",
    paper="LAMP: multimodal prompt pool, modality-shared prompts and load-balancing optimisation for "
          "long-tailed prompt tuning. Anonymous ICLR-style submission (seed 002)",
    code=CODE, spec=SPEC, recipes=RECIPES, reported=reported(), ablations=ABLATIONS)
# The paper reports only runs with the new-class bias pass.
NO_NEWBIAS_CARD = MethodCard(
    label="LAMP (no new-class bias)",
    paper="LAMP: multimodal prompt pool, modality-shared prompts and load-balancing optimisation for "
          "long-tailed prompt tuning. Anonymous ICLR-style submission (seed 002)",
    code=CODE, spec=SPEC + "; A21: without the new-class bias pass", recipes=RECIPES)


@dataclass
class LampConfig:
    pool_size: int = field(default=20, metadata={"min": 1})  # M entries per layer and modality (App. D)
    top_k: int = field(default=6, metadata={"min": 1})  # K entries retrieved per image and layer
    entry_length: int = field(default=2, metadata={"min": 1})  # L_e tokens per entry (Table 16 extra_token_num)
    shared_tokens: int = field(default=2, metadata={"min": 1})  # S modality-shared tokens (share_token_num)
    share_dim: int = field(default=32, metadata={"min": 1})  # D, the low-dimensional prompt width
    first_layer: int = field(default=3, metadata={"min": 1})  # prompted layers, 1-indexed, both towers
    last_layer: int = field(default=12, metadata={"min": 1})
    use_mpp: bool = True  # the prompt pool (off: shared prompts only, no routing)
    use_msp: bool = True  # the modality-shared prompts
    use_lbo: bool = True  # bias updates (off: b stays 0)
    beta: float = field(default=2.0, metadata={"min": 0})  # weight of the key-matching loss (spec A14)
    gamma0: float = field(default=5e-4, metadata={"min": 0, "max": 1})  # initial LBO step
    lbo_sign: Literal["corrected", "printed"] = "corrected"  # printed: Eq. 9 as printed (diverges, A16)
    count_on: Literal["biased", "unbiased"] = "biased"  # which selection the load counts (A17)
    new_bias: bool = True  # base-to-new: re-balance a bias copy on the new-class images (transductive)
    la: bool = False  # the "+LA" ablation: logit-adjusted loss, tau 1, over the training counts

    def validate(self, where: str) -> None:
        if not (self.use_mpp or self.use_msp):
            raise ConfigError(f"{where}.use_mpp", "use_mpp and use_msp are both false: no prompts left")
        if self.use_mpp and self.top_k > self.pool_size:
            raise ConfigError(f"{where}.top_k", f"must not exceed pool_size ({self.pool_size})")
        if self.first_layer > self.last_layer:
            raise ConfigError(f"{where}.first_layer", f"must not exceed last_layer ({self.last_layer})")


@dataclass
class LampNoNewBiasConfig(LampConfig):
    new_bias: bool = False


class LampOutput(NamedTuple):
    """What ``forward`` returns in training: the logits and the summed key-matching term."""

    logits: torch.Tensor
    matching: torch.Tensor


class Routes(NamedTuple):
    chosen: List[torch.Tensor]  # per prompted layer, [B, K]: the biased selection that is used
    counted: List[torch.Tensor]  # the selection the load counts (count_on)
    matching: torch.Tensor  # Σ_l mean_b (1 − mean_k cos(cls, key)), unbiased scores


def check_layers(backbone, cfg: LampConfig, where: str) -> None:
    """The prompted layers must lie within the layers both towers have."""
    vision_tower(backbone)
    layers = min(text_layers(backbone), vision_layers(backbone))
    if cfg.last_layer > layers:
        raise ConfigError(f"{where}.last_layer", f"is {cfg.last_layer} but the text and vision transformers have "
                          f"{layers} layers (the fewer); the prompted layers first_layer..last_layer must lie "
                          f"in 1..{layers}")


@METHODS.register("lamp")
class Lamp(Method):
    """LAMP: prompt pool + shared prompts + load balancing, with the transductive new-class bias pass."""

    Config = LampConfig
    text_depends_on_image = True  # each image's routing picks the prompt entries its text runs with
    card = CARD

    def __init__(self, backbone, data: ClassInfo, cfg: LampConfig):
        super().__init__(backbone, data, cfg)
        self.where = f"method {self.registry_name}"
        check_layers(backbone, cfg, self.where)
        self.first_block, depth = cfg.first_layer - 1, cfg.last_layer - cfg.first_layer + 1
        pool, shared = (cfg.pool_size if cfg.use_mpp else 0), (cfg.shared_tokens if cfg.use_msp else 0)
        self.n_prompts = (cfg.top_k * cfg.entry_length if cfg.use_mpp else 0) + shared
        device = backbone.device
        self.layers = torch.nn.ModuleList(
            PoolLayer(pool, cfg.entry_length, shared, cfg.share_dim, vision_width(backbone), backbone.width, device)
            for _ in range(depth))
        self.balancer = LoadBalancer(depth, cfg.pool_size, cfg.top_k, cfg.gamma0, cfg.lbo_sign, device)
        self.new_balancer: Optional[LoadBalancer] = None
        self.step_offset, self.total_steps = 0, 0
        if cfg.la:
            self.register_buffer("offsets", la_offsets(data.train_counts, tau=1.0).to(device), persistent=False)
        self.set_classes(data)

    # -- label space -------------------------------------------------------------------------------

    def set_classes(self, info: ClassInfo) -> None:
        """Class prompts ``template.format(name)`` and their token ids after the prompts go in."""
        backbone = self.backbone
        prompts = [info.template.format(name) for name in info.classnames]
        tokens = backbone.tokenize(prompts)
        lengths = (tokens != 0).sum(dim=1)
        longest = int(lengths.argmax())
        if int(lengths[longest]) + self.n_prompts > backbone.context_length:
            raise BenchError(f"{self.where}: {self.n_prompts} prompt tokens (top_k * entry_length + shared_tokens) "
                             f"and the {int(lengths[longest])} tokens of '{prompts[longest]}' exceed the text "
                             f"encoder's {backbone.context_length}")
        shifted = shift_tokens(tokens, self.n_prompts)
        span = pooled_span(backbone, shifted)  # the padding after the last (shifted) EOT is never run
        with torch.no_grad():
            self.register_buffer("class_embeddings", backbone.embed_tokens(tokens[:, :span]), persistent=False)
        self.register_buffer("class_tokens", shifted[:, :span], persistent=False)
        # the positions every class shares before its name (start token, the template's first words), and
        # each class's pooled position after them once the prompts are in (bench.model.shared_prefix)
        pooled = pooled_positions(backbone.text, shifted)
        self.shared = shared_length(tokens[:, :span], pooled - self.n_prompts)
        self.register_buffer("suffix_pooled", pooled - self.n_prompts - self.shared, persistent=False)
        self.classes = info

    def set_label_space(self, info: ClassInfo) -> None:
        self.set_classes(info)

    def routing_balancer(self) -> LoadBalancer:
        """New classes of a base-to-new split (not among the training classes) route with the
        re-balanced bias once :meth:`adapt_to_new` made one; everything else with the base bias."""
        if not self.training and self.new_balancer is not None and self.classes.training_index is None:
            return self.new_balancer
        return self.balancer

    # -- vision tower: routing and prompts ---------------------------------------------------------

    def vision_hook(self, balancer: LoadBalancer, routes: Routes):
        """The hook that routes on the class token and puts the prompts in, recording into ``routes``."""
        cfg = self.cfg

        def hook(block: int, x: torch.Tensor) -> torch.Tensor:
            j = block - self.first_block
            if not 0 <= j < len(self.layers):
                return x
            layer, entries, idx = self.layers[j], None, None
            if cfg.use_mpp:
                entries = layer.vision_entries()
                scores = cosine_scores(x[:, 0], entries.mean(dim=1))
                idx = balancer.select(j, scores)
                routes.chosen.append(idx)
                routes.counted.append(idx if cfg.count_on == "biased" else balancer.select(j, scores, biased=False))
                routes.matching.add_((1 - scores.gather(1, idx).mean(dim=1)).mean())
            prompts = layer.prompts(entries, layer.to_vision, idx, x.shape[0])
            return insert_after_first(x, prompts, replace=0 if j == 0 else self.n_prompts)

        return hook

    def new_routes(self, images: torch.Tensor) -> Routes:
        return Routes([], [], torch.zeros((), device=images.device))

    def encode_images(self, images: torch.Tensor, balancer: LoadBalancer):
        routes = self.new_routes(images)
        feats = encode_image_hooked(self.backbone, images, self.vision_hook(balancer, routes))
        return feats, routes

    def route(self, images: torch.Tensor, balancer: LoadBalancer) -> Routes:
        """Only the routing: the vision tower up to the input of the last prompted layer."""
        routes = self.new_routes(images)
        hook, last = self.vision_hook(balancer, routes), self.first_block + len(self.layers) - 1
        x = run_blocks(vision_tower(self.backbone).transformer, image_tokens(self.backbone, images), hook, stop=last)
        hook(last, x)
        return routes

    # -- text tower: class prompts per selection ---------------------------------------------------

    def text_prompts(self, chosen: List[torch.Tensor], first: torch.Tensor) -> List[torch.Tensor]:
        """Per prompted layer, ``[G, P, text width]``: the text prompts of each selection group."""
        prompts = []
        for j, layer in enumerate(self.layers):
            idx = chosen[j][first.to(chosen[j].device)] if self.cfg.use_mpp else None
            entries = layer.text_entries() if self.cfg.use_mpp else None
            prompts.append(layer.prompts(entries, layer.to_text, idx, len(first)))
        return prompts

    def class_text_features(self, prompts: List[torch.Tensor]) -> torch.Tensor:
        """Text features ``[G, C, embed_dim]`` of every class under every group's prompts.  The blocks
        before the first prompted layer see no prompt, so they run once per class.  A pass takes
        whole groups, or one group's classes in chunks (slices and broadcasts: no indexing with
        repeats, whose gradient is summed in a thread-dependent order)."""
        if splittable(self.backbone):
            return self.split_text_features(prompts)
        text = self.backbone.text
        start = run_blocks(text.transformer, text_tokens(self.backbone, self.class_embeddings),
                           attn_mask=text.attn_mask, stop=self.first_block)
        groups, classes = prompts[0].shape[0], start.shape[0]
        per_pass, chunk = max(1, SEQUENCES_PER_PASS // classes), min(classes, SEQUENCES_PER_PASS)
        out = []
        for g0 in range(0, groups, per_pass):
            g = slice(g0, min(g0 + per_pass, groups))
            parts = []
            for c0 in range(0, classes, chunk):
                c = slice(c0, min(c0 + chunk, classes))
                n_groups, n_classes = g.stop - g.start, c.stop - c.start
                paired = [p[g].unsqueeze(1).expand(-1, n_classes, -1, -1).flatten(0, 1) for p in prompts]
                feats = self.run_text(start[c].repeat(n_groups, 1, 1), self.class_tokens[c].repeat(n_groups, 1), paired)
                parts.append(feats.view(n_groups, n_classes, -1))
            out.append(torch.cat(parts, dim=1))
        return torch.cat(out)

    def split_text_features(self, prompts: List[torch.Tensor]) -> torch.Tensor:
        """:meth:`class_text_features` with the positions before the class names (start token, prompts,
        the template's first words) run once, then once per group, and only the class positions per
        (group, class) against their keys and values: the same features to float rounding."""
        transformer, n, shared = self.backbone.text.transformer, self.n_prompts, self.shared
        x = text_tokens(self.backbone, self.class_embeddings)
        prefix, cache = run_prefix(transformer, x[:1, :shared], stop=self.first_block)  # no prompts yet
        suffix = run_suffix(transformer, x[:, shared : x.shape[1] - n].unsqueeze(0), cache)  # [1, C, S, D]

        def hook(block: int, x: torch.Tensor) -> torch.Tensor:
            j = block - self.first_block
            return insert_after_first(x, prompts[j], replace=0 if j == 0 else n) if j < len(prompts) else x

        _, cache = run_prefix(transformer, prefix.expand(prompts[0].shape[0], -1, -1), hook, start=self.first_block)
        return encode_suffixes(self.backbone, suffix[0], self.suffix_pooled, cache, self.first_block, SEQUENCES_PER_PASS)

    def run_text(self, x: torch.Tensor, tokens: torch.Tensor, prompts: List[torch.Tensor]) -> torch.Tensor:
        text = self.backbone.text

        def hook(block: int, x: torch.Tensor) -> torch.Tensor:
            j = block - self.first_block
            if not 0 <= j < len(prompts):
                return x
            return insert_after_first(x, prompts[j], replace=0 if j == 0 else self.n_prompts, keep_length=True)

        x = run_blocks(text.transformer, x, hook, attn_mask=text.attn_mask, start=self.first_block)
        return text_output(self.backbone, x, tokens)

    # -- forward, loss, LBO ------------------------------------------------------------------------

    def forward(self, images: torch.Tensor):
        feats, routes = self.encode_images(images, self.routing_balancer())
        if self.training and self.cfg.use_mpp and self.cfg.use_lbo:
            self.balancer.update(routes.counted, self.step_offset + int(self.balancer.steps), self.total_steps)
        first, inverse = group_by_signature(routes.chosen, images.shape[0])
        weights = self.class_text_features(self.text_prompts(routes.chosen, first)).to(feats.dtype)
        scores = torch.einsum("be,gce->bgc", feats, weights)  # every image against every group's classes
        own = inverse.to(scores.device).view(-1, 1, 1).expand(-1, 1, scores.shape[2])
        logits = self.backbone.logit_scale * scores.gather(1, own).squeeze(1)
        return LampOutput(logits, routes.matching) if self.training else logits

    def loss(self, output, labels: torch.Tensor) -> torch.Tensor:
        logits, matching = output if isinstance(output, LampOutput) else (output, None)
        ce = la_loss(logits, labels, self.offsets) if self.cfg.la else F.cross_entropy(logits, labels)
        return ce if matching is None else ce + self.cfg.beta * matching.to(ce.dtype)

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self.balancer.reset()
        self.step_offset, self.total_steps = epoch * steps, epochs * steps

    @torch.no_grad()
    def adapt_to_new(self, images) -> None:
        """Spec §8.5: a copy of the base biases, re-balanced over one pass of the new-class images."""
        if not (self.cfg.new_bias and self.cfg.use_mpp and self.cfg.use_lbo):
            return
        balancer = copy.deepcopy(self.balancer)
        balancer.reset()
        loader = DataLoader(images, batch_size=NEW_PASS_BATCH, shuffle=True,
                            generator=torch.Generator().manual_seed(NEW_PASS_SEED))
        was_training = self.training
        self.eval()
        for step, (batch, _) in enumerate(loader):
            routes = self.route(batch.to(self.backbone.device), balancer)
            balancer.update(routes.counted, step, len(loader))
        self.new_balancer = balancer
        self.train(was_training)

    def extra_state(self) -> dict:
        state = self.balancer.state("lbo_")
        if self.new_balancer is not None:
            state.update(self.new_balancer.state("lbo_new_"))
        return state

    def load_extra_state(self, state: dict) -> None:
        self.balancer.load_state(state, "lbo_")
        if "lbo_new_bias" in state:
            self.new_balancer = copy.deepcopy(self.balancer)
            self.new_balancer.load_state(state, "lbo_new_")

    def record_fields(self) -> dict:
        fields = {"lbo_bias": self.balancer.bias.tolist(), "prompt_tokens": self.n_prompts}
        if self.new_balancer is not None:
            fields["lbo_new_bias"] = self.new_balancer.bias.tolist()
        return fields


@METHODS.register("lamp@no_newbias")
class LampNoNewBias(Lamp):
    """LAMP without the new-class bias pass: the non-transductive result, to report beside lamp's."""

    Config = LampNoNewBiasConfig
    card = NO_NEWBIAS_CARD
