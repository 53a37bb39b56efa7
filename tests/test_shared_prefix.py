"""Per-image text prompts with the shared positions run once (bench/model/shared_prefix.py), against
open_clip's own blocks on whole sequences, and LAMP's and CoCoOp's logits and gradients against the
naive path (whole sequences, full 77 tokens).  The saving is checked in FLOPs (torch's counter), not
in seconds."""
import dataclasses

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.engine.speed import class_names
from bench.methods.cocoop import CoCoOp
from bench.methods.lamp import Lamp
from bench.model import shortcuts
from bench.model.method import ClassInfo
from bench.model.prompting import insert_after_first, run_blocks
from bench.model.shared_prefix import encode_suffixes, run_prefix, run_suffix, shared_length, splittable

NAMES = ["red square", "blue circle", "green triangle", "big red fox", "snow leopard"]


def whole_sequences(transformer, prefix, suffix, hook, attn_mask):
    """Reference: every (group, class) sequence in full through open_clip's blocks (causal mask)."""
    groups, classes = prefix.shape[0], suffix.shape[1]
    x = torch.cat([prefix.unsqueeze(1).expand(-1, classes, -1, -1), suffix.expand(groups, -1, -1, -1)], dim=2)
    shared = prefix.shape[1]

    def whole_hook(i, x):  # the hook sees the shared positions of each sequence
        head = hook(i, x[:, :shared].reshape(groups, classes, shared, -1)[:, 0]) if hook else x[:, :shared]
        head = head.unsqueeze(1).expand(-1, classes, -1, -1).flatten(0, 1) if hook else head
        return torch.cat([head, x[:, shared:]], dim=1)

    out = run_blocks(transformer, x.flatten(0, 1), whole_hook, attn_mask=attn_mask)
    return out.view(groups, classes, -1, out.shape[-1])


def test_prefix_and_suffix_equal_the_whole_sequences(backbone):
    text = backbone.text
    width, gen = text.positional_embedding.shape[1], torch.Generator().manual_seed(0)
    prefix = torch.randn(3, 4, width, generator=gen)  # 3 groups, 4 shared positions
    suffix = torch.randn(1, 5, 6, width, generator=gen)  # 5 classes, 6 positions each, shared by the groups
    prompts = torch.randn(3, 2, width, generator=gen)

    def hook(i, x):  # block 1's input: positions 1-2 become each group's prompts
        return insert_after_first(x, prompts, replace=2) if i == 1 else x

    expected = whole_sequences(text.transformer, prefix, suffix, hook, text.attn_mask)
    head, cache = run_prefix(text.transformer, prefix, hook)
    tail = run_suffix(text.transformer, suffix, cache)
    assert tail.shape == (3, 5, 6, width) and len(cache) == len(text.transformer.resblocks)
    assert torch.allclose(tail, expected[:, :, 4:], atol=1e-5)
    assert torch.allclose(head, expected[:, 0, :4], atol=1e-5)
    pooled = torch.tensor([5, 0, 3, 2, 3])  # classes of four lengths, two of one
    for per_pass in (4096, 3):  # one pass per length, or chunks of one class
        feats = encode_suffixes(backbone, suffix[0], pooled, cache, per_pass=per_pass)
        reference = torch.stack([text.ln_final(expected[:, c, 4 + int(p)]) for c, p in enumerate(pooled)], 1)
        reference = torch.nn.functional.normalize(reference @ text.text_projection, dim=-1)
        assert feats.shape == (3, 5, reference.shape[-1]) and torch.allclose(feats, reference, atol=1e-5)


def test_shared_length_stops_at_the_first_difference_and_before_the_pooled_token():
    sot, eot = 49406, 49407
    tokens = torch.tensor([[sot, 320, 1125, 539, 320, 2368, 269, eot, 0],
                           [sot, 320, 1125, 539, 320, 1929, 1929, 269, eot]])
    assert shared_length(tokens, tokens.argmax(dim=-1)) == 5  # "a photo of a", then the names differ
    assert shared_length(tokens[:1], tokens[:1].argmax(dim=-1)) == 7  # one class: all but the EOT
    same_start = torch.tensor([[sot, 7, 8, eot, 0], [sot, 7, 9, 269, eot]])
    assert shared_length(same_start, same_start.argmax(dim=-1)) == 2  # a first word all names share


def test_the_naive_switch_and_unusual_blocks_turn_it_off(backbone):
    assert splittable(backbone)
    with shortcuts.naive():
        assert not splittable(backbone)
    block = backbone.text.transformer.resblocks[0]
    block.ln_1_kv = torch.nn.LayerNorm(4)  # a cross-attention block: its keys are not its own
    try:
        assert not splittable(backbone)
    finally:
        del block.ln_1_kv


def lamp(backbone, template="a photo of a {}.", first_layer=2, **options):
    info = ClassInfo(NAMES, [9, 7, 5, 3, 2], template, training_index=list(range(len(NAMES))))
    torch.manual_seed(0)
    cfg = dataclasses.replace(Lamp.Config(), pool_size=6, top_k=2, entry_length=2, shared_tokens=2,
                              first_layer=first_layer, last_layer=2, **options)
    return Lamp(backbone, info, cfg).eval()


def cocoop(backbone, init_text="a photo of a", n_ctx=None):
    info = ClassInfo(NAMES, [9, 7, 5, 3, 2], training_index=list(range(len(NAMES))))
    torch.manual_seed(0)
    return CoCoOp(backbone, info, CoCoOp.Config(n_ctx=n_ctx, init_text=init_text)).eval()


def logits_and_gradients(method, images):
    params = [p for p in method.parameters() if p.requires_grad]
    logits = method(images)
    return logits.detach(), torch.autograd.grad(logits.square().sum(), params)


CASES = {
    "lamp": lambda b: lamp(b),
    "lamp, prompts from block 1": lambda b: lamp(b, first_layer=1),
    "lamp, name first in the template": lambda b: lamp(b, template="{} in a photo."),
    "lamp, shared prompts only": lambda b: lamp(b, use_mpp=False),
    "cocoop": lambda b: cocoop(b),
    "cocoop, random context": lambda b: cocoop(b, init_text=None, n_ctx=3),
}


@pytest.mark.parametrize("case", CASES)
def test_logits_and_gradients_equal_the_naive_path(backbone, case):
    method = CASES[case](backbone)
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    logits, grads = logits_and_gradients(method, images)
    with shortcuts.naive():
        naive_logits, naive_grads = logits_and_gradients(method, images)
    assert torch.allclose(logits, naive_logits, atol=2e-5), (logits - naive_logits).abs().max()
    for fast, slow in zip(grads, naive_grads):
        assert torch.allclose(fast, slow, atol=1e-5 * max(1.0, float(slow.abs().max()))), (fast - slow).abs().max()


def text_flops(method, images, share_prefix):
    """FLOPs of one prediction with pooled-span truncation on and prefix sharing on or off."""
    saved = shortcuts.ACTIVE.share_prefix
    shortcuts.ACTIVE.share_prefix = share_prefix
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            method(images)
        return counter.get_total_flops()
    finally:
        shortcuts.ACTIVE.share_prefix = saved


@pytest.mark.parametrize("case, most", [("lamp", 0.4), ("cocoop", 0.4)])
def test_the_shared_positions_are_not_run_per_class(backbone, case, most):
    """A prediction over 60 classes (the text side is most of it) costs at most ``most`` of its FLOPs
    without the sharing (0.30 and 0.29 when written): the start token, prompts and template words no
    longer run per (image, class) (LAMP: 11 of about 16 positions, CoCoOp: 5 of about 10), no class
    runs another's padding, and the last block computes the pooled position alone."""
    method = CASES[case](backbone)
    method.set_label_space(ClassInfo(class_names(60), [1] * 60, "a photo of a {}.", training_index=list(range(60))))
    images = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    assert text_flops(method, images, share_prefix=True) < most * text_flops(method, images, share_prefix=False)
