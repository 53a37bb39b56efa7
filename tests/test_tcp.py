"""TCP, TCP+LA and their variants (bench/methods/tcp.py, bench/methods/tcp_la.py) against references written from
spec_lamp_baselines.md §4 and §9.2 (T1-T8; T9, Dassl's coupled Adam, is tests/test_recipes.py's
test_adam_couples_weight_decay_into_the_gradient_and_takes_eps): hand-written loops over open_clip's
blocks, open_clip's own encode_text on hand-built prompts, TKE as matrix products."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from bench.cli import main
from bench.config.protocol import load_protocol
from bench.core.errors import ConfigError
from bench.core.registry import METHODS
from bench.model.method import ClassInfo
from bench.methods.tcp import ORI_TEMPLATES, PROMPT_TEMPLATES, TCP
from bench.methods.tcp_la import TCPLA, TCPPromptLT
from test_kgcoop import SNAPSHOT, images, perturb, zero_shot_text
from tiny_models import tiny12

NAMES = ["red square", "blue circle", "green triangle"]
PETS = ["abyssinian", "great pyrenees", "sphynx"]


@pytest.fixture(scope="module")
def model12():
    return tiny12()


def build(cls, backbone, names=NAMES, dataset=None, seed=0, counts=None, new=(), **options):
    torch.manual_seed(seed)
    info = ClassInfo(list(names), list(counts or [4, 2, 1, 1, 1][:len(names)]), dataset=dataset,
                     new_classnames=list(new))
    return cls(backbone, info, cls.Config(**options))


def tke_by_hand(method, ori):
    """Q = W2 · QuickGELU(W1 · t + b1) + b2, reshaped to [C, 4, width]."""
    l1, l2 = method.prompt_learner.tke.linear1, method.prompt_learner.tke.linear2
    h = ori @ l1.weight.t() + l1.bias
    h = h * torch.sigmoid(1.702 * h)
    return (h @ l2.weight.t() + l2.bias).reshape(len(ori), 4, -1)


def reference_text(backbone, tokens, ctx, q, layer):
    """The text tower by hand (:func:`raw_text_by_hand`), normalised."""
    return F.normalize(raw_text_by_hand(backbone, tokens, ctx, q, layer), dim=-1)


def raw_text_by_hand(backbone, tokens, ctx, q, layer):
    """The text tower over all positions, ctx at token embeddings 1..4, q replacing the hidden states at 1..4
    before block ``layer``; EOT pooling and projection, not normalised."""
    text = backbone.text
    x = text.token_embedding(tokens)
    x = torch.cat([x[:, :1], ctx.expand(len(tokens), -1, -1), x[:, 5:]], dim=1) + text.positional_embedding
    for i, block in enumerate(text.transformer.resblocks):
        if i == layer:
            x = torch.cat([x[:, :1], q, x[:, 5:]], dim=1)
        x = block(x, attn_mask=text.attn_mask)
    return text.ln_final(x)[torch.arange(len(tokens)), tokens.argmax(dim=-1)] @ text.text_projection


def ori_features(backbone, names, template):
    return zero_shot_text(backbone, [template.format(c) for c in names])


# -- T1: what trains, how many --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["tcp", "tcp_la", "tcp_la@promptlt"])
def test_t1_331904_parameters_at_vit_b16_all_in_the_prompt_learner(vit_b16, monkeypatch, name):
    """ORI features stubbed: encoding 1000 sentences with ViT-B/16 on a CPU would take half a minute."""
    import bench.methods.tcp as tcp

    monkeypatch.setattr(tcp, "hand_crafted_features", lambda backbone, names, template: torch.zeros(len(names), 512))
    for classes in (10, 1000):
        method = build(METHODS.get(name), vit_b16, [f"class {i}" for i in range(classes)], counts=[1] * classes)
        trainable = {n: p.numel() for n, p in method.named_parameters() if p.requires_grad}
        assert trainable == {"prompt_learner.text.ctx": 2_048,
                             "prompt_learner.tke.linear1.weight": 512 * 128, "prompt_learner.tke.linear1.bias": 128,
                             "prompt_learner.tke.linear2.weight": 128 * 2048, "prompt_learner.tke.linear2.bias": 2048}
        assert sum(trainable.values()) == 331_904 == 2_048 + 65_664 + 264_192


# -- T2, T3, T4: where the class tokens go --------------------------------------------------------------

def block_input(method, layer):
    seen = []
    hook = method.backbone.text.transformer.resblocks[layer].register_forward_pre_hook(
        lambda module, args: seen.append(args[0].detach().clone()))
    try:
        method.text_features()
    finally:
        hook.remove()
    return seen[0]


def test_t2_the_insertion_block_sees_q_at_positions_1_to_4_and_nothing_else_changed(model12):
    method = build(TCP, model12, PETS, "OxfordPets").eval()
    perturb(method.prompt_learner.text.ctx)
    with_q = block_input(method, 8)
    q = method.prompt_learner.class_tokens().detach()
    assert torch.equal(with_q[:, 1:5], q)
    method.cfg.tke_fusion = 0.0  # the same run with TKE silenced
    without = block_input(method, 8)
    assert torch.equal(with_q[:, :1], without[:, :1]) and torch.equal(with_q[:, 5:], without[:, 5:])
    assert not torch.allclose(with_q[:, 1:5], without[:, 1:5])


@pytest.mark.parametrize("dataset", ["OxfordPets", "ImageNet", "StanfordCars", None])
def test_t3_text_features_equal_a_hand_written_loop_over_the_blocks(model12, dataset):
    method = build(TCP, model12, PETS, dataset).eval()
    perturb(method.prompt_learner.text.ctx)
    pl = method.prompt_learner
    template = PROMPT_TEMPLATES.get(dataset, "X X X X {}.")
    tokens = model12.tokenize([template.format(c) for c in PETS])
    expected = reference_text(model12, tokens, pl.text.ctx, pl.class_tokens(), 8)
    assert torch.allclose(method.text_features(), expected, atol=1e-5)
    assert not torch.allclose(reference_text(model12, tokens, pl.text.ctx, pl.class_tokens(), 7), expected, atol=1e-3)


def test_t4_no_fusion_is_a_coop_run_of_the_prompt_template(backbone):
    """tke_fusion 0: open_clip's encode_text of "X X X X {c}, a type of pet." with token embeddings 1..4
    replaced by the context (TKE has no effect)."""
    method = build(TCP, backbone, PETS, "OxfordPets", insert_layer=1, tke_fusion=0.0).eval()
    perturb(method.prompt_learner.text.ctx)
    ctx = method.prompt_learner.text.ctx
    tokens = backbone.tokenize([f"X X X X {c}, a type of pet." for c in PETS])
    put = backbone.text.token_embedding.register_forward_hook(
        lambda module, args, out: torch.cat([out[:, :1], ctx.expand(len(out), -1, -1), out[:, 5:]], dim=1))
    try:
        expected = F.normalize(backbone.model.encode_text(tokens), dim=-1)
    finally:
        put.remove()
    assert torch.allclose(method.text_features(), expected, atol=1e-5)
    perturb(method.prompt_learner.tke.linear2.weight)
    assert torch.allclose(method.text_features(), expected, atol=1e-5)


# -- T5, T6, T7: loss, new classes, LA ------------------------------------------------------------------

def test_t5_the_loss_is_ce_plus_8_times_one_minus_the_mean_cosine_to_the_ori_features(backbone):
    method = build(TCP, backbone, PETS, "FGVCAircraft", insert_layer=1).train()
    perturb(method.prompt_learner.text.ctx)
    x, y = images(), torch.tensor([0, 0, 1, 0])
    out = method(x)
    ori = ori_features(backbone, PETS, "a photo of an aircraft {}.")
    logits = backbone.model.logit_scale.exp() * F.normalize(backbone.model.encode_image(x), dim=-1) @ out.text.t()
    ce = -sum(torch.log_softmax(logits[b], dim=0)[y[b]].item() for b in range(4)) / 4
    kg = 1 - sum((out.text[c] @ ori[c]).item() for c in range(3)) / 3
    assert method.loss(out, y).item() == pytest.approx(ce + 8 * kg, abs=1e-5)
    assert kg > 1e-3
    method.cfg.kg_weight = 0.0
    assert method.loss(out, y).item() == pytest.approx(ce, abs=1e-5)


def test_t6_new_classes_get_their_own_ori_features_and_class_tokens(backbone):
    method = build(TCP, backbone, NAMES, "Food101", insert_layer=1).eval()
    new = ClassInfo(["pizza", "ramen"], [0, 0], dataset="Food101")
    method.set_label_space(new)
    ori = ori_features(backbone, ["pizza", "ramen"], "a photo of a {}, a type of food.")
    assert torch.allclose(method.prompt_learner.ori, ori, atol=1e-6)
    assert torch.allclose(method.prompt_learner.class_tokens(), tke_by_hand(method, ori), atol=1e-6)
    assert torch.equal(method.prompt_learner.text.tokens, backbone.tokenize(["X X X X pizza, a type of food.",
                                                                             "X X X X ramen, a type of food."]))
    x = images()
    before = method(x)
    perturb(method.prompt_learner.tke.linear1.weight)  # TKE acts at test time
    assert not torch.allclose(method(x), before, atol=1e-4)


def test_t7_tcp_la_adjusts_the_training_loss_only(backbone):
    counts = [8, 2, 1]
    la = build(TCPLA, backbone, counts=counts, insert_layer=1).train()
    plain = build(TCP, backbone, counts=counts, insert_layer=1).train()
    x, y = images(), torch.tensor([0, 1, 2, 0])
    out = plain(x)
    log_prior = torch.tensor([math.log(c / sum(counts)) for c in counts])
    kg = plain.loss(out, y) - F.cross_entropy(out.logits, y)
    expected = F.cross_entropy(out.logits + log_prior, y) + kg
    assert la.loss(la(x), y).item() == pytest.approx(expected.item(), abs=1e-5)
    assert la.record_fields()["la_prior_counts"] == counts
    assert la.record_fields()["la_offsets"] == pytest.approx(log_prior.tolist(), abs=1e-6)
    zero = build(TCPLA, backbone, counts=counts, insert_layer=1, tau=0.0).train()
    assert zero.loss(zero(x), y).item() == pytest.approx(plain.loss(out, y).item(), abs=1e-6)
    assert torch.equal(la.eval()(x), plain.eval()(x))  # raw logits at prediction


# -- T8: the two template tables ------------------------------------------------------------------------

def test_t8_each_prompt_templates_first_four_words_are_four_tokens(backbone):
    for dataset, template in PROMPT_TEMPLATES.items():
        words = " ".join(template.split()[:4])
        assert len(backbone.tokenize([words])[0].nonzero()) - 2 == 4, dataset
    assert PROMPT_TEMPLATES["StanfordCars"] == "X X X X {}, a type of car"  # no period, as the official
    assert ORI_TEMPLATES["FGVCAircraft"] == "a photo of an aircraft {}."
    assert set(PROMPT_TEMPLATES) == set(ORI_TEMPLATES) and len(ORI_TEMPLATES) == 15


def test_t8_the_context_takes_the_templates_first_four_tokens(backbone):
    """UCF101: "a photo of a person doing {c}." becomes [ctx x 4] person doing {c}."""
    method = build(TCP, backbone, ["yo yo"], "UCF101", counts=[1], insert_layer=1)
    tokens = backbone.tokenize(["a photo of a person doing yo yo."])
    prompts = method.prompt_learner.text()
    assert torch.equal(method.prompt_learner.text.tokens, tokens)
    assert torch.equal(prompts[:, 1:5], method.prompt_learner.text.ctx[None])
    assert torch.equal(prompts[:, 5:], backbone.embed_tokens(tokens)[:, 5:])


# -- options, variants, cards ---------------------------------------------------------------------------

def test_an_insertion_block_the_tower_lacks_is_a_config_error(backbone, model12):
    with pytest.raises(ConfigError, match="insert_layer: must be between 1 and 1") as err:
        build(TCP, backbone, insert_layer=2)  # the tiny smoke model has 2 text blocks
    assert err.value.where.endswith("insert_layer")
    build(TCP, model12, insert_layer=11)
    with pytest.raises(ConfigError, match="between 1 and 11"):
        build(TCP, model12, insert_layer=12)
    with pytest.raises(ConfigError, match="init_text: must be 4 tokens"):
        build(TCP, model12, init_text="a photo")


def test_an_impossible_insertion_block_stops_the_run_with_one_error_line(capsys, tmp_path):
    code = main(["run", "--protocol", "smoke", "--method", "tcp", "--set", "tcp.insert_layer=8",
                 "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("bench: error:") and "insert_layer" in err


def test_promptlt_trains_plain_ce_over_base_and_new_names_and_predicts_each_among_its_own(backbone):
    """tcp_la@promptlt (spec B18): training logits cover base ∪ new, the KG term too; base predictions are the
    base columns, which equal a TCP classifier over the base names alone with the same parameters."""
    new = ["pug", "sphynx"]
    method = build(TCPPromptLT, backbone, new=new, insert_layer=1)
    tcp = build(TCP, backbone, insert_layer=1, init_text="a photo of a")
    tcp.load_trainable_state(method.trainable_state())
    words = backbone.embed_tokens(backbone.tokenize(["a photo of a"]))[0, 1:5]
    assert torch.equal(method.prompt_learner.text.ctx, words)  # PromptLT's word initialisation
    x, y = images(), torch.tensor([0, 1, 2, 0])
    out = method.train()(x)
    assert out.logits.shape == (4, 5) and out.text.shape == (5, backbone.embed_dim)
    ori = ori_features(backbone, NAMES + new, "a photo of a {}.")
    kg = 1 - sum((out.text[c] @ ori[c]).item() for c in range(5)) / 5
    assert method.loss(out, y).item() == pytest.approx(F.cross_entropy(out.logits, y).item() + 8 * kg, abs=1e-5)
    method.eval()
    assert torch.allclose(method(x), tcp.eval()(x), atol=1e-5) and method(x).shape == (4, 3)
    assert method.record_text_features().shape == (3, backbone.embed_dim)
    method.set_label_space(ClassInfo(new, [0, 0]))
    tcp.set_label_space(ClassInfo(new, [0, 0]))
    assert torch.allclose(method(x), tcp(x), atol=1e-5)
    method.set_label_space(method.data)  # back to training: base columns of the base ∪ new classifier
    assert method(x).shape == (4, 3)
    assert "Class-name transductive" in METHODS.get("tcp_la@promptlt").card.paper


def test_recipes_adam_eps_and_the_25_epoch_datasets():
    sun, dtd = (load_protocol(f"b2n_lamp/{d}/imb10").resolve("tcp") for d in ("sun397", "dtd"))
    assert (dtd.train.optimizer, dtd.train.eps, dtd.train.weight_decay, dtd.train.lr) == ("adam", 1e-3, 5e-4, 0.002)
    assert (dtd.train.batch_size, dtd.train.epochs, sun.train.epochs) == (32, 50, 25)
    assert (dtd.options.insert_layer, dtd.options.kg_weight, dtd.options.tke_fusion, dtd.options.init_text) == \
        (8, 8.0, 1.0, None)
    assert load_protocol("b2n_lamp/imagenet/imb10").resolve("tcp_la").train.epochs == 25
    assert load_protocol("xd_dg_lamp/imb100").resolve("tcp_la").train.epochs == 25  # an ImageNet source
    eps8 = load_protocol("b2n_lamp/sun397/imb10").resolve("tcp@eps1e-8")
    assert (eps8.train.optimizer, eps8.train.eps, eps8.train.epochs) == ("adam", 1e-8, 25)
    promptlt = load_protocol("b2n_lamp/dtd/imb10").resolve("tcp_la@promptlt")
    assert promptlt.options.init_text == "a photo of a" and promptlt.train.eps == 1e-3
    lt = load_protocol("imagenet_lt").resolve("tcp")
    assert lt.train.optimizer == "adamw" and lt.train.epochs == 20 and "project choice" in lt.sources["train.lr"]


def test_the_cards_carry_lamps_numbers():
    assert METHODS.get("tcp").card.reported["b2n_cpt/*/tau1"].metrics == {"base": 84.13, "new": 75.36, "hm": 79.26}
    la = METHODS.get("tcp_la").card.reported
    assert la["b2n_lamp/eurosat/imb10"].metrics["hm"] == 80.94 and la["xd_dg_lamp/imb100"].metrics["dtd"] == 49.20
    assert not METHODS.get("tcp@eps1e-8").card.reported and not METHODS.get("tcp_la@promptlt").card.reported


# -- the seeded 12-layer model (spec §9.5) --------------------------------------------------------------

def golden_run(backbone) -> dict:
    """TCP on OxfordPets names, block 8, moved context: text features, logits, L_kg; then two new classes."""
    method = build(TCP, backbone, PETS, "OxfordPets", seed=1).train()
    perturb(method.prompt_learner.text.ctx, seed=2)
    out = method(images(2, seed=0))
    from bench.methods.kgcoop import kg_loss

    run = {"text": out.text.tolist(), "logits": out.logits.tolist(),
           "kg": kg_loss(out.text, method.prompt_learner.ori).item()}
    method.eval().set_label_space(ClassInfo(["pug", "sphynx"], [0, 0], dataset="OxfordPets"))
    return {**run, "new_text": method.text_features().tolist()}


def test_outputs_on_the_seeded_12_layer_model_match_the_officially_checked_snapshot(model12):
    """Values from our code that equalled the TextEncoder of htyao89/Textual-based_Class-aware_prompt_tuning
    @bd97bec6bd4901baaf318e9e8f073f618d12066e (trainers/tcp.py, clip_text's layers=[8]) fed our prompts and Q."""
    golden, ours = json.loads(SNAPSHOT.read_text())["tcp"], golden_run(model12)
    for key in ("text", "new_text"):
        assert torch.allclose(torch.tensor(ours[key]), torch.tensor(golden[key]), atol=1e-5), key
    assert torch.allclose(torch.tensor(ours["logits"]), torch.tensor(golden["logits"]), atol=1e-4)
    assert ours["kg"] == pytest.approx(golden["kg"], abs=1e-5)
