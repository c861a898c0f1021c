"""The paired bootstrap: its distribution against closed forms, and the coverage of its intervals
on simulated paired data with a known difference."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from prunebench.reporting.statistics import (
    N_RESAMPLES,
    bootstrap_distribution,
    paired_bootstrap,
    stratified_mean,
)


def test_bootstrap_of_correctness_is_the_binomial_of_its_rate():
    """Resampling n documents of which k were right gives Binomial(n, k/n) / n correct: the percentile
    interval is the binomial's quantiles (here 5/32 and 15/32, with P(X <= 4) = 0.013, P(X <= 5) = 0.037,
    P(X <= 14) = 0.954, P(X <= 15) = 0.979: far enough from 2.5 % and 97.5 % for 10,000 resamples)."""
    n, k = 32, 10
    correct = np.r_[np.ones(k), np.zeros(n - k)]
    interval = paired_bootstrap(correct, np.zeros(n))
    assert (interval.diff, interval.items) == (k / n, n)
    quantiles = binom.ppf(0.025, n, k / n) / n, binom.ppf(0.975, n, k / n) / n
    assert (interval.low, interval.high) == quantiles == (5 / 32, 15 / 32)
    draws = bootstrap_distribution(correct)
    assert draws.shape == (N_RESAMPLES,)
    assert np.mean(draws == 10 / 32) == pytest.approx(binom.pmf(10, n, k / n), abs=0.012)  # 0.1554, sd 0.0036


def test_stratified_bootstrap_has_the_closed_form_mean_and_variance():
    """Within-stratum resampling of the mean of stratum means: expectation the stratified mean,
    variance sum_s var_s / n_s / S^2 with the plug-in (ddof=0) variance of each stratum."""
    rng = np.random.default_rng(1)
    sizes = [5, 8, 12]
    values = np.concatenate([rng.normal(i, 1 + i, n) for i, n in enumerate(sizes)])
    strata = np.repeat(["boolq", "piqa", "arc_c"], sizes)
    shuffle = rng.permutation(values.size)  # strata need not be contiguous
    values, strata = values[shuffle], strata[shuffle]
    draws = bootstrap_distribution(values, strata)
    parts = [values[strata == s] for s in ("boolq", "piqa", "arc_c")]
    mean = np.mean([p.mean() for p in parts])
    variance = sum(p.var() / p.size for p in parts) / len(parts) ** 2
    assert stratified_mean(values, strata) == pytest.approx(mean, rel=1e-12)
    assert draws.mean() == pytest.approx(mean, abs=4 * np.sqrt(variance / N_RESAMPLES))
    assert draws.var() == pytest.approx(variance, rel=0.05)  # Monte Carlo sd of the variance: 1.4 %


def test_identical_and_shifted_models():
    rng = np.random.default_rng(2)
    a = rng.normal(size=40)
    assert paired_bootstrap(a, a) == paired_bootstrap(a + 1, a + 1)
    same = paired_bootstrap(a, a)
    assert (same.diff, same.low, same.high, same.excludes_zero) == (0, 0, 0, False)
    shifted = paired_bootstrap(a + 0.25, a)  # every item better by 0.25: no uncertainty
    assert shifted.low == pytest.approx(0.25) and shifted.high == pytest.approx(0.25) and shifted.excludes_zero
    with pytest.raises(ValueError, match="aligned"):
        paired_bootstrap(a, a[:-1])


def coverage(simulate, truth: float, runs: int = 1000) -> float:
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(runs):
        a, b, strata = simulate(rng)
        interval = paired_bootstrap(a, b, strata)
        hits += interval.low <= truth <= interval.high
    return hits / runs


def test_coverage_on_perplexity_like_windows():
    """64 windows: the windows differ in difficulty far more than the models do (what pairing
    removes); the pruned model's NLL is the dense one's plus 0.3, more on harder windows, plus noise."""
    def simulate(rng):
        dense = rng.normal(4.0, 1.0, 64)
        return dense + 0.3 + 0.1 * (dense - 4.0) + rng.normal(0.0, 0.15, 64), dense, None

    assert 0.93 <= coverage(simulate, 0.3) <= 0.97


def test_coverage_on_zero_shot_like_documents_stratified_by_task():
    """7 tasks x 32 documents with per-task accuracies; the second model is right where the first
    is with probability .8, else at its own rate: a known difference of the task-mean accuracy."""
    rates_a = np.array([0.62, 0.70, 0.45, 0.55, 0.50, 0.28, 0.30])
    rates_b = np.array([0.55, 0.64, 0.40, 0.52, 0.41, 0.25, 0.27])
    strata = np.repeat(np.arange(7), 32)

    def simulate(rng):
        a = rng.random(strata.size) < rates_a[strata]
        keep = rng.random(strata.size) < 0.8
        # b copies a with probability .8, else draws at the rate that makes its marginal rates_b
        own = (rates_b - 0.8 * rates_a) / 0.2
        b = np.where(keep, a, rng.random(strata.size) < own[strata])
        return a.astype(float), b.astype(float), strata

    assert 0.93 <= coverage(simulate, float(np.mean(rates_a - rates_b))) <= 0.97


def test_documents_go_where_they_buy_the_most_precision_per_cpu_second():
    """n_t ∝ s_t/√c_t for the budget Σ c_t n_t, by hand: equal spreads, PIQA a quarter of BoolQ's
    cost gets twice its documents; a floor fixes one task and gives the rest to the other; a task
    runs out of documents (OBQA has 500) and the rest goes elsewhere; a budget below the floors is
    refused with what the floors cost."""
    from prunebench.evaluation.allocation import allocate_documents, average_halfwidth

    spread, cost = {"boolq": 0.5, "piqa": 0.5}, {"boolq": 1.0, "piqa": 0.25}
    assert allocate_documents(spread, cost, 300, 10) == {"boolq": 200, "piqa": 400}
    assert allocate_documents(spread, cost, 330, 250) == {"boolq": 250, "piqa": 320}
    with pytest.raises(ValueError, match="budget of 300 CPU-s cannot give every task 250 documents \\(312 CPU-s\\)"):
        allocate_documents(spread, cost, 300, 250)
    assert allocate_documents({"openbookqa": 0.5, "boolq": 0.5}, {"openbookqa": 0.01, "boolq": 1.0}, 1000, 10) == \
        {"openbookqa": 500, "boolq": 995}
    # seven tasks, spread 0.6, 96 documents each: 1.96 * sqrt(7 * 0.36 / 96) / 7
    assert average_halfwidth(dict.fromkeys("abcdefg", 0.6), dict.fromkeys("abcdefg", 96)) == pytest.approx(0.045365, abs=1e-6)


def test_paired_spread_pools_the_per_document_differences():
    from prunebench.evaluation.allocation import paired_spread
    from prunebench.evaluation.items import items_frame

    a = items_frame("zeroshot", "piqa", range(4), [1.0, 1.0, 0.0, 0.0])
    b = items_frame("zeroshot", "piqa", range(4), [1.0, 0.0, 1.0, 0.0])
    c = items_frame("zeroshot", "piqa", range(4), [1.0, 1.0, 1.0, 1.0])
    # differences 0, 1, -1, 0 and 0, -1, 0, -1: mean -1/4, sum of squared deviations 3.5, sd sqrt(3.5/7)
    assert paired_spread([(a, b), (b, c)]) == {"piqa": pytest.approx(0.5 ** 0.5)}
