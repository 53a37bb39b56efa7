"""LASP and LASP-V (bench/methods/lasp.py) against references written from spec_cpt_mdpr_baselines.md §7 and §13:
the text-to-text loss by hand-written loops, open_clip's own towers on whole sentences, CoOp as the
special case, the optimizer's LayerNorm group, the noise draw, checkpoints of the tuned LayerNorms."""
import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from bench.config.protocol import load_protocol
from bench.config.recipes import TrainRecipe, lr_for_epoch
from bench.core.errors import ConfigError
from bench.engine.train import make_optimizer, train
from bench.model.method import ClassInfo, optimizer_groups
from bench.model.template_bank import text_to_text_loss
from bench.plugins import load_builtins
from bench.methods.coop import CoOp, CoOpConfig
from bench.methods.lasp import LASP, LASP_PROMPTS, LASPConfig, LASPV
from tiny_models import tiny12

load_builtins()
CPU = torch.device("cpu")
BASE = ["abyssinian", "great pyrenees", "sphynx"]
NEW = ["yorkshire terrier", "bengal"]
SNAPSHOT = Path(__file__).parent / "snapshots" / "lasp_tiny12.json"


@pytest.fixture(scope="module")
def tiny():
    """12 layers, random LayerNorm weights (so a wrong LayerNorm shows)."""
    return tiny12(perturb_norms=True)


def info(names=BASE, new=NEW):
    return ClassInfo(list(names), [4, 2, 1][: len(names)], new_classnames=list(new))


def images(n=4, seed=0):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def perturb(params, seed, scale):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn(p.shape, generator=gen) * scale)


def moved(method):
    """Every trainable tensor away from its init, so each one matters."""
    perturb([method.prompt_learner.ctx], 2, 0.5)
    perturb([method.bias], 3, 0.1)
    perturb(method.vision_ln.parameters(), 4, 0.1)
    return method


def sentences(backbone, texts):
    return F.normalize(backbone.model.encode_text(backbone.tokenize(texts)), dim=-1)


# -- parameters -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [LASP, LASPV])
def test_39424_parameters_train_at_vit_b16_ctx_bias_and_the_24_vision_layernorms(vit_b16, monkeypatch, cls):
    import bench.methods.lasp as lasp

    monkeypatch.setattr(lasp, "template_bank", lambda b, t, names: torch.zeros(len(t), len(names), 512))
    method = cls(vit_b16, info(), LASPConfig())
    trainable = {n: p.numel() for n, p in method.named_parameters() if p.requires_grad}
    assert sum(trainable.values()) == 39_424  # spec §7.1: 2,048 + 512 + 36,864
    assert trainable.pop("prompt_learner.ctx") == 2_048 and trainable.pop("bias") == 512
    assert set(trainable.values()) == {768} and len(trainable) == 48  # 12 blocks × {ln_1, ln_2} × {weight, bias}
    first = [f"transformer.resblocks.0.ln_{i}.{w}" for i in (1, 2) for w in ("weight", "bias")]
    assert method.vision_ln.names[:4] == first
    assert not any(p.requires_grad for p in vit_b16.parameters())  # copies: the shared backbone stays frozen


# -- the text-to-text loss --------------------------------------------------------------------------------

def test_text_to_text_loss_is_a_softmax_over_the_learned_prompts_for_each_hand_crafted_feature():
    gen = torch.Generator().manual_seed(0)
    learned = F.normalize(torch.randn(4, 6, generator=gen, dtype=torch.float64), dim=-1)
    bank = torch.randn(3, 4, 6, generator=gen, dtype=torch.float64)
    total = 0.0
    for l in range(3):
        for j in range(4):
            scores = [50.0 * float(learned[i] @ bank[l, j]) for i in range(4)]
            top = max(scores)
            log_norm = top + torch.tensor([s - top for s in scores], dtype=torch.float64).exp().sum().log().item()
            total += log_norm - scores[j]
    assert text_to_text_loss(learned, bank, 50.0).item() == pytest.approx(total / 12, abs=1e-6)
    wrong_axis = F.cross_entropy(50.0 * torch.einsum("id,ljd->lij", learned, bank).reshape(-1, 4),
                                 torch.arange(4).repeat(3))  # softmax over the hand-crafted classes j instead
    assert abs(wrong_axis.item() - total / 12) > 1e-3  # the check above can tell the axes apart


def test_the_bank_is_the_frozen_towers_35_templates_for_the_training_names_and_lasp_v_adds_the_new(tiny):
    assert len(LASP_PROMPTS) == 35 and LASP_PROMPTS.count("a bad photo of the {}.") == 2
    lasp, lasp_v = LASP(tiny, info(), LASPConfig()), LASPV(tiny, info(), LASPConfig())
    assert lasp.t2t_names() == BASE and lasp_v.t2t_names() == BASE + NEW
    assert lasp.bank.shape == (35, 3, 64) and lasp_v.bank.shape == (35, 5, 64)
    for l in (4, 10, 34):
        expected = sentences(tiny, [LASP_PROMPTS[l].format(c) for c in BASE + NEW])
        assert torch.allclose(lasp_v.bank[l], expected, atol=1e-6)
        assert torch.allclose(lasp.bank[l], expected[:3], atol=1e-6)
    assert lasp_v.prompt_learner.classnames == BASE + NEW  # one text pass serves both losses


def test_the_loss_is_ce_plus_alpha_times_the_text_to_text_term_over_the_t2t_classes(tiny):
    for cls, names in ((LASP, BASE), (LASPV, BASE + NEW)):
        method = moved(cls(tiny, info(), LASPConfig(noise_prob=0.0))).train()
        x, y = images(), torch.tensor([0, 1, 2, 0])
        out = method(x)
        u = F.normalize(tiny.encode_prompts(method.prompt_learner(), method.prompt_learner.tokens, normalize=False)
                        + method.bias, dim=-1)
        f = F.normalize(method.vision_ln(x), dim=-1)
        s = tiny.model.logit_scale.exp()
        assert torch.allclose(out.logits, s * f @ u[:3].t(), atol=1e-5) and out.text.shape[0] == len(names)
        tt = sum(F.cross_entropy(s * u @ method.bank[l, j], torch.tensor(j)) for l in range(35)
                 for j in range(len(names))) / (35 * len(names))
        expected = F.cross_entropy(out.logits, y) + 5.0 * tt
        assert method.loss(out, y).item() == pytest.approx(expected.item(), abs=1e-5)


def test_without_its_additions_lasp_is_coop_with_a_photo_of_a(tiny):
    plain = LASPConfig(t2t_weight=0.0, bias=False, tune_vision_ln=False)
    method, coop = LASP(tiny, info(), plain), CoOp(tiny, info(), CoOpConfig(n_ctx=4, init_text="a photo of a"))
    perturb([method.prompt_learner.ctx], 2, 0.5)
    coop.prompt_learner.ctx.data.copy_(method.prompt_learner.ctx.data)
    x, y = images(), torch.tensor([0, 1, 2, 0])
    out = method.train()(x)
    assert torch.equal(out.logits, coop.train()(x)) and torch.equal(method.loss(out, y), coop.loss(coop(x), y))
    assert sum(p.numel() for p in method.trainable_parameters()) == 4 * 64
    defaults = LASP(tiny, info(), LASPConfig()).eval()  # w = 0 and untouched LayerNorms: zero-shot at init too
    zero_shot = tiny.logit_scale * tiny.encode_image(x) @ sentences(tiny, [f"a photo of a {c}." for c in BASE]).t()
    assert torch.allclose(defaults(x), zero_shot, atol=1e-4)


def test_the_tuned_layernorms_change_the_image_features_and_the_backbone_does_not_change(tiny):
    method = LASP(tiny, info(), LASPConfig()).eval()
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    x = images()
    assert torch.allclose(method.image_features(x), tiny.encode_image(x), atol=1e-6)
    perturb(method.vision_ln.parameters(), 4, 0.1)
    assert (method.image_features(x) - tiny.encode_image(x)).abs().max() > 1e-3
    method.train().loss(method(x), torch.tensor([0, 1, 2, 0])).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.vision_ln.parameters())
    assert all(torch.equal(v, before[k]) for k, v in tiny.state_dict().items())
    assert all(p.grad is None for p in tiny.parameters())


def test_new_classes_keep_the_learned_tensors_and_lasp_v_scores_base_classes_as_lasp(tiny):
    lasp, lasp_v = moved(LASP(tiny, info(), LASPConfig())).eval(), LASPV(tiny, info(), LASPConfig()).eval()
    lasp_v.load_state_dict(lasp.state_dict(), strict=False)
    x = images()
    assert torch.allclose(lasp(x), lasp_v(x), atol=1e-5)  # the virtual names never enter the classifier
    learned = {k: v.clone() for k, v in lasp.trainable_state().items()}
    new = ClassInfo(NEW, [0, 0])
    lasp.use_label_space(new)
    u = F.normalize(tiny.encode_prompts(lasp.prompt_learner(), lasp.prompt_learner.tokens, normalize=False)
                    + lasp.bias, dim=-1)
    assert lasp.prompt_learner.classnames == NEW and torch.allclose(
        lasp(x), tiny.logit_scale * F.normalize(lasp.vision_ln(x), dim=-1) @ u.t(), atol=1e-5)
    assert all(torch.equal(v, lasp.trainable_state()[k]) for k, v in learned.items())
    lasp_v.use_label_space(new)
    assert lasp_v.prompt_learner.classnames == NEW and lasp_v(x).shape == (4, 2)


# -- noise, optimizer groups, checkpoints ----------------------------------------------------------------------

def test_the_hand_crafted_features_are_noised_on_half_the_steps_with_sigma_0_05_unnormalised(tiny):
    method = LASP(tiny, info(), LASPConfig())
    torch.manual_seed(0)
    noised, deltas = 0, []
    for _ in range(10_000):
        bank = method.noisy_bank()
        if bank is not method.bank:
            noised += 1
            if len(deltas) < 20:
                deltas.append(bank - method.bank)
    assert abs(noised / 10_000 - 0.5) <= 0.02
    delta = torch.stack(deltas)
    assert delta.std().item() == pytest.approx(0.05, rel=0.02) and abs(delta.mean().item()) < 2e-3
    assert torch.allclose(method.bank.norm(dim=-1), torch.ones(35, 3))  # the buffer itself is never changed


def test_the_layernorm_group_runs_at_a_tenth_of_the_rate_after_the_warm_up(tiny):
    method = LASP(tiny, info(), LASPConfig())
    groups = optimizer_groups(method, 1.0)
    assert [g["lr_scale"] for g in groups] == [1.0, 0.1]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in method.vision_ln.parameters()}
    assert {id(p) for p in groups[0]["params"]} == {id(method.prompt_learner.ctx), id(method.bias)}
    cfg = TrainRecipe(epochs=25, lr=0.032, warmup_epochs=3, warmup_lr=1e-5)
    assert lr_for_epoch(cfg, 1, 0.1) == lr_for_epoch(cfg, 1) == 1e-5  # Dassl: one constant rate in the warm-up
    assert lr_for_epoch(cfg, 3, 0.1) == pytest.approx(0.0032) and lr_for_epoch(cfg, 10, 0.1) == pytest.approx(
        0.1 * lr_for_epoch(cfg, 10))


def test_one_plain_sgd_epoch_moves_each_group_by_its_own_rate(tiny):
    cfg = TrainRecipe(epochs=1, lr=0.5, momentum=0.0, weight_decay=0.0, warmup_epochs=0, scheduler="constant",
                      batch_size=4, precision="fp32")
    data = TensorDataset(images(4), torch.tensor([0, 1, 2, 0]))
    method = moved(LASP(tiny, info(), LASPConfig(noise_prob=0.0)))
    reference = copy.deepcopy(method).train()
    reference.loss(reference(images(4)), torch.tensor([0, 1, 2, 0])).backward()
    start = {n: p.detach().clone() for n, p in method.named_parameters() if p.requires_grad}
    train(method, data, cfg, seed=1, device=CPU)
    for name, p in reference.named_parameters():
        if p.requires_grad:
            rate = 0.05 if name.startswith("vision_ln.") else 0.5
            assert torch.allclose(dict(method.named_parameters())[name], start[name] - rate * p.grad, atol=1e-6), name


def test_a_resumed_run_restores_the_tuned_layernorms_and_equals_an_uninterrupted_one(tiny, tmp_path):
    cfg = TrainRecipe(epochs=2, lr=0.05, warmup_epochs=0, batch_size=4, precision="fp32")
    data = TensorDataset(images(8, seed=5), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    straight = LASP(tiny, info(), LASPConfig())
    full = train(straight, data, cfg, seed=3, device=CPU)
    ckpt = tmp_path / "lasp.ckpt"
    train(LASP(tiny, info(), LASPConfig()), data, cfg, seed=3, device=CPU, checkpoint=ckpt, key="k", stop_after=1)
    saved = torch.load(ckpt, weights_only=True)
    assert sum(name.startswith("vision_ln.copies.") for name in saved["trainable"]) == 48
    assert [g["lr_scale"] for g in saved["optimizer"]["param_groups"]] == [1.0, 0.1]
    fresh = LASP(tiny, info(), LASPConfig())
    rest = train(fresh, data, cfg, seed=3, device=CPU, checkpoint=ckpt, key="k")
    assert rest["resumed_from_epoch"] == 1 and rest["loss_history"] == full["loss_history"]
    assert all(torch.equal(a, b) for a, b in zip(fresh.vision_ln.parameters(), straight.vision_ln.parameters()))
    assert not torch.equal(straight.vision_ln.copies[0], tiny.model.visual.transformer.resblocks[0].ln_1.weight)


# -- options, card ------------------------------------------------------------------------------------------

def test_grouped_lasp_and_a_wrong_context_length_are_refused(tiny):
    with pytest.raises(ConfigError, match="groups"):
        LASPConfig(groups=2).validate("lasp")
    with pytest.raises(ConfigError, match="n_ctx"):
        LASP(tiny, info(), LASPConfig(n_ctx=3))


def test_the_cards_follow_the_argue_config_and_hold_mdprs_numbers():
    b2n = load_protocol("b2n_cpt/dtd/tau0.25").resolve("lasp")
    assert (b2n.train.optimizer, b2n.train.lr, b2n.train.batch_size, b2n.train.epochs) == ("sgd", 0.032, 32, 25)
    assert (b2n.train.warmup_epochs, b2n.train.warmup_lr, b2n.options.t2t_weight, b2n.options.ln_lr_scale) == (
        3, 1e-5, 5.0, 0.1)
    lt = load_protocol("cifar100_lt_ir100").resolve("lasp")
    assert (lt.train.optimizer, lt.train.lr, lt.train.weight_decay, lt.train.epochs, lt.train.batch_size) == (
        "adamw", 1e-3, 1e-4, 20, 128)
    assert LASP.card.reported["cifar100_lt_ir100"].metrics == {"all": 61.29, "many": 76.49, "medium": 60.17,
                                                                "few": 44.87}
    for card in (LASP.card, LASPV.card):
        assert card.code.startswith("xytian1008/ArGue:") and "third-party" in card.spec
    assert "transductive" in LASPV.card.paper and not LASPV.card.reported


# -- the seeded 12-layer model (checked once against the ArGue re-implementation) ------------------------------

def golden_run(backbone, cls) -> dict:
    """Eval logits, training losses at four seeds (two draws noise the bank) and gradients."""
    torch.manual_seed(1)
    method = moved(cls(backbone, info(), LASPConfig()))
    x, y = images(2, seed=0), torch.tensor([0, 2])
    result = {"logits": method.eval()(x).tolist(), "loss": []}
    method.train()
    for seed in range(4):
        torch.manual_seed(seed)
        method.zero_grad()
        loss = method.loss(method(x), y)
        loss.backward()
        result["loss"].append(loss.item())
    result["grad_ctx"] = method.prompt_learner.ctx.grad.tolist()
    result["grad_bias"] = method.bias.grad.tolist()
    result["grad_ln"] = [p.grad.tolist() for p in list(method.vision_ln.parameters())[:4]]
    return result


@pytest.mark.parametrize("name, cls", [("lasp", LASP), ("lasp_v", LASPV)])
def test_outputs_on_the_seeded_12_layer_model_match_the_checked_snapshot(name, cls):
    """Values from our code that equalled xytian1008/ArGue@ea80f71d's CustomCLIP (trainers/lasp.py) fed the
    same weights and parameters (see the snapshot's note)."""
    golden, ours = json.loads(SNAPSHOT.read_text())[name], golden_run(tiny12(perturb_norms=True), cls)
    assert torch.allclose(torch.tensor(ours["logits"]), torch.tensor(golden["logits"]), atol=1e-4)
    assert ours["loss"] == pytest.approx(golden["loss"], abs=1e-5)
    for key in ("grad_ctx", "grad_bias", "grad_ln"):
        assert torch.allclose(torch.tensor(ours[key]), torch.tensor(golden[key]), atol=1e-5, rtol=1e-4), key
