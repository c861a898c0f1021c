"""How many documents each zero-shot task gets: the most precise paired Average per CPU-second.

The zero-shot Average is the unweighted mean of T task accuracies, so the variance of a paired
difference between two models is (1/T²) Σ_t s_t² / n_t, where s_t is the standard deviation of one
document's paired difference (correct minus correct: -1, 0 or 1) on task t and n_t its documents.
For a CPU budget Σ_t c_t n_t (c_t: CPU-seconds per document) that variance is smallest at
n_t ∝ s_t / √c_t (Neyman allocation with costs): cheap tasks and tasks where models disagree more get
more documents. Floors (`minimum`) and each task's size bound it; the rest is re-allocated.

    python -m prunebench.evaluation.allocation COST.csv PAIRS --budget CPU_S [--minimum 96]

COST.csv is `scorer_cost`'s table (the `shared_cpu_s_per_doc` column); PAIRS are `items.csv` pairs
`A.csv:B.csv` of two models evaluated on the same documents (the spread s_t is pooled over them).
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd

from .items import read_items
from .zeroshot import task_config

__all__ = ["paired_spread", "allocate_documents", "average_halfwidth"]


def paired_spread(pairs: list[tuple[pd.DataFrame, pd.DataFrame]]) -> dict[str, float]:
    """Per task, the standard deviation of one document's paired difference, pooled over the pairs
    of item tables (each pair: two models on the same documents)."""
    diffs: dict[str, list[np.ndarray]] = {}
    for a, b in pairs:
        both = a.merge(b, on=["kind", "set", "item"], suffixes=("_a", "_b")).query("kind == 'zeroshot'")
        for task, rows in both.groupby("set"):
            diffs.setdefault(task, []).append((rows["value_a"] - rows["value_b"]).to_numpy())
    return {task: float(np.concatenate(d).std(ddof=1)) for task, d in diffs.items()}


def allocate_documents(spread: dict[str, float], cost: dict[str, float], budget: float, minimum: int) -> dict[str, int]:
    """Documents per task for a CPU `budget` (seconds per model), n_t ∝ spread_t / √cost_t, between
    `minimum` and the task's size; rounded down to whole documents."""
    size = {t: task_config(t)["metadata"]["docs"] for t in spread}
    if sum(cost[t] * min(minimum, size[t]) for t in spread) > budget:
        raise ValueError(f"a budget of {budget:g} CPU-s cannot give every task {minimum} documents "
                         f"({sum(cost[t] * min(minimum, size[t]) for t in spread):.0f} CPU-s)")
    fixed: dict[str, float] = {}
    while True:
        free = [t for t in spread if t not in fixed]
        left = budget - sum(cost[t] * n for t, n in fixed.items())
        weight = {t: spread[t] / math.sqrt(cost[t]) for t in free}
        scale = left / sum(weight[t] * cost[t] for t in free) if free else 0.0
        share = {t: scale * weight[t] for t in free}
        low = [t for t in free if share[t] < minimum]
        high = [t for t in free if share[t] > size[t]]
        if not low and not high:
            return {t: int(fixed.get(t, share.get(t))) for t in spread}
        # the most constrained task first: others' shares change once it is fixed
        t = min(low, key=lambda t: share[t] / minimum) if low else max(high, key=lambda t: share[t] / size[t])
        fixed[t] = float(min(minimum, size[t]) if low else size[t])


def average_halfwidth(spread: dict[str, float], docs: dict[str, int], z: float = 1.96) -> float:
    """The normal-approximation 95 % half-width of a paired Average difference (in accuracy units)."""
    return z * math.sqrt(sum(spread[t] ** 2 / docs[t] for t in spread)) / len(spread)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cost")
    parser.add_argument("pairs", nargs="+")
    parser.add_argument("--budget", type=float, required=True, help="CPU-seconds of zero-shot per model")
    parser.add_argument("--minimum", type=int, default=96)
    args = parser.parse_args()
    cost = pd.read_csv(args.cost).set_index("task")["shared_cpu_s_per_doc"].to_dict()
    spread = paired_spread([tuple(read_items(p) for p in pair.split(":")) for pair in args.pairs])
    docs = allocate_documents(spread, cost, args.budget, args.minimum)
    table = pd.DataFrame({"spread": spread, "cpu_s_per_doc": cost, "docs": docs}).loc[list(spread)]
    table["cpu_s"] = table["docs"] * table["cpu_s_per_doc"]
    print(table.to_string(float_format="%.3f"))
    print(f"total {table['cpu_s'].sum():.1f} CPU-s; Average paired 95 % half-width "
          f"±{100 * average_halfwidth(spread, docs):.2f} points (uniform {args.minimum}: "
          f"±{100 * average_halfwidth(spread, dict.fromkeys(spread, args.minimum)):.2f})")


if __name__ == "__main__":
    main()
