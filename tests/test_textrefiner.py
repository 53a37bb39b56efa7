"""TextRefiner (bench/methods/textrefiner.py) and the last-vision-block access (bench/model/vision_tokens.py) against
references written from spec_cpt_mdpr_baselines.md §8 and §13: attention from the block's own projection
weights, the memory rule by hand loops, the loss by its formula; counts at ViT-B/16; the cache through a
checkpointed, resumed run; a snapshot that equalled the official modules on the seeded 12-layer model."""
import copy
import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from bench.config.protocol import load_protocol
from bench.core.errors import ConfigError
from bench.core.registry import METHODS, REPORTED
from bench.engine.train import train
from bench.model.method import ClassInfo
from bench.model.vision_tokens import last_block_tokens
from bench.plugins import load_builtins
from bench.methods.textrefiner import TextMemory, TextRefiner, TextRefinerConfig, local_set
from tiny_models import tiny12

load_builtins()
NAMES = ["red square", "blue circle", "green triangle"]
SNAPSHOT = Path(__file__).parent / "snapshots" / "textrefiner_tiny12.json"


def images(n=4, size=32, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def info(names=NAMES):
    return ClassInfo(list(names), [4, 2, 1, 1, 1][:len(names)])


def build(backbone, seed=0, **options):
    torch.manual_seed(seed)
    return TextRefiner(backbone, info(), TextRefinerConfig(**options))


@pytest.fixture(scope="module")
def method(backbone):
    return build(backbone)


# -- the last vision block --------------------------------------------------------------------------------

def manual_attention(block, x):
    """softmax(Q Kᵀ / √d_h) per head from in_proj_weight, averaged over heads; x batch-first [B, L, D]."""
    attn = block.attn
    heads, (b, n, d) = attn.num_heads, x.shape
    q, k, v = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    split = lambda t: t.reshape(b, n, heads, d // heads).transpose(1, 2)  # noqa: E731
    probs = (split(q) @ split(k).transpose(-1, -2) / math.sqrt(d // heads)).softmax(dim=-1)
    return probs.mean(dim=1)


def test_last_block_attention_is_the_head_average_and_its_output_the_stock_blocks(backbone):
    visual = backbone.model.visual
    assert visual.transformer.resblocks[-1].attn.num_heads == 2  # averaging over heads is exercised
    x = images(3)
    captured = {}
    hook = visual.transformer.resblocks[-1].register_forward_hook(
        lambda module, args, out: captured.update(inp=args[0].detach(), out=out.detach()))
    try:
        with torch.no_grad():
            reference = backbone.model.encode_image(x, normalize=False)
            tokens, attn = last_block_tokens(backbone, x)
    finally:
        hook.remove()
    with torch.no_grad():
        block = visual.transformer.resblocks[-1]
        expected_attn = manual_attention(block, captured["inp"])
        expected_tokens = visual.ln_post(captured["out"]) @ visual.proj
    assert attn.shape == (3, 17, 17) and torch.allclose(attn.sum(-1), torch.ones(3, 17), atol=1e-6)
    assert torch.allclose(attn, expected_attn, atol=1e-6)
    assert torch.allclose(tokens, expected_tokens, atol=1e-6)  # every token: the stock block's output
    assert torch.allclose(tokens[:, 0], reference, atol=1e-6)  # the class token: open_clip's encode_image


# -- the memory --------------------------------------------------------------------------------------------

def test_memory_write_on_a_hand_made_case_follows_the_rule():
    """2 slots, 3 tokens, written out: token j goes to its nearest slot a(j); slot i moves to
    0.8·c_i + 0.2·Σ_{a(j)=i} (Pq[j,i] / max_j' Pq[j',i]) u_j with Pq the softmax over tokens; rows normalised."""
    memory = TextMemory(dim=2, size=2, alpha=0.2, momentum=0.8)
    cache = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    memory.cache.copy_(cache)
    tokens = torch.tensor([[[3.0, 0.5], [2.0, -1.0], [1.0, 1.5]]])  # all three nearest slot 0 or 1
    u = [tok / tok.norm() for tok in tokens[0]]
    s = [[float(u[j] @ cache[i]) for i in range(2)] for j in range(3)]
    pq = [[math.exp(s[j][i]) / sum(math.exp(s[k][i]) for k in range(3)) for i in range(2)] for j in range(3)]
    nearest = [0 if s[j][0] > s[j][1] else 1 for j in range(3)]
    assert nearest == [0, 0, 1]
    expected = []
    for i in range(2):
        top = max(pq[k][i] for k in range(3))  # over all tokens, not only the slot's
        total = sum(pq[j][i] / top * u[j] for j in range(3) if nearest[j] == i)
        row = 0.8 * cache[i] + 0.2 * total
        expected.append(row / row.norm())
    memory.write(tokens)
    assert torch.allclose(memory.cache, torch.stack(expected), atol=1e-6)
    assert not torch.allclose(memory.cache, cache, atol=1e-3)


def test_a_slot_no_token_chooses_is_only_renormalised():
    memory = TextMemory(dim=2, size=2, alpha=0.2, momentum=0.8)
    memory.cache.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    memory.write(torch.tensor([[[1.0, 0.1], [2.0, -0.3]]]))  # both nearest slot 0
    assert torch.equal(memory.cache[1], torch.tensor([0.0, 1.0]))
    assert memory.cache[0, 1].item() != 0


def test_read_is_the_softmax_over_slots_and_a_zero_extractor_leaves_t():
    torch.manual_seed(0)
    memory = TextMemory(dim=6, size=4, alpha=0.2, momentum=0.8)
    text = F.normalize(torch.randn(3, 6), dim=-1)
    expected = torch.stack([sum(math.exp(float(text[c] @ memory.cache[i])) * memory.cache[i] for i in range(4))
                            / sum(math.exp(float(text[c] @ memory.cache[i])) for i in range(4)) for c in range(3)])
    assert torch.allclose(memory.read(text), expected, atol=1e-6)
    manual = 0.2 * torch.cat([text, expected], dim=-1) @ memory.extractor.weight.t() + text
    assert torch.allclose(memory.refine(text), manual, atol=1e-6)
    with torch.no_grad():
        memory.extractor.weight.zero_()
    assert torch.equal(memory.refine(text), text)
    assert F.l1_loss(F.normalize(memory.refine(text), dim=-1), text).item() == pytest.approx(0, abs=1e-7)
    assert (memory.cache >= 0).all() and torch.allclose(memory.cache.norm(dim=-1), torch.ones(4))  # norm(U[0, 1))


# -- the method --------------------------------------------------------------------------------------------

def test_local_set_is_cls_the_top_k_patches_and_the_mean():
    local = torch.randn(2, 9, 4)
    attention = torch.tensor([[.1, .9, .3, .8, .0, .7, .6, .2], [.5, .4, .3, .2, .1, .05, .9, .8]])
    out = local_set(local, attention, 5)
    top = [[2, 4, 6, 7, 3], [7, 8, 1, 2, 3]]  # patch index + 1, never 0 (the class token)
    for b in range(2):
        expected = [local[b, 0]] + [local[b, j] for j in top[b]] + [local[b].mean(dim=0)]
        assert torch.allclose(out[b], torch.stack(expected), atol=1e-7)
    assert out.shape == (2, 7, 4)


def test_training_reads_the_cache_before_writing_and_the_loss_is_the_formula(backbone):
    method = build(backbone, seed=1).train()
    x, y = images(4), torch.tensor([0, 2, 1, 0])
    before = method.memory.cache.clone()
    out = method(x)
    assert not torch.equal(method.memory.cache, before)  # written in training
    text = backbone.encode_prompts(method.prompt_learner(), method.prompt_learner.tokens)
    weights = (text @ before.t()).softmax(dim=1)  # read with the cache as it was before the step
    refined = 0.2 * method.memory.extractor(torch.cat([text, weights @ before], dim=-1)) + text
    feats = F.normalize(backbone.model.encode_image(x), dim=-1)
    scale = backbone.model.logit_scale.exp()
    assert torch.allclose(out.logits, scale * feats @ refined.t(), atol=1e-4)
    assert out.local_logits.shape == (4 * 7, 3)
    assert out.reg.item() == pytest.approx((F.normalize(refined, dim=-1) - text).abs().mean().item(), abs=1e-6)
    labels7 = torch.tensor([label for label in y.tolist() for _ in range(7)])
    expected = (F.cross_entropy(out.logits, y) + F.cross_entropy(out.local_logits, labels7) / 50 + 20 * out.reg)
    assert method.loss(out, y).item() == pytest.approx(expected.item(), rel=1e-6)


def test_evaluation_never_changes_the_cache_and_uses_the_refined_features(backbone):
    method = build(backbone, seed=2).eval()
    before = method.memory.cache.clone()
    x = images(5)
    with torch.no_grad():
        logits = method(x)
        method.use_label_space(ClassInfo(["pug", "sphynx"], [0, 0]))
        new = method(x)
    assert torch.equal(method.memory.cache, before) and new.shape == (5, 2)
    text = F.normalize(backbone.encode_texts([f"a photo of a {c}." for c in NAMES]), dim=-1)
    refined = method.memory.refine(text)
    expected = backbone.model.logit_scale.exp() * F.normalize(backbone.model.encode_image(x), dim=-1) @ refined.t()
    assert torch.allclose(logits, expected.detach(), atol=1e-4)


def test_a_training_step_changes_only_the_context_extractor_and_local_mlp(backbone):
    method = build(backbone, seed=3).train()
    frozen = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    params = {k: v.detach().clone() for k, v in method.named_parameters() if v.requires_grad}
    optimizer = torch.optim.SGD(method.trainable_parameters(), lr=0.5)
    method.loss(method(images(4)), torch.tensor([0, 1, 2, 0])).backward()
    optimizer.step()
    assert sorted(params) == ["local_head.bn.bias", "local_head.bn.weight", "local_head.fc1.bias",
                              "local_head.fc1.weight", "local_head.fc2.bias", "local_head.fc2.weight",
                              "memory.extractor.weight", "prompt_learner.ctx"]
    moved = [k for k, v in method.named_parameters() if v.requires_grad and not torch.equal(v, params[k])]
    assert set(moved) >= {"prompt_learner.ctx", "memory.extractor.weight", "local_head.fc2.weight"}
    assert all(torch.equal(v, frozen[k]) for k, v in backbone.model.state_dict().items())


def test_trainable_parameters_at_vit_b16(vit_b16):
    method = TextRefiner(vit_b16, info([f"class {i}" for i in range(10)]), TextRefinerConfig())
    counts = {n: p.numel() for n, p in method.named_parameters() if p.requires_grad}
    assert sum(counts.values()) == 1_052_672  # spec §8.1, §13, §17
    local = sum(v for k, v in counts.items() if k.startswith("local_head."))
    assert local == 526_336 == 2 * (512 * 512 + 512) + 2 * 512  # training only
    assert counts["prompt_learner.ctx"] + counts["memory.extractor.weight"] == 526_336  # used at test
    assert method.memory.cache.shape == (25, 512)


def test_the_cache_is_checkpointed_and_a_resumed_run_restores_it_bit_exactly(backbone, tmp_path):
    recipe = dataclasses.replace(load_protocol("smoke").resolve("textrefiner").train, epochs=2, batch_size=8)
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(16, 3, 32, 32, generator=gen), torch.arange(16) % 3)
    full_method = build(backbone, seed=0)
    full = train(full_method, data, recipe, seed=1, device=torch.device("cpu"))
    ckpt = tmp_path / "cell.ckpt"
    train(build(backbone, seed=0), data, recipe, seed=1, device=torch.device("cpu"), checkpoint=ckpt, key="k",
          stop_after=1)
    saved = torch.load(ckpt, weights_only=False)["extra"]["memory.cache"]
    resumed = build(backbone, seed=99)  # another cache at init
    assert not torch.equal(resumed.memory.cache, saved)
    rest = train(resumed, data, recipe, seed=1, device=torch.device("cpu"), checkpoint=ckpt, key="k")
    assert rest["resumed_from_epoch"] == 1 and rest["loss_history"] == full["loss_history"]
    assert torch.equal(resumed.memory.cache, full_method.memory.cache)
    assert not torch.equal(saved, full_method.memory.cache)  # the second epoch wrote it: the check can fail
    assert set(resumed.extra_state()) == {"memory.cache", "local_head.bn.running_mean",
                                          "local_head.bn.running_var", "local_head.bn.num_batches_tracked"}


def test_a_top_k_the_image_cannot_supply_is_one_config_error():
    with pytest.raises(ConfigError, match=r"textrefiner\.top_k: must be at most 4"):
        TextRefiner(tiny12(), info(), TextRefinerConfig())  # 32-pixel images, 16-pixel patches
    with pytest.raises(ConfigError, match="local_divisor"):
        TextRefinerConfig(local_divisor=0).validate("textrefiner")


def test_card_recipes_numbers_and_registration():
    assert "textrefiner" in METHODS.names() and "textrefiner" not in REPORTED.names()
    b2n = load_protocol("b2n_cpt/dtd/tau0.25").resolve("textrefiner")
    assert (b2n.train.optimizer, b2n.train.lr, b2n.train.batch_size, b2n.train.epochs) == ("sgd", 0.002, 32, 10)
    assert (b2n.train.warmup_epochs, b2n.train.warmup_lr, b2n.train.weight_decay) == (1, 1e-5, 5e-4)
    assert (b2n.options.n_ctx, b2n.options.init_text, b2n.options.local_divisor, b2n.options.reg_weight,
            b2n.options.alpha, b2n.options.cache_size) == (4, "a photo of a", 50.0, 20.0, 0.2, 25)
    lt = load_protocol("cifar100_lt_ir100").resolve("textrefiner")
    assert (lt.train.optimizer, lt.train.lr, lt.train.weight_decay, lt.train.epochs, lt.train.batch_size) == (
        "adamw", 1e-3, 1e-4, 20, 128)
    card = TextRefiner.card
    assert card.reported["places_lt"].metrics == {"all": 38.01, "many": 52.76, "medium": 32.79, "few": 22.79}
    assert card.reported["cifar100_lt_ir10"].metrics == {"all": 74.22, "many": 78.12, "medium": 65.55}
    assert "fd1e6938acbf1c2800087d1e8a41aa109e6d5fef" in card.code and "§8" in card.spec


# -- the seeded 12-layer model (official-code check, spec §9.5 of the LAMP spec; §17) -----------------------

PETS = ["abyssinian", "great pyrenees", "sphynx"]
NEW_PETS = ["pug", "scottish terrier"]


def golden_images():
    return images(3, size=48, seed=5)


def golden_labels():
    return torch.tensor([2, 0, 1])


def golden_method() -> TextRefiner:
    backbone = tiny12(perturb_norms=True, image_size=48)  # 9 patches: the official top-5 fits
    torch.manual_seed(1)
    method = TextRefiner(backbone, info(PETS), TextRefinerConfig())
    with torch.no_grad():
        method.prompt_learner.ctx.add_(0.5 * torch.randn(method.prompt_learner.ctx.shape,
                                                         generator=torch.Generator().manual_seed(2)))
    return method


def golden_run(method: TextRefiner, grads: bool = False) -> dict:
    """One training forward (loss, gradients, the cache after the write), then evaluation with that cache."""
    x, y = golden_images(), golden_labels()
    method.train()
    out = method(x)
    loss = method.loss(out, y)
    run = {"logits": out.logits.tolist(), "local_logits": out.local_logits.tolist(), "reg": out.reg.item(),
           "loss": loss.item(), "cache": method.memory.cache.tolist()}
    if grads:
        loss.backward()
        named = dict(method.named_parameters())
        run["grads"] = {"ctx": named["prompt_learner.ctx"].grad.tolist(),
                        "extractor": named["memory.extractor.weight"].grad.tolist(),
                        **{k: named[f"local_head.{k}"].grad.tolist()
                           for k in ("fc1.weight", "fc1.bias", "bn.weight", "bn.bias", "fc2.weight", "fc2.bias")}}
    method.eval()
    with torch.no_grad():
        run["eval_logits"] = method(x).tolist()
        method.use_label_space(info(NEW_PETS))
        run["new_logits"] = method(x).tolist()  # the same cache and extractor refine new class names
    return run


def test_outputs_on_the_seeded_12_layer_model_match_the_officially_checked_snapshot():
    """Values from our code that equalled xjjxmu/TextRefiner@fd1e6938's CustomCLIP + Memory (trainers/textrefiner.py,
    clip/model.py) fed the same weights and images, in fp32: see the snapshot's note for the differences."""
    golden = json.loads(SNAPSHOT.read_text())
    ours = golden_run(golden_method())
    for key in ("logits", "local_logits", "eval_logits", "new_logits", "cache"):
        assert torch.allclose(torch.tensor(ours[key]), torch.tensor(golden[key]), atol=1e-4), key
    assert ours["loss"] == pytest.approx(golden["loss"], abs=1e-5)
    assert ours["reg"] == pytest.approx(golden["reg"], abs=1e-6)
