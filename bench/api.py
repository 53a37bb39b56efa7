"""Everything a method author imports, in one place: ``from bench.api import Method, METHODS, ...``.

Every shipped method in ``bench/methods/`` imports from here only, so the packages behind these names
can move without breaking a method (``tests/test_layering.py`` holds the rule)::

    from bench.api import METHODS, Method, MethodCard, Recipe, Reported

    @METHODS.register("my_method")
    class MyMethod(Method):
        card = MethodCard(paper="...", code="owner/repo:path@<commit>",
                          recipes={"lt": Recipe(source="paper App. A", train={"lr": 1e-3})})
"""
from bench.config.recipes import Recipe
from bench.core.coerce import ENV
from bench.core.errors import BenchError, ConfigError, MissingInput
from bench.core.registry import METHODS, REPORTED, VARIANTS, describe
from bench.kb.backends import OfflineTemplateBackend
from bench.kb.confusion import extend_partners, pool_partners, template_features
from bench.kb.knowledge import build_kb, file_sha256, read_kb, require_file
from bench.kb.prompts import DIMENSIONS
from bench.kb.stats import prior_matrix, prior_stats
from bench.model.backbone import ClipBackbone
from bench.model.clustering import best_partition
from bench.model.losses import hsic, la_loss, la_offsets, posthoc_adjust
from bench.model.method import Ablation, ClassInfo, DeepPromptCLIP, Method, MethodCard, Reported, dataset_template
from bench.model.prompting import (check_depth, encode_image_deep, encode_image_hooked, encode_text_deep,
                                   image_tokens, insert_after_first, normal_prompts, pooled_positions, pooled_span,
                                   run_blocks, shift_tokens, text_layers, text_output, text_tokens, vision_layers,
                                   vision_tower, vision_width)
from bench.model.prompting import encode_text_hooked, grad_scale  # modules beside the blocks (MMA)
from bench.model.shared_prefix import encode_suffixes, run_prefix, run_suffix, shared_length, splittable  # LAMP, CoCoOp
from bench.model.text_prompts import ClassPrompts, check_init_text
from bench.model.transport import sinkhorn
from bench.model.backbone_tuning import TunedParameters, block_parameter_names  # LASP's LayerNorms
from bench.model.template_bank import template_bank, text_to_text_loss  # LASP
from bench.model.vision_tokens import block_with_attention, last_block_tokens, project_tokens  # TextRefiner

__all__ = [
    # the method contract and its card
    "Method", "MethodCard", "Reported", "Ablation", "Recipe", "ClassInfo", "DeepPromptCLIP", "ClipBackbone",
    "dataset_template",
    # registration (REPORTED: cards of systems the suite cites but does not run yet)
    "METHODS", "VARIANTS", "REPORTED", "describe",
    # errors a method raises, and config field metadata
    "BenchError", "ConfigError", "MissingInput", "ENV",
    # class prompts and deep prompts in both towers
    "ClassPrompts", "check_init_text", "check_depth", "encode_image_deep", "encode_image_hooked", "encode_text_deep",
    "image_tokens", "insert_after_first", "normal_prompts", "pooled_span", "run_blocks", "shift_tokens",
    "text_layers", "text_output", "text_tokens", "vision_layers", "vision_tower", "vision_width",
    "encode_text_hooked", "grad_scale",
    # text prompts that depend on the image: the positions before the class name once per image
    "encode_suffixes", "pooled_positions", "run_prefix", "run_suffix", "shared_length", "splittable",
    "TunedParameters", "block_parameter_names", "template_bank", "text_to_text_loss",
    "block_with_attention", "last_block_tokens", "project_tokens",
    # optimal transport (PLOT++)
    "sinkhorn",
    # losses and clustering
    "la_loss", "la_offsets", "posthoc_adjust", "hsic", "best_partition",
    # MDPR's knowledge bases
    "DIMENSIONS", "OfflineTemplateBackend", "build_kb", "extend_partners", "file_sha256", "pool_partners",
    "read_kb", "require_file", "template_features", "prior_matrix", "prior_stats",
]
