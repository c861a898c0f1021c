"""Where a run's CPU time goes: Snakemake's benchmark files (results/benchmarks/{rule}/..., one per
job: wall seconds, peak RSS, CPU seconds of the job's processes) summed per rule.

    python -m prunebench.reporting.budget [results/benchmarks]
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

__all__ = ["rule_budget"]


def rule_budget(folder: str | Path) -> pd.DataFrame:
    """Per rule: jobs, CPU-minutes, wall-minutes (summed over jobs) and the largest peak RSS (MB),
    most CPU first, with a total row."""
    folder = Path(folder)
    files = sorted(folder.rglob("*.tsv"))
    if not files:
        raise FileNotFoundError(f"no benchmark files under {folder}")
    jobs = pd.concat([pd.read_csv(f, sep="\t").assign(rule=f.relative_to(folder).parts[0]) for f in files])
    table = jobs.groupby("rule").agg(jobs=("s", "size"), cpu_min=("cpu_time", "sum"), wall_min=("s", "sum"),
                                     max_rss_mb=("max_rss", "max"))
    table[["cpu_min", "wall_min"]] /= 60
    table = table.sort_values("cpu_min", ascending=False)
    table.loc["total"] = [*table[["jobs", "cpu_min", "wall_min"]].sum(), table["max_rss_mb"].max()]
    return table.round(2)


if __name__ == "__main__":
    print(rule_budget(sys.argv[1] if len(sys.argv) > 1 else "results/benchmarks").to_string())
