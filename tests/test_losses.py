"""Logit adjustment against hand-computed values (methods_spec §2 and §14)."""
import math

import pytest
import torch

from bench.model.losses import la_loss, la_offsets, posthoc_adjust


def test_offsets_are_the_log_prior():
    assert la_offsets([500, 5], eps=0).tolist() == pytest.approx([math.log(500 / 505), math.log(5 / 505)])
    assert la_offsets([500, 5], add_one=True, eps=0).tolist() == pytest.approx([math.log(501 / 507), math.log(6 / 507)])
    assert la_offsets([500, 5], tau=2.0, eps=0).tolist() == pytest.approx([2 * math.log(500 / 505), 2 * math.log(5 / 505)])
    # google-research adds 1e-12 inside the log; Candle does not, so an empty class is -inf
    assert la_offsets([10, 0])[1].item() == pytest.approx(math.log(1e-12))
    assert la_offsets([10, 0], eps=0)[1].item() == -math.inf


def test_mdpr_cla_offsets_on_cifar100_lt_ir100():
    """Spec §2: with add-one on IR100 (N = 10,847, C = 100) the offsets run from log(501/10947) to log(6/10947)."""
    from bench.data.base import exponential_counts

    off = la_offsets(exponential_counts(100, 500, 100), add_one=True, eps=0)
    assert off[0].item() == pytest.approx(math.log(501 / 10947), abs=1e-6)  # -3.08
    assert off[-1].item() == pytest.approx(math.log(6 / 10947), abs=1e-6)  # -7.51


def test_la_loss_by_hand():
    logits, labels = torch.tensor([[2.0, 1.0]]), torch.tensor([1])
    off = la_offsets([3, 1], eps=0)  # log(3/4), log(1/4)
    z = [2.0 + math.log(0.75), 1.0 + math.log(0.25)]
    expected = -(z[1] - math.log(math.exp(z[0]) + math.exp(z[1])))
    assert la_loss(logits, labels, off).item() == pytest.approx(expected, rel=1e-6)
    # an empty class takes no probability mass under Candle's form
    assert la_loss(torch.tensor([[0.0, 9.0]]), torch.tensor([0]), la_offsets([5, 0], eps=0)).item() == pytest.approx(0.0)


def test_posthoc_adjustment_moves_predictions_to_the_tail_as_the_formula_says():
    off = la_offsets([900, 100], eps=0)  # log 0.9, log 0.1: the tail gains log 9 = 2.197
    logits = torch.tensor([[3.0, 1.0], [3.0, 0.9], [3.0, 0.7]])
    adjusted = posthoc_adjust(logits, off)
    assert adjusted.argmax(1).tolist() == [1, 1, 0]  # margins 2.0 and 2.1 flip, 2.3 > log 9 does not
    assert (adjusted - logits).flatten().tolist() == pytest.approx([-math.log(0.9), -math.log(0.1)] * 3)


def test_bad_counts_are_refused():
    with pytest.raises(ValueError):
        la_offsets([0, 0])
    with pytest.raises(ValueError):
        la_offsets([3, -1])
