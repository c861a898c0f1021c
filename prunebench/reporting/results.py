"""Collating results: every metrics.json becomes one row (a run: one model, method, ratio, tune and
calibration seed); and reading the collated results back for the reports (tables, plots, README),
with what each number rests on: whether it came from a subsample, its stderr, its spread over
calibration seeds, its paired comparisons, and the protocol it was measured under.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..evaluation import model_evaluation
from ..evaluation.zeroshot import task_config
from ..io import read_json
from ..paths import LLAMACPP, split_run
from .deployment import Deployment, load_deployment

__all__ = ["SUMMARY_COLUMNS", "PPL_COLUMNS", "TASK_COLUMNS", "METRIC_COLUMNS", "COLUMN_LABELS", "summary_row",
           "collate", "Results", "load_results", "order_rows", "method_label", "setting_label", "row_key",
           "is_main_run", "earlier_results", "recovery_steps", "is_curve_point"]

PPL_COLUMNS = ["wikitext2", "ptb", "ptb_test"]  # "ptb": the validation split, as both references
TASK_COLUMNS = ["boolq", "piqa", "hellaswag", "winogrande", "arc_e", "arc_c", "obqa"]
SUMMARY_COLUMNS = ["model", "method", "ratio", "tune", "params", "params_kept", *PPL_COLUMNS, *TASK_COLUMNS,
                   "average"]
METRIC_COLUMNS = [*PPL_COLUMNS, *TASK_COLUMNS, "average"]
COLUMN_LABELS = {"wikitext2": "WikiText2↓", "ptb": "PTB↓", "ptb_test": "PTB test↓", "boolq": "BoolQ",
                 "piqa": "PIQA", "hellaswag": "HellaSwag", "winogrande": "WinoGrande", "arc_e": "ARC-e",
                 "arc_c": "ARC-c", "obqa": "OBQA", "average": "Average", "removed_fraction": "Removed %"}
DATASET_LABELS = {"wikitext2": "WikiText-2", "ptb": "PTB", "ptb_test": "PTB test"}

# Rows read from baselines to the papers' methods, dense first; unknown methods follow by name.
METHOD_ORDER = ["dense", "random", "magnitude-sp", "wanda-sp", "wanda-sp-query-heads", "llm-pruner-l2",
                "llm-pruner-random", "llm-pruner-channel", "llm-pruner-vector", "llm-pruner-element2",
                "llm-pruner-element1", "flap-paper-metric", "flap-query-heads", "flap", "minitron-mlp",
                "minitron-heads-mlp", "minitron", "shortgpt", "shortened-llama-ppl"]
METHOD_LABELS = {"dense": "Dense", "random": "Random", "magnitude-sp": "Magnitude-sp (L2)",
                 "wanda-sp": "Wanda-sp", "wanda-sp-query-heads": "Wanda-sp (query heads)",
                 "llm-pruner-l2": "LLM-Pruner L2", "llm-pruner-random": "LLM-Pruner Random",
                 "llm-pruner-channel": "LLM-Pruner Channel",
                 "llm-pruner-vector": "LLM-Pruner Vector", "llm-pruner-element1": "LLM-Pruner Element¹",
                 "llm-pruner-element2": "LLM-Pruner Element²", "flap-paper-metric": "FLAP (paper's head metric)",
                 "flap-query-heads": "FLAP (query heads)", "flap": "FLAP", "minitron": "Minitron (heads, MLP, hidden)",
                 "minitron-heads-mlp": "Minitron (heads, MLP)", "minitron-mlp": "Minitron (MLP)",
                 "shortgpt": "ShortGPT (BI)", "shortened-llama-ppl": "Shortened LLaMA (PPL)"}


def summary_row(metrics: dict) -> dict:
    """The fixed summary columns (a value that was not measured stays empty, never 0), then the
    real removed fraction, every stderr, the full-test-set perplexities and accuracies where measured
    (the dense model's) and the subsample notes."""
    row = {k: metrics[k] for k in ("model", "method", "ratio", "tune", "params", "params_kept")}
    row["removed_fraction"] = metrics["removed_fraction"]
    row["recovery_steps"] = recovery_steps(metrics)
    row["run"], row["seed"], row["dtype"] = metrics["run"], metrics["seed"], metrics["dtype"]
    row["evaluated_as"] = metrics["evaluation"]["evaluated_as"]
    for name, r in metrics["perplexity"].items():
        row[name], row[f"{name}_stderr"] = r["ppl"], r["ppl_stderr"]
        full = r.get("full", r if r["windows"] == r["windows_total"] else None)
        if full:  # the papers' protocol: every window of the test set
            row[f"{name}_full"], row[f"{name}_full_stderr"] = full["ppl"], full["ppl_stderr"]
    for task, r in metrics["zeroshot"].items():
        column = task_config(task)["metadata"]["column"]
        row[column], row[f"{column}_stderr"] = r["value"], r["stderr"]
        if "full" in r:  # the dense model on every document of the task
            row[f"{column}_full"], row[f"{column}_full_stderr"] = r["full"]["value"], r["full"]["stderr"]
    row["average"] = metrics.get("average")
    row["deviations"] = "; ".join(metrics.get("deviations", []))
    return row


def recovery_steps(metrics: dict) -> float:
    """The optimizer steps of a row's recovery as its checkpoint records them: 0 w/o tune, NaN for
    results recorded before the schedule was."""
    if metrics["tune"] == "none":
        return 0
    return (metrics["pruning"].get("recovery") or {}).get("log", {}).get("schedule", {}).get("steps", math.nan)


def is_curve_point(tune: str) -> bool:
    """Whether a tune label is a recovery-curve point ("lora-<steps>", prunebench.config.curve_tune)."""
    return bool(re.fullmatch(r"lora-[0-9]+", tune))


def collate(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per metrics.json (run), every model evaluated in the same dtype."""
    rows = [summary_row(read_json(p)) for p in paths]
    dtypes = {r["dtype"] for r in rows}
    if len(dtypes) > 1:
        raise ValueError(f"results evaluated in different dtypes {sorted(dtypes)} cannot be compared: "
                         + ", ".join(f"{r['run']}/{r['ratio']:g}/{r['tune']}: {r['dtype']}" for r in rows))
    table = pd.DataFrame(rows)
    extra = [c for c in table.columns if c not in SUMMARY_COLUMNS]
    table = table.reindex(columns=SUMMARY_COLUMNS + extra)
    return table.sort_values(["model", "tune", "ratio", "method"], kind="stable").reset_index(drop=True)


def method_label(name: str) -> str:
    return METHOD_LABELS.get(name, name)


def setting_label(ratio: float, tune: str | None, recovery: str = "w/ tune") -> str:
    """The papers' row-group label: "Ratio = 20% w/o tune", "Ratio = 20% w/ tune" (tune None:
    "Ratio = 20%", for what recovery does not change, such as the structure's speed); `recovery`
    names the LoRA rows (`Results.recovery_label`: what this run's recovery was)."""
    head = f"Ratio = {100 * ratio:g}%"
    if ratio == 0 or tune is None:
        return head
    return f"{head} w/o tune" if tune == "none" else f"{head} {recovery}" if tune == "lora" else f"{head} w/ {tune}"


def row_key(row) -> tuple:
    return row["model"], row["method"], float(row["ratio"]), row["tune"]


def is_main_run(row) -> bool:
    """The run of a method's first calibration seed (its results folder is the method's name)."""
    return split_run(row["run"])[1] is None


def earlier_results(tracked: Iterable[str], models: Iterable[str], evaluation: dict,
                    root: str | Path = ".") -> list[str]:
    """The metrics.json files under `root`/results of `models` that the current config does not
    produce (`tracked`: the ones it does), e.g. the extended suite's rows after a default run, which
    the report merges with its own. Only those evaluated under the same `evaluation` settings
    (windows, documents, dtype, ...; `model_evaluation`: not the dense-only `full_for_dense`) join:
    numbers from another protocol are listed and left out."""
    tracked, merged = {str(Path(p)) for p in tracked}, []
    for model in models:
        for path in sorted(Path(root).glob(f"results/{model}/*/*/metrics.json")) + sorted(
                Path(root).glob(f"results/{model}/*/*/*/metrics.json")):
            name = str(path.relative_to(root))
            if name in tracked or path.parent.name == LLAMACPP:  # llama.cpp's numbers: the deployment tables'
                continue
            recorded = read_json(path)["provenance"]["config"].get("evaluation")
            if recorded and model_evaluation(recorded) == model_evaluation(evaluation):
                merged.append(name)
            else:
                print(f"{name}: evaluated under other evaluation settings than this run's; not merged")
    return merged


def _method_rank(name: str) -> tuple:
    return (METHOD_ORDER.index(name), "") if name in METHOD_ORDER else (len(METHOD_ORDER), name)


@dataclass
class Results:
    """The summary (one row per model, method, ratio, tune, in report order; several seeds' mean)
    with, per measured column, `<col>_subsampled` flags, plus `average_stderr`; every model's
    efficiency rows; each row's (main run's) metrics.json for the protocol; the config the
    efficiency rows were measured under; every seed's row of methods run with several
    (`seeds`), the paired comparisons (`comparisons`, prunebench.reporting.comparisons) and the
    methods' rank correlations between models (`correlations`)."""

    summary: pd.DataFrame
    efficiency: pd.DataFrame
    metrics: dict[tuple, dict]
    config: dict = field(default_factory=dict)  # the run's config: efficiency.csv does not record its settings
    seeds: pd.DataFrame = field(default_factory=pd.DataFrame)
    comparisons: pd.DataFrame = field(default_factory=pd.DataFrame)
    correlations: pd.DataFrame = field(default_factory=pd.DataFrame)  # prunebench.reporting.transfer
    curve: pd.DataFrame = field(default_factory=pd.DataFrame)  # the recovery curve's points, not in the summary
    deployment: Deployment = field(default_factory=Deployment)  # llama.cpp's numbers of the exported GGUFs

    @property
    def recovery_curves(self) -> pd.DataFrame:
        """Every (model, method, ratio) with recovery-curve points: its rows w/o tune, w/ the default
        recovery and at each curve point, by their recovery steps (the curve's x)."""
        if self.curve.empty:
            return self.curve
        keys = ["model", "method", "ratio"]
        on_curve = self.curve[keys].drop_duplicates()
        rows = pd.concat([self.summary.merge(on_curve, on=keys), self.curve], ignore_index=True)
        rows["_method"] = rows["method"].map(_method_rank)  # methods in report order, each by its steps
        rows = rows.sort_values(["model", "ratio", "_method", "recovery_steps"], kind="stable")
        return rows.drop(columns="_method").reset_index(drop=True)

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(self.summary["model"]))

    @property
    def measured(self) -> list[str]:
        """The summary columns that hold at least one number, in the papers' order."""
        columns = [*PPL_COLUMNS, *TASK_COLUMNS, "average"]
        return [c for c in columns if c in self.summary and self.summary[c].notna().any()]

    @property
    def recovery_label(self) -> str:
        """The recovered rows' label from their recorded effective schedule, "w/ LoRA, 20 steps":
        "w/ tune" would claim the papers' recovery (2 epochs of 51,760 examples) for minutes of it.
        "w/ tune" only for results recorded before the schedule was."""
        steps = sorted({m["pruning"]["recovery"]["log"]["schedule"]["steps"] for m in self.metrics.values()
                        if m["tune"] == "lora" and "schedule" in m["pruning"].get("recovery", {}).get("log", {})})
        return f"w/ LoRA, {'/'.join(map(str, steps))} steps" if steps else "w/ tune"

    def setting(self, ratio: float, tune: str | None) -> str:
        """`setting_label` with this run's recovery label."""
        return setting_label(ratio, tune, self.recovery_label)

    def dense(self, model: str) -> pd.Series:
        rows = self.summary[(self.summary["model"] == model) & (self.summary["method"] == "dense")]
        if rows.empty:
            raise ValueError(f"summary has no dense row for model {model!r}: the reports compare with it")
        return rows.iloc[0]


def load_results(summary_csv: str | Path, metrics_paths: Iterable[str | Path],
                 efficiency_csvs: Iterable[str | Path] = (), config: dict | None = None,
                 seeds_csv: str | Path | None = None, comparisons_csv: str | Path | None = None,
                 correlations_csv: str | Path | None = None, llamacpp_metrics: Iterable[str | Path] = (),
                 llamacpp_efficiency: Iterable[str | Path] = ()) -> Results:
    metrics = {row_key(m): m for m in map(read_json, metrics_paths) if is_main_run(m)}
    summary = pd.read_csv(summary_csv)
    summary["tune"] = summary["tune"].fillna("none")
    flags = pd.DataFrame([_subsample_flags(metrics[row_key(r)]) for _, r in summary.iterrows()],
                         index=summary.index)
    summary = pd.concat([summary, flags], axis=1)
    summary["average_stderr"] = _average_stderr(summary)
    frames = [pd.read_csv(p) for p in efficiency_csvs]
    efficiency = order_rows(pd.concat(frames, ignore_index=True)) if frames else pd.DataFrame()
    seeds = pd.read_csv(seeds_csv) if seeds_csv else pd.DataFrame()
    if not seeds.empty:
        seeds = order_rows(seeds.assign(tune=seeds["tune"].fillna("none"), average_stderr=_average_stderr(seeds)))
    comparisons = pd.read_csv(comparisons_csv) if comparisons_csv else pd.DataFrame()
    correlations = pd.read_csv(correlations_csv) if correlations_csv else pd.DataFrame()
    on_curve = summary["tune"].map(is_curve_point)
    return Results(order_rows(summary[~on_curve]), efficiency, metrics, config or {}, seeds, comparisons, correlations,
                   summary[on_curve].reset_index(drop=True), load_deployment(llamacpp_metrics, llamacpp_efficiency))


def order_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Report order: by model and ratio (dense first), w/o tune before w/ tune, methods in
    METHOD_ORDER."""
    tuned = frame["tune"].ne("none") if "tune" in frame else False
    keys = pd.DataFrame({"_tuned": tuned, "_method": frame["method"].map(_method_rank)}, index=frame.index)
    ordered = pd.concat([frame, keys], axis=1).sort_values(["model", "ratio", "_tuned", "_method"], kind="stable")
    return ordered.drop(columns=["_tuned", "_method"]).reset_index(drop=True)


def _subsample_flags(metrics: dict) -> dict[str, bool]:
    """True where the number came from fewer windows or documents than the full test set."""
    flags = {f"{name}_subsampled": r["windows"] < r["windows_total"] for name, r in metrics["perplexity"].items()}
    for task, r in metrics["zeroshot"].items():
        flags[f"{task_config(task)['metadata']['column']}_subsampled"] = r["docs"] < r["docs_total"]
    tasks = [flags[f"{c}_subsampled"] for c in TASK_COLUMNS if f"{c}_subsampled" in flags]
    flags["average_subsampled"] = any(tasks)
    return flags


def _average_stderr(summary: pd.DataFrame) -> pd.Series:
    """Stderr of the unweighted task mean, the tasks taken as independent: sqrt(sum se^2) / n."""
    columns = [f"{c}_stderr" for c in TASK_COLUMNS if f"{c}_stderr" in summary]
    if not columns:
        return pd.Series(math.nan, index=summary.index)
    return (summary[columns] ** 2).sum(axis=1, min_count=1) ** 0.5 / summary[columns].notna().sum(axis=1)
