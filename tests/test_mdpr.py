"""MDPR checked against reference forms written here independently (methods_spec §7, §14)."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.core.errors import BenchError, ConfigError
from bench.kb.backends import OfflineTemplateBackend
from bench.kb.knowledge import build_kb, write_kb
from bench.model.method import ClassInfo
from bench.methods.mdpr import PromptRouter
from bench.methods.mdpr_coop import MDPRCoOp, MDPRCoOpConfig, MDPRCoOpOfflineKB
from bench.methods.mdpr_maple import MDPRMaPLeConfig, MDPRMaPLeOfflineKB


def images(n=4, size=32):
    torch.manual_seed(0)
    return torch.randn(n, 3, size, size)


def test_router_equals_multihead_attention_on_repeated_tensors():
    """The code repeats F_p over the batch and runs nn.MultiheadAttention per (image, class)."""
    torch.manual_seed(0)
    router = PromptRouter(16, 4, 8, dropout=0.1, device="cpu").eval()
    nn.init.normal_(router.attn.in_proj_bias)  # non-zero biases: a wrong split would show
    f, keys = torch.randn(3, 16), torch.randn(5, 5, 16)
    routed, weights = router(f, keys)
    b, c = 3, 5
    query = f[:, None, None, :].expand(b, c, 1, 16).reshape(b * c, 1, 16)
    kv = keys[None].expand(b, c, 5, 16).reshape(b * c, 5, 16)
    out, w = router.attn(query.transpose(0, 1), kv.transpose(0, 1), kv.transpose(0, 1), need_weights=True,
                         average_attn_weights=True)
    assert torch.allclose(routed, out.transpose(0, 1).reshape(b, c, 16), atol=1e-5)
    assert torch.allclose(weights, w.reshape(b, c, 5), atol=1e-6)


def test_mdpr_module_parameter_count_at_vit_b16_width():
    router = PromptRouter(512, 8, 128, 0.1, "cpu")
    assert sum(p.numel() for p in router.parameters()) == 1_116_288  # spec §7.7; paper Table 6 +1.1M


def test_trainable_parameters_at_vit_b16(vit_b16, tmp_path):
    info = ClassInfo(["cat", "dog"], [5, 1])
    method = MDPRCoOpOfflineKB(vit_b16, info, MDPRCoOpConfig())
    assert sum(p.numel() for p in method.trainable_parameters()) == 8_192 + 1_116_288 + 1  # + the logit scale
    maple = MDPRMaPLeOfflineKB(vit_b16, info, MDPRMaPLeConfig())
    assert sum(p.numel() for p in maple.trainable_parameters()) == 3_555_072 + 1_116_288 + 1


def test_cla_offsets_on_a_known_count_vector(backbone):
    info = ClassInfo(["apple", "bicycle"], [500, 5])
    method = MDPRCoOpOfflineKB(backbone, info, MDPRCoOpConfig())
    assert torch.allclose(method.cla_offsets, torch.log(torch.tensor([501 / 507, 6 / 507])))


def reference_loss(out, labels, offsets, cfg, ramp, proj):
    """Eq. 7-10 written out term by term, the KL by its definition."""
    ce = -F.log_softmax(out.base, -1)[torch.arange(len(labels)), labels].mean()
    sem = -F.log_softmax(out.semantic + offsets, -1)[torch.arange(len(labels)), labels].mean()
    w, m = out.routing, out.knowledge.prior[None]
    pa = (1 - (w * m).sum(-1) / (w.norm(dim=-1) * m.norm(dim=-1))).mean()
    kl = 0.0
    for b, y in enumerate(labels.tolist()):
        s = proj(out.routed[b, y] / out.routed[b, y].norm()) / cfg.temperature
        t = proj(out.knowledge.mean[y]) / cfg.temperature
        p_t, log_p_s = t.softmax(-1), s.log_softmax(-1)
        kl = kl + (p_t * (p_t.log() - log_p_s)).sum()
    kl = kl / len(labels)
    return cfg.lambda_base * ce + ramp * cfg.lambda_sem * sem + cfg.lambda_pa * pa + ramp * cfg.lambda_ka * kl


def test_loss_is_eq_7_to_10(backbone, class_info):
    cfg = MDPRCoOpConfig(lambda_sem=0.7, lambda_pa=0.3, lambda_ka=0.2, temperature=2.0, attn_dropout=0.0)
    method = MDPRCoOpOfflineKB(backbone, class_info, cfg)
    method.start_epoch(2, 20, 10)
    method.train()
    labels = torch.tensor([0, 3, 9, 3])
    out = method(images())
    expected = reference_loss(out, labels, method.cla_offsets, cfg, 0.4, method.router.proj)
    assert torch.allclose(method.loss(out, labels), expected, atol=1e-5)


@pytest.mark.parametrize("mode, expected", [
    ("paper5", [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.0]),
    ("code_full", [0.01 + 0.99 * e / 20 for e in range(7)]),
])
def test_warm_up_of_the_semantic_and_distillation_weights(backbone, class_info, mode, expected):
    method = MDPRCoOpOfflineKB(backbone, class_info, MDPRCoOpConfig(warmup=mode))
    ramps = []
    for epoch in range(7):
        method.start_epoch(epoch, 20, 3)
        ramps.append(method.ramp)
    assert ramps == pytest.approx(expected)


def test_prediction_fuses_the_two_heads(backbone, class_info):
    method = MDPRCoOpOfflineKB(backbone, class_info, MDPRCoOpConfig()).eval()
    x = images()
    with torch.no_grad():
        fused = method(x)
        method.cfg.predict = "base"
        base = method(x)
        method.cfg.predict = "semantic"
        semantic = method(x)
    assert torch.allclose(fused, (base + semantic) / 2, atol=1e-5)
    assert torch.equal(fused.argmax(1), ((base + semantic) / 2).argmax(1))
    scale = method.backbone.logit_scale.clamp(max=100)
    zs = scale * method.image_features(x) @ method.text_features().t()
    assert torch.allclose(base, zs, atol=1e-4)


def test_knowledge_tensors(backbone, class_info):
    method = MDPRCoOpOfflineKB(backbone, class_info, MDPRCoOpConfig(dimensions=["GA", "DF", "CI"]))
    kn = method.knowledge()
    assert kn.raw.shape == (10, 3, backbone.text.text_projection.shape[-1])
    assert torch.allclose(kn.mean, kn.raw.mean(1))
    kb = build_kb("", class_info.classnames, method.offline_partners(class_info.classnames), OfflineTemplateBackend())
    sentence = kb.sentences("castle")["DF"]
    direct = backbone.encode_text(backbone.tokenize([sentence]), normalize=False)[0]
    assert torch.allclose(kn.raw[2, 1], direct, atol=1e-5)  # raw, not normalised (preprocess_semantic_knowledge.py)
    anchor = backbone.encode_text(backbone.tokenize(["a photo of a castle."]), normalize=True)[0]
    assert torch.allclose(kn.prior[2, 1], F.normalize(direct, dim=0) @ anchor, atol=1e-5)  # Eq. 4


def test_records_carry_the_statistics_of_the_prior_over_the_training_classes(backbone, class_info, tmp_path):
    """MDPR Table 7's mean, std (n - 1) and median of M, from numpy on the knowledge tensors, whatever label
    space was classified last; `bench run` records them for report specs (bench/reports/mdpr_table7.yaml), apart
    from the metrics leaderboards show."""
    import json

    import numpy as np

    from bench.cli import main

    method = MDPRCoOpOfflineKB(backbone, class_info, MDPRCoOpConfig())
    prior = method.knowledge().prior.double().numpy().ravel()
    method.use_label_space(ClassInfo(["castle", "apple"], [1, 1], class_info.template))
    stats = method.record_metrics()
    assert stats == pytest.approx({"prior_mean": np.mean(prior), "prior_std": np.std(prior, ddof=1),
                                   "prior_median": np.median(prior)}, abs=1e-6) and prior.size == 50
    assert main(["run", "--protocol", "smoke", "--method", "mdpr_coop_offlinekb", "--seeds", "1", "--no-progress",
                 "--set", "mdpr_coop_offlinekb.train.epochs=1", "--results-dir", str(tmp_path)]) == 0
    record = json.loads(next(tmp_path.rglob("seed-1.json")).read_text())
    # the run's DF partners come from zero-shot confusions on its training images (prepare), so the DF
    # sentences, and with them M, differ a little from the text-nearest partners above
    assert record["method_metrics"]["prior_mean"] == pytest.approx(stats["prior_mean"], abs=1e-3)
    assert set(record["method_metrics"]) == set(stats) and not set(stats) & set(record["metrics"])
    from bench.reporting.results import slim

    assert slim(record)["metrics"]["prior_median"] == record["method_metrics"]["prior_median"]  # what reports read


OPENAI_LOG_SCALE = 4.6052  # CLIP's stored logit_scale in the OpenAI checkpoints: exp() = 100.003, above the cap


def test_logit_scale_starts_at_clips_value_and_its_data_is_capped_at_100(backbone, class_info):
    method = MDPRCoOpOfflineKB(backbone, class_info, MDPRCoOpConfig())
    assert method.log_scale.item() == backbone.log_logit_scale.item()
    with torch.no_grad():
        method.log_scale.fill_(math.log(500))
    assert method.scale().item() == pytest.approx(100)
    assert method.log_scale.item() == pytest.approx(math.log(100))  # the parameter itself, as the code clamps it
    fixed = MDPRCoOpOfflineKB(backbone, class_info, MDPRCoOpConfig(learn_scale=False))
    assert all(p is not fixed.log_scale for p in fixed.trainable_parameters())


def scale_gradient_reference(method, out, labels):
    """d loss / d log s by the chain rule: both heads are s times a scale-free term, so each logit's
    derivative in log s is the logit itself."""
    base, semantic = out.base.detach().requires_grad_(), out.semantic.detach().requires_grad_()
    loss = method.loss(out._replace(base=base, semantic=semantic), labels)
    d_base, d_semantic = torch.autograd.grad(loss, [base, semantic], retain_graph=True)
    return (d_base * out.base).sum() + (d_semantic * out.semantic).sum()


@pytest.mark.parametrize("build", [
    lambda b, info: MDPRCoOpOfflineKB(b, info, MDPRCoOpConfig(attn_dropout=0.0)),
    lambda b, info: MDPRMaPLeOfflineKB(b, info, MDPRMaPLeConfig(attn_dropout=0.0, depth=2, init_text=None)),
], ids=["coop", "maple"])
def test_logit_scale_learns_from_clips_value_at_the_cap(backbone, class_info, build):
    """module_maple.py clamps the data before the forward pass, so the gradient flows at the cap (a clamp in
    the graph gave 0 here) and one AdamW step moves the scale."""
    torch.manual_seed(0)
    method = build(backbone, class_info).train()
    with torch.no_grad():
        method.log_scale.fill_(OPENAI_LOG_SCALE)
    labels = torch.tensor([0, 3, 9, 3])
    out = method(images())
    cap = torch.tensor(math.log(100)).item()  # float32's log(100): where the forward pass left the data
    assert method.log_scale.item() == cap
    expected = scale_gradient_reference(method, out, labels)
    method.loss(out, labels).backward()
    grad = method.log_scale.grad.item()
    assert abs(grad) > 1e-3 and grad == pytest.approx(expected.item(), rel=1e-4)
    torch.optim.AdamW([method.log_scale], lr=1e-3, weight_decay=1e-4).step()
    step = 1e-3 * math.copysign(1, grad) + 1e-3 * 1e-4 * cap  # Adam's first step is lr·sign(g), AdamW's decay
    assert method.log_scale.item() == pytest.approx(cap - step, abs=1e-6)
    if grad > 0:
        assert method.scale().item() == pytest.approx(100 * math.exp(-step), rel=1e-6)  # below the cap


def test_kb_file_method_reads_sentences_and_hashes_the_file(backbone, class_info, tmp_path):
    offline = MDPRCoOpOfflineKB(backbone, class_info, MDPRCoOpConfig())
    path = tmp_path / "kb.json"
    write_kb(build_kb("smoke", class_info.classnames, offline.offline_partners(class_info.classnames),
                      OfflineTemplateBackend()), path)
    cfg = MDPRCoOpConfig(kb=str(path))
    from_file = MDPRCoOp(backbone, class_info, cfg)
    assert torch.allclose(from_file.knowledge().raw, offline.knowledge().raw)
    key = MDPRCoOp.key_inputs(cfg)["kb_sha256"]["kb.json"]
    path.write_text(path.read_text().replace("usual shape", "usual form"))
    assert MDPRCoOp.key_inputs(cfg)["kb_sha256"]["kb.json"] != key


def test_kb_file_errors(backbone, class_info, tmp_path):
    with pytest.raises(ConfigError, match="needs a knowledge-base file"):
        MDPRCoOp(backbone, class_info, MDPRCoOpConfig())
    with pytest.raises(BenchError, match="does not exist"):
        MDPRCoOp(backbone, class_info, MDPRCoOpConfig(kb=str(tmp_path / "none.json")))
    partial = tmp_path / "partial.json"
    write_kb(build_kb("x", ["apple"], {"apple": "apple"}, OfflineTemplateBackend()), partial)
    with pytest.raises(BenchError, match=r"9 class\(es\) missing from knowledge base .*bicycle"):
        MDPRCoOp(backbone, class_info, MDPRCoOpConfig(kb=str(partial)))
    with pytest.raises(ConfigError, match="builds the offline template KB itself"):
        MDPRCoOpOfflineKB(backbone, class_info, MDPRCoOpConfig(kb=str(partial)))
    with pytest.raises(ConfigError, match="dimensions"):
        MDPRCoOpConfig(dimensions=["GA", "XX"]).validate("method mdpr_coop")


def test_figure3_rows_are_on_the_card_and_the_full_row_is_table3():
    """methods_spec §12.2: Figure 3 as §4.5 quotes it, Places-LT Few 28.73 (MaPLe) -> 48.39 -> 50.99, IN-LT Many 79.42."""
    from bench.methods.maple import CARD as MAPLE
    from bench.methods.mdpr_maple import CARD

    rows = {(a.protocol, a.settings["lambda_pa"], a.settings["lambda_ka"]): a.metrics
            for a in CARD.ablations if a.table == "MDPR Figure 3"}
    assert rows == {("places_lt", 0.0, 0.0): {"few": 48.39}, ("places_lt", 0.05, 0.005): {"few": 50.99},
                    ("imagenet_lt", 0.05, 0.005): {"many": 79.42}}
    assert MAPLE.reported["places_lt"].metrics["few"] == 28.73
    for (protocol, *_), metrics in rows.items():
        if _ != [0.0, 0.0]:
            assert all(CARD.reported[protocol].metrics[k] == v for k, v in metrics.items())


def moments(tensor):
    """(std, kurtosis E[x⁴]/E[x²]²: 3 for a normal draw, 1.8 for torch's default uniform Linear init)."""
    x = tensor.detach().double().flatten()
    return x.std().item(), (x.pow(4).mean() / x.pow(2).mean() ** 2).item()


def test_mdpr_maple_starts_from_mdprs_prompt_learner_init(vit_b16):
    """module_maple.py MultiModalPromptLearner: couplings N(0, 0.02) with zero bias, each drawn on its own; deep
    text prompts N(0, 0.01); context N(0, 0.02).  Tolerances are several standard errors at these sizes."""
    torch.manual_seed(0)
    info = ClassInfo(["cat", "dog"], [5, 1])
    prompts = MDPRMaPLeOfflineKB(vit_b16, info, MDPRMaPLeConfig(init_text=None)).prompt_learner
    for coupling in [prompts.proj, *prompts.deep_proj]:
        std, kurtosis = moments(coupling.weight)  # 393,216 values: std within 1%
        assert std == pytest.approx(0.02, rel=0.01) and kurtosis == pytest.approx(3, abs=0.05)
        assert not coupling.bias.any()
    for prompt in prompts.deep_text:  # 1,024 values: std within 10%
        assert moments(prompt)[0] == pytest.approx(0.01, rel=0.1)
    assert moments(prompts.text.ctx)[0] == pytest.approx(0.02, rel=0.1)
    first, *others = [layer.weight for layer in prompts.deep_proj]
    assert all((first - other).abs().max() > 0.01 for other in others)


def test_maple_init_is_a_named_option_of_mdpr_maple_and_maples_own(vit_b16):
    """init: maple (and maple itself) keep MaPLe's draw: one default Linear cloned into every deep coupling
    (uniform, std 1/sqrt(3·512), non-zero bias), deep text prompts N(0, 0.02)."""
    from bench.methods.maple import MaPLe, MaPLeConfig

    info = ClassInfo(["cat", "dog"], [5, 1])
    for prompts in [MDPRMaPLeOfflineKB(vit_b16, info, MDPRMaPLeConfig(init="maple")).prompt_learner,
                    MaPLe(vit_b16, info, MaPLeConfig()).prompt_learner]:
        first, *others = prompts.deep_proj
        assert all(torch.equal(first.weight, o.weight) and torch.equal(first.bias, o.bias) for o in others)
        std, kurtosis = moments(first.weight)
        assert std == pytest.approx(1 / math.sqrt(3 * 512), rel=0.01) and kurtosis == pytest.approx(1.8, abs=0.05)
        assert first.bias.abs().max() > 0
        assert moments(prompts.deep_text[0])[0] == pytest.approx(0.02, rel=0.1)


def test_mdpr_results_have_their_own_code_version(smoke):
    """Results made before the scale and init fix are of another code version; other methods' stay current."""
    from bench import __version__
    from bench.core.registry import METHODS

    assert METHODS.code_version("mdpr_maple") == METHODS.code_version("mdpr_coop_offlinekb") == f"{__version__}+mdpr.1"
    assert METHODS.code_version("coop") == METHODS.code_version("maple") == __version__
    versions = smoke.view()["code_versions"]
    assert versions["mdpr_coop"] == f"{__version__}+mdpr.1" and "coop" not in versions
