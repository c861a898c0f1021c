"""The "what we see" paragraph of reports/README.md, written from the numbers: the best method per
ratio and tune, whether recovery helped, measured speed against the FLOP-ideal, which methods
chose a per-layer structure. Every claim is a comparison the numbers make, stated with its
uncertainty; nothing here is typed by hand.
"""
from __future__ import annotations

import pandas as pd

from .protocol import DAGGER
from .results import DATASET_LABELS, PPL_COLUMNS, Results, method_label, setting_label
from .tradeoff import measure_label, quality_column, quality_speed, speed_measures

__all__ = ["what_we_see"]


def _mark(row: pd.Series, column: str) -> str:
    return DAGGER if row.get(f"{column}_subsampled") else ""


def _ppl(row: pd.Series, column: str) -> str:
    return f"{row[column]:.2f}{_mark(row, column)}"


def _acc(row: pd.Series) -> str:
    return f"{100 * row['average']:.2f} ± {100 * row['average_stderr']:.1f} %{_mark(row, 'average')}"


def _range(values: list[int]) -> str:
    return f"{min(values)}" if min(values) == max(values) else f"{min(values)}–{max(values)}"


def _best_sentences(results: Results, rows: pd.DataFrame, dense: pd.Series) -> list[str]:
    ppl = next((c for c in PPL_COLUMNS if c in results.measured), None)
    out = []
    for (ratio, tune), group in rows.groupby(["ratio", "tune"], sort=False):
        parts, lowest = [], None
        if ppl:
            lowest = group.loc[group[ppl].idxmin()]
            parts.append(f"{method_label(lowest['method'])} keeps the lowest {DATASET_LABELS[ppl]} perplexity "
                         f"({_ppl(lowest, ppl)}; dense {_ppl(dense, ppl)})")
        if "average" in results.measured:
            ranked = group.sort_values("average", ascending=False)
            best = ranked.iloc[0]
            same = lowest is not None and lowest["method"] == best["method"]
            who = "" if same else f"{method_label(best['method'])} "
            text = f"{who}the highest zero-shot average ({_acc(best)}; dense {_acc(dense)})"
            if len(ranked) > 1 and best["average"] - ranked.iloc[1]["average"] < best["average_stderr"]:
                text += f", within one standard error of {method_label(ranked.iloc[1]['method'])}"
            parts.append(text)
        out.append(f"At {setting_label(ratio, tune)}, " + " and ".join(parts) + ".")
    return out


def _recovery_sentence(results: Results, rows: pd.DataFrame) -> str:
    keys = ["method", "ratio"]
    pairs = rows[rows["tune"] == "none"].merge(rows[rows["tune"] != "none"], on=keys, suffixes=("", "_tuned"))
    if pairs.empty:
        return "These results hold no recovered (w/ tune) models, so they do not show whether recovery helps."
    n, parts = len(pairs), []
    ppl = next((c for c in PPL_COLUMNS if c in results.measured), None)
    if ppl:
        change = pairs[f"{ppl}_tuned"] / pairs[ppl] - 1
        parts.append(f"lowered {DATASET_LABELS[ppl]} perplexity for {(change < 0).sum()} of {n} pruned models "
                     f"(median change {change.median():+.0%})")
    if "average" in results.measured:
        gain = 100 * (pairs["average_tuned"] - pairs["average"])
        parts.append(f"raised the zero-shot average for {(gain > 0).sum()} of {n} (median {gain.median():+.2f} points)")
    return "LoRA recovery " + " and ".join(parts) + "."


def _speed_sentence(results: Results, model: str) -> str:
    eff = results.efficiency
    rows = eff[(eff["model"] == model) & (eff["method"] != "dense")] if not eff.empty else eff
    if rows.empty:
        return ""
    measures = [(f"prefill, batch {c[len('prefill_b'):-len('_vs_ideal')]}", c.removesuffix("_vs_ideal"))
                for c in sorted(rows) if c.startswith("prefill_b") and c.endswith("_vs_ideal")] + [("decode", "decode")]
    shares = ", ".join(f"{rows[f'{c}_vs_ideal'].min():.0%}–{rows[f'{c}_vs_ideal'].max():.0%} ({name})"
                       for name, c in measures)
    top = rows[rows["ratio"] == rows["ratio"].max()]
    name, column = measures[0]
    best = top.loc[top[f"{column}_speedup"].idxmax()]
    speedups = [f"{c}_speedup" for _, c in measures]
    widest = max(((rows[f"{c}_high"] - rows[f"{c}_low"]) / 2 / rows[c]).max() for c in speedups)
    return (f"Measured speedups reach {shares} of the FLOP-ideal; at ratio {best['ratio']:g} the FLOP-ideal is up to "
            f"{top['ideal_speedup'].max():.2f}× and the best measured speedup {best[f'{column}_speedup']:.2f}× "
            f"({name}, {method_label(best['method'])}). Every speedup is paired with the dense model; its interval is "
            f"at most ±{widest:.1%} ({rows['repeats'].min()}–{rows['repeats'].max()} paired repeats).")


def _front_sentence(results: Results, model: str) -> str:
    """Which method gives the best quality at each measured speed: the Pareto front, slowest first."""
    eff = results.efficiency
    quality = quality_column(results)
    if eff.empty or quality is None or not (eff["model"] == model).any():
        return ""
    frame = quality_speed(results, model)
    tunes = list(dict.fromkeys(frame.loc[frame["method"] != "dense", "tune"]))
    parts = []
    for i, measure in enumerate(speed_measures(eff)):
        for tune in tunes if i == 0 else tunes[:1]:  # recovered models: on the first measure only
            column = f"{measure}_speedup"
            front = frame[frame[f"{measure}_front"] & ((frame["tune"] == tune) | (frame["method"] == "dense"))]
            points = [f"{method_label(r['method'])}{'' if r['method'] == 'dense' else f' at {r.ratio:g}'} "
                      f"({r[column]:.2f}×, {_ppl(r, quality)})" for _, r in front.sort_values(column).iterrows()]
            setting = "w/o tune" if tune == "none" else "w/ tune"
            parts.append(f"{measure_label(measure)}, {setting}: " + " → ".join(points))
    return (f"Quality per real speedup: the best {DATASET_LABELS[quality]} perplexity at each measured speedup comes "
            "from the models on the Pareto front (every other model is both slower and worse than one of them), "
            "slowest first — " + "; ".join(parts) + ".")


def _structure_sentence(results: Results, model: str, rows: pd.DataFrame) -> str:
    adaptive, depth = {}, {}
    for _, row in rows[rows["tune"] == "none"].iterrows():
        s = results.metrics[(model, row["method"], float(row["ratio"]), "none")]["pruning"]["structure"]
        if s.get("removed_layers"):
            depth.setdefault(row["method"], (row["ratio"], s))
        elif len(set(s["kept_heads"])) > 1 or len(set(s["kept_channels"])) > 1:
            adaptive.setdefault(row["method"], (row["ratio"], s))
    examples = [f"{method_label(m)} at {r:g} keeps {_range(s['kept_heads'])} query heads and "
                f"{_range(s['kept_channels'])} MLP channels per layer" for m, (r, s) in adaptive.items()]
    examples += [f"{method_label(m)} at {r:g} removes whole layers {', '.join(map(str, s['removed_layers']))} of "
                 f"{len(s['kept_heads'])}" for m, (r, s) in depth.items()]
    if not examples:
        return "Every method keeps the same width in every layer."
    uniform = [method_label(m) for m in dict.fromkeys(rows["method"]) if m not in adaptive and m not in depth]
    return ("Per-layer structure: " + "; ".join(examples)
            + (f", while {', '.join(uniform)} prune every layer alike" if uniform else "") + ".")


def what_we_see(results: Results) -> list[str]:
    """One paragraph per model, then the caveat on subsampled numbers when there are any."""
    paragraphs = []
    for model in results.models:
        rows = results.summary[(results.summary["model"] == model) & (results.summary["method"] != "dense")]
        if rows.empty:
            continue
        sentences = _best_sentences(results, rows, results.dense(model))
        sentences += [_recovery_sentence(results, rows), _speed_sentence(results, model),
                      _front_sentence(results, model), _structure_sentence(results, model, rows)]
        paragraphs.append(f"**{model}.** " + " ".join(s for s in sentences if s))
    flags = [c for c in results.summary if c.endswith("_subsampled")]
    if flags and results.summary[flags].any().any():
        paragraphs.append(f"{DAGGER} marks numbers measured on a subsample of the test set (see the notes under "
                          "each table); a difference smaller than about two standard errors is not evidence that "
                          "one method is better.")
    return paragraphs
