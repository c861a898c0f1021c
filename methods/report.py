"""Collating results: every metrics.json becomes one row of results/summary.csv."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from .io import read_json
from .zeroshot import task_config

__all__ = ["SUMMARY_COLUMNS", "summary_row", "collate"]

PPL_COLUMNS = ["wikitext2", "ptb"]
TASK_COLUMNS = ["boolq", "piqa", "hellaswag", "winogrande", "arc_e", "arc_c", "obqa"]
SUMMARY_COLUMNS = ["model", "method", "ratio", "tune", "params", "params_kept", *PPL_COLUMNS, *TASK_COLUMNS,
                   "average"]


def summary_row(metrics: dict) -> dict:
    """The fixed summary columns (a value that was not measured stays empty, never 0), then the
    real removed fraction, every stderr and the subsample notes."""
    row = {k: metrics[k] for k in ("model", "method", "ratio", "tune", "params", "params_kept")}
    row["removed_fraction"] = metrics["removed_fraction"]
    for name, r in metrics["perplexity"].items():
        row[name], row[f"{name}_stderr"] = r["ppl"], r["ppl_stderr"]
    for task, r in metrics["zeroshot"].items():
        column = task_config(task)["metadata"]["column"]
        row[column], row[f"{column}_stderr"] = r["value"], r["stderr"]
    row["average"] = metrics.get("average")
    row["deviations"] = "; ".join(metrics.get("deviations", []))
    return row


def collate(paths: Iterable[str | Path]) -> pd.DataFrame:
    rows = [summary_row(read_json(p)) for p in paths]
    table = pd.DataFrame(rows)
    extra = [c for c in table.columns if c not in SUMMARY_COLUMNS]
    table = table.reindex(columns=SUMMARY_COLUMNS + extra)
    return table.sort_values(["model", "tune", "ratio", "method"], kind="stable").reset_index(drop=True)
