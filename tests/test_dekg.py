"""DeKg on KgCoOp and on TCP (bench/methods/dekg_kgcoop.py, bench/methods/dekg.py) and the HSIC term (bench.api.hsic), against
references written from spec_cpt_mdpr_baselines.md §3 and §13: HSIC as hand loops over the centring matrix,
open_clip's own text tower by hand, the loss as a sum of hand-computed parts."""
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bench.api import hsic
from bench.config.protocol import load_protocol
from bench.core.registry import METHODS, REPORTED
from bench.model.method import ClassInfo
from bench.methods.dekg import DeKg, DeKgKgTwice
from bench.methods.dekg_kgcoop import DeKgKgCoOp
from bench.methods.kgcoop import KG_TEMPLATES, KgCoOp
from bench.methods.tcp import ORI_TEMPLATES, TCP
from test_kgcoop import images, perturb, zero_shot_text
from test_tcp import raw_text_by_hand
from tiny_models import tiny12

NAMES = ["red square", "blue circle", "green triangle"]
PETS = ["abyssinian", "great pyrenees", "sphynx"]
SNAPSHOT = Path(__file__).parent / "snapshots" / "dekg_tiny12.json"


@pytest.fixture(scope="module")
def model12():
    return tiny12()


def build(cls, backbone, names=NAMES, dataset=None, seed=0, **options):
    torch.manual_seed(seed)
    info = ClassInfo(list(names), [4, 2, 1, 1, 1][:len(names)], dataset=dataset)
    return cls(backbone, info, cls.Config(**options))


def hsic_by_hand(a, b) -> float:
    """tr(H K_a H K_b) in float64 with explicit loops: K = Ŵ Ŵᵀ, Ŵ = W/‖W‖_F, H_ij = δ_ij − 1/C."""
    a, b = a.double().tolist(), b.double().tolist()
    n = len(a)

    def gram(w):
        frob = sum(v * v for row in w for v in row)
        return [[sum(x * y for x, y in zip(w[i], w[j])) / frob for j in range(n)] for i in range(n)]

    def mm(x, y):
        return [[sum(x[i][k] * y[k][j] for k in range(n)) for j in range(n)] for i in range(n)]

    h = [[(1.0 if i == j else 0.0) - 1.0 / n for j in range(n)] for i in range(n)]
    m = mm(mm(h, gram(a)), mm(h, gram(b)))
    return sum(m[i][i] for i in range(n))


# -- HSIC -----------------------------------------------------------------------------------------------

def test_hsic_equals_the_trace_with_the_centring_matrix_by_hand():
    g = torch.Generator().manual_seed(0)
    for n, d in ((2, 3), (5, 7), (9, 4)):
        a, b = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)
        assert hsic(a, b).item() == pytest.approx(hsic_by_hand(a, b), abs=1e-12)
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # Ŵ = W/√2, HŴ = [[1,-1],[-1,1]]/(2√2)
    assert hsic(a, a).item() == pytest.approx(4 * (1 / 4) ** 2)  # (HŴ)ᵀ(HŴ) = [[1,-1],[-1,1]]/4, ‖·‖_F² = 4/16
    assert hsic(a.half(), a.half()).dtype == torch.float32


def test_hsic_properties():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(6, 5, generator=g, dtype=torch.float64)
    value = hsic(a, b).item()
    assert value > 0
    assert hsic(a, b.new_ones(6, 5) * torch.randn(1, 5, generator=g, dtype=torch.float64)).item() == \
        pytest.approx(0, abs=1e-15)  # all rows of W_c equal: nothing to depend on
    rotation, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
    assert hsic(3.5 * a, 0.2 * b).item() == pytest.approx(value, abs=1e-12)
    assert hsic(a @ rotation, b @ rotation).item() == pytest.approx(value, abs=1e-12)
    rows = torch.arange(1.0, 7.0, dtype=torch.float64)[:, None]
    assert abs(hsic(rows * a, b).item() - value) > 1e-3  # per-row scale matters: raw vs normalised rows (D3)


# -- trainable parameters at ViT-B/16 -------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("dekg_kgcoop", {"prompt_learner.ctx": 2_048}),
    ("dekg", {"prompt_learner.text.ctx": 2_048, "prompt_learner.tke.linear1.weight": 512 * 128,
              "prompt_learner.tke.linear1.bias": 128, "prompt_learner.tke.linear2.weight": 128 * 2048,
              "prompt_learner.tke.linear2.bias": 2048}),
])
def test_trainable_parameters_at_vit_b16(vit_b16, monkeypatch, name, expected):
    """Frozen targets stubbed: encoding the names with ViT-B/16 on a CPU is slow and irrelevant to the count."""
    import bench.methods.kgcoop as kgcoop
    import bench.methods.tcp as tcp

    stub = lambda backbone, names, template: torch.zeros(len(names), 512)  # noqa: E731
    monkeypatch.setattr(kgcoop, "hand_crafted_features", stub)
    monkeypatch.setattr(tcp, "hand_crafted_features", stub)
    for classes in (10, 1000):
        method = build(METHODS.get(name), vit_b16, [f"class {i}" for i in range(classes)])
        trainable = {n: p.numel() for n, p in method.named_parameters() if p.requires_grad}
        assert trainable == expected
    assert sum(expected.values()) == {"dekg_kgcoop": 2_048, "dekg": 331_904}[name]


# -- invariants: µ = 0 is the base method ---------------------------------------------------------------

def test_dekg_kgcoop_without_hsic_is_kgcoop_bit_for_bit(backbone):
    dekg = build(DeKgKgCoOp, backbone, dataset="EuroSAT", hsic_weight=0.0).train()
    kg = build(KgCoOp, backbone, dataset="EuroSAT").train()
    perturb(dekg.prompt_learner.ctx)
    kg.prompt_learner.ctx.data.copy_(dekg.prompt_learner.ctx.data)
    x, y = images(), torch.tensor([2, 1, 0, 0])
    out, ref = dekg(x), kg(x)
    assert torch.equal(out.logits, ref.logits) and torch.equal(dekg.loss(out, y), kg.loss(ref, y))
    dekg.cfg.hsic_weight = 6.0
    assert dekg.loss(out, y).item() > kg.loss(ref, y).item() + 1e-4  # the check above can fail


@pytest.mark.parametrize("cls", [DeKg, DeKgKgTwice])
def test_dekg_without_hsic_is_tcp_bit_for_bit(backbone, cls):
    dekg = build(cls, backbone, PETS, "OxfordPets", insert_layer=1, hsic_weight=0.0).train()
    tcp = build(TCP, backbone, PETS, "OxfordPets", insert_layer=1).train()
    perturb(dekg.prompt_learner.text.ctx)
    tcp.load_trainable_state(dekg.trainable_state())
    x, y = images(), torch.tensor([0, 2, 1, 0])
    out, ref = dekg(x), tcp(x)
    assert torch.equal(out.logits, ref.logits) and torch.equal(out.text, ref.text)
    assert torch.equal(dekg.loss(out, y), tcp.loss(ref, y))
    assert torch.equal(dekg.eval()(x), tcp.eval()(x))  # prediction: plain logits, no tuple


# -- the loss with µ ------------------------------------------------------------------------------------

def test_dekg_kgcoop_loss_is_ce_plus_8_kg_plus_6_hsic_of_the_normalised_features(backbone):
    method = build(DeKgKgCoOp, backbone, dataset="DescribableTextures").train()
    x, y = images(), torch.tensor([0, 1, 2, 2])
    out = method(x)
    learned = zero_shot_text(backbone, [f"a photo of a {c}." for c in NAMES])  # the word-initialised context
    target = zero_shot_text(backbone, [f"a photo of a {c}, a type of texture." for c in NAMES])
    logits = backbone.model.logit_scale.exp() * F.normalize(backbone.model.encode_image(x), dim=-1) @ learned.t()
    ce = -sum(torch.log_softmax(logits[b], dim=0)[y[b]].item() for b in range(4)) / 4
    kg = 1 - sum((learned[c] @ target[c]).item() for c in range(3)) / 3
    expected = ce + 8 * kg + 6 * hsic_by_hand(learned, target)
    assert method.loss(out, y).item() == pytest.approx(expected, abs=1e-5)
    assert hsic_by_hand(learned, target) > 1e-4


def test_dekg_loss_takes_hsic_of_the_raw_text_features(model12):
    method = build(DeKg, model12, PETS, "FGVCAircraft").train()
    perturb(method.prompt_learner.text.ctx)
    pl = method.prompt_learner
    x, y = images(), torch.tensor([1, 0, 2, 2])
    out = method(x)
    tokens = model12.tokenize([f"X X X X {c}, a type of aircraft." for c in PETS])
    raw = raw_text_by_hand(model12, tokens, pl.text.ctx, pl.class_tokens(), 8)
    assert torch.allclose(out.raw, raw, atol=1e-5) and torch.equal(out.text, F.normalize(out.raw, dim=-1))
    ori = zero_shot_text(model12, [f"a photo of an aircraft {c}." for c in PETS])  # the TCP variant's ORI table
    assert torch.allclose(pl.ori, ori, atol=1e-6)
    base = TCP.loss(method, out, y).item()
    assert method.loss(out, y).item() == pytest.approx(base + 6 * hsic_by_hand(raw.detach(), ori), abs=1e-5)
    norms = raw.norm(dim=-1)
    assert (norms.max() - norms.min()) / norms.mean() > 1e-3  # so raw and normalised rows give different HSICs
    assert 6 * abs(hsic_by_hand(raw.detach(), ori) - hsic_by_hand(F.normalize(raw.detach(), dim=-1), ori)) > 1e-4


def test_quirk_kg_twice_is_tcp_with_kg_weight_lambda_plus_mu(backbone):
    quirk = build(DeKgKgTwice, backbone, PETS, "OxfordPets", insert_layer=1).train()
    tcp = build(TCP, backbone, PETS, "OxfordPets", insert_layer=1, kg_weight=14.0).train()
    perturb(quirk.prompt_learner.text.ctx)
    tcp.load_trainable_state(quirk.trainable_state())
    x, y = images(), torch.tensor([0, 1, 2, 0])
    assert quirk.loss(quirk(x), y).item() == pytest.approx(tcp.loss(tcp(x), y).item(), abs=1e-6)
    fixed = build(DeKg, backbone, PETS, "OxfordPets", insert_layer=1).train()
    fixed.load_trainable_state(quirk.trainable_state())
    assert abs(fixed.loss(fixed(x), y).item() - quirk.loss(quirk(x), y).item()) > 1e-4


# -- the class-token hook -------------------------------------------------------------------------------

def test_the_class_tokens_enter_once_at_block_8_positions_1_to_4(model12, monkeypatch):
    method = build(DeKg, model12, PETS, "OxfordPets").train()
    perturb(method.prompt_learner.text.ctx)
    blocks = model12.text.transformer.resblocks
    inputs, outputs = {}, {}
    hooks = [b.register_forward_pre_hook(lambda m, a, i=i: inputs.__setitem__(i, a[0].detach().clone()))
             for i, b in enumerate(blocks)]
    hooks += [b.register_forward_hook(lambda m, a, o, i=i: outputs.__setitem__(i, o.detach().clone()))
              for i, b in enumerate(blocks)]
    try:
        method(images(2))
    finally:
        for h in hooks:
            h.remove()
    changed = [i for i in range(1, 12) if not torch.equal(inputs[i], outputs[i - 1])]
    assert changed == [8]
    q = method.prompt_learner.class_tokens().detach()
    assert torch.equal(inputs[8][:, 1:5], q)
    assert torch.equal(inputs[8][:, :1], outputs[7][:, :1]) and torch.equal(inputs[8][:, 5:], outputs[7][:, 5:])
    # class tokens equal to what block 8 would see anyway: the hooked tower is the plain one
    monkeypatch.setattr(method.prompt_learner, "class_tokens", lambda: outputs[7][:, 1:5])
    ctx, tokens = method.prompt_learner.text.ctx, method.prompt_learner.text.tokens
    put = model12.text.token_embedding.register_forward_hook(
        lambda module, args, out: torch.cat([out[:, :1], ctx.expand(len(out), -1, -1), out[:, 5:]], dim=1))
    try:
        plain = F.normalize(model12.model.encode_text(tokens), dim=-1)
    finally:
        put.remove()
    assert torch.allclose(method.eval().text_features(), plain, atol=1e-6)


def test_new_classes_get_their_own_targets_and_class_tokens(backbone):
    method = build(DeKg, backbone, NAMES, "Food101", insert_layer=1).eval()
    method.set_label_space(ClassInfo(["pizza", "ramen"], [0, 0], dataset="Food101"))
    ori = zero_shot_text(backbone, ["a photo of a pizza, a type of food.", "a photo of a ramen, a type of food."])
    assert torch.allclose(method.prompt_learner.ori, ori, atol=1e-6)
    assert method(images()).shape == (4, 2)


# -- templates, recipes, cards --------------------------------------------------------------------------

def test_the_two_template_tables_are_the_official_strings():
    """Typed from cnunlp/DeKg@b8f2f1c: trainers/DeKg.py:41-58 (CUSTOM_TEMPLATES) and DeKg_TCP.py:45-61
    (CUSTOM_TEMPLATES_ori); they equal KgCoOp's and TCP's tables, which the two ports reuse."""
    kg = {"OxfordPets": "a photo of a {}, a type of pet.", "OxfordFlowers": "a photo of a {}, a type of flower.",
          "FGVCAircraft": "a photo of a {}, a type of aircraft.",
          "DescribableTextures": "a photo of a {}, a type of texture.", "EuroSAT": "a centered satellite photo of {}.",
          "StanfordCars": "a photo of a {}.", "Food101": "a photo of {}, a type of food.",
          "SUN397": "a photo of a {}.", "Caltech101": "a photo of a {}.", "UCF101": "a photo of a person doing {}.",
          **{name: "a photo of a {}." for name in ("ImageNet", "ImageNetSketch", "ImageNetV2", "ImageNetA",
                                                   "ImageNetR")}}
    ori = {**kg, "FGVCAircraft": "a photo of an aircraft {}.", "Food101": "a photo of a {}, a type of food."}
    assert KG_TEMPLATES == kg and ORI_TEMPLATES == ori


def test_recipes_follow_the_official_configs():
    dekg = load_protocol("b2n_cpt/sun397/tau0.25").resolve("dekg")
    t = dekg.train
    assert (t.optimizer, t.lr, t.weight_decay, t.eps, t.batch_size, t.epochs) == ("adam", 0.002, 5e-4, 1e-8, 32, 100)
    assert (t.warmup_epochs, t.warmup_lr) == (1, 1e-5)
    o = dekg.options
    assert (o.insert_layer, o.tke_fusion, o.kg_weight, o.hsic_weight, o.init_text) == (8, 1.0, 8.0, 6.0, None)
    assert load_protocol("b2n_cpt/sun397/tau0.25").resolve("dekg@ep50").train.epochs == 25
    assert load_protocol("b2n_cpt/dtd/tau1").resolve("dekg@ep50").train.epochs == 50
    kg = load_protocol("b2n_cpt/dtd/tau1").resolve("dekg_kgcoop")
    assert (kg.train.optimizer, kg.train.lr, kg.train.batch_size, kg.train.epochs) == ("sgd", 0.002, 128, 100)
    assert (kg.options.init_text, kg.options.n_ctx, kg.options.kg_weight, kg.options.hsic_weight) == \
        ("a photo of a", 4, 8.0, 6.0)
    assert load_protocol("smoke").resolve("dekg").options.insert_layer == 1


def test_the_dekg_card_carries_cpts_numbers_and_is_no_longer_reported_only():
    card = METHODS.get("dekg").card
    assert "dekg" not in REPORTED.names()
    assert card.reported["b2n_cpt/eurosat/tau1"].metrics == {"hm": 87.42}
    assert card.reported["b2n_cpt/*/tau1"].metrics == {"hm": 80.12}
    assert card.reported["xd_dg_cpt/tau0.25"].metrics["imagenet"] == 69.46
    for name in ("dekg", "dekg_kgcoop", "dekg@ep50", "dekg@quirk_kg_twice"):
        c = METHODS.get(name).card
        assert "cnunlp/DeKg:trainers/" in c.code and "spec_cpt_mdpr_baselines.md §3" in c.spec
    assert not METHODS.get("dekg_kgcoop").card.reported and not METHODS.get("dekg@ep50").card.reported


# -- the seeded 12-layer model (official-code check) ----------------------------------------------------

def golden_run(backbone) -> dict:
    """Both variants on OxfordPets names with moved parameters: text features, logits, each loss part, the loss."""
    x, y = images(2, seed=0), torch.tensor([2, 0])
    run = {}
    for name, cls in (("dekg_kgcoop", DeKgKgCoOp), ("dekg", DeKg)):
        method = build(cls, backbone, PETS, "OxfordPets", seed=1).train()
        for param in method.trainable_state().values():
            perturb(param, seed=2, scale=0.05)
        out = method(x)
        crafted = method.kg_targets if name == "dekg_kgcoop" else method.prompt_learner.ori
        learned = out.text if name == "dekg_kgcoop" else out.raw
        run[name] = {"text": out.text.tolist(), "logits": out.logits.tolist(),
                     "kg": (1 - F.cosine_similarity(out.text, crafted, dim=-1).mean()).item(),
                     "hsic": hsic(learned, crafted).item(), "loss": method.loss(out, y).item()}
    return run


def test_outputs_on_the_seeded_12_layer_model_match_the_officially_checked_snapshot(model12):
    """Values from our code that equalled cnunlp/DeKg@b8f2f1c8247c427042a0ed1ecaf450925fe50ed0's CustomCLIP
    (trainers/DeKg.py, trainers/DeKg_TCP.py) and its trainers' loss on the same weights: see the snapshot's note."""
    golden, ours = json.loads(SNAPSHOT.read_text()), golden_run(model12)
    for name in ("dekg_kgcoop", "dekg"):
        assert torch.allclose(torch.tensor(ours[name]["text"]), torch.tensor(golden[name]["text"]), atol=1e-5)
        assert torch.allclose(torch.tensor(ours[name]["logits"]), torch.tensor(golden[name]["logits"]), atol=1e-4)
        for key in ("kg", "hsic", "loss"):
            assert ours[name][key] == pytest.approx(golden[name][key], abs=1e-5), (name, key)
    assert not math.isclose(ours["dekg"]["hsic"], 0.0, abs_tol=1e-6)
