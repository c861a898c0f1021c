"""Quality per real speedup: every model's perplexity beside its measured speedups (decode, prefill
per batch size, each with its paired interval) and the Pareto front of the two, per tune setting:
the models that no other one beats on both counts (at least as fast and at least as good, and
better in one). The dense model is at 1x by definition; its interval is the A/A pair's, the noise
floor of the timings.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .results import PPL_COLUMNS, Results

__all__ = ["speed_measures", "measure_label", "pareto_front", "quality_column", "quality_speed"]


def speed_measures(efficiency: pd.DataFrame) -> list[str]:
    """The measured speeds, decode first, then prefill by batch size: "decode", "prefill_b1", ..."""
    prefill = [c.removesuffix("_speedup") for c in efficiency if c.startswith("prefill_b") and c.endswith("_speedup")]
    return (["decode"] if "decode_speedup" in efficiency else []) + sorted(prefill, key=lambda m: int(m[9:]))


def measure_label(measure: str) -> str:
    return measure.replace("prefill_b", "prefill, batch ")


def pareto_front(speed, loss) -> np.ndarray:
    """True where no other point is at least as fast with at most the loss, and better in one."""
    speed, loss = np.asarray(speed, dtype=float), np.asarray(loss, dtype=float)
    dominated = [((speed >= s) & (loss <= q) & ((speed > s) | (loss < q))).any() for s, q in zip(speed, loss)]
    return ~np.array(dominated, dtype=bool)


def quality_column(results: Results) -> str | None:
    """The quality measure of the trade-off: WikiText-2 perplexity, else the first one measured."""
    return next((c for c in PPL_COLUMNS if c in results.measured), None)


def quality_speed(results: Results, model: str) -> pd.DataFrame:
    """One row per method, ratio and tune of `model` (dense once) with its perplexity, for every
    measure `<m>_speedup`, `<m>_speedup_low`/`_high` and `<m>_front` (on the front of its tune
    setting, the dense model belonging to both)."""
    quality = quality_column(results)
    summary = results.summary[results.summary["model"] == model]
    eff = results.efficiency[results.efficiency["model"] == model]
    measures = speed_measures(eff)
    speed_columns = [f"{m}_speedup{part}" for m in measures for part in ("", "_low", "_high")]
    rows = summary[["method", "ratio", "tune", quality, f"{quality}_subsampled"]].merge(
        eff[["method", "ratio", *speed_columns]], on=["method", "ratio"], how="inner")
    dense = rows["method"] == "dense"
    for m in measures:  # 1x, with the A/A pair's relative spread around it
        aa = rows.loc[dense, f"{m}_speedup"]
        rows.loc[dense, [f"{m}_speedup_low", f"{m}_speedup_high"]] = (
            rows.loc[dense, [f"{m}_speedup_low", f"{m}_speedup_high"]].div(aa, axis=0))
        rows.loc[dense, f"{m}_speedup"] = 1.0
    for m in measures:
        rows[f"{m}_front"] = False
        for tune in rows.loc[~dense, "tune"].unique() if (~dense).any() else ["none"]:
            group = dense | (rows["tune"] == tune)
            front = pareto_front(rows.loc[group, f"{m}_speedup"], rows.loc[group, quality])
            rows.loc[group, f"{m}_front"] |= front
    return rows.reset_index(drop=True)
