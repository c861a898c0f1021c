"""Rows of methods evaluated with several calibration seeds: the summary shows their mean over the
seeds with the sd over seeds beside it, and every seed's own row goes to the supplementary table
(results/seeds.csv).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .comparisons import selection
from .results import METRIC_COLUMNS, PPL_COLUMNS, is_main_run, row_key

__all__ = ["over_seeds", "seed_rows"]


def _stderr(values: np.ndarray, column: str) -> float:
    """Of the mean of per-item values (seed-averaged): accuracy, or perplexity by the delta method."""
    sem = values.std(ddof=1) / math.sqrt(values.size) if values.size > 1 else math.nan
    return math.exp(values.mean()) * sem if column in PPL_COLUMNS else sem


def _mean_row(runs: pd.DataFrame, wide: pd.DataFrame) -> pd.Series:
    """The main seed's row with each measured column the mean over the seeds (perplexity: the
    geometric mean, exp of the mean log-perplexity, which is the seed-averaged items' perplexity),
    its stderr that of the seed-averaged items, and `<col>_sd` the sd over the seeds."""
    row = runs[runs.apply(is_main_run, axis=1)].iloc[0].copy()
    items = wide[row_key(row)]
    for column in (c for c in METRIC_COLUMNS if c in runs and runs[c].notna().all()):
        values = runs[column].astype(float)
        row[column] = math.exp(np.log(values).mean()) if column in PPL_COLUMNS else values.mean()
        row[f"{column}_sd"] = values.std(ddof=1)
        if column != "average":  # the Average's stderr comes from its tasks' (results.load_results)
            chosen, _ = selection(wide.index, column)
            row[f"{column}_stderr"] = _stderr(items[chosen].dropna().to_numpy(), column)
    row["seeds"] = len(runs)
    return row


def over_seeds(runs: pd.DataFrame, wide: pd.DataFrame) -> pd.DataFrame:
    """One row per model, method, ratio and tune from the collated runs: a single run as it is,
    several seeds' runs as their mean (`_mean_row`); `seeds` counts the runs. `wide` is
    `comparisons.row_items` of the runs."""
    keys = ["model", "method", "ratio", "tune"]
    rows = [group.iloc[0].copy() if len(group) == 1 else _mean_row(group, wide)
            for _, group in runs.groupby(keys, sort=False)]
    summary = pd.DataFrame(rows).reset_index(drop=True)
    summary["seeds"] = summary.get("seeds", pd.Series(dtype=float)).fillna(1).astype(int)
    return summary


def seed_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """Every run of the rows evaluated with more than one seed."""
    keys = ["model", "method", "ratio", "tune"]
    return runs[runs.groupby(keys, sort=False)["run"].transform("size") > 1].reset_index(drop=True)
