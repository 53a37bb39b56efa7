import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from bench.config.recipes import resolve
from bench.core.errors import BenchError, ConfigError
from bench.model.method import ClassInfo
from bench.methods.candle import Candle, CandleConfig

LABELS = torch.tensor([0, 0, 0, 1, 2, 2])  # base counts [3, 1, 2]


def images(n=4, seed=0):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def info(class_info):
    names = class_info.classnames
    return ClassInfo(names[:3], [3, 1, 2], class_info.template, new_classnames=names[3:5])


def prepared(backbone, info, **options):
    torch.manual_seed(0)
    method = Candle(backbone, info, CandleConfig(**options))
    method.prepare(TensorDataset(images(len(LABELS), seed=1), LABELS))
    return method


@pytest.mark.parametrize("new", [0, 3])
def test_trainable_parameters_at_vit_b16(vit_b16, new):
    info = ClassInfo(["cat", "dog"], [5, 1], new_classnames=["cow", "hen", "owl"][:new])
    method = Candle(vit_b16, info, CandleConfig())
    assert sum(p.numel() for p in method.trainable_parameters()) == 1_575_937 + 512 * new
    assert set(method.trainable_state()) == {"proj_image", "proj_text", "virtual_prototypes", "fusion.ratio",
                                             "fusion.norm.weight", "fusion.norm.bias", "fusion.attn.in_proj_weight",
                                             "fusion.attn.in_proj_bias", "fusion.attn.out_proj.weight",
                                             "fusion.attn.out_proj.bias"}


def test_heads_must_divide_the_embedding_width(backbone, info):
    with pytest.raises(ConfigError, match="heads.*divide the embedding width 32"):
        Candle(backbone, info, CandleConfig(heads=5))


def test_pre_fusion_logits_are_zero_shot_logits(backbone, info):
    """Identity projections: before fusion, Candle is zero-shot CLIP with the dataset template."""
    info.template = "a blurry photo of a {}."
    method = prepared(backbone, info).train()
    x = images()
    z0 = method(x)[0]
    names = info.classnames + info.new_classnames
    text = backbone.encode_text(backbone.tokenize([f"a blurry photo of a {c}." for c in names]))
    s = backbone.logit_scale
    assert z0.shape == (4 + 5, 5)
    assert torch.allclose(z0[:4], s * backbone.encode_image(x) @ text.T, atol=1e-4)
    prototypes = torch.cat([method.base_prototypes, method.virtual_prototypes])
    assert torch.allclose(z0[4:], s * F.normalize(prototypes, dim=-1) @ text.T, atol=1e-4)
    # virtual_init "text": the new classes' prototypes start at their raw text features
    raw = backbone.encode_text(backbone.tokenize([f"a blurry photo of a {c}." for c in names[3:]]), normalize=False)
    assert torch.allclose(method.virtual_prototypes, raw, atol=1e-5)


def test_cla_loss_against_a_hand_computed_value(backbone):
    info = ClassInfo(["cat", "dog"], [3, 1], new_classnames=["cow"])
    method = Candle(backbone, info, CandleConfig())
    offsets = [math.log(4 / 7), math.log(2 / 7), math.log(1 / 7)]  # prior (3+1, 1+1, 0+1) / 7
    assert torch.allclose(method.offsets, torch.tensor(offsets))
    logits = torch.randn(3, 2 + 3, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([1, 0])
    targets = [1, 0, 0, 1, 2]  # the batch, then one prototype per class
    expected = 0.0
    for z in logits.tolist():
        for row, y in zip(z, targets):
            adjusted = [v + o for v, o in zip(row, offsets)]
            expected += (math.log(sum(math.exp(a) for a in adjusted)) - adjusted[y]) / len(targets)
    assert method.loss(logits, labels).item() == pytest.approx(expected, rel=1e-5)
    assert method.record_fields()["la_prior_counts"] == [3, 1, 0]
    assert method.record_fields()["la_offsets"] == pytest.approx(offsets, rel=1e-6)
    with pytest.raises(BenchError, match="training-mode output"):
        method.loss(logits[0], labels)


def test_prototypes_are_class_means_of_raw_features(backbone, info):
    method = prepared(backbone, info, virtual_init="visual")
    x = images(len(LABELS), seed=1)
    feats = backbone.encode_image(x, normalize=False)
    means = torch.stack([feats[LABELS == c].mean(0) for c in range(3)])
    assert torch.allclose(method.base_prototypes, means, atol=1e-5)
    # virtual_init "visual": the mean prototype plus the noise drawn at construction
    assert torch.allclose(method.virtual_prototypes, means.mean(0) + method.virtual_noise, atol=1e-5)
    again = prepared(backbone, info, virtual_init="visual")  # resume re-runs prepare: same values
    assert torch.equal(again.base_prototypes, method.base_prototypes)
    assert torch.equal(again.virtual_prototypes, method.virtual_prototypes)


def test_prepare_needs_images_of_every_base_class(backbone, info):
    method = Candle(backbone, info, CandleConfig())
    with pytest.raises(BenchError, match="must run before forward"):
        method(images())
    with pytest.raises(BenchError, match="no training images for 1 class"):
        method.prepare(TensorDataset(images(3), torch.tensor([0, 0, 1])))


def test_label_spaces_select_columns(backbone, info):
    method = prepared(backbone, info).eval()
    x = images()
    names = info.classnames + info.new_classnames
    method.set_label_space(ClassInfo(names, [3, 1, 2, 0, 0]))
    with torch.no_grad():
        everything = method(x)
        assert everything.shape == (4, 5)
        method.set_label_space(ClassInfo(info.new_classnames, [0, 0]))
        assert torch.allclose(method(x), everything[:, 3:])
        method.set_label_space(ClassInfo(list(info.classnames), [3, 1, 2]))
        assert torch.allclose(method(x), everything[:, :3])
    with pytest.raises(BenchError, match="only the classes named at training time"):
        method.set_label_space(ClassInfo(names[:2], [3, 1]))


@pytest.mark.parametrize("mask, independent", [("images", True), ("none", False)])
def test_test_mask_makes_predictions_independent_of_the_batch(backbone, info, mask, independent):
    method = prepared(backbone, info, test_mask=mask).eval()
    x = images(8)
    with torch.no_grad():
        alone, batched = method(x[:1])[0], method(x)[0]
    assert torch.allclose(alone, batched, atol=1e-5) == independent


def test_sgd_steps_reduce_the_loss(backbone, info):
    method = prepared(backbone, info, dropout=0.0).train()
    x, y = images(), torch.tensor([0, 1, 2, 0])
    optimizer = torch.optim.SGD(method.trainable_parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(6):
        loss = method.loss(method(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert method.proj_text.grad is not None and method.virtual_prototypes.grad.abs().sum() > 0


def test_card_recipe_is_the_official_config():
    train = resolve(Candle, "b2n_lt100", {}, None, None).train
    assert (train.optimizer, train.lr, train.batch_size, train.epochs) == ("sgd", 3e-4, 128, 50)
    assert (train.momentum, train.weight_decay, train.scheduler) == (0.9, 5e-4, "cosine")
    assert (train.warmup_epochs, train.warmup_lr) == (1, 1e-5)


def test_faithful_fusion_fixes_the_test_batch_size(backbone, class_info):
    """With test images attending to each other, the official test batch (100) is part of the method."""
    assert Candle(backbone, class_info, CandleConfig()).eval_batch_size == 100
    assert Candle(backbone, class_info, CandleConfig(test_batch_size=7)).eval_batch_size == 7
    assert Candle(backbone, class_info, CandleConfig(test_mask="images")).eval_batch_size is None


def aliased_like_the_official_head(method):
    """The official Head's arrangement, built independently: the virtual prototypes are a Parameter over the
    new classes' rows of the text buffer (one storage), and the text enters the forward pass as plain data."""
    method.virtual_prototypes = torch.nn.Parameter(method.text_features[method.n_base:])
    assert method.virtual_prototypes.data_ptr() == method.text_features[method.n_base:].data_ptr()
    return method


@pytest.mark.parametrize("virtual_text, moves", [("shared", True), ("fixed", False)])
def test_new_class_text_follows_the_virtual_prototypes_as_in_the_official_code(backbone, info, virtual_text, moves):
    """shijxcs/Candle trainers/candle.py Head: the text rows of the new classes are the trained prototypes."""
    ours = prepared(backbone, info, dropout=0.0, virtual_text=virtual_text).train()
    official = aliased_like_the_official_head(prepared(backbone, info, dropout=0.0, virtual_text="fixed")).train()
    template_text = ours.text_features[ours.n_base:].clone()
    x, y = images(), torch.tensor([0, 1, 2, 0])
    runs = []
    for method in (ours, official):
        optimizer = torch.optim.SGD(method.trainable_parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        for _ in range(4):
            optimizer.zero_grad()
            method.loss(method(x), y).backward()
            optimizer.step()
        method.eval()
        method.columns = slice(None)
        with torch.no_grad():
            runs.append(method(images(4, seed=2)))
    assert torch.allclose(runs[0], runs[1], atol=1e-5) == moves
    assert torch.equal(ours.class_text()[ours.n_base:], ours.virtual_prototypes.detach()) == moves
    assert not torch.equal(ours.virtual_prototypes.detach(), template_text)
    assert torch.equal(ours.text_features[ours.n_base:], template_text)  # the buffer itself never moves
