"""Paired comparisons of the collated rows on their items (prunebench.evaluation.items): every
pruned or recovered row against the dense model, against the best row of its group (same model,
ratio and tune), recovered, against the same method without recovery and, on a recovery curve,
against the same method's recovery with the next fewer steps ("previous"), and on the headline
columns (`pair_columns`) against every later row of its group (reference "method": each pair of
methods once, for what transfers across models); each difference with its paired bootstrap interval
(prunebench.reporting.statistics).

A row evaluated with several calibration seeds is compared by its items' mean over the seeds, the
same mean its table entry shows, and its calibration spread is included this way: its interval
spans that of the seed mean and every seed's own, so a difference is claimed (the interval
excludes zero) only where every seed's own paired interval supports it. Perplexity columns compare the mean log-perplexity (window NLL):
`diff` is the log of the perplexity ratio. Accuracy columns compare the fraction correct; the
Average resamples documents within each task and takes the unweighted task mean.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..evaluation.items import KEY, read_items
from ..evaluation.zeroshot import available_tasks, task_config
from ..io import read_json
from ..paths import ITEMS
from .results import PPL_COLUMNS, row_key
from .statistics import paired_bootstrap

__all__ = ["COMPARISON_COLUMNS", "TASK_OF_COLUMN", "run_items", "row_items", "selection", "pair_columns", "compare"]

COMPARISON_COLUMNS = ["model", "method", "ratio", "tune", "column", "reference", "reference_method",
                      "reference_tune", "diff", "low", "high", "items"]
TASK_OF_COLUMN = {task_config(t)["metadata"]["column"]: t for t in available_tasks()}


def run_items(metrics_paths: Iterable[str | Path]) -> pd.DataFrame:
    """The items beside each metrics.json, one column per run (model, method, ratio, tune, i) indexed
    by item; NaN where a run has no such item."""
    return pd.DataFrame({(*row_key(read_json(path)), i): read_items(Path(path).with_name(ITEMS)).set_index(KEY)["value"]
                         for i, path in enumerate(metrics_paths)})


def row_items(runs: pd.DataFrame) -> pd.DataFrame:
    """`run_items` as one column per row (model, method, ratio, tune): the mean over its runs (seeds)."""
    return runs.T.groupby(level=[0, 1, 2, 3], sort=False).mean().T


def selection(index: pd.MultiIndex, column: str) -> tuple[pd.Series, pd.Series | None]:
    """Which items a summary column rests on, and the strata to resample within (the Average's tasks)."""
    kind, name = index.get_level_values("kind"), index.get_level_values("set")
    if column in PPL_COLUMNS:
        return (kind == "perplexity") & (name == column), None
    if column == "average":
        return kind == "zeroshot", pd.Series(name, index=index)
    return (kind == "zeroshot") & (name == TASK_OF_COLUMN[column]), None


def pair_columns(columns: list[str]) -> list[str]:
    """The columns methods are compared on pairwise: the first perplexity column and the Average."""
    return [c for c in columns if c in PPL_COLUMNS][:1] + [c for c in columns if c == "average"]


def _difference(a: pd.Series, b: pd.Series, column: str):
    """The paired interval of `a` - `b` on the items `column` rests on (None: no common item)."""
    selected, strata = selection(a.index, column)
    both = selected & a.notna().to_numpy() & b.notna().to_numpy()
    if not both.any():
        return None
    return paired_bootstrap(a[both].to_numpy(), b[both].to_numpy(), None if strata is None else strata[both].to_numpy())


def _with_seeds(interval, runs: pd.DataFrame, key: tuple, reference: pd.Series, column: str):
    """`interval` widened to span every seed's own interval against `reference` (one seed: as it is)."""
    seeds = [c for c in runs.columns if c[:4] == key]
    if len(seeds) < 2:
        return interval
    own = [_difference(runs[c], reference, column) for c in seeds]
    return dataclasses.replace(interval, low=min(interval.low, *(i.low for i in own)),
                               high=max(interval.high, *(i.high for i in own)))


def _previous(summary: pd.DataFrame, row: pd.Series) -> tuple | None:
    """The key of the same model, method and ratio recovered with the most steps below `row`'s (None:
    none, or `row` not recovered; w/o tune is the "untuned" reference)."""
    if row["tune"] == "none" or "recovery_steps" not in summary:
        return None
    same = summary[(summary["model"] == row["model"]) & (summary["method"] == row["method"])
                   & (summary["ratio"] == row["ratio"]) & (summary["tune"] != "none")
                   & (summary["recovery_steps"] < row["recovery_steps"])]
    return None if same.empty else row_key(same.loc[same["recovery_steps"].idxmax()])


def compare(summary: pd.DataFrame, runs: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Every row's differences to dense, to its group's best, (recovered) to its untuned self, (on a
    recovery curve) to its previous point and, on `pair_columns`, to every later row of its group,
    for each of `columns`; `runs` is `run_items` of the summary's runs."""
    out = []
    wide = row_items(runs)
    keys = {row_key(r) for _, r in summary.iterrows()}
    pruned = summary[summary["method"] != "dense"]
    for (model, ratio, tune), group in pruned.groupby(["model", "ratio", "tune"], sort=False):
        for column in (c for c in columns if c in group and group[c].notna().any()):
            best = group.loc[group[column].idxmin() if column in PPL_COLUMNS else group[column].idxmax()]
            pairs = column in pair_columns(columns)
            for i, (_, row) in enumerate(group.iterrows()):
                references = [("dense", (model, "dense", 0.0, "none")), ("best", row_key(best)),
                              ("untuned", (model, row["method"], float(ratio), "none")),
                              ("previous", _previous(summary, row))]
                if pairs:
                    references += [("method", row_key(later)) for _, later in group.iloc[i + 1:].iterrows()]
                for name, reference in references:
                    if reference is None or reference not in keys or (name != "dense" and reference == row_key(row)) \
                            or (name == "untuned" and tune == "none"):
                        continue
                    interval = _difference(wide[row_key(row)], wide[reference], column)
                    if interval is not None:
                        interval = _with_seeds(interval, runs, row_key(row), wide[reference], column)
                        out.append((model, row["method"], ratio, tune, column, name, reference[1], reference[3],
                                    interval.diff, interval.low, interval.high, interval.items))
    return pd.DataFrame(out, columns=COMPARISON_COLUMNS)
