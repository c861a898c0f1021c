"""Which conclusions transfer between models: for each pair of methods at a setting (ratio, tune),
whether the paired intervals (comparisons.py, reference "method") order them the same way on two
models, the opposite way, or cannot tell; and the Spearman rank correlation of the methods between
two models with a bootstrap interval.

The correlation's interval resamples each model's items (windows, documents within each task) on
its own, the same draw for all of that model's methods (so their scores stay paired), recomputes
every method's score and the correlation; seeded, so deterministic. The models' perplexity windows
are not the same items (each model's tokenizer cuts its own), hence one resampling per model.
"""
from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from .comparisons import row_items, selection
from .results import PPL_COLUMNS
from .statistics import LEVEL, N_RESAMPLES, SEED, bootstrap_distribution, stratified_mean

__all__ = ["SAME", "DIFFERENT", "CANNOT_TELL", "CORRELATION_COLUMNS", "order", "pair_transfer", "spearman",
           "rank_correlations"]

SAME, DIFFERENT, CANNOT_TELL = "same", "different", "cannot tell"
CORRELATION_COLUMNS = ["model_a", "model_b", "ratio", "tune", "column", "methods", "rho", "low", "high"]


def order(low: float, high: float, column: str) -> int:
    """+1 where the paired interval of method − other says the method is better, -1 worse, 0 neither
    (lower perplexity, higher accuracy is better)."""
    sign = -1 if column in PPL_COLUMNS else 1
    return sign if low > 0 else -sign if high < 0 else 0


def _pairs(comparisons: pd.DataFrame, model: str) -> pd.DataFrame:
    """A model's pairwise intervals, each pair in both orientations, by (ratio, tune, column, method, other)."""
    mine = comparisons[(comparisons["model"] == model) & (comparisons["reference"] == "method")]
    forward = mine.rename(columns={"reference_method": "other"})
    backward = mine.rename(columns={"method": "other", "reference_method": "method"}).assign(
        diff=-mine["diff"], low=-mine["high"], high=-mine["low"])
    keys = ["ratio", "tune", "column", "method", "other"]
    return pd.concat([forward, backward])[[*keys, "diff", "low", "high"]].set_index(keys)


def pair_transfer(comparisons: pd.DataFrame, model_a: str, model_b: str) -> pd.DataFrame:
    """Every pair of methods compared on both models at the same setting and column: its paired
    interval (method − other) on each model, the order each gives (`order`) and the verdict: same,
    different (both ordered, opposite ways) or cannot tell (an interval includes no difference)."""
    a, b = _pairs(comparisons, model_a), _pairs(comparisons, model_b)
    both = a.merge(b, left_index=True, right_index=True, suffixes=("_a", "_b"))
    both = both[both.index.get_level_values("method") < both.index.get_level_values("other")].reset_index()
    both["order_a"] = [order(lo, hi, c) for lo, hi, c in zip(both["low_a"], both["high_a"], both["column"])]
    both["order_b"] = [order(lo, hi, c) for lo, hi, c in zip(both["low_b"], both["high_b"], both["column"])]
    product = both["order_a"] * both["order_b"]
    both["verdict"] = np.where(product > 0, SAME, np.where(product < 0, DIFFERENT, CANNOT_TELL))
    return both


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rank correlation of the rows of `a` and `b` (resamples × methods), ties averaged;
    NaN where a row's scores are all tied."""
    ra, rb = (rankdata(x, axis=-1) for x in (np.atleast_2d(a), np.atleast_2d(b)))
    ra, rb = ra - ra.mean(axis=-1, keepdims=True), rb - rb.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ra * rb).sum(axis=-1) / np.sqrt((ra ** 2).sum(axis=-1) * (rb ** 2).sum(axis=-1))


def _scores(wide: pd.DataFrame, keys: list[tuple], column: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's score on `column` (a mean log-perplexity or accuracy, as `stratified_mean`) and its
    `N_RESAMPLES` bootstrap scores [resamples × rows], on the items every row has, one draw for all."""
    selected, strata = selection(wide.index, column)
    values = wide.loc[selected, keys]
    complete = values.notna().all(axis=1).to_numpy()
    values = values[complete]
    strata = None if strata is None else strata[selected][complete].to_numpy()
    point = np.array([stratified_mean(values[k], strata) for k in keys])
    boot = np.column_stack([bootstrap_distribution(values[k].to_numpy(), strata, N_RESAMPLES, seed) for k in keys])
    return point, boot


def _interval(rhos: np.ndarray) -> tuple[float, float]:
    """The percentile interval of the resamples' ρ where defined (NaN: a resample's scores all tie)."""
    defined = rhos[~np.isnan(rhos)]
    if not defined.size:
        return math.nan, math.nan
    low, high = np.quantile(defined, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(low), float(high)


def rank_correlations(summary: pd.DataFrame, runs: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """For each pair of models, setting (ratio, tune) and column: Spearman's ρ of the methods both
    models ran there (at least 3) with its percentile bootstrap interval; `runs` is `run_items`."""
    wide, out = row_items(runs), []
    models = list(dict.fromkeys(summary["model"]))
    pruned = summary[summary["method"] != "dense"]
    for model_a, model_b in combinations(models, 2):
        for (ratio, tune), group in pruned.groupby(["ratio", "tune"], sort=False):
            methods = sorted(set(group.loc[group["model"] == model_a, "method"])
                             & set(group.loc[group["model"] == model_b, "method"]))
            for column in (c for c in columns if len(methods) >= 3 and c in group):
                (point_a, boot_a), (point_b, boot_b) = (
                    _scores(wide, [(m, name, float(ratio), tune) for name in methods], column, SEED + models.index(m))
                    for m in (model_a, model_b))
                low, high = _interval(spearman(boot_a, boot_b))
                out.append((model_a, model_b, ratio, tune, column, len(methods), spearman(point_a, point_b)[0],
                            low, high))
    return pd.DataFrame(out, columns=CORRELATION_COLUMNS)
