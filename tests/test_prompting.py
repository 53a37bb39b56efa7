"""Deep prompts (bench.model.prompting) and the methods built on them, against independent references.

The reference path is open_clip's own ``encode_image`` / ``encode_text`` with forward hooks that put
the prompts in, written from the official code's description (b2n_anchors §3.4), not from ours.
"""
import copy

import pytest
import torch

from bench.core.errors import BenchError, ConfigError
from bench.model.method import ClassInfo
from bench.model.prompting import encode_image_deep, encode_text_deep, pooled_span
from bench.methods.cocoop import CoCoOpConfig
from bench.methods.coop import CoOpConfig
from bench.methods.ivlp import IVLP, IVLPConfig
from bench.methods.maple import MaPLe, MaPLeConfig
from bench.methods.zeroshot import ZeroShotCLIP, ZeroShotConfig


def images(n=3, size=32, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def hooked_image_features(backbone, x, first, deep):
    """open_clip's encode_image with prompts appended before ln_pre and replaced before blocks 1..len(deep)."""
    visual = backbone.model.visual
    n = first.shape[0]
    handles = [visual.ln_pre.register_forward_pre_hook(
        lambda mod, args: (torch.cat([args[0], first.expand(args[0].shape[0], n, -1)], 1),))]
    for i, prompt in enumerate(deep, start=1):
        handles.append(visual.transformer.resblocks[i].register_forward_pre_hook(
            lambda mod, args, kwargs, p=prompt: ((torch.cat([args[0][:, :-n], p.expand(args[0].shape[0], n, -1)], 1),),
                                                 kwargs), with_kwargs=True))
    try:
        return backbone.model.encode_image(x, normalize=True)
    finally:
        for h in handles:
            h.remove()


def hooked_text_features(backbone, tokens, ctx, deep):
    """open_clip's encode_text with token embeddings 1..n replaced by ctx, then by deep[k] before block k+1."""
    text = backbone.text
    n = ctx.shape[0]

    def put(x, p):
        return torch.cat([x[:, :1], p.expand(x.shape[0], n, -1), x[:, 1 + n:]], 1)

    handles = [text.token_embedding.register_forward_hook(lambda mod, args, out: put(out, ctx))]
    for i, prompt in enumerate(deep, start=1):
        handles.append(text.transformer.resblocks[i].register_forward_pre_hook(
            lambda mod, args, kwargs, p=prompt: ((put(args[0], p),), kwargs), with_kwargs=True))
    try:
        return backbone.model.encode_text(tokens, normalize=True)
    finally:
        for h in handles:
            h.remove()


def test_no_prompts_is_plain_clip(backbone):
    x = images()
    assert torch.allclose(encode_image_deep(backbone, x), backbone.encode_image(x), atol=1e-6)
    tokens = backbone.tokenize(["a photo of a tiger.", "a whale."])
    expected = backbone.model.encode_text(tokens, normalize=True)
    assert torch.allclose(encode_text_deep(backbone, backbone.embed_tokens(tokens), tokens), expected, atol=1e-6)


def test_text_tower_runs_only_up_to_the_last_pooled_eot(backbone):
    tokens = backbone.tokenize(["a photo of a tiger.", "a whale."])  # EOT at 7 and 4 of 32 positions
    assert pooled_span(backbone, tokens) == 8
    lengths = []
    hook = backbone.text.transformer.resblocks[0].register_forward_pre_hook(lambda m, a: lengths.append(a[0].shape[1]))
    try:
        ours = backbone.encode_text(tokens)
    finally:
        hook.remove()
    assert lengths == [8]  # and the same features as open_clip's run over all 32 positions
    assert torch.allclose(ours, backbone.model.encode_text(tokens, normalize=True), atol=1e-6)
    # deep prompts longer than the text are run whole: "a." has 4 positions, the prompts reach 1 + 6
    short, ctx = backbone.tokenize(["a."]), torch.randn(6, backbone.width) * 0.02
    deep = [torch.randn(6, backbone.width) * 0.02]
    embeddings = torch.cat([backbone.embed_tokens(short)[:, :1], ctx[None], backbone.embed_tokens(short)[:, 7:]], 1)
    assert torch.allclose(encode_text_deep(backbone, embeddings, short, deep=deep),
                          hooked_text_features(backbone, short, ctx, deep), atol=1e-5)
    # a tower that is not causal sees the padding: it runs every position (on a private copy, as
    # the session's backbone is shared by every test)
    bidirectional = copy.deepcopy(backbone)
    bidirectional.text.attn_mask = None
    assert pooled_span(bidirectional, tokens) == 32


def test_maple_matches_hooked_open_clip(backbone, class_info):
    torch.manual_seed(0)
    maple = MaPLe(backbone, class_info, MaPLeConfig(n_ctx=2, init_text=None, depth=2))
    with torch.no_grad():  # random deep couplings: the clones start equal, which would hide a mix-up
        for p in maple.prompt_learner.deep_proj.parameters():
            p.normal_(std=0.05)
    learner, x = maple.prompt_learner, images()
    first, deep = learner.vision()
    expected_v = hooked_image_features(backbone, x, first, deep)
    expected_t = hooked_text_features(backbone, learner.text.tokens, learner.text.ctx, list(learner.deep_text))
    assert torch.allclose(maple.image_features(x), expected_v, atol=1e-5)
    assert torch.allclose(maple.text_features(), expected_t, atol=1e-5)
    logits = backbone.logit_scale * expected_v @ expected_t.T
    assert torch.allclose(maple(x), logits, atol=1e-3)


def test_maple_couples_each_layer_through_its_own_projection(backbone, class_info):
    maple = MaPLe(backbone, class_info, MaPLeConfig(depth=2))
    learner = maple.prompt_learner
    first, deep = learner.vision()
    assert torch.allclose(first, learner.text.ctx @ learner.proj.weight.T + learner.proj.bias)
    assert torch.allclose(deep[0], learner.deep_text[0] @ learner.deep_proj[0].weight.T + learner.deep_proj[0].bias)
    # Official _get_clones: every deep coupling function starts as a copy of one Linear.
    assert torch.equal(learner.deep_proj[0].weight, learner.deep_proj[-1].weight)


def test_maple_text_side_starts_at_the_hand_prompt(backbone, class_info):
    """n_ctx 2 of "a photo of a": the learned "a photo" plus frozen "of a" is zero-shot's prompt."""
    maple = MaPLe(backbone, class_info, MaPLeConfig(n_ctx=2, depth=1))
    zs = ZeroShotCLIP(backbone, class_info, ZeroShotConfig(templates=["a photo of a {}."]))
    assert torch.allclose(maple.text_features(), zs.text_features, atol=1e-5)
    assert not torch.allclose(maple.image_features(images()), backbone.encode_image(images()), atol=1e-3)


def test_ivlp_without_vision_prompts_and_deep_text_is_zero_shot(backbone, class_info):
    ivlp = IVLP(backbone, class_info, IVLPConfig(text_depth=1, vision_depth=0))
    zs = ZeroShotCLIP(backbone, class_info, ZeroShotConfig(templates=["a photo of a {}."]))
    x = images()
    assert torch.allclose(ivlp(x), zs(x), atol=1e-4)
    assert [p.shape for p in ivlp.trainable_parameters()] == [(4, backbone.width)]


def test_ivlp_matches_hooked_open_clip(backbone, class_info):
    torch.manual_seed(1)
    ivlp = IVLP(backbone, class_info, IVLPConfig(n_ctx_text=3, n_ctx_vision=2, init_text=None, text_depth=2,
                                                  vision_depth=2))
    learner, x = ivlp.prompt_learner, images()
    vision = list(learner.vision_prompts)
    assert torch.allclose(ivlp.image_features(x), hooked_image_features(backbone, x, vision[0], vision[1:]), atol=1e-5)
    expected_t = hooked_text_features(backbone, learner.text.tokens, learner.text.ctx, list(learner.deep_text))
    assert torch.allclose(ivlp.text_features(), expected_t, atol=1e-5)


def test_label_space_switch_keeps_the_learned_prompts(backbone, class_info):
    maple = MaPLe(backbone, class_info, MaPLeConfig(depth=2))
    before = {k: v.clone() for k, v in maple.trainable_state().items()}
    new = ClassInfo(["zebra", "piano", "castle"], [0, 0, 0])
    maple.set_label_space(new)
    assert maple(images()).shape == (3, 3)
    assert all(torch.equal(before[k], v) for k, v in maple.trainable_state().items())
    fresh = MaPLe(backbone, new, MaPLeConfig(depth=2))
    fresh.load_trainable_state(before)
    assert torch.allclose(maple(images()), fresh(images()), atol=1e-5)


@pytest.mark.parametrize("cls, cfg, where", [
    (MaPLe, MaPLeConfig(depth=3), "depth: must be between 1 and 2, the number of layers"),
    (IVLP, IVLPConfig(text_depth=2, vision_depth=3), "vision_depth: must be between 1 and 2, the number of layers of the vision"),
    (MaPLe, MaPLeConfig(n_ctx=5, depth=2), "n_ctx: is 5 but init_text 'a photo of a' has 4 tokens"),
    (IVLP, IVLPConfig(n_ctx_text=30, init_text=None, text_depth=1, vision_depth=0), "n_ctx_text: prompts need .* tokens but the text encoder takes 32"),
])
def test_options_that_do_not_fit_the_model(backbone, class_info, cls, cfg, where):
    with pytest.raises(ConfigError, match=where):
        cls(backbone, class_info, cfg)


def test_deep_vision_prompts_need_first_layer_prompts(backbone):
    with pytest.raises(BenchError, match="give first="):
        encode_image_deep(backbone, images(), deep=[torch.zeros(2, 64)])


@pytest.mark.parametrize("name, cfg, count", [
    ("maple", MaPLeConfig(), 3_555_072),  # MaPLe paper 3.55M; LAMP Table 5: 3555K
    ("ivlp", IVLPConfig(), 46_080),  # 9*4*512 + 9*4*768 (methods_spec §9.1)
    ("coop", CoOpConfig(), 8_192),  # 16*512 (MDPR Table 6: 0.008M)
    ("cocoop", CoCoOpConfig(), 35_360),  # 4*512 + (512*32 + 32) + (32*512 + 512)
])
def test_trainable_parameters_at_vit_b16(vit_b16, name, cfg, count):
    from bench.core.registry import METHODS

    info = ClassInfo(["cat", "dog"], [5, 1])
    method = METHODS.get(name)(vit_b16, info, cfg)
    assert sum(p.numel() for p in method.trainable_parameters()) == count
