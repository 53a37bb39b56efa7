"""bench.reporting.stats against hand-worked values and scipy run on the same arrays."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as sps

from bench.reporting.stats import (MIN_BOOTSTRAP_SEEDS, against, bootstrap_ci, friedman, holm, mean_interval, paired, t_interval, wilcoxon_can_reach, wilcoxon_pairs_needed)


def test_holm_worked_example():
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> held at 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.2, None, 0.01]) == [pytest.approx(0.2), None, pytest.approx(0.02)]  # a family of two
    assert holm([0.6, 0.7]) == [1.0, 1.0] and holm([]) == []


@given(st.lists(st.floats(0, 1), min_size=1, max_size=12))
def test_holm_matches_its_definition(pvalues):
    """For each p: the largest, over the p-values no larger (ties by position), of min(1, (m - rank) p)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: (pvalues[i], i))
    expected = [0.0] * m
    for pos, i in enumerate(order):
        expected[i] = max(min(1.0, (m - r) * pvalues[order[r]]) for r in range(pos + 1))
    assert holm(pvalues) == pytest.approx(expected)
    assert all(a >= p for a, p in zip(holm(pvalues), pvalues))


def test_paired_t_by_hand():
    a, b = {1: 70.1, 2: 70.5, 3: 69.9, 9: 50.0}, {1: 69.0, 2: 69.8, 3: 69.1}  # seed 9 has no partner
    d = [1.1, 0.7, 0.8]
    mean, sd = sum(d) / 3, math.sqrt(sum((x - sum(d) / 3) ** 2 for x in d) / 2)
    t = mean / (sd / math.sqrt(3))
    result = paired(a, b)
    assert result.test == "paired t" and result.n == 3
    assert result.statistic == pytest.approx(t)
    assert result.p == pytest.approx(2 * sps.t.sf(t, 2))


def test_wilcoxon_once_it_can_reach_alpha():
    assert [n for n in range(1, 9) if wilcoxon_can_reach(n)] == [6, 7, 8]  # 2 / 2**6 = 0.031
    a = {s: 70.0 + s for s in range(6)}
    b = {s: 69.0 + s - 0.1 * s for s in range(6)}  # a is ahead on all 6 seeds
    result = paired(a, b)
    assert result.test == "Wilcoxon signed-rank" and result.p == pytest.approx(2 / 64)
    five = paired({s: a[s] for s in range(5)}, b)
    assert five.test == "paired t" and five.n == 5
    forced = paired({s: a[s] for s in range(5)}, b, test="wilcoxon")
    assert forced.p is None and "cannot reach" in forced.note


def test_wilcoxon_waits_until_holm_over_the_family_can_reach_alpha():
    # Holm multiplies the smallest of m p-values by m: 2 / 2**n <= alpha / m
    assert [wilcoxon_pairs_needed(0.05, m) for m in (1, 2, 3, 5, 6, 7)] == [6, 7, 7, 8, 8, 9]
    assert (wilcoxon_pairs_needed(0.1), wilcoxon_pairs_needed(0.01)) == (5, 8)
    a = {s: 70.0 + s for s in range(7)}
    b = {s: 60.0 + s + 0.1 * s for s in range(7)}
    six = {s: a[s] for s in range(6)}
    assert paired(six, b, family=2).test == "paired t"  # a Wilcoxon p of 2/64 would be 4/64 after Holm
    assert paired(a, b, family=2).test == "Wilcoxon signed-rank"
    assert "after Holm over 2 tests below 7 pairs" in paired(six, b, test="wilcoxon", family=2).note


def test_wilcoxon_counts_only_pairs_with_a_difference():
    a = {s: 70.0 + s for s in range(8)}
    b = {s: a[s] - (1.0 if s < 5 else 0.0) for s in range(8)}  # 3 of 8 pairs equal
    result = paired(a, b, test="wilcoxon")
    assert result.n == 5 and result.note == "3 of 8 pairs without a difference, left out"
    assert result.p == pytest.approx(sps.wilcoxon([1.0] * 5, [0.0] * 5).pvalue)


def test_mean_interval_bootstraps_only_with_enough_seeds():
    few = [[70.0, 71.0, 73.0], [60.0, 62.0, 61.0]]
    seed_means = [65.0, 66.5, 67.0]
    assert mean_interval(few, seed_means) == (*t_interval(seed_means), "t, 3 seeds (a bootstrap needs 10)")
    rng = np.random.default_rng(1)
    many = [list(rng.normal(70, 1, MIN_BOOTSTRAP_SEEDS)), list(rng.normal(60, 1, MIN_BOOTSTRAP_SEEDS))]
    low, high, how = mean_interval(many, [(x + y) / 2 for x, y in zip(*many)])
    assert how == "bootstrap" and (low, high) == bootstrap_ci(many)


def test_too_few_seeds_is_said_not_tested():
    result = paired({1: 70.0, 2: 71.0}, {1: 69.0, 2: 69.5})
    assert result.p is None and result.statistic is None and "too few" in result.note
    same = paired({1: 1.0, 2: 2.0, 3: 3.0}, {1: 1.0, 2: 2.0, 3: 3.0})
    assert same.p == 1.0 and same.note == "identical values"
    with pytest.raises(ValueError, match="unknown test"):
        paired({}, {}, test="z")


def test_against_the_reference_is_one_holm_family():
    ref = {1: 70.0, 2: 70.2, 3: 70.1}
    values = {"ref": ref, "a": {1: 72.0, 2: 72.5, 3: 72.1}, "b": {1: 70.1, 2: 70.0, 3: 70.4},
              "c": {1: 75.0}}
    out = against(values, "ref")
    assert set(out) == {"a", "b", "c"}
    raw = [out["a"][0].p, out["b"][0].p]
    assert [out["a"][1], out["b"][1]] == pytest.approx(holm(raw))
    assert out["c"][0].p is None and out["c"][1] is None  # one seed: not in the family


def test_friedman_by_hand():
    # A > B > C on each of 5 protocols: rank sums 5, 10, 15;
    # chi2 = 12 / (N k (k+1)) * sum R^2 - 3 N (k+1) = 12/60 * 350 - 60 = 10, p = exp(-10/2) (2 df)
    means = {"A": [80, 81, 82, 83, 84], "B": [70, 71, 72, 73, 74], "C": [60, 61, 62, 63, 64]}
    result = friedman(means)
    assert result.statistic == pytest.approx(10.0) and result.p == pytest.approx(math.exp(-5))
    assert result.mean_ranks == {"A": 1.0, "B": 2.0, "C": 3.0}
    # Holm over 3 pairs multiplies the smallest p by 3: 2/2^n <= 0.05/3 first holds at n = 7
    assert all(p is None for p in result.pairwise.values()) and result.note == (
        "no pair is tested: over 5 protocols a signed-rank test's smallest p is 0.0625, which Holm's correction "
        "over 3 pairs cannot bring to 0.05 (that needs 7 protocols)")
    six = friedman({m: v + [v[-1] + 1] for m, v in means.items()})
    assert all(p is None for p in six.pairwise.values()) and "needs 7 protocols" in six.note
    seven = friedman({m: v + [v[-1] + 1, v[-1] + 2] for m, v in means.items()})
    # every pair differs the same way on all 7: raw p = 2/128 each, Holm over 3 pairs: 3 * 2/128
    assert seven.pairwise == pytest.approx({("A", "B"): 3 / 64, ("A", "C"): 3 / 64, ("B", "C"): 3 / 64})
    assert seven.note == ""


def test_friedman_with_every_protocol_tied_is_p_one():
    tied = friedman({m: [70.0, 60.0, 50.0, 40.0, 30.0] for m in "ABC"})
    assert (tied.statistic, tied.p) == (0.0, 1.0) and "same value" in tied.note


def test_friedman_needs_three_methods_and_five_protocols():
    assert friedman({"A": [1, 2, 3, 4, 5], "B": [2, 3, 4, 5, 6]}).p is None
    few = friedman({"A": [1, 2], "B": [2, 3], "C": [3, 1]})
    assert few.p is None and "5 protocols" in few.note and few.mean_ranks["A"] == pytest.approx(2.5)


def test_bootstrap_interval():
    x = [70.1, 70.5, 69.9, 70.8, 70.2]
    ours = bootstrap_ci([x], resamples=1000, seed=3)
    theirs = sps.bootstrap([np.array(x)], np.mean, confidence_level=0.95, n_resamples=1000, method="percentile",
                           rng=np.random.default_rng(3)).confidence_interval
    assert ours == pytest.approx((theirs.low, theirs.high))
    assert bootstrap_ci([x], seed=1) == bootstrap_ci([x], seed=1)  # deterministic for a seed
    assert bootstrap_ci([[70.0, 70.0], [60.0, 60.0]]) == (65.0, 65.0)
    assert bootstrap_ci([[70.0]]) is None
    low, high = bootstrap_ci([x, [60.0, 61.0, 59.5]])
    assert low <= (np.mean(x) + 60.1666) / 2 <= high


def test_t_interval_is_2_48_std_at_three_seeds():
    x = [70.0, 71.0, 72.5]
    low, high = t_interval(x)
    s = float(np.std(x, ddof=1))
    assert (high - low) / 2 == pytest.approx(4.302653 / math.sqrt(3) * s, rel=1e-6)  # 2.48 s (suite_anchors §B.2)
    assert t_interval([1.0]) is None
