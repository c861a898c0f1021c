"""Paired bootstrap confidence intervals for the difference between two models evaluated on the
same items (windows or documents).

Each resample draws the items with replacement, the same draw for both models (so what the two
share, such as a document's difficulty, cancels), within each stratum (task) when there are
several, and takes the statistic of the differences: the mean, or with strata the unweighted mean
of the strata's means (the papers' zero-shot "Average"). The interval is the percentile interval
of 10,000 seeded resamples. A resample's statistic is a fixed linear combination of the item
differences, so the resamples are drawn once per stratum layout, as a weight matrix, and every
comparison on that layout uses the same resampled items.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["N_RESAMPLES", "SEED", "LEVEL", "Interval", "stratified_mean", "bootstrap_distribution",
           "paired_bootstrap"]

N_RESAMPLES = 10_000
SEED = 0
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A difference (first model minus second) with its bootstrap confidence interval."""

    diff: float
    low: float
    high: float
    items: int

    @property
    def excludes_zero(self) -> bool:
        """The interval supports a ranking: the difference is not zero at its level."""
        return self.low > 0 or self.high < 0


def _layout(strata) -> tuple[np.ndarray, tuple[int, ...]]:
    """The order that makes each stratum contiguous, and the strata sizes in that order."""
    labels = np.asarray(strata)
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))[inverse]  # strata numbered in order of appearance
    order = np.argsort(rank, kind="stable")
    return order, tuple(np.bincount(rank).tolist())


@lru_cache(maxsize=16)
def _weights(sizes: tuple[int, ...], n_resamples: int, seed: int) -> np.ndarray:
    """[n_resamples, n] weights: row r times the (stratum-ordered) values is resample r's statistic."""
    rng = np.random.default_rng(seed)
    blocks = [rng.multinomial(n, np.full(n, 1 / n), size=n_resamples) / n for n in sizes]
    weights = np.hstack(blocks) / len(sizes)
    weights.setflags(write=False)
    return weights


def stratified_mean(values, strata=None) -> float:
    """The mean of `values`; with `strata`, the unweighted mean of each stratum's mean."""
    values = np.asarray(values, dtype=float)
    if strata is None:
        return float(values.mean())
    order, sizes = _layout(strata)
    return float(np.mean([part.mean() for part in np.split(values[order], np.cumsum(sizes)[:-1])]))


def bootstrap_distribution(values, strata=None, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> np.ndarray:
    """The statistic (`stratified_mean`) of each of `n_resamples` resamples of `values`, drawn with
    replacement within each stratum."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or values.size == 0 or np.isnan(values).any():
        raise ValueError(f"bootstrap needs a non-empty 1-D array of numbers, got shape {values.shape}")
    order, sizes = _layout(np.zeros(values.size) if strata is None else strata)
    return _weights(sizes, n_resamples, seed) @ values[order]


def paired_bootstrap(a, b, strata=None, n_resamples: int = N_RESAMPLES, seed: int = SEED,
                     level: float = LEVEL) -> Interval:
    """stat(a) - stat(b) for two models' outcomes on the same items (aligned arrays), with the
    `level` percentile interval of its paired bootstrap distribution."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or (strata is not None and len(strata) != a.size):
        raise ValueError(f"paired outcomes must be aligned: {a.shape}, {b.shape}"
                         + (f", strata {len(strata)}" if strata is not None else ""))
    diff = a - b
    low, high = np.quantile(bootstrap_distribution(diff, strata, n_resamples, seed), [(1 - level) / 2, (1 + level) / 2])
    return Interval(stratified_mean(diff, strata), float(low), float(high), int(diff.size))
