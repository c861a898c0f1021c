"""Per-item outcomes, kept beside every metrics.json as items.csv: per perplexity window its mean
next-token NLL, per zero-shot document its correctness under the reported metric with the gold and
the chosen answer (from lm-eval's own sample log).

An item is named by (kind, set, item): the window's first token offset in the tokenized test set,
or lm-eval's index of the document in the task's split. Two models evaluated on the same
subsample therefore pair by a join on these three columns (the dense model's full pass holds
every window, the pruned models' subsample among them).
"""
from __future__ import annotations

import os

import pandas as pd

from ..io import atomic_path

__all__ = ["ITEM_COLUMNS", "KEY", "items_frame", "write_items", "read_items"]

ITEM_COLUMNS = ["kind", "set", "item", "value", "gold", "chosen"]
KEY = ["kind", "set", "item"]
_DTYPES = {"kind": "string", "set": "string", "item": "int64", "value": "float64", "gold": "Int64",
           "chosen": "Int64"}


def items_frame(kind: str, name: str, item, value, gold=None, chosen=None) -> pd.DataFrame:
    """One evaluation's items: `kind` "perplexity" (value: mean NLL of the window) or "zeroshot"
    (value: 1.0 correct, 0.0 wrong); `name` the dataset or task."""
    frame = pd.DataFrame({"kind": kind, "set": name, "item": item, "value": value, "gold": gold, "chosen": chosen})
    return frame.astype(_DTYPES)


def write_items(path: str | os.PathLike, frames: list[pd.DataFrame]) -> None:
    table = pd.concat(frames, ignore_index=True) if frames else items_frame("perplexity", "", [], [])
    with atomic_path(path) as tmp:
        table[ITEM_COLUMNS].to_csv(tmp, index=False, float_format="%.17g")  # round-trips every float64


def read_items(path: str | os.PathLike) -> pd.DataFrame:
    return pd.read_csv(path, dtype=_DTYPES, keep_default_na=False, na_values={"gold": [""], "chosen": [""]})
