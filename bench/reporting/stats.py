"""Significance tests and intervals for tables over seeds and protocols (suite_anchors §B), on scipy.

- Per protocol, methods are compared **paired by seed** (the seed fixes the data subset and order
  for every method): a paired t-test with at least :data:`MIN_T_SEEDS` common seeds, Wilcoxon's
  signed-rank test once it can reach alpha after Holm's correction over its family of m tests
  (``2 / 2**n <= alpha / m``: 6 seeds for one test at 0.05, 7 for two, 8 for five).
- A family of comparisons (each method against one) is Holm-corrected (:func:`holm`; scipy has
  only Benjamini-Hochberg/Yekutieli).
- Across protocols: Friedman's test on the per-protocol means (protocols are the blocks), then
  pairwise Wilcoxon tests with Holm (Demšar 2006; the cd-diagram convention).
- Bootstrap percentile intervals come from ``scipy.stats.bootstrap``; several protocols are
  resampled within each protocol (a stratified bootstrap, as rliable's).  Below
  :data:`MIN_BOOTSTRAP_SEEDS` seeds a resample can only repeat the few seeds there are (the
  interval shrinks to their range), so :func:`mean_interval` gives the t interval instead.

A test that cannot be run (too few seeds or protocols) gives ``p = None`` and says why, so a table
never shows a p-value that means nothing::

    holm([0.01, 0.04, 0.03])                          # [0.03, 0.06, 0.06]
    paired({1: 70.1, 2: 70.5, 3: 69.9}, {1: 69.0, 2: 69.8, 3: 69.1})
    # Comparison(test='paired t', n=3, statistic=..., p=..., note='')
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy import stats

ALPHA = 0.05
MIN_T_SEEDS = 3  # a paired t-test on 2 seeds has 1 degree of freedom: its p-value says nothing
MIN_BOOTSTRAP_SEEDS = 10  # fewer: the percentile interval is about the seeds' range, too narrow
MIN_FRIEDMAN_BLOCKS = 5  # the chi-square approximation needs a handful of protocols (autorank asks 5)
TESTS = ("auto", "t", "wilcoxon")


@dataclass(frozen=True)
class Comparison:
    """One test: ``p`` is None when it could not be run, and ``note`` says why."""

    test: str
    n: int
    statistic: Optional[float]
    p: Optional[float]
    note: str = ""


def holm(pvalues: Sequence[Optional[float]]) -> List[Optional[float]]:
    """Holm's step-down adjusted p-values, in the input order (None entries are left out of the
    family and stay None): the i-th smallest of m becomes ``max_{j <= i} min(1, (m - j + 1) p_(j))``."""
    present = [(p, i) for i, p in enumerate(pvalues) if p is not None]
    out: List[Optional[float]] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (len(present) - rank) * p))
        out[i] = running
    return out


def wilcoxon_can_reach(n: int, alpha: float = ALPHA, family: int = 1) -> bool:
    """Whether an exact two-sided signed-rank test on ``n`` pairs can give ``p <= alpha`` at all,
    after Holm's correction over ``family`` tests (which multiplies the smallest p by ``family``)."""
    return n > 0 and 2.0 / 2 ** n <= alpha / max(family, 1)


def wilcoxon_pairs_needed(alpha: float = ALPHA, family: int = 1) -> int:
    """The fewest pairs for which :func:`wilcoxon_can_reach`."""
    return next(n for n in range(1, 64) if wilcoxon_can_reach(n, alpha, family))


def paired(a: Mapping[int, float], b: Mapping[int, float], test: str = "auto", alpha: float = ALPHA,
           family: int = 1) -> Comparison:
    """``a`` against ``b`` (seed -> value), on their common seeds, as one of ``family`` tests that
    will be Holm-corrected together.  ``auto``: Wilcoxon when it can still reach ``alpha`` after the
    correction, else the paired t-test; identical values give ``p = 1``.  Wilcoxon drops pairs with
    no difference, so its ``n`` counts the rest."""
    if test not in TESTS:
        raise ValueError(f"unknown test '{test}' (choices: {', '.join(TESTS)})")
    seeds = sorted(set(a) & set(b))
    x, y = np.array([a[s] for s in seeds], float), np.array([b[s] for s in seeds], float)
    n = len(seeds)
    use_wilcoxon = test == "wilcoxon" or (test == "auto" and wilcoxon_can_reach(n, alpha, family))
    name = "Wilcoxon signed-rank" if use_wilcoxon else "paired t"
    if use_wilcoxon and not wilcoxon_can_reach(n, alpha, family):
        need = wilcoxon_pairs_needed(alpha, family)
        return Comparison(name, n, None, None, f"{n} common seeds: a signed-rank test cannot reach {alpha} "
                                               f"{'after Holm over ' + str(family) + ' tests ' if family > 1 else ''}"
                                               f"below {need} pairs")
    if not use_wilcoxon and n < MIN_T_SEEDS:
        return Comparison(name, n, None, None, f"{n} common seed(s): too few for a test (needs {MIN_T_SEEDS})")
    if np.all(x == y):
        return Comparison(name, n, 0.0, 1.0, "identical values")
    with warnings.catch_warnings():  # nearly equal differences: scipy warns, its p-value stands
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.wilcoxon(x, y) if use_wilcoxon else stats.ttest_rel(x, y)
    zeros = int(np.sum(x == y)) if use_wilcoxon else 0
    note = f"{zeros} of {n} pairs without a difference, left out" if zeros else ""
    return Comparison(name, n - zeros, float(result.statistic), float(result.pvalue), note)


def against(values: Mapping[str, Mapping[int, float]], reference: str, test: str = "auto",
            alpha: float = ALPHA) -> Dict[str, Tuple[Comparison, Optional[float]]]:
    """Every other method against ``reference`` on one protocol: its comparison and its
    Holm-adjusted p-value over the family."""
    others = [m for m in values if m != reference]
    tests = [paired(values[m], values[reference], test, alpha, len(others)) for m in others]
    adjusted = holm([t.p for t in tests])
    return {m: (t, p) for m, t, p in zip(others, tests, adjusted)}


@dataclass(frozen=True)
class Friedman:
    """Friedman's test over protocols, and the Holm-adjusted pairwise Wilcoxon p-values."""

    n_protocols: int
    statistic: Optional[float]
    p: Optional[float]
    pairwise: Dict[Tuple[str, str], Optional[float]]
    mean_ranks: Dict[str, float]
    note: str = ""


def friedman(means: Mapping[str, Sequence[float]], alpha: float = ALPHA) -> Friedman:
    """``means``: method -> its mean over seeds on each protocol (the same protocol order for all).
    Ranks are 1 for the best (highest) value; ties share their average rank."""
    methods = list(means)
    table = np.array([means[m] for m in methods], float)  # methods x protocols
    n = table.shape[1] if table.size else 0
    ranks = np.apply_along_axis(stats.rankdata, 0, -table) if n else table
    mean_ranks = {m: float(r) for m, r in zip(methods, ranks.mean(axis=1))} if n else {}
    if len(methods) < 3 or n < MIN_FRIEDMAN_BLOCKS:
        need = "3 methods" if len(methods) < 3 else f"{MIN_FRIEDMAN_BLOCKS} protocols"
        return Friedman(n, None, None, {}, mean_ranks, f"{len(methods)} methods on {n} protocols: "
                                                        f"too few for Friedman's test (needs {need})")
    if np.all(table == table[:1]):  # all methods tie on every protocol: scipy would divide by zero
        return Friedman(n, 0.0, 1.0, {}, mean_ranks, "every method has the same value on every protocol")
    result = stats.friedmanchisquare(*table)
    pairs = [(a, b) for i, a in enumerate(methods) for b in methods[i + 1:]]
    raw = [paired(dict(enumerate(means[a])), dict(enumerate(means[b])), "wilcoxon", alpha, len(pairs)).p
           for a, b in pairs]
    note = "" if wilcoxon_can_reach(n, alpha, len(pairs)) else (
        f"no pair is tested: over {n} protocols a signed-rank test's smallest p is {2 / 2 ** n:.4g}, which "
        f"Holm's correction over {len(pairs)} pairs cannot bring to {alpha} (that needs "
        f"{wilcoxon_pairs_needed(alpha, len(pairs))} protocols)")
    return Friedman(n, float(result.statistic), float(result.pvalue), dict(zip(pairs, holm(raw))), mean_ranks, note)


def bootstrap_ci(samples: Sequence[Sequence[float]], confidence: float = 0.95, resamples: int = 2000,
                 seed: int = 0) -> Optional[Tuple[float, float]]:
    """Percentile interval of the mean of per-sample means, each sample (a protocol's seeds)
    resampled on its own; None when a sample has fewer than 2 values."""
    data = [np.asarray(s, float) for s in samples]
    if not data or any(len(s) < 2 for s in data):
        return None
    if all(np.all(s == s[0]) for s in data):  # no spread: every resample gives the same mean
        value = float(np.mean([s[0] for s in data]))
        return value, value

    def mean_of_means(*arrays, axis=-1):
        return np.mean([np.mean(x, axis=axis) for x in arrays], axis=0)

    result = stats.bootstrap(data, mean_of_means, confidence_level=confidence, n_resamples=resamples,
                             method="percentile", rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return float(low), float(high)


def mean_interval(samples: Sequence[Sequence[float]], seed_means: Sequence[float],
                  confidence: float = 0.95) -> Optional[Tuple[float, float, str]]:
    """``(low, high, how)``: the stratified bootstrap interval when every sample (a protocol's
    seeds) has :data:`MIN_BOOTSTRAP_SEEDS` values, else the t interval of the per-seed means."""
    if samples and min(len(s) for s in samples) >= MIN_BOOTSTRAP_SEEDS:
        low_high = bootstrap_ci(samples, confidence)
        how = "bootstrap"
    else:
        low_high = t_interval(seed_means, confidence)
        how = f"t, {len(seed_means)} seeds (a bootstrap needs {MIN_BOOTSTRAP_SEEDS})"
    return None if low_high is None else (*low_high, how)


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Optional[Tuple[float, float]]:
    """The t-based interval of the mean over seeds (suite_anchors §B.2); None below 2 values."""
    x = np.asarray(values, float)
    if len(x) < 2:
        return None
    half = stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)
