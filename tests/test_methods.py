import pytest
import torch

from bench.config.protocol import load_protocol
from bench.core.errors import BenchError, ConfigError
from bench.methods.coop import CoOp, CoOpConfig
from bench.methods.zeroshot import ZeroShotCLIP, ZeroShotConfig


def images(n=4, size=32):
    torch.manual_seed(0)
    return torch.randn(n, 3, size, size)


def test_zeroshot_logits(backbone, class_info):
    method = ZeroShotCLIP(backbone, class_info, ZeroShotConfig())
    x = images()
    logits = method(x)
    assert logits.shape == (4, 10)
    text = backbone.encode_text(backbone.tokenize([f"a photo of a {c}." for c in class_info.classnames]))
    expected = backbone.logit_scale * backbone.encode_image(x) @ text.T
    assert torch.allclose(logits, expected, atol=1e-5)
    assert method.trainable_parameters() == []


def test_zeroshot_template_ensemble(backbone, class_info):
    one = ZeroShotCLIP(backbone, class_info, ZeroShotConfig(templates=["a {}."]))
    two = ZeroShotCLIP(backbone, class_info, ZeroShotConfig(templates=["a {}.", "a photo of a {}."]))
    assert not torch.allclose(one.text_features, two.text_features)
    assert torch.allclose(two.text_features.norm(dim=-1), torch.ones(10), atol=1e-5)


def test_zeroshot_template_needs_a_slot():
    with pytest.raises(ConfigError, match=r"templates\[0\]"):
        load_protocol("smoke").resolve("zeroshot", {"templates": ["a photo"]})


def test_coop_only_context_is_trainable(backbone, class_info):
    method = CoOp(backbone, class_info, CoOpConfig(n_ctx=4))
    params = method.trainable_parameters()
    assert len(params) == 1 and params[0].shape == (4, backbone.width)
    assert list(method.trainable_state()) == ["prompt_learner.ctx"]
    assert method(images()).shape == (4, 10)


def test_coop_default_and_csc_shapes(backbone, class_info):
    assert CoOp(backbone, class_info, CoOpConfig(n_ctx=8)).prompt_learner.ctx.shape == (8, 64)
    csc = CoOp(backbone, class_info, CoOpConfig(n_ctx=3, csc=True))
    assert csc.prompt_learner.ctx.shape == (10, 3, 64)
    prompts = csc.prompt_learner()
    assert prompts.shape == (10, backbone.context_length, 64)


def test_coop_init_text_reproduces_the_hand_prompt(backbone, class_info):
    """Initialised from "a photo of a", CoOp starts exactly at zero-shot CLIP."""
    coop = CoOp(backbone, class_info, CoOpConfig(init_text="a photo of a"))
    assert coop.prompt_learner.n_ctx == 4
    zs = ZeroShotCLIP(backbone, class_info, ZeroShotConfig(templates=["a photo of a {}."]))
    assert torch.allclose(coop.text_features(), zs.text_features, atol=1e-5)
    x = images()
    assert torch.allclose(coop(x), zs(x), atol=1e-4)


@pytest.mark.parametrize("position", ["middle", "front"])
def test_coop_class_token_positions(backbone, class_info, position):
    cfg = CoOpConfig(n_ctx=4, class_token_position=position)
    coop = CoOp(backbone, class_info, cfg)
    learner = coop.prompt_learner
    prompts = learner()
    # Every prompt keeps the length and the start/end embeddings of the end layout.
    end = CoOp(backbone, class_info, CoOpConfig(n_ctx=4)).prompt_learner
    assert prompts.shape == end().shape
    assert torch.equal(prompts[:, 0], end.token_prefix[:, 0])
    name_len = learner.name_lens[0]  # "apple"
    name = learner.token_suffix[0, :name_len]
    start = 1 if position == "front" else 1 + 4 // 2
    assert torch.equal(prompts[0, start : start + name_len], name)
    ctx_at = 1 + name_len if position == "front" else 1
    assert torch.equal(prompts[0, ctx_at], learner.ctx[0].detach())
    assert torch.equal(prompts[0, 1 + 4 + name_len :], end().detach()[0, 1 + 4 + name_len :])


def test_coop_config_errors(backbone, class_info):
    with pytest.raises(ConfigError, match="n_ctx: is 3 but init_text 'a photo of a' has 4 tokens"):
        CoOp(backbone, class_info, CoOpConfig(n_ctx=3, init_text="a photo of a"))
    with pytest.raises(ConfigError, match="prompts need .* tokens but the text encoder takes 32"):
        CoOp(backbone, class_info, CoOpConfig(n_ctx=40))


def test_coop_gradients_reach_context(backbone, class_info):
    coop = CoOp(backbone, class_info, CoOpConfig(n_ctx=4))
    loss = coop.loss(coop(images()), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert coop.prompt_learner.ctx.grad is not None
    assert coop.prompt_learner.ctx.grad.abs().sum() > 0


def test_coop_refuses_class_specific_context_from_words(smoke):
    """Official CoOp silently ignores CSC when CTX_INIT is set; we say so instead."""
    with pytest.raises(ConfigError, match="csc: class-specific context cannot start from init_text") as err:
        smoke.resolve("coop", {"csc": True, "init_text": "a photo of a", "n_ctx": None})
    assert err.value.where == "--set coop.csc"


def test_coop_la_trains_on_the_adjusted_loss_and_predicts_raw(backbone, class_info):
    """LA: CE(z + log pi) in training, raw z at test; the prior is the exact training counts."""
    import math

    from bench.model.losses import la_offsets
    from bench.methods.coop_la import CoOpLA, CoOpLAConfig

    torch.manual_seed(0)
    la = CoOpLA(backbone, class_info, CoOpLAConfig(n_ctx=4))
    torch.manual_seed(0)
    plain = CoOp(backbone, class_info, CoOpConfig(n_ctx=4))
    x, y = images(), torch.tensor([0, 1, 2, 3])
    assert torch.equal(la(x), plain(x))  # same prompts, same raw logits
    n = class_info.train_counts
    prior = torch.tensor([math.log(c / sum(n)) for c in n])
    expected = torch.nn.functional.cross_entropy(plain(x) + prior, y)
    assert la.loss(la(x), y).item() == pytest.approx(expected.item(), rel=1e-5)
    assert la.record_fields()["la_prior_counts"] == n
    assert la.record_fields()["la_offsets"] == pytest.approx(la_offsets(n).tolist())
    assert CoOpLA(backbone, class_info, CoOpLAConfig(n_ctx=4, tau=0.0)).loss(la(x), y).item() == \
        pytest.approx(plain.loss(plain(x), y).item(), rel=1e-5)  # tau 0: plain CE


def test_cocoop_matches_a_per_image_loop(backbone, class_info):
    """The official forward: for each image, context + meta_net(norm f(x)), encode every class prompt."""
    from bench.methods.cocoop import CoCoOp, CoCoOpConfig

    torch.manual_seed(0)
    cocoop = CoCoOp(backbone, class_info, CoCoOpConfig())
    x, learner = images(3), cocoop.prompt_learner
    expected = []
    for img in x:
        f = torch.nn.functional.normalize(backbone.model.encode_image(img[None]), dim=-1)
        ctx = learner.ctx + cocoop.meta_net(f)  # [n_ctx, width]
        prompts = torch.cat([learner.token_prefix, ctx.expand(10, -1, -1), learner.token_suffix], dim=1)
        text = backbone.encode_prompts(prompts, learner.tokens)
        expected.append(backbone.logit_scale * f @ text.T)
    assert torch.allclose(cocoop(x), torch.cat(expected), atol=1e-4)
    hidden = cocoop.meta_net.linear1.out_features
    assert hidden == max(1, backbone.embed_dim // 16) and cocoop.meta_net.linear2.out_features == backbone.width


def test_cocoop_with_a_silent_meta_net_is_coop(backbone, class_info):
    from bench.methods.cocoop import CoCoOp, CoCoOpConfig

    cocoop = CoCoOp(backbone, class_info, CoCoOpConfig())
    with torch.no_grad():
        cocoop.meta_net.linear2.weight.zero_()
        cocoop.meta_net.linear2.bias.zero_()
    coop = CoOp(backbone, class_info, CoOpConfig(init_text="a photo of a"))
    assert torch.allclose(cocoop(images()), coop(images()), atol=1e-4)


def test_posthoc_la_subtracts_the_log_prior_at_prediction_only(backbone, class_info):
    """argmax_c z_c - tau log pi_c on the training classes; raw logits in training and on new classes."""
    import math

    from bench.model.method import ClassInfo
    from bench.core.registry import METHODS

    cls = METHODS.get("coop@la_posthoc")
    assert cls.registry_name == "coop@la_posthoc" and issubclass(cls, CoOp)
    torch.manual_seed(0)
    adjusted = cls(backbone, class_info, cls.Config(n_ctx=4, tau=0.5))
    torch.manual_seed(0)
    plain = CoOp(backbone, class_info, CoOpConfig(n_ctx=4))
    x, n = images(), class_info.train_counts
    offsets = torch.tensor([0.5 * math.log(c / sum(n)) for c in n])
    adjusted.eval()
    assert torch.allclose(adjusted(x), plain(x) - offsets, atol=1e-4)
    adjusted.train()
    assert torch.allclose(adjusted(x), plain(x), atol=1e-5)
    adjusted.eval()
    adjusted.set_label_space(ClassInfo(["zebra", "whale"], [0, 0]))
    plain.set_label_space(ClassInfo(["zebra", "whale"], [0, 0]))
    assert torch.allclose(adjusted(x), plain(x), atol=1e-5)
    assert adjusted.record_fields()["posthoc_prior_counts"] == n


def test_unknown_variant_is_named():
    from bench.core.errors import BenchError
    from bench.core.registry import METHODS

    with pytest.raises(BenchError, match="unknown method variant 'la_postoc'; did you mean 'la_posthoc'"):
        METHODS.get("coop@la_postoc")


def test_maple_la_trains_on_the_adjusted_loss_and_predicts_raw(backbone, class_info):
    import math

    from bench.methods.maple import MaPLe, MaPLeConfig
    from bench.methods.maple_la import MaPLeLA, MaPLeLAConfig

    torch.manual_seed(0)
    la = MaPLeLA(backbone, class_info, MaPLeLAConfig(depth=2))
    torch.manual_seed(0)
    plain = MaPLe(backbone, class_info, MaPLeConfig(depth=2))
    x, y, n = images(), torch.tensor([0, 1, 2, 3]), class_info.train_counts
    assert torch.equal(la(x), plain(x))
    prior = torch.tensor([math.log(c / sum(n)) for c in n])
    expected = torch.nn.functional.cross_entropy(plain(x) + prior, y)
    assert la.loss(la(x), y).item() == pytest.approx(expected.item(), rel=1e-5)
    assert la.record_fields()["la_prior_counts"] == n


def test_a_subset_of_the_training_classes_keeps_their_own_parameters_and_priors(backbone, class_info):
    """ImageNet-A's 200 of ImageNet's 1000: class-specific context and the post-hoc prior follow
    ``training_index``, so the subset's logits are the full logits' columns."""
    import math

    from bench.model.method import ClassInfo
    from bench.core.registry import METHODS

    pick = [7, 2, 5]
    subset = ClassInfo([class_info.classnames[i] for i in pick], [class_info.train_counts[i] for i in pick],
                       training_index=pick)
    x = images()
    torch.manual_seed(0)
    csc = CoOp(backbone, class_info, CoOpConfig(n_ctx=3, csc=True))
    with torch.no_grad():
        csc.prompt_learner.ctx.add_(torch.randn_like(csc.prompt_learner.ctx))  # rows differ from each other
    full = csc(x)
    csc.set_label_space(subset)
    assert torch.allclose(csc(x), full[:, pick], atol=1e-4)
    with pytest.raises(BenchError, match="cannot classify classes it was not trained on"):
        csc.set_label_space(ClassInfo(["zebra"], [0]))

    posthoc = METHODS.get("la_posthoc")(backbone, class_info, METHODS.get("la_posthoc").Config(tau=1.0)).eval()
    zero_shot = ZeroShotCLIP(backbone, subset, ZeroShotConfig(templates=["a photo of a {}."]))
    posthoc.set_label_space(subset)
    n = class_info.train_counts
    offsets = torch.tensor([math.log(n[i] / sum(n)) for i in pick])
    assert torch.allclose(posthoc(x), zero_shot(x) - offsets, atol=1e-4)
