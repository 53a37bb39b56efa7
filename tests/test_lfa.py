"""LFA (bench/methods/lfa.py) against hand-written references (spec_lamp_baselines.md §9.4 L1-L7), and the engine's
support for methods that fit themselves on frozen five-crop features (bench/engine/fitting.py).

The official functions (``saic-fi/LFA:feature_alignment.py`` ``procrustes_align``, ``log_rampup``,
``cross_validation_beta_procrustes``, ``mapping_refinement`` and ``alignment_utils.py``
``adaptive_reranking_loss`` at 2ee3bba3e45bbe03c7b7c6c0b770e1b2ec7e781f) were run once on the inputs of
:func:`golden_outputs`; ``tests/snapshots/lfa_golden.json`` holds our outputs there, and its note what matched.
"""
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import bench.methods.lfa as lfa
from bench.config.protocol import EvalPlan, load_protocol
from bench.config.transforms import TransformConfig
from bench.core.errors import BenchError, ConfigError
from bench.core.registry import METHODS
from bench.data import DatasetBundle
from bench.engine.evaluation import label_spaces
from bench.engine.runner import RunOptions, Runner
from bench.model.method import ClassInfo, Method, method_problems
from bench.model.transforms import build_transforms, view_transform
from bench.methods.lfa import LFA, LFAConfig, LFASingleMap
from test_evaluation import Items

SNAPSHOT = Path(__file__).parent / "snapshots" / "lfa_golden.json"


def unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def build(backbone, info, cls=LFA, **options):
    return cls(backbone, info, dataclasses.replace(cls.Config(), **options))


def crops_for(info, backbone, per_class=6, seed=0):
    """Five 'crops' per image near their class's text feature: ``(features [N, 5, D], labels [N])``."""
    protos = lfa.class_prototypes(backbone, info)
    labels = torch.arange(len(info.classnames)).repeat_interleave(per_class)
    noise = torch.randn(len(labels), 5, protos.shape[1], generator=torch.Generator().manual_seed(seed))
    return protos[labels][:, None] + 0.6 * noise, labels


# -- L1 Procrustes -----------------------------------------------------------------------------------------

def test_procrustes_recovers_a_rotation_and_beta_interpolates_to_the_identity():
    x = torch.randn(200, 16, generator=torch.Generator().manual_seed(1))
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(2)))
    assert torch.allclose(lfa.procrustes(x, x @ q), q, atol=1e-5)
    assert torch.allclose(lfa.beta_procrustes(x, x @ q, 1.0), torch.eye(16), atol=1e-6)
    assert torch.allclose(lfa.beta_procrustes(x, x @ q, 0.9), 0.1 * q + 0.9 * torch.eye(16), atol=1e-5)
    u, _, v = torch.svd(x.T @ torch.randn(200, 16))  # another route to U V^T: torch.svd returns V, not V^T
    w = lfa.procrustes(x, x @ (u @ v.T))
    assert torch.allclose(w @ w.T, torch.eye(16), atol=1e-5)  # orthogonal


# -- L2 adaptive re-ranking loss ------------------------------------------------------------------------------

def arerank_by_hand(v, t, labels, knn, scale):
    v, t = F.normalize(v, dim=-1), F.normalize(t, dim=-1)
    k = min(knn, len(t))
    total = 0.0
    for i in range(len(v)):
        dist = [math.dist(v[i].tolist(), t[c].tolist()) for c in range(len(t))]
        y = int(labels[i])
        for n in sorted(range(len(t)), key=lambda c: dist[c])[:k]:
            margin = (1.0 - float(t[y] @ t[n])) / scale
            total += max(0.0, dist[y] + margin - dist[n])
    return total / (len(v) * k)


@pytest.mark.parametrize("n, classes, knn", [(7, 5, 3), (30, 12, 3), (9, 2, 3), (40, 8, 5)])
def test_reranking_loss_matches_a_double_loop(n, classes, knn):
    v, t = torch.randn(n, 16), torch.randn(classes, 16)
    labels = torch.randint(classes, (n,))
    assert lfa.arerank_loss(v, t, labels, knn, 4.0).item() == pytest.approx(arerank_by_hand(v, t, labels, knn, 4.0),
                                                                             abs=1e-6)


def test_reranking_loss_by_hand_in_two_dimensions():
    """v at 60 degrees from its class t0 = (1, 0), t1 = (0, 1): d0 = 1, d1 = 2 sin 15 deg, margin 1/4; the
    own-class term is 0 and the mean divides by N k = 2 (k = min(3, C))."""
    v = torch.tensor([[math.cos(math.pi / 3), math.sin(math.pi / 3)]])
    loss = lfa.arerank_loss(v, torch.eye(2), torch.tensor([0]), knn=3, scale=4.0)
    assert loss.item() == pytest.approx((1.0 + 0.25 - 2 * math.sin(math.pi / 12)) / 2, abs=1e-6)


def test_reranking_loss_is_zero_at_the_class_features_and_keeps_finite_gradients():
    t = torch.eye(6, 16)  # distances sqrt(2) > every margin (at most 1/4)
    labels = torch.tensor([0, 3, 5, 1])
    v = t[labels].clone().requires_grad_(True)
    loss = lfa.arerank_loss(v, t, labels)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(v.grad).all()


# -- L3 EMA ------------------------------------------------------------------------------------------------

def test_ema_momentum_ramps_from_0_9_over_half_the_iterations():
    assert lfa.ema_momentum(0, 10) == pytest.approx(0.9)
    for step in (5, 6, 9):
        assert lfa.ema_momentum(step, 10) == pytest.approx(0.999326, abs=1e-6)
    assert lfa.ema_momentum(2, 10) == pytest.approx(0.9 + 0.1 * (1 - math.exp(-2)))
    assert lfa.ema_momentum(0, 1) == 1.0


def test_ema_starts_at_the_identity_and_averages_the_iterates(backbone, class_info):
    feats, labels = crops_for(class_info, backbone)
    one = build(backbone, class_info, n_iters=1)
    one.fit(feats, labels, seed=0)
    assert torch.equal(one.ema, torch.eye(one.ema.shape[0])) and not torch.equal(one.W, torch.eye(one.W.shape[0]))
    frozen = build(backbone, class_info, n_iters=6, lr=0.0, min_lr=0.0)  # lr 0: W stays W0 at every step
    frozen.fit(feats, labels, seed=0)
    w0 = frozen.W.detach()
    kept = math.prod(lfa.ema_momentum(step, 6) for step in range(6))  # the identity's weight after 6 steps
    assert torch.allclose(frozen.ema, kept * torch.eye(len(w0)) + (1 - kept) * w0, atol=1e-6)


# -- L4 two mappings ------------------------------------------------------------------------------------------

def logits_by_hand(features, matrix, prototypes):
    mapped = F.normalize(F.normalize(features, dim=-1) @ matrix, dim=-1)
    return mapped @ prototypes.T / 0.07


def test_training_classes_use_the_refined_map_and_others_the_ema(backbone, class_info):
    feats, labels = crops_for(class_info, backbone)
    new = ClassInfo(["kiwi", "lemon", "mango"], [0, 0, 0])
    target = dataclasses.replace(class_info, dataset="ImageNetV2")  # the same classes, another dataset
    test = torch.randn(4, feats.shape[-1])
    for cls, ema_elsewhere in ((LFA, True), (LFASingleMap, False)):
        method = build(backbone, class_info, cls=cls, n_iters=8)
        method.fit(feats, labels, seed=3)
        method.features_given = True
        method.eval()
        assert not torch.allclose(method.W, method.ema)
        for info in (class_info, new, target):
            method.use_label_space(info)
            matrix = method.ema if ema_elsewhere and info is not class_info else method.W
            expected = logits_by_hand(test, matrix.detach(), lfa.class_prototypes(backbone, info))
            with torch.no_grad():
                assert torch.allclose(method(test), expected, atol=1e-4), (cls.__name__, info.classnames)


def test_another_dataset_over_the_training_classes_is_a_label_space_of_its_own():
    source = DatasetBundle(Items([0, 1, 2]), Items([0, 1, 2]), ["crane", "fox", "owl"], [1, 1, 1],
                           class_ids=["n1", "n2", "n3"], dataset="ImageNet")
    shifted = DatasetBundle(Items([]), Items([0, 1, 2]), ["crane", "fox", "owl"], [0, 0, 0],
                            class_ids=["n1", "n2", "n3"], dataset="ImageNetV2")
    spaces = label_spaces(source, [(EvalPlan("imagenet"), source), (EvalPlan("v2", group="dg"), shifted)])
    own, v2 = spaces.evaluations
    assert own.info is spaces.train_info
    assert v2.info is not spaces.train_info and v2.info.dataset == "ImageNetV2"
    assert v2.info.training_index == [0, 1, 2] and v2.info.train_counts == [1, 1, 1]


# -- text prototypes -------------------------------------------------------------------------------------------

def encoded(backbone, texts):
    with torch.no_grad():
        return F.normalize(backbone.encode_text(backbone.tokenize(texts)), dim=-1)


def test_prototypes_follow_the_dataset_template_table(backbone):
    names = ["red_fox", "owl"]
    imagenet = ClassInfo(names, [1, 1], dataset="ImageNet")
    per_template = [encoded(backbone, [t.format(n.replace("_", " ")) for n in names]) for t in lfa.IMAGENET_TEMPLATES]
    assert len(lfa.IMAGENET_TEMPLATES) == 8
    assert torch.allclose(lfa.class_prototypes(backbone, imagenet), F.normalize(sum(per_template) / 8, dim=-1),
                          atol=1e-6)
    dtd = ClassInfo(names, [1, 1], dataset="DescribableTextures")
    assert torch.allclose(lfa.class_prototypes(backbone, dtd), encoded(backbone, ["red fox texture.", "owl texture."]),
                          atol=1e-6)
    other = ClassInfo(names, [1, 1], template="art of {}.", dataset=None)
    assert torch.allclose(lfa.class_prototypes(backbone, other), encoded(backbone, ["art of red fox.", "art of owl."]),
                          atol=1e-6)
    assert lfa.TEMPLATES["UCF101"] == "a photo of a person doing {}."
    assert lfa.TEMPLATES["ImageNetA"] is lfa.IMAGENET_TEMPLATES


# -- L5 five-crop view and the engine's fit --------------------------------------------------------------------

def test_five_crop_view_is_torchvisions_order_and_its_centre_the_test_image():
    cfg = TransformConfig()
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 52, 3), dtype=np.uint8))
    crops = view_transform("five_crop", cfg, 32)(image)
    _, test_tf = build_transforms(cfg, 32)
    resized = image.resize((41, 32), Image.BICUBIC)  # 52 x 40 to shorter side 32 (52 * 32 / 40 rounded down)
    boxes = [(0, 0, 32, 32), (9, 0, 41, 32), (0, 0, 32, 32), (9, 0, 41, 32)]  # tl, tr, bl, br (height 32)
    assert crops.shape == (5, 3, 32, 32) and torch.equal(crops[4], test_tf(image))
    for crop, box in zip(crops[:4], boxes):
        expected = resized.crop(box)
        for step in test_tf.transforms[-2:]:  # ToTensor, Normalize
            expected = step(expected)
        assert torch.equal(crop, expected)
    assert not torch.equal(crops[0], crops[1])
    with pytest.raises(ValueError, match="unknown view 'ten_crop'"):
        view_transform("ten_crop", cfg, 32)


@pytest.fixture(scope="module")
def b2n_run(tmp_path_factory):
    """One smoke_b2n cell of lfa through the runner, with what fit() received."""
    from bench.engine import fitting, runner as runner_module

    seen = {}

    def spying_fit_own(runner, method, dataset, recipe, seed):
        """fit_own with the instance's fit spied on (the class stays as registered: a changed built-in
        class is refused)."""
        own = method.fit

        def spy(features, labels, seed):
            seen.update(features=features.clone(), labels=labels.clone(), seed=seed)
            own(features, labels, seed)
            seen.update(W=method.W.detach().clone(), ema=method.ema.clone())

        method.fit = spy
        try:
            fitting.fit_own(runner, method, dataset, recipe, seed)
        finally:
            del method.fit

    runner = Runner(load_protocol("smoke_b2n"), RunOptions(results_dir=tmp_path_factory.mktemp("results"),
                                                           device="cpu", overrides={"lfa": {"n_iters": 4}}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner_module, "fit_own", spying_fit_own)
        record, = runner.run(["lfa"], seeds=[2])
    return runner, record, seen


def test_the_runner_fits_on_five_crops_whose_centre_is_the_test_view(b2n_run):
    runner, record, seen = b2n_run
    spaces = runner.spaces(2)
    recipe = runner.protocol.resolve("lfa").train
    _, test_tf = build_transforms(runner.protocol.transforms, runner.backbone().image_size)
    centre = runner.cached(recipe, spaces.train, test_tf, 1, "train", 2).features[:, 0]
    assert seen["features"].shape == (len(spaces.train), 5, centre.shape[-1]) and seen["seed"] == 2
    assert torch.allclose(seen["features"][:, 4], centre, atol=1e-5)  # (the 32-pixel smoke images are one crop)
    assert seen["labels"].tolist() == list(spaces.train.labels)


def test_the_record_holds_the_fit_and_no_training(b2n_run):
    runner, record, seen = b2n_run
    state = record["method_state"]
    assert state["lfa_beta"] == 0.9 and state["lfa_cv_scores"] is None and len(state["lfa_loss_history"]) == 4
    assert state["lfa_fit_views"] == "five_crop" and record["train"]["epochs"] == 0
    assert record["config"]["method"]["n_iters"] == 4 and record["config"]["train"]["eval_precision"] == "fp32"
    dim = runner.backbone().embed_dim
    assert record["usage"]["trainable_parameters"] == dim * dim
    assert not torch.equal(seen["W"], torch.eye(dim)) and set(record["metrics"]) >= {"base", "new", "hm"}


# -- L6 cross-validation of beta ---------------------------------------------------------------------------------

def test_cross_validation_tries_25_betas_and_the_first_best_wins(monkeypatch):
    per_beta = [50, 60, 70, 80, 70, 80] + [10] * 19  # beta index 3 and 5 tie for the best
    calls = iter(np.repeat(per_beta, 3).tolist())
    monkeypatch.setattr(lfa, "top1", lambda *args: next(calls))
    x, labels = unit(20, 8), torch.arange(20) % 4
    beta, scores = lfa.cross_validate_beta(x, labels, unit(4, 8, seed=1), torch.Generator().manual_seed(0))
    assert scores == [float(s) for s in per_beta] and beta == pytest.approx(3 / 24)


def test_cross_validation_with_the_identity_optimal_ties_at_the_first_beta():
    protos = unit(5, 16, seed=4)
    labels = torch.arange(40) % 5
    beta, scores = lfa.cross_validate_beta(protos[labels], labels, protos, torch.Generator().manual_seed(1))
    assert len(scores) == 25 and scores[0] == max(scores) == 100.0 and beta == 0.0
    with pytest.raises(BenchError, match="at least 2 training images"):
        lfa.cross_validate_beta(protos[:1], labels[:1], protos, torch.Generator())


def test_cv_refits_on_the_centre_crops_only(backbone, class_info):
    feats, labels = crops_for(class_info, backbone)
    feats[:, :4] = torch.randn(feats[:, :4].shape)  # other crops: noise, which a fit on them would follow
    method = build(backbone, class_info, beta="cv", n_iters=0)
    method.fit(feats, labels, seed=0)
    beta = method.record_fields()["lfa_beta"]
    scores = method.record_fields()["lfa_cv_scores"]
    assert scores[round(beta * 24)] == max(scores) and scores.index(max(scores)) == round(beta * 24)
    x, y = F.normalize(feats[:, 4], dim=-1), lfa.class_prototypes(backbone, class_info)[labels]
    u, _, v = torch.svd(x.T @ y)
    expected = (1 - beta) * (u @ v.T) + beta * torch.eye(len(u))
    assert torch.allclose(method.W, expected, atol=1e-5) and torch.equal(method.ema, torch.eye(len(u)))


# -- L7 determinism and counts -------------------------------------------------------------------------------------

def test_the_same_seed_gives_the_same_maps_and_another_seed_others(backbone, class_info):
    feats, labels = crops_for(class_info, backbone)
    fitted = []
    for seed in (5, 5, 6):
        method = build(backbone, class_info, beta="cv", n_iters=12)
        method.fit(feats, labels, seed=seed)
        fitted.append((method.W.detach().clone(), method.ema.clone()))
    assert torch.equal(fitted[0][0], fitted[1][0]) and torch.equal(fitted[0][1], fitted[1][1])
    assert not torch.equal(fitted[0][0], fitted[2][0])


@pytest.mark.parametrize("classes", [10, 100])
def test_one_512_square_matrix_is_trained_at_vit_b16(vit_b16, classes):
    method = LFA(vit_b16, ClassInfo([f"class {i}" for i in range(classes)], [1] * classes), LFAConfig())
    assert [name for name, p in method.named_parameters() if p.requires_grad] == ["W"]
    assert sum(p.numel() for p in method.trainable_parameters()) == 262_144


# -- options, recipes, registration -------------------------------------------------------------------------------

@pytest.mark.parametrize("options, field", [({"beta": 1.5}, "beta"), ({"beta": "CV"}, "beta"),
                                            ({"lr": 1e-3, "min_lr": 1e-2}, "min_lr"), ({"dropout": 1.0}, "dropout"),
                                            ({"knn": 0}, "knn")])
def test_bad_options_name_the_field(options, field):
    from bench.core.coerce import from_dict

    with pytest.raises(ConfigError, match=f"lfa.{field}"):
        from_dict(LFAConfig, options, "lfa")


def test_recipes_set_beta_and_iterations_per_family_and_dataset():
    from bench.config.recipes import resolve

    def options(family, dataset=None):
        resolved = resolve(LFA, family, {}, None, None, "lfa", dataset=dataset)
        return resolved.options.beta, resolved.options.n_iters, resolved.train.eval_precision

    assert options("b2n_lt100", "OxfordPets") == (0.9, 10, "fp32")
    assert options("b2n_lt16", "Caltech101") == (0.9, 40, "fp32")
    assert options("b2n_lt100", None) == (0.9, 200, "fp32")  # a dataset the README does not list
    assert options("b2n_fs", "StanfordCars") == ("cv", 2000, "fp32")
    assert options("xd_lt100", "ImageNet") == ("cv", 200, "fp32") == options("xd_lt16", "ImageNet")
    assert options("lt", "ImageNet") == ("cv", 200, "fp32")
    assert set(lfa.B2N_ITERS) == set(lfa.FEW_SHOT_ITERS) and len(lfa.B2N_ITERS) == 11
    with pytest.raises(ConfigError, match="not trained"):
        resolve(LFA, "lt", {}, {"train": {"epochs": 3}}, None, "lfa")


def test_registered_with_the_paper_numbers_and_a_variant():
    from bench.core.registry import REPORTED

    assert METHODS.get("lfa") is LFA and METHODS.get("lfa@single_map") is LFASingleMap
    assert "lfa" not in REPORTED.names() and LFASingleMap.Config().ema_for_new is False
    assert LFA.card.reported["b2n_lamp/caltech101/imb10"].metrics == {"hm": 95.69, "hm_macro_f1": 90.72}
    assert {p.split("/")[-1] for p in LFA.card.reported} == {"imb10", "imb20", "imb50"}  # Table 1 only (B19)
    assert not LFASingleMap.card.reported and method_problems(LFA) == method_problems(LFASingleMap) == []

    class Wrong(Method):
        card = LFA.card
        fit_views = "five_crop"  # trains stays True

    assert any("fit_views" in p for p in method_problems(Wrong))


# -- golden values (the official functions matched them once; this checks only our code) -------------------------

def golden_outputs() -> dict:
    torch.manual_seed(0)
    # more classes than dimensions: X^T Y has full rank, so Procrustes has one solution whatever the SVD
    # routine (with fewer, the free directions follow the LAPACK build, which differs between torch releases)
    dim, classes, n = 16, 24, 300
    x = F.normalize(torch.randn(n, dim), dim=-1)
    t = F.normalize(torch.randn(classes, dim), dim=-1)
    y = torch.randint(classes, (n,))
    v, protos, labels = torch.randn(n, dim), torch.randn(classes, dim), torch.randint(classes, (n,))
    crops = F.normalize(torch.randn(n, 5, dim) + 2 * t[y][:, None], dim=-1)
    w = lfa.beta_procrustes(x, t[y], 0.9)
    beta, scores = lfa.cross_validate_beta(crops[:, 4], y, t, torch.Generator().manual_seed(5))
    w0 = lfa.beta_procrustes(crops.flatten(0, 1), t[y.repeat_interleave(5)], 0.9)
    refined, ema, losses = lfa.refine(w0, crops, y, t, LFAConfig(n_iters=30), torch.Generator().manual_seed(7),
                                      np.random.default_rng(7))
    return {"procrustes_0.9": w[:4, :4].tolist(), "arerank": lfa.arerank_loss(v, protos, labels).item(),
            "cv_beta": beta, "cv_scores": scores, "refined": refined[:4, :4].tolist(), "ema": ema[:4, :4].tolist(),
            "losses": losses[::10]}


def test_our_outputs_on_the_official_check_inputs_stay_as_they_were():
    golden = json.loads(SNAPSHOT.read_text())["values"]
    ours = golden_outputs()
    assert ours.keys() == golden.keys()
    for key, value in golden.items():
        assert np.allclose(np.asarray(ours[key]), np.asarray(value), atol=1e-5), key
