"""Paper-style tables from the collated results, each rendered as Markdown, LaTeX and HTML.

A table is row groups ("Ratio = 20% w/o tune") of method rows; every cell keeps its number, a
detail (stderr, sd over seeds or ratios), whether it came from a subsample (†) and its mark in the
group (best bold; statistically indistinguishable from the best, by the paired bootstrap of
prunebench.reporting.comparisons, underlined). The protocol the numbers rest on is written under
each table. Markdown goes through pandas' `to_markdown`; LaTeX and HTML are written here, pandas'
`Styler` styling whole cells only and having no notes (README "Reports").
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from .comparisons import pair_columns
from .deployment import formats_in
from .protocol import (
    DAGGER,
    calibration_notes,
    comparison_note,
    data_note,
    efficiency_notes,
    full_perplexity_notes,
    model_notes,
    perplexity_notes,
    recovery_notes,
    seeds_notes,
    shared_evaluation_notes,
    zeroshot_notes,
)
from .results import (
    COLUMN_LABELS,
    DATASET_LABELS,
    PPL_COLUMNS,
    Results,
    method_label,
    order_rows,
    row_key,
    setting_label,
)
from .statistics import LEVEL, N_RESAMPLES
from .tradeoff import measure_label, quality_column, quality_speed, speed_measures
from .transfer import pair_transfer

__all__ = ["Cell", "Table", "FORMATS", "render", "table_names", "build_table", "dense_table", "cost_table",
           "tradeoff_table", "recovery_table", "across_models_table", "transfer_table", "correlation_table",
           "deployment_quality_table", "deployment_speed_table", "REFERENCE"]

FORMATS = ("md", "tex", "html")
REFERENCE = Path(__file__).with_name("reference.yaml")


@dataclass
class Cell:
    text: str = "–"  # the number as shown; "–": not measured
    detail: str = ""  # stderr or ratios, shown smaller after the number
    dagger: bool = False  # measured on a subsample
    rank: int = 0  # 1: best in its group (bold), 2: indistinguishable from the best (underlined)


@dataclass
class Table:
    title: str
    columns: list[str]
    groups: list[tuple[str, list[tuple[str, list[Cell]]]]]  # (group label, [(row label, cells)])
    notes: list[str] = field(default_factory=list)
    stub: tuple[str, str] = ("Setting", "Method")


# --- building ------------------------------------------------------------------------------------

def _ranks(values: pd.Series, lower_is_better: bool, tied: pd.Series) -> pd.Series:
    """1 for the best value (equal values share it), 2 where `tied` (statistically
    indistinguishable from the best), else 0; nothing in a group with fewer than two values."""
    if values.notna().sum() < 2:
        return pd.Series(0, index=values.index)
    best = values.min() if lower_is_better else values.max()
    return pd.Series(np.where(values == best, 1, np.where(tied, 2, 0)), index=values.index)


def _tied(results: Results, rows: pd.DataFrame, column: str, model: str | None = None) -> pd.Series:
    """Whether each row's paired interval against its group's best includes 0 (`model`: the rows'
    model, where `rows` has none)."""
    comp = results.comparisons
    if comp.empty:
        return pd.Series(False, index=rows.index)
    best = comp[(comp["reference"] == "best") & (comp["column"] == column)]
    tied = best.assign(tied=(best["low"] <= 0) & (best["high"] >= 0)).set_index(["model", "method", "ratio", "tune"])
    keys = zip([model] * len(rows) if model else rows["model"], rows["method"], rows["ratio"].astype(float),
               rows["tune"])
    return pd.Series([bool(tied["tied"].get(k, False)) for k in keys], index=rows.index)


def _metric_cell(value, stderr, subsampled, kind: str, rank: int, sd=None) -> Cell:
    """A number with its stderr, or with `sd` (the row's spread over seeds) where it is a mean over seeds."""
    if value is None or pd.isna(value):
        return Cell()
    if kind == "removed":  # a fact of the structure, not a score: never ranked
        return Cell(f"{100 * value:.1f}")
    scale, digits = (1, 2) if kind == "ppl" else (100, 1)
    if sd is not None and pd.notna(sd):
        detail = f"sd {scale * sd:.{digits}f}"
    else:
        detail = f"±{100 * stderr:.1f}" if kind != "ppl" and stderr is not None and pd.notna(stderr) else ""
    return Cell(f"{scale * value:.2f}", detail, bool(subsampled), rank)


def _metric_groups(frame: pd.DataFrame, columns: list[tuple], results: Results) -> list:
    """`frame` has `group` and `label` columns and, per (key, kind, column, model) in `columns`,
    `key`, `key_stderr`, `key_subsampled` and, for rows of several seeds, `key_sd`. `column` and
    `model` (None: each row's own) say which comparisons give the key's ties."""
    groups = []
    for group, rows in frame.groupby("group", sort=False):
        ranks = {key: _ranks(rows[key], kind == "ppl", _tied(results, rows, column, model))
                 if kind != "removed" else pd.Series(0, index=rows.index)
                 for key, kind, column, model in columns}
        body = [(row["label"], [_metric_cell(row[key], row.get(f"{key}_stderr"), row.get(f"{key}_subsampled"),
                                             kind, ranks[key][i], row.get(f"{key}_sd"))
                                for key, kind, _, _ in columns])
                for i, row in rows.iterrows()]
        groups.append((group, body))
    return groups


def _with_labels(results: Results, summary: pd.DataFrame, by_model: bool) -> pd.DataFrame:
    many = by_model and len(results.models) > 1
    tunes = summary["tune"] if "tune" in summary else [None] * len(summary)
    group = [f"{model} · {results.setting(ratio, tune)}" if many else results.setting(ratio, tune)
             for model, ratio, tune in zip(summary["model"], summary["ratio"], tunes)]
    seeds = summary["seeds"] if "seeds" in summary else pd.Series(1, index=summary.index)
    labels = [method_label(m) + (f" ({n:.0f} seeds)" if n > 1 else "") for m, n in zip(summary["method"], seeds)]
    return summary.assign(group=group, label=labels)


def _kind(column: str) -> str:
    return "removed" if column == "removed_fraction" else "ppl" if column in PPL_COLUMNS else "acc"


def _metric_notes(results: Results, columns: list[str], groups: list, marks: bool = True) -> list[str]:
    """What a table of metrics rests on; `marks`: it marks the best and what is indistinguishable from it."""
    notes = ["Bold: best in its row group (↓: lower is better); underlined: statistically indistinguishable "
             "from it (the paired interval of the difference to the best includes 0).",
             comparison_note(results)] if marks else []
    if "removed_fraction" in columns:
        notes.append("Removed: the real percentage of decoder attention+MLP parameters removed; the setting's ratio "
                     "is the target, which a method's unit of removal (a KV group, a channel) may overshoot.")
    if any(c.dagger for _, rows in groups for _, cells in rows for c in cells):
        notes.append(f"{DAGGER}: measured on a subsample of the test set (sizes below), not the full set.")
    notes += seeds_notes(results) + shared_evaluation_notes(results)
    if set(columns) & set(PPL_COLUMNS):
        notes += perplexity_notes(results, [c for c in columns if c in PPL_COLUMNS])
    if set(columns) - set(PPL_COLUMNS) - {"removed_fraction"}:
        notes += zeroshot_notes(results)
    return (notes + model_notes(results) + calibration_notes(results)
            + recovery_notes(results) + [data_note(results)])


def paper_table(results: Results, columns: list[str], title: str) -> Table:
    """The LLM-Pruner Table 1 layout: (model,) ratio and tune groups, one row per method."""
    frame = _with_labels(results, results.summary, by_model=True)
    groups = _metric_groups(frame, [(c, _kind(c), c, None) for c in columns], results)
    return Table(title, [COLUMN_LABELS[c] for c in columns], groups, _metric_notes(results, columns, groups))


def models_table(results: Results, dataset: str) -> Table:
    """The FLAP layout: one perplexity column per model, rows by ratio/tune and method."""
    summary = results.summary
    keys = ["ratio", "tune", "method"]
    values = [c for c in (dataset, f"{dataset}_stderr", f"{dataset}_subsampled", f"{dataset}_sd") if c in summary]
    wide = summary.pivot_table(index=keys, columns="model", sort=False, dropna=False, aggfunc="first", values=values)
    # (value, model) -> "model", "model_stderr", "model_subsampled", "model_sd"
    wide.columns = [f"{model}{value.removeprefix(dataset)}" for value, model in wide.columns]
    order = order_rows(summary.assign(model="")).groupby(keys, sort=False)["seeds"].max().reset_index()
    wide = order.merge(wide.reset_index(), on=keys, how="left")
    frame = _with_labels(results, wide.assign(model=""), by_model=False)
    groups = _metric_groups(frame, [(m, "ppl", dataset, m) for m in results.models], results)
    title = f"{DATASET_LABELS.get(dataset, dataset)} perplexity per model (FLAP layout)"
    return Table(title, [f"{m}↓" for m in results.models], groups, _metric_notes(results, [dataset], groups))


def _interval_cell(diff: float, low: float, high: float, column: str) -> Cell:
    """A paired difference and its interval: perplexity as the ratio of perplexities, accuracy in points."""
    if column in PPL_COLUMNS:
        return Cell(f"×{np.exp(diff):.2f}", f"[{np.exp(low):.2f}, {np.exp(high):.2f}]")
    return Cell(f"{100 * diff:+.2f}", f"[{100 * low:+.1f}, {100 * high:+.1f}]")


def _difference_cell(comparisons: pd.DataFrame, key: tuple) -> Cell:
    """The comparison `key` (model, method, ratio, tune, column, reference) as `_interval_cell`."""
    if key not in comparisons.index:
        return Cell()
    return _interval_cell(*comparisons.loc[key, ["diff", "low", "high"]], key[4])


_DIFFERENCE_NOTE = ("Perplexity: the model's perplexity as a multiple of the reference's (the exponential of the "
                    "difference of log-perplexities); accuracy: the difference in points; in brackets its 95 % "
                    "interval. An interval that excludes 1 (perplexity) or 0 (accuracy) supports a ranking; one that "
                    "includes it does not. A row with several seeds is compared by its items' mean over the seeds.")


def paired_table(results: Results) -> Table:
    """Each pruned or recovered row against the dense model and against its group's best: the paired
    difference of perplexity and of the zero-shot average with its bootstrap interval."""
    columns = [c for c in results.measured if c in PPL_COLUMNS or c == "average"]
    comparisons = _by_key(results.comparisons)
    best = results.comparisons[results.comparisons["reference"] == "best"].groupby(
        ["model", "ratio", "tune", "column"])["reference_method"].first()
    frame = _with_labels(results, results.summary[results.summary["method"] != "dense"], by_model=True)
    groups = []
    for group, rows in frame.groupby("group", sort=False):
        body = []
        for _, row in rows.iterrows():
            key = (row["model"], row["method"], float(row["ratio"]), row["tune"])
            cells = []
            for column in columns:
                cells.append(_difference_cell(comparisons, (*key, column, "dense")))
                is_best = best.get((key[0], key[2], key[3], column)) == key[1]
                cells.append(Cell("best") if is_best else _difference_cell(comparisons, (*key, column, "best")))
            body.append((row["label"], cells))
        groups.append((group, body))
    notes = [_DIFFERENCE_NOTE, comparison_note(results), data_note(results)]
    labels = [f"{COLUMN_LABELS[c]} vs {ref}" for c in columns for ref in ("dense", "best")]
    return Table("Paired differences to the dense model and to the best of each row group", labels, groups, notes)


def _schedule(results: Results, row: pd.Series) -> dict:
    metrics = results.metrics.get(row_key(row), {})
    return (metrics.get("pruning", {}).get("recovery") or {}).get("log", {})


def recovery_table(results: Results) -> Table:
    """The recovery curve: each curve method's perplexity and zero-shot Average w/o tune, after the
    default recovery and after each curve point's steps, with the paired difference to the point
    before it (the same method, fewer steps)."""
    curves = results.recovery_curves
    columns = [c for c in results.measured if c in PPL_COLUMNS][:1] + [c for c in ["average"] if c in results.measured]
    comparisons = _by_key(results.comparisons)
    many = len(results.models) > 1
    groups = []
    for (model, ratio), rows in curves.groupby(["model", "ratio"], sort=False):
        body = []
        for _, row in rows.iterrows():
            key = row_key(row)
            log = _schedule(results, row)
            cells = [Cell(f"{row['recovery_steps']:.0f}"),
                     Cell(f"{log['schedule']['epochs']:.3g}") if log else Cell("0"),
                     Cell(f"{log['best_step']:.0f}") if log else Cell()]
            for column in columns:
                cells.append(_metric_cell(row[column], row.get(f"{column}_stderr"), row.get(f"{column}_subsampled"),
                                          _kind(column), 0))
                previous = (*key, column, "previous") if (*key, column, "previous") in comparisons.index else (
                    *key, column, "untuned")
                cells.append(_difference_cell(comparisons, previous) if row["tune"] != "none" else Cell())
            body.append((method_label(row["method"]), cells))
        groups.append((f"{model} · {setting_label(ratio, None)}" if many else setting_label(ratio, None), body))
    labels = ["LoRA steps", "Epochs", "Kept step"]
    labels += [label for c in columns for label in (COLUMN_LABELS[c], f"{COLUMN_LABELS[c]} vs previous")]
    points = {row["recovery_steps"]: _schedule(results, row)["schedule"] for _, row in curves.iterrows()
              if row["tune"] != "none" and _schedule(results, row)}
    notes = ["Every point is its own LoRA recovery of the same pruned model, the recipe of the recovery note below "
             "with only the number of optimizer steps changed (warm-up and validation interval kept in "
             "proportion: " + "; ".join(f"{s['steps']} steps: warm-up {s['warmup_steps']}, validation every "
                                        f"{s['eval_every_steps']}" for _, s in sorted(points.items())) + "); the "
             "adapters with the best validation loss are kept (kept step). 0 steps: the pruned model w/o tune.",
             "vs previous: the paired difference to the same method's point with the next fewer steps (perplexity "
             "as a ratio, accuracy in points), its 95 % interval in brackets; an interval that includes 1 (0) "
             "supports no change between the two points."]
    notes += [comparison_note(results)] + zeroshot_notes(results) + recovery_notes(results) + [data_note(results)]
    return Table("What recovery buys: the recovery curve", labels, groups, notes)
def _by_key(comparisons: pd.DataFrame) -> pd.DataFrame:
    """The comparisons against dense and the best, indexed (model, method, ratio, tune, column, reference)."""
    single = comparisons[comparisons["reference"] != "method"]  # pairs of methods: transfer.pair_transfer
    return single.set_index(["model", "method", "ratio", "tune", "column", "reference"])


def _setting_groups(rows: pd.DataFrame) -> list:
    """`rows` (ratio, tune, method) grouped by setting, each setting's methods once, in report order."""
    ordered = order_rows(rows.assign(model="")).drop_duplicates(["ratio", "tune", "method"])
    return list(ordered.groupby(["ratio", "tune"], sort=False))


def across_models_table(results: Results) -> Table:
    """Each method at each setting on every model: its perplexity as a multiple of its own dense
    model's and its zero-shot Average's difference to it, with the paired intervals."""
    columns = pair_columns(results.measured)
    comparisons = _by_key(results.comparisons)
    pruned = results.summary[results.summary["method"] != "dense"]
    groups = []
    for (ratio, tune), rows in _setting_groups(pruned):
        body = [(method_label(method), [_difference_cell(comparisons, (model, method, ratio, tune, column, "dense"))
                                        for model in results.models for column in columns])
                for method in rows["method"]]
        groups.append((results.setting(ratio, tune), body))
    labels = [f"{model} {COLUMN_LABELS[c]} vs dense" for model in results.models for c in columns]
    notes = ["Every model against its own dense model, on its own windows and documents. " + _DIFFERENCE_NOTE,
             comparison_note(results), data_note(results)]
    return Table("Each method against its own dense model, on every model", labels, groups, notes)


def transfer_table(results: Results) -> Table:
    """Each pair of methods at each setting, on each pair of models: the paired interval of the
    first minus the second on each model and whether the two order them alike (comparisons'
    pairwise intervals; prunebench.reporting.transfer)."""
    columns, groups = pair_columns(results.measured), []
    two = len(results.models) == 2  # else the group labels name each pair's models
    names = results.models if two else ["first model", "second model"]
    headers = [f"{COLUMN_LABELS[c]} {what}" for c in columns for what in (*names, "transfer")]
    for model_a, model_b in combinations(results.models, 2):
        pairs = pair_transfer(results.comparisons, model_a, model_b)
        for (ratio, tune), rows in pairs.groupby(["ratio", "tune"], sort=False):
            body = [(f"{method_label(method)} vs {method_label(other)}",
                     _transfer_cells(pair.set_index("column"), columns))
                    for (method, other), pair in rows.groupby(["method", "other"], sort=False)]
            label = results.setting(ratio, tune)
            groups.append((label if two else f"{model_a} / {model_b} · {label}", body))
    notes = ["Each pair of methods run on both models at the same setting: the first method against the second on "
             "each model (the paired difference with its 95 % interval), and whether the intervals order them the "
             "same way on both models (same), the opposite way (different), or do not order them on at least one "
             "(cannot tell). " + _DIFFERENCE_NOTE, comparison_note(results)]
    return Table("Which conclusions transfer between models: pairs of methods", headers, groups, notes)


def _transfer_cells(pair: pd.DataFrame, columns: list[str]) -> list[Cell]:
    """A pair's interval on each model and the verdict, per column (`pair_transfer` rows by column)."""
    cells = []
    for column in columns:
        if column not in pair.index:
            cells += [Cell(), Cell(), Cell()]
            continue
        row = pair.loc[column]
        cells += [_interval_cell(row[f"diff_{m}"], row[f"low_{m}"], row[f"high_{m}"], column) for m in "ab"]
        cells.append(Cell(row["verdict"]))
    return cells


def correlation_table(results: Results) -> Table:
    """Spearman's rank correlation of the methods between each pair of models, per setting and column."""
    corr = results.correlations
    groups = []
    for (model_a, model_b), pair in corr.groupby(["model_a", "model_b"], sort=False):
        body = [(f"{results.setting(r.ratio, r.tune)} · {COLUMN_LABELS[r.column]}",
                 [Cell("–", "a model's methods all tie") if np.isnan(r.rho)
                  else Cell(f"{r.rho:+.2f}", f"[{r.low:+.2f}, {r.high:+.2f}]"), Cell(f"{r.methods}")])
                for r in pair.itertuples()]
        groups.append((f"{model_a} / {model_b}", body))
    notes = [f"Spearman's ρ of the methods' scores (perplexity, zero-shot Average) between the two models, over the "
             f"methods both ran at the setting; in brackets its {100 * LEVEL:g} % percentile bootstrap interval "
             f"({N_RESAMPLES:,} resamples of each model's own windows and documents, seeded, the same draw for all of "
             "a model's methods). An interval above 0 says the methods' order carries over; one that includes 0 "
             "does not say whether it does."]
    return Table("Rank correlation of the methods between models", ["Spearman ρ", "Methods"], groups, notes,
                 stub=("Models", "Setting"))


def seeds_table(results: Results) -> Table:
    """Every seed's numbers of the rows evaluated with several calibration seeds, and their sd."""
    columns = [c for c in results.measured if c in results.seeds]
    flags = results.summary.set_index(["model", "method", "ratio", "tune"])
    frame = _with_labels(results, results.seeds.assign(seeds=1), by_model=True)
    groups = []
    for group, rows in frame.groupby("group", sort=False):
        body = []
        for (method, _), runs in rows.groupby(["method", "ratio"], sort=False):
            for _, run in runs.iterrows():
                flag = flags.loc[(run["model"], method, float(run["ratio"]), run["tune"])]
                body.append((f"{method_label(method)} · seed {run['seed']:.0f}",
                             [_metric_cell(run[c], run.get(f"{c}_stderr"), flag.get(f"{c}_subsampled"), _kind(c), 0)
                              for c in columns]))
            spread = runs[columns].astype(float).std(ddof=1)
            body.append((f"{method_label(method)} · sd over seeds",
                         [_metric_cell(spread[c], None, False, _kind(c), 0) for c in columns]))
        groups.append((group, body))
    notes = ["Each calibration seed is a fresh calibration draw (Random: a fresh random choice); the main table "
             "shows their mean. The sd over seeds (calibration spread) compares with each seed's ± stderr "
             "(evaluation noise)."]
    return Table("Calibration seeds: every seed's numbers", [COLUMN_LABELS[c] for c in columns], groups,
                 notes + _metric_notes(results, columns, groups, marks=False))


def dense_table(results: Results) -> Table:
    """The dense model under the papers' protocol: perplexity on every window of each test set and
    accuracy on every document of each task where measured, beside the subsample every pruned model
    is measured on (how representative the draw is), and its other scores."""
    full = [c for c in results.measured if f"{c}_full" in results.summary]
    rows = []
    for model in results.models:
        dense = results.dense(model)
        cells = []
        for c in results.measured:
            kind = "ppl" if c in PPL_COLUMNS else "acc"
            if c in full:
                cells.append(_metric_cell(dense[f"{c}_full"], dense.get(f"{c}_full_stderr") if kind == "acc" else None,
                                          False, kind, 0))
            cells.append(_metric_cell(dense[c], dense.get(f"{c}_stderr") if kind == "acc" or c not in full else None,
                                      dense.get(f"{c}_subsampled"), kind, 0))
        rows.append((model, cells))
    columns = [label for c in results.measured
               for label in ([f"{COLUMN_LABELS[c]} full", f"{COLUMN_LABELS[c]} subsample"] if c in full
                             else [COLUMN_LABELS[c]])]
    notes = [f"{DAGGER}: measured on a subsample of the test set, as every row of the main table."]
    notes += full_perplexity_notes(results, [d for d in PPL_COLUMNS if d in full]) + zeroshot_notes(results)
    return Table("The dense model under the papers' protocol", columns, [(setting_label(0, "none"), rows)], notes,
                 stub=("Setting", "Model"))


def cost_table(results: Results) -> Table:
    """What pruning and recovery took per method and ratio: wall time and the job's peak memory."""
    pruned = results.summary[(results.summary["method"] != "dense") & (results.summary["tune"] == "none")]
    frame = _with_labels(results, pruned.drop(columns="tune"), by_model=True)
    groups = []
    for group, rows in frame.groupby("group", sort=False):
        body = []
        for _, row in rows.iterrows():
            key = (row["model"], row["method"], float(row["ratio"]))
            record = results.metrics[(*key, "none")]["pruning"]
            recovery = results.metrics.get((*key, "lora"), {}).get("pruning", {}).get("recovery")
            cells = [Cell(f"{record['wall_s']['prune']:.1f}"), Cell(f"{record['peak_memory_mb']:,.0f}")]
            cells += ([Cell(f"{recovery['wall_s']['recover']:.1f}"), Cell(f"{recovery['peak_memory_mb']:,.0f}")]
                      if recovery else [Cell(), Cell()])
            body.append((row["label"], cells))
        groups.append((group, body))
    notes = ["Wall time of the job's step on this machine (model loading excluded; FLAP's and Wanda-sp's "
             "activation statistics are a separate, shared job) and the job process's peak RSS, which "
             "includes the libraries (about 0.5 GB). Recovery: LoRA with the settings of the main table's notes."]
    notes += paper_scale_memory_note(results)
    columns = ["Prune (s)", "Prune peak memory (MB)", "Recover (s)", "Recover peak memory (MB)"]
    return Table("Pruning and recovery cost", columns, groups, notes)


def paper_scale_memory_note(results: Results) -> list[str]:
    """What gradient-based importance would take at the paper's scale, as each method's prune job
    estimated it (`details.memory_at_paper_scale`): LLM-Pruner on LLaMA-7B, say."""
    estimates = {}
    for (_, method, _, _), m in results.metrics.items():
        est = (m.get("pruning") or {}).get("details", {}).get("memory_at_paper_scale")
        if est:
            estimates.setdefault(method, est)
    if not estimates:
        return []
    parts = [f"{method_label(method)}: {e['total']:.0f} GB in {e['precision']} (weights {e['weights']:.1f}, Fisher "
             f"{e['fisher']:.1f}, activations for backward {e['activations']:.1f})" for method, e in estimates.items()]
    model = next(iter(estimates.values()))["model"]
    return [f"Expected memory of the importance computation on {model} (estimate, the paper's calibration tokens; "
            f"gradients are consumed as they arrive, so at most one layer's are held): {'; '.join(parts)}."]


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def _interval(row: pd.Series, speedup: str) -> str:
    return f"[{row[f'{speedup}_low']:.2f}–{row[f'{speedup}_high']:.2f}]"


def _speed_cell(row: pd.Series, value: str, speedup: str, fmt: str) -> Cell:
    share = row[speedup.replace("_speedup", "_vs_ideal")]
    return Cell(fmt.format(row[value]), f"(dense {fmt.format(row[f'{value}_dense'])}; {row[speedup]:.2f}× "
                                        f"{_interval(row, speedup)}, {share:.0%} of ideal)")


def _rate_note(eff: pd.DataFrame, batch: int) -> str:
    """Why a rate is shown beside the dense model's own rate in the same process."""
    dense = eff[f"prefill_b{batch}_tokens_per_s_dense"]
    return (f"Rates (tok/s, ms/token) are medians over the repeats in each pair's own process, beside the dense "
            f"model's in that same process: separate processes run at different speeds (here the dense model's "
            f"prefill at batch {batch} ran at {dense.min():,.0f}–{dense.max():,.0f} tok/s across the pairs), so "
            "compare models by their paired speedups, not by rates from different rows.")


def efficiency_table(results: Results) -> Table:
    eff = results.efficiency.copy()
    prefill = sorted({int(c[len("prefill_b"):-len("_tokens_per_s")]) for c in eff if c.endswith("_tokens_per_s")})
    dense_mem = eff[eff["method"] == "dense"].set_index("model")["peak_memory_mb"]
    eff["memory_ratio"] = eff["peak_memory_mb"] / eff["model"].map(dense_mem)
    frame = _with_labels(results, eff, by_model=True)
    groups = []
    for group, rows in frame.groupby("group", sort=False):
        body = []
        for _, r in rows.iterrows():
            cells = [Cell(_human(r["params"]), f"({r['params_ratio']:.2f}× dense)"),
                     Cell(_human(r["flops_per_token"]), f"({r['flops_ratio']:.2f}× dense)"),
                     Cell(f"{r['ideal_speedup']:.2f}×")]
            cells += [_speed_cell(r, f"prefill_b{b}_tokens_per_s", f"prefill_b{b}_speedup", "{:,.0f}") for b in prefill]
            cells += [_speed_cell(r, "decode_ms_per_token", "decode_speedup", "{:.2f}"),
                      Cell(f"{r['peak_memory_mb']:,.0f}", f"({r['memory_ratio']:.2f}× dense)")]
            body.append((r["label"], cells))
        groups.append((group, body))
    columns = ["Params", "FLOPs/token", "FLOP-ideal speedup", *[f"Prefill b{b} (tok/s)" for b in prefill],
               "Decode (ms/token)", "Peak memory (MB)"]
    notes = efficiency_notes(results) + ([_rate_note(eff, prefill[0])] if prefill else [])
    return Table("Efficiency against the dense model and the FLOP-ideal", columns, groups, notes)


def tradeoff_table(results: Results) -> Table:
    """Perplexity against each measured speedup, per model and tune setting, fastest first; bold:
    on the Pareto front of that speedup (no other model both at least as fast and as good)."""
    quality = quality_column(results)
    measures = speed_measures(results.efficiency)
    groups = []
    for model in results.models:
        frame = quality_speed(results, model)
        for tune in dict.fromkeys(frame.loc[frame["method"] != "dense", "tune"]):  # w/o tune, then w/ tune
            rows = frame[frame["tune"] == tune].sort_values([f"{measures[0]}_speedup", quality],
                                                             ascending=[False, True], kind="stable")
            rows = pd.concat([frame[frame["method"] == "dense"], rows[rows["method"] != "dense"]])  # dense first: 1x
            body = []
            for _, r in rows.iterrows():
                cells = [_metric_cell(r[quality], None, r[f"{quality}_subsampled"], "ppl", 0)]
                cells += [Cell(f"{r[f'{m}_speedup']:.2f}×", _interval(r, f"{m}_speedup"), rank=int(r[f"{m}_front"]))
                          for m in measures]
                label = method_label(r["method"]) + ("" if r["method"] == "dense" else f" @ {r['ratio']:g}")
                body.append((label, cells))
            setting = "w/o tune" if tune == "none" else results.recovery_label if tune == "lora" else f"w/ {tune}"
            groups.append((f"{model} · {setting}" if len(results.models) > 1 else setting, body))
    columns = [COLUMN_LABELS[quality], *[f"{measure_label(m).capitalize()} speedup" for m in measures]]
    notes = [f"Bold: on the Pareto front of {DATASET_LABELS[quality]} perplexity against that speedup within its "
             "group (the dense model in both): no other model is at least as fast and at least as good, and better "
             "in one. The dense model first, then fastest first by the first speedup column."]
    notes += efficiency_notes(results) + perplexity_notes(results, [quality])
    return Table("Quality against measured speedup (Pareto front in bold)", columns, groups, notes)


def _ratio_cell(row: pd.Series, name: str, text: str | None = None) -> Cell:
    """A perplexity ratio of the deployment table with its paired interval; "–" where not compared."""
    if pd.isna(row.get(name)):
        return Cell(text or "–")
    ratio = f"×{row[name]:.3f} [{row[f'{name}_low']:.3f}, {row[f'{name}_high']:.3f}]"
    return Cell(text, ratio) if text else Cell(ratio)


def deployment_quality_table(results: Results) -> Table:
    """llama.cpp's perplexity of every exported GGUF, per format, beside PyTorch's: f16 as a
    multiple of PyTorch's, each quantized type of f16's, and each format against the dense model in
    the same format and in f16 (pruning and quantization together), all paired by window."""
    quality = results.deployment.quality
    formats = formats_in(quality)
    groups = []
    for (model, dataset, ratio, tune), rows in quality.groupby(["model", "dataset", "ratio", "tune"], sort=False):
        body = []
        for method, same in rows.groupby("method", sort=False):
            by_format = same.set_index("format")
            cells = [Cell(f"{by_format['pytorch_ppl'].iloc[0]:.2f}")]
            for fmt in formats:
                r = by_format.loc[fmt] if fmt in by_format.index else None
                cells.append(Cell() if r is None else _ratio_cell(r, "pytorch" if fmt == "f16" else "f16",
                                                                  f"{r['ppl']:.2f}"))
            for fmt in formats:
                r = by_format.loc[fmt] if fmt in by_format.index else None
                cells.append(Cell() if r is None else _ratio_cell(r, "dense"))
            last = by_format.loc[formats[-1]] if formats[-1] in by_format.index else None
            cells.append(Cell() if last is None else _ratio_cell(last, "dense_f16"))
            body.append((method_label(method), cells))
        label = results.setting(ratio, tune)
        groups.append((f"{model} · {DATASET_LABELS.get(dataset, dataset)} · {label}", body))
    columns = ["PyTorch ppl", *[f"llama.cpp {f} ppl" for f in formats], *[f"{f} vs dense {f}" for f in formats],
               f"{formats[-1]} vs dense f16"]
    notes = [f"Perplexity on the suite's own windows ({int(quality['windows'].iloc[0])} per set, BOS as the model's "
             "policy), computed by llama.cpp from the exported GGUF and by PyTorch from the checkpoint in the "
             "evaluation's dtype. Small text after a llama.cpp perplexity: f16 as a multiple of PyTorch's, a "
             "quantized type as a multiple of the same model in f16, each with its paired 95 % bootstrap interval "
             f"over the windows ({N_RESAMPLES:,} resamples). The last columns: the model's perplexity as a multiple "
             "of the dense model's in the same format, and in f16 (what pruning and quantization cost together).",
             "Export formats: model-f16.gguf written by PruneBench (llama.cpp's `deci` architecture for per-layer "
             "widths), quantized by llama.cpp's own quantizer (README \"Deployment\")."]
    notes += _export_notes(results.deployment.exports)
    return Table("Deployed formats: llama.cpp perplexity beside PyTorch's", columns, groups, notes)


def _export_notes(exports: pd.DataFrame) -> list[str]:
    """Which rows have a standard HF folder, which needed zero units padded into the GGUF (llama.cpp
    cannot express their structure as it is), which have no GGUF and why."""
    def names(rows: pd.DataFrame) -> str:
        return ", ".join(f"{method_label(r.method)}{'' if r.method == 'dense' else f' {r.ratio:g}'}"
                         f"{' w/ tune' if r.tune != 'none' else ''}" for r in rows.itertuples())

    notes = []
    hf = exports[exports["hf"] == "written"]
    if len(hf):
        notes.append(f"Standard Hugging Face folder (plain from_pretrained): {names(hf)}; the others' per-layer widths "
                     "or biases have no standard config (use the GGUF or the PruneBench checkpoint).")
    padded = exports[exports["paddings"] > 0]
    if len(padded):
        notes.append(f"Padded with zero units (exact; speed given up where they run): {names(padded)} "
                     "(export.json names each layer and the llama.cpp source that forces it).")
    missing = exports[exports["gguf"] != "written"]
    notes += [f"No GGUF for {names(missing.iloc[[i]])}: {reason}" for i, reason in enumerate(missing["gguf_reason"])]
    return notes


def deployment_speed_table(results: Results) -> Table:
    """Per measure and ratio, each exported structure's paired speedup over the dense model in
    PyTorch and in llama.cpp per format, the smallest quantized type against the dense f16 too,
    beside the FLOP-ideal; the dense rows hold the A/A noise floor and quantization alone."""
    speed, eff = results.deployment.speed, results.efficiency
    formats = formats_in(speed)
    cross = speed[(speed["format"] != speed["dense_format"]) & (speed["method"] != "dense")]
    crossed = formats_in(cross)
    groups = []
    for measure in speed_measures(speed):
        for (model, ratio), rows in speed.groupby(["model", "ratio"], sort=False):
            body = []
            for method, same in rows.groupby("method", sort=False):
                torch_row = eff[(eff["model"] == model) & (eff["method"] == method) & (eff["ratio"] == ratio)]
                cells = [Cell(f"{same['ideal_speedup'].iloc[0]:.2f}×" if pd.notna(same["ideal_speedup"].iloc[0])
                              else "–")]
                cells.append(_speedup_cell(torch_row.iloc[0], measure) if len(torch_row) else Cell())
                for fmt in formats:
                    reference = fmt if method != "dense" else "f16"  # the dense rows: each type against f16
                    pair = same[(same["format"] == fmt) & (same["dense_format"] == reference)]
                    cells.append(_speedup_cell(pair.iloc[0], measure) if len(pair) else Cell())
                for fmt in crossed:
                    pair = same[(same["format"] == fmt) & (same["dense_format"] == "f16")]
                    cells.append(_speedup_cell(pair.iloc[0], measure) if len(pair) else Cell())
                body.append((method_label(method), cells))
            many = f"{model} · " if speed["model"].nunique() > 1 else ""
            groups.append((f"{many}{measure_label(measure).capitalize()} · Ratio = {100 * ratio:g}%", body))
    columns = ["FLOP-ideal", "PyTorch (float32)", *[f"llama.cpp {f}" for f in formats],
               *[f"llama.cpp {f} vs dense f16" for f in crossed]]
    notes = ["Speedup over the dense model in the same runtime and format: the median of paired, interleaved "
             "repeats (dense and pruned back to back, order alternating, each pair in a fresh process) with its "
             "95 % bootstrap interval; the dense rows: PyTorch and llama.cpp f16 against themselves (the noise "
             "floor, whose interval must hold 1) and each quantized type against the dense f16 (what quantization "
             "alone buys). The last columns: the pruned model quantized against the unquantized dense model.",
             "A structure is timed once: checkpoints of the same per-layer shapes share its numbers. llama.cpp runs "
             "with flash attention and the benchmark's threads; its FLOP-ideal is PyTorch's (the same matrices)."]
    bench = results.config.get("benchmark", {})
    notes.append(f"Workloads as in the PyTorch benchmark: a prefill of {bench.get('prefill_tokens')} tokens at batch "
                 f"{', '.join(map(str, bench.get('prefill_batches', [])))} into an empty KV cache (llama.cpp: one "
                 f"batch, a sequence id per row), then {bench.get('decode_tokens')} greedy decode steps at batch 1; "
                 f"{speed['repeats'].min()}–{speed['repeats'].max()} paired repeats per pair.")
    return Table("Deployed formats: speedup in llama.cpp beside PyTorch and the FLOP-ideal", columns, groups, notes)


def _speedup_cell(row: pd.Series, measure: str) -> Cell:
    key = f"{measure}_speedup"
    if pd.isna(row.get(key)):
        return Cell()
    return Cell(f"{row[key]:.2f}×", _interval(row, key))


def reference_table(path: Path = REFERENCE) -> Table:
    """The seeds' published LLaMA-7B numbers, rows of several sources merged by setting and label."""
    ref = yaml.safe_load(path.read_text())
    marks = {name: chr(ord("a") + i) for i, name in enumerate(ref["sources"])}
    rows = pd.DataFrame(ref["rows"])
    columns = [c for c in COLUMN_LABELS if c in rows]
    groups = []
    for (ratio, tune), setting in rows.groupby(["ratio", "tune"], sort=False):
        body = []
        for label, same in setting.groupby("label", sort=False):
            cells = [Cell(f"{same[c].dropna().iloc[0]:.2f}") if same[c].notna().any() else Cell() for c in columns]
            body.append((f"{label} [{','.join(marks[s] for s in same['source'])}]", cells))
        groups.append((setting_label(ratio, tune), body))
    notes = ["Quoted from the papers for comparing trends, not reproduced by PruneBench: LLaMA-7B, the papers' "
             "own protocols and recovery (LLM-Pruner: LoRA on 50k Alpaca examples, 2 epochs). Zero-shot in %."]
    notes += ref.get("notes", [])
    notes += [f"[{marks[name]}] {s['cite']}. {s['url']}" for name, s in ref["sources"].items()]
    return Table("Published LLaMA-7B results (quoted, not reproduced)", [COLUMN_LABELS[c] for c in columns],
                 sorted(groups, key=lambda g: g[0] != setting_label(0, "none")), notes)


def table_names(datasets: list[str], zeroshot: bool, efficiency: bool, dense_full: bool = False,
                pruned: bool = True, seeds: bool = False, models: int = 1, curve: bool = False,
                deployed: bool = False, deployed_speed: bool = False) -> list[str]:
    """The tables a run produces: `datasets` are the perplexity sets evaluated; `dense_full`: the
    dense model was measured on the full test sets or tasks; `pruned`: any method ran; `seeds`:
    a method ran with several calibration seeds; `models`: how many models are configured; `curve`:
    there are recovery-curve points; `deployed` (`deployed_speed`): exported GGUFs were evaluated
    (and timed) in llama.cpp."""
    across = ["across_models", "transfer", "correlation"] if pruned and models > 1 else []
    return ["main", *(["paired"] if pruned else []), *(["recovery"] if curve and pruned else []), *across,
            *(["seeds"] if seeds and pruned else []),
            *(["dense"] if dense_full else []), *[f"flap_{d}" for d in datasets],
            *(["flap_zeroshot"] if zeroshot else []), *(["cost"] if pruned else []),
            *(["efficiency"] if efficiency else []), *(["tradeoff"] if efficiency and datasets else []),
            *(["deployment"] if deployed else []), *(["deployment_speed"] if deployed_speed else []), "reference"]


ACROSS_MODELS = {"across_models": across_models_table, "transfer": transfer_table, "correlation": correlation_table}


def build_table(name: str, results: Results | None, reference: str | Path = REFERENCE) -> Table:
    """Table `name` of `table_names`; the reference table reads only `reference`."""
    if name == "reference":
        return reference_table(Path(reference))
    if name == "main":
        return paper_table(results, ["removed_fraction", *results.measured],
                           "Perplexity and zero-shot accuracy (LLM-Pruner Table 1 layout)")
    if name == "paired":
        return paired_table(results)
    if name in ACROSS_MODELS:
        return ACROSS_MODELS[name](results)
    if name == "seeds":
        return seeds_table(results)
    if name == "recovery":
        return recovery_table(results)
    if name == "dense":
        return dense_table(results)
    if name == "cost":
        return cost_table(results)
    if name == "flap_zeroshot":
        return paper_table(results, [c for c in results.measured if c not in PPL_COLUMNS],
                           "Zero-shot accuracy per task (FLAP layout)")
    if name.startswith("flap_"):
        return models_table(results, name.removeprefix("flap_"))
    if name == "efficiency":
        return efficiency_table(results)
    if name == "tradeoff":
        return tradeoff_table(results)
    if name == "deployment":
        return deployment_quality_table(results)
    if name == "deployment_speed":
        return deployment_speed_table(results)
    raise ValueError(f"unknown table {name!r}")


# --- rendering -----------------------------------------------------------------------------------

def render(table: Table, fmt: str) -> str:
    return {"md": to_markdown, "tex": to_latex, "html": to_html}[fmt](table)


def _md_cell(c: Cell) -> str:
    value = f"**{c.text}**" if c.rank == 1 else f"<ins>{c.text}</ins>" if c.rank == 2 else c.text
    text = value + (DAGGER if c.dagger else "") + (f" {c.detail}" if c.detail else "")
    return text.replace("|", "\\|")


def to_markdown(table: Table) -> str:
    """pandas' `to_markdown` (tabulate's pipe table), the marks written into each cell's text."""
    rows = [[group if i == 0 else "", label, *map(_md_cell, cells)]
            for group, body in table.groups for i, (label, cells) in enumerate(body)]
    frame = pd.DataFrame(rows, columns=[*table.stub, *table.columns])
    body = frame.to_markdown(index=False, disable_numparse=True,
                             colalign=["left"] * len(table.stub) + ["right"] * len(table.columns))
    return "\n".join([f"**{table.title}**", "", body, ""] + [f"- {n}" for n in table.notes]) + "\n"


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "†": r"$^\dagger$",
          "↓": r"$\downarrow$", "±": r"$\pm$", "×": r"$\times$", "¹": r"$^1$", "²": r"$^2$", "·": r"$\cdot$",
          "–": "--", "—": "---", "Σ": r"$\Sigma$", "ρ": r"$\rho$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in text)


def _tex_cell(c: Cell) -> str:
    value = latex_escape(c.text)
    value = rf"\textbf{{{value}}}" if c.rank == 1 else rf"\underline{{{value}}}" if c.rank == 2 else value
    detail = rf" {{\scriptsize {latex_escape(c.detail)}}}" if c.detail else ""
    return value + (r"$^\dagger$" if c.dagger else "") + detail


def to_latex(table: Table) -> str:
    """A booktabs table (needs \\usepackage{booktabs,multirow})."""
    head = " & ".join(latex_escape(h) for h in [*table.stub, *table.columns])
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(table.title)}}}",
             r"\begin{tabular}{ll" + "r" * len(table.columns) + "}", r"\toprule", head + r" \\"]
    for group, rows in table.groups:
        lines.append(r"\midrule")
        for i, (label, cells) in enumerate(rows):
            first = rf"\multirow{{{len(rows)}}}{{*}}{{{latex_escape(group)}}}" if i == 0 else ""
            lines.append(" & ".join([first, latex_escape(label), *map(_tex_cell, cells)]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\par\smallskip\begin{minipage}{\linewidth}\footnotesize"]
    lines += [latex_escape(n) + r"\par" for n in table.notes]
    return "\n".join(lines + [r"\end{minipage}", r"\end{table}"]) + "\n"


_CSS = """body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1rem;color:#222}
table{border-collapse:collapse;font-size:14px;margin-bottom:.8rem}
caption{font-weight:600;text-align:left;padding-bottom:.4rem}
th,td{padding:3px 9px;text-align:right;white-space:nowrap}
th{border-bottom:2px solid #333;border-top:2px solid #333}
.l{text-align:left}
tbody tr.first td{border-top:1px solid #999}
tbody tr:last-child td{border-bottom:2px solid #333}
.d{color:#666;font-size:80%}
ul.notes{font-size:12px;color:#444;max-width:70em;padding-left:1.2em}"""


def _html_cell(c: Cell) -> str:
    value = html.escape(c.text)
    value = f"<strong>{value}</strong>" if c.rank == 1 else f"<u>{value}</u>" if c.rank == 2 else value
    return (f"<td>{value}" + (f"<sup>{DAGGER}</sup>" if c.dagger else "")
            + (f' <span class="d">{html.escape(c.detail)}</span>' if c.detail else "") + "</td>")


def to_html(table: Table) -> str:
    """A standalone page (the Snakemake report shows each table in its own frame)."""
    head = "".join(f'<th class="l">{html.escape(h)}</th>' for h in table.stub)
    head += "".join(f"<th>{html.escape(h)}</th>" for h in table.columns)
    body = []
    for group, rows in table.groups:
        for i, (label, cells) in enumerate(rows):
            first = f'<td class="l" rowspan="{len(rows)}">{html.escape(group)}</td>' if i == 0 else ""
            body.append(f'<tr{" class=first" if i == 0 else ""}>{first}<td class="l">{html.escape(label)}</td>'
                        + "".join(map(_html_cell, cells)) + "</tr>")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in table.notes)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(table.title)}</title>'
            f"<style>{_CSS}</style></head><body>\n<table><caption>{html.escape(table.title)}</caption>"
            f"<thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body)
            + f'\n</tbody></table>\n<ul class="notes">{notes}</ul>\n</body></html>\n')
