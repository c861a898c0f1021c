"""The deployed formats in the report: llama.cpp's perplexity of every exported GGUF beside
PyTorch's, paired by window, and the exported structures' speedups in llama.cpp per format beside
PyTorch's and the FLOP-ideal; whether a speedup survives the runtime and composes with quantization.

Every perplexity comparison is a ratio of two models' (or formats') perplexities on the same windows
with its paired bootstrap interval (prunebench.reporting.statistics); every speedup is the paired,
interleaved benchmark's median ratio with its bootstrap interval (prunebench.evaluation.efficiency).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from ..evaluation.items import read_items
from ..io import read_json
from ..paths import ITEMS
from .statistics import paired_bootstrap

__all__ = ["Deployment", "load_deployment", "ppl_ratio", "REFERENCES", "GGUF_FORMATS", "formats_in"]

GGUF_FORMATS = ("f16", "Q8_0", "Q4_K_M")  # widest first: the order of the config's export.formats enum

# What each llama.cpp perplexity is compared with, by column name.
REFERENCES = {"pytorch": "PyTorch", "f16": "the same model in f16", "dense": "the dense model in the same format",
              "dense_f16": "the dense model in f16"}


def ppl_ratio(items: pd.DataFrame, reference: pd.DataFrame) -> tuple[float, float, float]:
    """Perplexity of `items` as a multiple of `reference`'s (two item tables of window NLLs, joined
    on the window), with its paired bootstrap interval: exp of the mean NLL difference."""
    both = items[["item", "value"]].merge(reference[["item", "value"]], on="item", suffixes=("", "_ref"))
    if len(both) != len(items):
        raise ValueError(f"{len(items)} windows against {len(reference)}: only {len(both)} pair")
    interval = paired_bootstrap(both["value"], both["value_ref"])
    return float(np.exp(interval.diff)), float(np.exp(interval.low)), float(np.exp(interval.high))


@dataclass
class Deployment:
    """`quality`: a row per (model, method, ratio, tune, dataset, format) with llama.cpp's perplexity
    and its ratios (`<reference>`, `_low`, `_high`) to the REFERENCES; `speed`: llama.cpp's benchmark
    rows (efficiency-llamacpp.csv); `exports`: per row, what was written (GGUF, HF) or why not."""

    quality: pd.DataFrame = field(default_factory=pd.DataFrame)
    speed: pd.DataFrame = field(default_factory=pd.DataFrame)
    exports: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def empty(self) -> bool:
        return self.quality.empty


def formats_in(frame: pd.DataFrame) -> list[str]:
    """The GGUF formats of a deployment frame, widest first."""
    return [f for f in GGUF_FORMATS if f in set(frame["format"])]


def _row(metrics: dict) -> dict:
    run, ratio, *tune = metrics["row"].split("/")
    return {"model": metrics["model"], "method": run, "ratio": float(ratio), "tune": tune[0] if tune else "none"}


def _sets(items: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """llama.cpp's items by (dataset, format): their set is "<dataset>:<format>"."""
    return {tuple(name.split(":")): part for name, part in items.groupby("set")}


def load_deployment(llamacpp_metrics: Iterable[str | Path], efficiency_csvs: Iterable[str | Path] = ()) -> Deployment:
    """The llama.cpp metrics.json files (results/<model>/<row>/llamacpp/), each read with its items,
    its row's PyTorch items (the folder above) and its model's dense llama.cpp items."""
    paths = [Path(p) for p in llamacpp_metrics]
    if not paths:
        return Deployment()
    items = {p: _sets(read_items(p.parent / ITEMS)) for p in paths}
    dense = {read_json(p)["model"]: items[p] for p in paths if read_json(p)["row"] == "dense/0"}
    quality, exports = [], []
    for path in paths:
        metrics, own = read_json(path), items[path]
        row = _row(metrics)
        exports.append({**row, "gguf": metrics["gguf"]["status"], "gguf_reason": metrics["gguf"].get("reason", ""),
                        "paddings": len(metrics["gguf"].get("paddings", [])), "hf": metrics["hf"]["hf"],
                        "hf_reason": metrics["hf"].get("reason", ""), **{f"{k}_mb": v / 2**20
                                                                         for k, v in metrics["files"].items()}})
        pytorch = read_items(path.parent.parent / ITEMS)
        for (dataset, fmt), part in own.items():
            # PyTorch's windows of this set that llama.cpp evaluated (a dense full pass holds them all)
            same_windows = (pytorch["kind"] == "perplexity") & (pytorch["set"] == dataset) & pytorch["item"].isin(
                part["item"])
            refs = {"pytorch": pytorch[same_windows],
                    "f16": own.get((dataset, "f16")),
                    "dense": dense.get(row["model"], {}).get((dataset, fmt)),
                    "dense_f16": dense.get(row["model"], {}).get((dataset, "f16"))}
            out = {**row, "dataset": dataset, "format": fmt, "ppl": float(np.exp(part["value"].mean())),
                   "pytorch_ppl": float(np.exp(refs["pytorch"]["value"].mean())), "windows": len(part)}
            for name, ref in refs.items():
                same = ref is None or ref is part or (name.startswith("dense") and row["method"] == "dense")
                if not same:
                    out[name], out[f"{name}_low"], out[f"{name}_high"] = ppl_ratio(part, ref)
            quality.append(out)
    frames = [pd.read_csv(p) for p in efficiency_csvs]
    speed = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return Deployment(pd.DataFrame(quality), speed, pd.DataFrame(exports))

