"""The "what we see" paragraph of reports/README.md, written from the numbers: the best method per
ratio and tune and whom it beats, whether recovery helped, whether calibration seeds or evaluation
noise move the numbers more, measured speed against the FLOP-ideal, which methods chose a
per-layer structure; across models, which orderings of methods hold on both and the methods' rank
correlation (prunebench.reporting.transfer). A ranking is stated only where the paired bootstrap
interval (prunebench.reporting.comparisons) excludes zero, "indistinguishable" otherwise; nothing
here is typed by hand.
"""
from __future__ import annotations

import math
from itertools import combinations

import pandas as pd

from .protocol import DAGGER
from ..evaluation.zeroshot import available_tasks, task_config
from .comparisons import pair_columns
from .results import COLUMN_LABELS, DATASET_LABELS, PPL_COLUMNS, Results, method_label, setting_label
from .tradeoff import measure_label, quality_column, quality_speed, speed_measures
from .transfer import CANNOT_TELL, DIFFERENT, SAME, pair_transfer

__all__ = ["what_we_see", "across_models"]

_LISTED = 8  # pairs named per verdict before "and N more"


def _mark(row: pd.Series, column: str) -> str:
    return DAGGER if row.get(f"{column}_subsampled") else ""


def _ppl(row: pd.Series, column: str) -> str:
    return f"{row[column]:.2f}{_mark(row, column)}"


def _acc(row: pd.Series) -> str:
    return f"{100 * row['average']:.2f} ± {100 * row['average_stderr']:.1f} %{_mark(row, 'average')}"


def _range(values: list[int]) -> str:
    return f"{min(values)}" if min(values) == max(values) else f"{min(values)}–{max(values)}"


def _label(row: pd.Series) -> str:
    seeds = row.get("seeds", 1)
    return method_label(row["method"]) + (f" ({seeds:.0f} seeds)" if seeds > 1 else "")


def _names(labels: list[str]) -> str:
    return labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} and {labels[-1]}"


def _intervals(results: Results, group: pd.DataFrame, column: str, reference: str) -> pd.DataFrame:
    """The group's comparisons of `column` against `reference` (dense, best, untuned), by row."""
    comp = results.comparisons
    if comp.empty:
        return comp
    first = group.iloc[0]
    mine = comp[(comp["model"] == first["model"]) & (comp["ratio"] == first["ratio"]) & (comp["tune"] == first["tune"])
                & (comp["column"] == column) & (comp["reference"] == reference)]
    return mine.merge(group, on=["model", "method", "ratio", "tune"], suffixes=("", "_row"))


def _leader(results: Results, group: pd.DataFrame, column: str, dense: pd.Series) -> str:
    """Who leads a group on `column` and against whom the paired intervals support it."""
    lower = column in PPL_COLUMNS
    vs_best = _intervals(results, group, column, "best")
    if vs_best.empty:
        best = group.loc[group[column].idxmin() if lower else group[column].idxmax()]
    else:  # the comparisons' best: of equal values, the one the others were compared with
        best = group[group["method"] == vs_best["reference_method"].iloc[0]].iloc[0]
    value = f"{_ppl(best, column)}; dense {_ppl(dense, column)}" if lower else f"{_acc(best)}; dense {_acc(dense)}"
    what = f"the lowest {DATASET_LABELS[column]} perplexity" if lower else "the highest zero-shot average"
    text = f"{_label(best)} has {what} ({value})"
    if len(group) < 2:
        return text
    if vs_best.empty:
        return text + ", a ranking these results cannot test (no per-item results)"
    worse = vs_best["low"] > 0 if lower else vs_best["high"] < 0
    ahead = [_label(r) for _, r in vs_best[worse].iterrows()]
    tied = [_label(r) for _, r in vs_best[(vs_best["low"] <= 0) & (vs_best["high"] >= 0)].iterrows()]
    if not tied:
        return text + f", {'lower' if lower else 'higher'} than every other method's by paired 95 % intervals"
    if not ahead:
        return text + ", but is statistically indistinguishable from every other method (paired 95 % intervals)"
    return (text + f", {'lower' if lower else 'higher'} than {_names(ahead)}'s by paired 95 % intervals and "
            f"indistinguishable from {_names(tied)}")


def _against_dense(results: Results, group: pd.DataFrame) -> str:
    vs_dense = _intervals(results, group, "average", "dense")
    if vs_dense.empty:
        return ""
    tied = vs_dense[(vs_dense["low"] <= 0) & (vs_dense["high"] >= 0)]
    below = vs_dense[vs_dense["high"] < 0]
    return (f"{len(tied)} of {len(vs_dense)} methods' zero-shot averages are statistically indistinguishable "
            f"from the dense model's, {len(below)} below it")


def _best_sentences(results: Results, rows: pd.DataFrame, dense: pd.Series) -> list[str]:
    ppl = next((c for c in PPL_COLUMNS if c in results.measured), None)
    out = []
    for (ratio, tune), group in rows.groupby(["ratio", "tune"], sort=False):
        parts = [_leader(results, group, ppl, dense)] if ppl else []
        if "average" in results.measured:
            parts += [_leader(results, group, "average", dense), _against_dense(results, group)]
        out.append(f"At {results.setting(ratio, tune)}, " + "; ".join(p for p in parts if p) + ".")
    return out


def _recovery_sentence(results: Results, rows: pd.DataFrame) -> str:
    tuned = rows[rows["tune"] != "none"]
    if tuned.empty:
        return "These results hold no recovered (w/ tune) models, so they do not show whether recovery helps."
    parts = []
    columns = [c for c in PPL_COLUMNS if c in results.measured][:1] + [c for c in ["average"] if c in results.measured]
    for column in columns:
        pairs = pd.concat([_intervals(results, group, column, "untuned")
                           for _, group in tuned.groupby(["ratio", "tune"], sort=False)])
        if pairs.empty:
            continue
        up, down = (pairs["low"] > 0).sum(), (pairs["high"] < 0).sum()
        same = len(pairs) - up - down
        if column in PPL_COLUMNS:
            change = (pairs["diff"].map(math.exp) - 1).median()
            parts.append(f"lowered {DATASET_LABELS[column]} perplexity for {down} of {len(pairs)} pruned models, "
                         f"raised it for {up} and left {same} indistinguishable (median change {change:+.0%})")
        else:
            parts.append(f"raised the zero-shot average for {up} of {len(pairs)}, lowered it for {down} and left "
                         f"{same} indistinguishable (median {100 * pairs['diff'].median():+.2f} points)")
    if not parts:
        return "Whether recovery helped needs per-item results, which these results lack."
    return ("By paired 95 % intervals against the same method without recovery, LoRA recovery "
            + "; it ".join(parts) + ".")


def _interval_text(row: pd.Series, column: str) -> str:
    if column in PPL_COLUMNS:
        return f"×{math.exp(row['diff']):.2f} [{math.exp(row['low']):.2f}, {math.exp(row['high']):.2f}]"
    return f"{100 * row['diff']:+.1f} [{100 * row['low']:+.1f}, {100 * row['high']:+.1f}] points"


def _flattening(results: Results, points: pd.DataFrame, column: str) -> str:
    """Where consecutive points of one curve stop differing by their paired interval."""
    comp = results.comparisons
    steps = [int(s) for s in points["recovery_steps"]]
    for (_, point), before in zip(list(points.iterrows())[1:], steps):
        mine = comp[(comp["model"] == point["model"]) & (comp["method"] == point["method"])
                    & (comp["ratio"] == point["ratio"]) & (comp["tune"] == point["tune"]) & (comp["column"] == column)]
        step = mine[mine["reference"] == "previous"]
        step = step if not step.empty else mine[mine["reference"] == "untuned"]
        if step.empty:
            return "untested (no per-item results)"
        step = step.iloc[0]
        if step["low"] <= 0 <= step["high"]:
            return (f"flat from {before} to {point['recovery_steps']:.0f} steps (the paired interval includes no "
                    f"change: {_interval_text(step, column)})")
    return f"changing at every step of the curve by its paired interval, up to {steps[-1]} steps"


def _curve_order(results: Results, rows: pd.DataFrame, column: str) -> str:
    """Which curve method leads at each point of a ratio, and whether the paired interval supports it."""
    comp, lower, parts = results.comparisons, column in PPL_COLUMNS, []
    for steps, points in rows.groupby("recovery_steps", sort=True):
        if points["method"].nunique() < 2:
            continue
        best = points.loc[points[column].idxmin() if lower else points[column].idxmax()]
        vs = comp[(comp["model"] == best["model"]) & (comp["ratio"] == best["ratio"]) & (comp["column"] == column)
                  & (comp["reference"] == "best") & (comp["reference_method"] == best["method"])
                  & comp["method"].isin(set(points["method"]) - {best["method"]})
                  & comp["tune"].isin(set(points["tune"]))]
        supported = not vs.empty and bool(((vs["low"] > 0) if lower else (vs["high"] < 0)).all())
        parts.append((int(steps), best["method"], supported))
    if not parts:
        return ""
    text = "; ".join(f"{steps} steps: {method_label(m)}{'' if ok else ' (indistinguishable)'}"
                     for steps, m, ok in parts)
    firm = {m for _, m, ok in parts if ok}
    verdict = ("the lead changes between points where the intervals support it" if len(firm) > 1 else
               "no change of the lead is supported by the paired intervals")
    what = f"lowest {DATASET_LABELS[column]} perplexity" if lower else "highest zero-shot average"
    return f"{what} by point ({text}): {verdict}"


def _curve_sentences(results: Results, model: str) -> list[str]:
    """The recovery curve: each method's perplexity along it, where it flattens, and whether the
    curve methods' order changes with recovery."""
    curves = results.recovery_curves
    if curves.empty or model not in set(curves["model"]):
        return []
    ppl = next((c for c in PPL_COLUMNS if c in results.measured), None)
    out = []
    for ratio, rows in curves[curves["model"] == model].groupby("ratio", sort=False):
        parts = []
        for method, points in rows.groupby("method", sort=False):
            steps = ", ".join(f"{s:.0f}" for s in points["recovery_steps"])
            values = " → ".join(_ppl(p, ppl) for _, p in points.iterrows()) if ppl else ""
            average = " → ".join(f"{100 * a:.1f}" for a in points["average"]) if "average" in results.measured else ""
            parts.append(f"{method_label(method)} goes {values} in {DATASET_LABELS.get(ppl, '')} perplexity"
                         + (f" and {average} % in zero-shot average" if average else "")
                         + f" after {steps} LoRA steps, its perplexity {_flattening(results, points, ppl)}")
        order = _curve_order(results, rows, ppl) if ppl else ""
        out.append(f"Recovery curve at {100 * ratio:g} %: " + "; ".join(parts) + "."
                   + (f" The {order}." if order else ""))
    return out


def _seed_sentence(results: Results, model: str) -> str:
    """Per method run with several seeds: is the calibration spread or the evaluation noise larger?"""
    seeds = results.seeds[results.seeds["model"] == model] if not results.seeds.empty else results.seeds
    if seeds.empty:
        return ""
    columns = [c for c in [*[c for c in PPL_COLUMNS if c in results.measured][:1], "average"] if c in seeds]
    parts = []
    for (method, ratio, tune), runs in seeds.groupby(["method", "ratio", "tune"], sort=False):
        found = []
        for column in columns:
            spread, noise = runs[column].std(ddof=1), runs[f"{column}_stderr"].mean()
            scale, unit = (1, "") if column in PPL_COLUMNS else (100, " points")
            name = f"{DATASET_LABELS[column]} perplexity" if column in PPL_COLUMNS else "zero-shot average"
            larger = "calibration spread" if spread > noise else "evaluation noise"
            found.append(f"{name} sd {scale * spread:.2f} against a stderr of {scale * noise:.2f}{unit} "
                         f"({larger} larger)")
        parts.append(f"{method_label(method)} at {setting_label(ratio, tune)} over {len(runs)} seeds: "
                     + ", ".join(found))
    return ("Calibration seeds (sd over seeds, the calibration spread, against the mean stderr of one seed's "
            "number, the evaluation noise; a few seeds give only a rough sd): " + "; ".join(parts) + ".")


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
            setting = "w/o tune" if tune == "none" else results.recovery_label
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


def _chance_sentence(dense: pd.Series) -> str:
    """The tasks whose dense score is within its 95 % interval of guessing: on them no pruned model
    can be told apart from a model that guesses, so they cannot rank methods for this model."""
    near = []
    for meta in (task_config(t)["metadata"] for t in available_tasks()):
        value, stderr = dense.get(meta["column"]), dense.get(f"{meta['column']}_stderr")
        if value is not None and not pd.isna(value) and not pd.isna(stderr) \
                and abs(value - meta["chance"]) <= 1.96 * stderr:
            near.append(f"{COLUMN_LABELS[meta['column']]} ({100 * value:.1f} ± {100 * stderr:.1f} %, chance "
                        f"{100 * meta['chance']:.0f} %)")
    if not near:
        return ""
    return (f"The dense model's {_names(near)} {'is' if len(near) == 1 else 'are'} within the 95 % interval of "
            f"guessing: {'that task' if len(near) == 1 else 'these tasks'} cannot rank methods for this model.")


def _metric_name(column: str) -> str:
    return f"{DATASET_LABELS[column]} perplexity" if column in PPL_COLUMNS else "the zero-shot average"


def _listed(texts: list[str]) -> str:
    more = len(texts) - _LISTED
    return "; ".join(texts[:_LISTED]) + (f"; and {more} more (the transfer table)" if more > 0 else "")


def _ordered(pair) -> tuple[str, str]:
    """A `pair_transfer` row's two methods, the one the first model's interval favours first."""
    first, second = method_label(pair.method), method_label(pair.other)
    return (first, second) if pair.order_a > 0 else (second, first)


def _pair_sentence(results: Results, pairs: pd.DataFrame, column: str, model_a: str, model_b: str) -> str:
    """How many pairs of methods the intervals order alike on both models, which the opposite way."""
    count = pairs["verdict"].value_counts()
    text = (f"On {_metric_name(column)}, the paired 95 % intervals order {count.get(SAME, 0)} of {len(pairs)} pairs of "
            f"methods (compared at the same setting) the same way on both models, {count.get(DIFFERENT, 0)} the "
            f"opposite way, and for {count.get(CANNOT_TELL, 0)} at least one model's interval includes no difference")
    same = ["{} over {} at {}".format(*_ordered(r), results.setting(r.ratio, r.tune))
            for r in pairs[pairs["verdict"] == SAME].itertuples()]
    different = ["{} over {} on {}, the reverse on {} at {}".format(*_ordered(r), model_a, model_b,
                                                                    results.setting(r.ratio, r.tune))
                 for r in pairs[pairs["verdict"] == DIFFERENT].itertuples()]
    if same:
        text += f". Holds on both: {_listed(same)}"
    if different:
        text += f". Does not hold: {_listed(different)}"
    return text + "."


def _correlation_sentence(results: Results, model_a: str, model_b: str) -> str:
    corr = results.correlations
    if corr.empty:
        return ""
    # a NaN ρ: one model's methods all tie, so there is no order to compare
    rows = corr[(corr["model_a"] == model_a) & (corr["model_b"] == model_b) & corr["rho"].notna()]
    parts = []
    for r in rows.itertuples():
        verdict = ("the order carries over" if r.low > 0 else "the order is reversed" if r.high < 0
                   else "cannot tell whether the order carries over")
        parts.append(f"{_metric_name(r.column)} at {results.setting(r.ratio, r.tune)}: ρ = {r.rho:+.2f} "
                     f"[{r.low:+.2f}, {r.high:+.2f}] over {r.methods} methods ({verdict})")
    if not parts:
        return ""
    return ("Spearman rank correlation of the methods between the two models, with its 95 % bootstrap interval "
            "(each model's windows and documents resampled): " + "; ".join(parts) + ".")


def across_models(results: Results) -> list[str]:
    """One paragraph per pair of models: which orderings of methods hold on both, which do not,
    and the methods' rank correlation; every claim from the paired intervals."""
    paragraphs = []
    for model_a, model_b in combinations(results.models, 2):
        pairs = pair_transfer(results.comparisons, model_a, model_b) if not results.comparisons.empty else None
        if pairs is None or pairs.empty:
            continue
        sentences = [_pair_sentence(results, pairs[pairs["column"] == c], c, model_a, model_b)
                     for c in pair_columns(results.measured) if (pairs["column"] == c).any()]
        sentences.append(_correlation_sentence(results, model_a, model_b))
        paragraphs.append(f"**Across models ({model_a} and {model_b}).** " + " ".join(s for s in sentences if s))
    return paragraphs


def _verdict(low: float, high: float) -> str:
    return "faster" if low > 1 else "slower" if high < 1 else "no different"


def _speedup_text(row: pd.Series, measure: str) -> str:
    c = f"{measure}_speedup"
    return f"{row[c]:.2f}× [{row[f'{c}_low']:.2f}, {row[f'{c}_high']:.2f}]"


def deployed(results: Results) -> list[str]:
    """Per model with exported GGUFs: whether llama.cpp computes the same perplexity as PyTorch,
    whether each structure's speedup survives in llama.cpp, and whether pruning composes with
    quantization in quality and speed; every claim from a paired interval."""
    dep, paragraphs = results.deployment, []
    if dep.empty:
        return paragraphs
    for model, quality in dep.quality.groupby("model", sort=False):
        sentences = []
        f16 = quality[(quality["format"] == "f16") & quality["pytorch"].notna()]
        if not f16.empty:
            holds = (f16["pytorch_low"] <= 1) & (f16["pytorch_high"] >= 1)
            dtype = results.config.get("evaluation", {}).get("dtype", "float32")
            sentences.append(f"llama.cpp's perplexity of the f16 files is ×{f16['pytorch'].min():.3f}–"
                             f"×{f16['pytorch'].max():.3f} PyTorch's of the checkpoints ({dtype}) on the same windows; "
                             f"{holds.sum()} of {len(f16)} paired intervals hold ×1.")
        speed = dep.speed[dep.speed["model"] == model] if not dep.speed.empty else dep.speed
        same_format = (speed["method"] != "dense") & (speed["format"] == speed["dense_format"]) if len(speed) else []
        pruned = speed[same_format] if len(speed) else speed
        eff = results.efficiency
        for measure in speed_measures(speed) if len(speed) else []:
            parts = []
            for (method, ratio), rows in pruned[pruned["format"] == "f16"].groupby(["method", "ratio"], sort=False):
                r = rows.iloc[0]
                torch_row = eff[(eff["model"] == model) & (eff["method"] == method) & (eff["ratio"] == ratio)]
                pt = (f"PyTorch {_speedup_text(torch_row.iloc[0], measure)}, " if len(torch_row) else "")
                parts.append(f"{method_label(method)} at {ratio:g}: {pt}llama.cpp {_speedup_text(r, measure)} "
                             f"({_verdict(r[f'{measure}_speedup_low'], r[f'{measure}_speedup_high'])}; "
                             f"FLOP-ideal {r['ideal_speedup']:.2f}×)")
            if parts:
                sentences.append(f"{measure_label(measure).capitalize()} speedup over the dense model, f16 in "
                                 "llama.cpp: " + "; ".join(parts) + ".")
        sentences.append(_quantized_sentence(quality, speed))
        paragraphs.append(f"**Deployed ({model}, llama.cpp).** " + " ".join(s for s in sentences if s))
    return paragraphs


def _quantized_sentence(quality: pd.DataFrame, speed: pd.DataFrame) -> str:
    """Pruning with the smallest quantized type: its perplexity and decode speed against the dense
    model in that type and in f16."""
    smallest = [f for f in ("Q4_K_M", "Q8_0") if f in set(quality["format"])][:1]
    if not smallest:
        return ""
    fmt, parts = smallest[0], []
    rows = quality[(quality["format"] == fmt) & (quality["method"] != "dense") & (quality["tune"] == "none")]
    for _, r in rows.iterrows():
        text = (f"{method_label(r['method'])} at {r['ratio']:g}: perplexity ×{r['dense']:.2f} "
                f"[{r['dense_low']:.2f}, {r['dense_high']:.2f}] the dense {fmt}'s, ×{r['dense_f16']:.2f} "
                f"[{r['dense_f16_low']:.2f}, {r['dense_f16_high']:.2f}] the dense f16's")
        pairs = speed[(speed["method"] == r["method"]) & (speed["ratio"] == r["ratio"]) & (speed["format"] == fmt)] \
            if len(speed) else speed
        for dense_fmt in (fmt, "f16") if len(pairs) and "decode_speedup" in pairs else ():
            pair = pairs[pairs["dense_format"] == dense_fmt]
            if len(pair):
                low, high = pair.iloc[0][["decode_speedup_low", "decode_speedup_high"]]
                text += (f"; decodes {_speedup_text(pair.iloc[0], 'decode')} the dense {dense_fmt}'s speed "
                         f"({_verdict(low, high)})")
        parts.append(text)
    dense = quality[(quality["method"] == "dense") & (quality["format"] == fmt)]
    alone = (f"Quantizing the dense model to {fmt} alone multiplies its perplexity by ×{dense['f16'].iloc[0]:.3f} "
             f"[{dense['f16_low'].iloc[0]:.3f}, {dense['f16_high'].iloc[0]:.3f}]. ") if len(dense) else ""
    return (alone + f"Pruned and quantized to {fmt} (w/o tune): " + "; ".join(parts) + ".") if parts else alone


def what_we_see(results: Results) -> list[str]:
    """One paragraph per model, then the caveat on subsampled numbers when there are any."""
    paragraphs = []
    for model in results.models:
        rows = results.summary[(results.summary["model"] == model) & (results.summary["method"] != "dense")]
        if rows.empty:
            continue
        sentences = [_chance_sentence(results.dense(model))] + _best_sentences(results, rows, results.dense(model))
        sentences += [_recovery_sentence(results, rows), *_curve_sentences(results, model),
                      _seed_sentence(results, model),
                      _speed_sentence(results, model), _front_sentence(results, model),
                      _structure_sentence(results, model, rows)]
        paragraphs.append(f"**{model}.** " + " ".join(s for s in sentences if s))
    paragraphs += across_models(results)
    paragraphs += deployed(results)
    flags = [c for c in results.summary if c.endswith("_subsampled")]
    if flags and results.summary[flags].any().any():
        paragraphs.append(f"{DAGGER} marks numbers measured on a subsample of the test set (see the notes under "
                          "each table). Every ranking above rests on a paired 95 % bootstrap interval over the same "
                          "windows and documents (the paired table); \"indistinguishable\" means the interval "
                          "includes no difference, which is not evidence of equality either.")
    return paragraphs
