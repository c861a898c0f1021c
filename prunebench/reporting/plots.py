"""Report figures (matplotlib, Agg): perplexity and zero-shot average against the pruning ratio,
measured speedup against the FLOP-ideal, and the per-layer structure each method keeps.
Every figure is saved as PNG and SVG without timestamps, so a rerun on the same results writes
the same files.
"""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator, PercentFormatter, ScalarFormatter  # noqa: E402

from ..io import atomic_path  # noqa: E402
from .protocol import DAGGER  # noqa: E402
from .results import DATASET_LABELS, METHOD_ORDER, Results, method_label  # noqa: E402
from .tradeoff import measure_label, quality_column, quality_speed, speed_measures  # noqa: E402

__all__ = ["FIGURES", "figure_names", "build_figure", "save"]

plt.rcParams.update({"svg.hashsalt": "prunebench", "font.size": 9, "axes.grid": True, "grid.alpha": 0.3})
_PALETTE = plt.get_cmap("tab10").colors
# tab10 indices: FLAP red, baselines muted, LLM-Pruner variants in their own hues.
_COLORS = {"random": 7, "magnitude-sp": 1, "wanda-sp": 2, "llm-pruner-channel": 8,
           "llm-pruner-vector": 4, "llm-pruner-element2": 5, "llm-pruner-element1": 6, "flap": 3,
           "shortgpt": 0, "shortened-llama-ppl": 9}


def _color(method: str) -> tuple:
    if method == "dense":
        return (0, 0, 0)
    if method in _COLORS:
        return _PALETTE[_COLORS[method]]
    return plt.get_cmap("tab20b").colors[zlib.crc32(method.encode()) % 20]  # stable across runs


def _style(tune: str) -> dict:
    return {"linestyle": "-" if tune == "none" else "--", "marker": "o" if tune == "none" else "s"}


def _label(method: str, tune: str, results: Results) -> str:
    return method_label(method) + ("" if tune == "none" else f" {results.recovery_label}")


def _curves(results: Results, model: str):
    """Each (method, tune)'s rows, starting from the dense model at ratio 0."""
    rows = results.summary[results.summary["model"] == model]
    dense = rows[rows["method"] == "dense"]
    curves = rows[rows["method"] != "dense"].groupby(["method", "tune"], sort=False)
    for method, tune in sorted(curves.groups, key=lambda k: (METHOD_ORDER + [k[0]]).index(k[0])):
        yield method, tune, pd.concat([dense, curves.get_group((method, tune))])


def _seed_points(ax, results: Results, model: str, method: str, tune: str, column: str, scale: float = 1.0,
                 dodge: float = 0.0) -> None:
    """Hollow markers at each calibration seed's value where a line shows the mean of several."""
    seeds = results.seeds
    if seeds.empty:
        return
    rows = seeds[(seeds["model"] == model) & (seeds["method"] == method) & (seeds["tune"] == tune)]
    ax.scatter(rows["ratio"] + dodge, scale * rows[column], facecolors="none", edgecolors=[_color(method)], s=22,
               linewidths=0.9, zorder=3)


def _sub(results: Results, model: str, column: str) -> str:
    """" †" when a panel shows numbers measured on a subsample (as the tables mark them)."""
    rows = results.summary[results.summary["model"] == model]
    return f" {DAGGER}" if rows.get(f"{column}_subsampled", pd.Series(dtype=bool)).any() else ""


def _grid(nrows: int, ncols: int, width: float = 4.2, height: float = 3.2):
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, axes


def _legend(fig, axes) -> None:
    """The legend below the panels, in as many columns (at most 4) as fit the figure's width: a
    one-panel figure is narrower than four long labels side by side, and the saved image is the
    figure's box, so a wider legend would be cut off at both edges. Every panel's entries, once: a
    method one model ran and another did not is still named."""
    entries = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    labels, handles = list(entries), list(entries.values())
    renderer = fig.canvas.get_renderer()
    for ncols in range(min(len(labels), 4), 0, -1):
        legend = fig.legend(handles, labels, loc="outside lower center", ncols=ncols, frameon=False)
        width = legend.get_window_extent(renderer).width
        if width <= fig.bbox.width or ncols == 1:
            break
        legend.remove()
    if width > fig.bbox.width:  # one column of a label longer than the figure: widen the figure
        fig.set_figwidth(1.05 * width / fig.dpi)


def perplexity_figure(results: Results):
    datasets = [d for d in DATASET_LABELS if d in results.measured]
    fig, axes = _grid(len(results.models), max(len(datasets), 1))
    fig.set_layout_engine("constrained")
    for ax_row, model in zip(axes, results.models):
        for ax, dataset in zip(ax_row, datasets):
            for method, tune, curve in _curves(results, model):
                ax.plot(curve["ratio"], curve[dataset], color=_color(method), label=_label(method, tune, results),
                        **_style(tune))
                _seed_points(ax, results, model, method, tune, dataset)
            ax.plot([0], [results.dense(model)[dataset]], "k*", markersize=10, label="Dense")
            ax.set(yscale="log", title=f"{model} · {DATASET_LABELS[dataset]}{_sub(results, model, dataset)}",
                   xlabel="pruning ratio",
                   ylabel="perplexity (log)")
    _legend(fig, axes)
    return fig


def zeroshot_figure(results: Results):
    fig, axes = _grid(1, len(results.models))
    fig.set_layout_engine("constrained")
    for ax, model in zip(axes[0], results.models):
        curves = list(_curves(results, model))
        for i, (method, tune, curve) in enumerate(curves):
            dodge = (i - (len(curves) - 1) / 2) * 0.006  # keeps overlapping error bars apart
            own = 100 * curve["average_stderr"].where(curve["method"] != "dense")  # dense: its own bar below
            ax.errorbar(curve["ratio"] + dodge, 100 * curve["average"], yerr=own, capsize=3, color=_color(method),
                        label=_label(method, tune, results), **_style(tune))
            _seed_points(ax, results, model, method, tune, "average", 100, dodge)
        dense = results.dense(model)
        ax.errorbar([0], [100 * dense["average"]], yerr=[100 * dense["average_stderr"]], fmt="k*", markersize=10,
                    capsize=3, label="Dense")
        ax.set(title=f"{model} · zero-shot average{_sub(results, model, 'average')}", xlabel="pruning ratio",
               ylabel="accuracy (%), ± 1 stderr")
    _legend(fig, axes)
    return fig


def _errors(points: pd.DataFrame, column: str) -> np.ndarray:
    """Asymmetric error bars from a speedup's interval columns (never negative)."""
    return np.clip(np.vstack([points[column] - points[f"{column}_low"], points[f"{column}_high"] - points[column]]),
                   0, None)


def speedup_figure(results: Results):
    eff = results.efficiency
    measures = speed_measures(eff)
    fig, axes = _grid(len(results.models), len(measures))
    fig.set_layout_engine("constrained")
    for ax_row, model in zip(axes, results.models):
        rows = eff[eff["model"] == model].assign(removed=lambda f: 1 - f["params_ratio"])
        ideal = rows.sort_values("removed")
        for ax, measure in zip(ax_row, measures):
            column = f"{measure}_speedup"
            ax.plot(ideal["removed"], ideal["ideal_speedup"], "k--", linewidth=1, label="FLOP-ideal")
            ax.axhline(1, color="grey", linewidth=0.8)
            for method, points in rows[rows["method"] != "dense"].groupby("method", sort=False):
                ax.errorbar(points["removed"], points[column], yerr=_errors(points, column), fmt="o", capsize=2,
                            color=_color(method), label=method_label(method), zorder=3)
            ax.set(title=f"{model} · {measure_label(measure)}", xlabel="parameters removed",
                   ylabel="speedup vs dense (×), paired interval")
            ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    _legend(fig, axes)
    return fig


def tradeoff_figure(results: Results):
    """Perplexity against each measured speedup: every method, ratio and tune setting, the dense
    model at 1x, error bars from the paired intervals, the Pareto front per tune setting."""
    quality = quality_column(results)
    measures = speed_measures(results.efficiency)
    fig, axes = _grid(len(results.models), len(measures))
    fig.set_layout_engine("constrained")
    for ax_row, model in zip(axes, results.models):
        frame = quality_speed(results, model)
        dense = frame[frame["method"] == "dense"]
        for ax, measure in zip(ax_row, measures):
            column = f"{measure}_speedup"
            for (method, tune), points in frame[frame["method"] != "dense"].groupby(["method", "tune"], sort=False):
                ax.errorbar(points[column], points[quality], xerr=_errors(points, column), capsize=2, linestyle="none",
                            color=_color(method), marker=_style(tune)["marker"], label=_label(method, tune, results),
                            zorder=3)
                for _, p in points.iterrows():
                    ax.annotate(f"{p['ratio']:g}", (p[column], p[quality]), fontsize=6, xytext=(3, 3),
                                textcoords="offset points")
            for tune in frame.loc[frame["method"] != "dense", "tune"].unique():
                front = frame[frame[f"{measure}_front"] & ((frame["tune"] == tune) | (frame["method"] == "dense"))]
                front = front.sort_values(column)
                ax.step(front[column], front[quality], where="post", color="black", linewidth=0.8,
                        linestyle=_style(tune)["linestyle"],
                        label="Pareto front" + ("" if tune == "none" else f" {results.recovery_label}"))
            ax.errorbar(dense[column], dense[quality], xerr=_errors(dense, column), fmt="k*", markersize=10, capsize=2,
                        label="Dense (1×; interval: A/A noise)", zorder=4)
            ax.set(yscale="log", title=f"{model} · {measure_label(measure)}{_sub(results, model, quality)}",
                   xlabel="measured speedup vs dense (×)", ylabel=f"{DATASET_LABELS[quality]} perplexity (log)")
    _legend(fig, axes)
    return fig


def structure_figure(results: Results, model: str):
    """Kept query heads and MLP channels per layer: rows are method × ratio, columns layers."""
    rows = results.summary[(results.summary["model"] == model) & (results.summary["method"] != "dense")
                           & (results.summary["tune"] == "none")]
    labels, heads, channels = [], [], []
    for _, row in rows.iterrows():
        structure = results.metrics[(model, row["method"], float(row["ratio"]), "none")]["pruning"]["structure"]
        labels.append(f"{method_label(row['method'])} @ {row['ratio']:g}")
        heads.append(structure["kept_heads"])
        channels.append(structure["kept_channels"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 1.2 + 0.32 * len(labels)), layout="constrained")
    for ax, values, name, annotate in ((axes[0], heads, "kept query heads", True),
                                       (axes[1], channels, "kept MLP channels", False)):
        data = np.array(values, dtype=float)
        image = ax.imshow(data, aspect="auto", cmap="viridis", vmin=0, interpolation="nearest")
        ax.set(title=f"{model} · {name} per layer", xlabel="layer", yticks=range(len(labels)), yticklabels=labels)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(False)
        for y in np.flatnonzero(np.diff(rows["ratio"].to_numpy())):  # a white rule between ratios
            ax.axhline(y + 0.5, color="white", linewidth=2)
        fig.colorbar(image, ax=ax, shrink=0.9)
        if annotate:
            for (i, j), v in np.ndenumerate(data):
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if v < data.max() / 2 else "black")
    return fig


def recovery_figure(results: Results):
    """The recovery curve: perplexity and zero-shot average against the LoRA steps (0: w/o tune), a
    line per method and ratio, ± 1 stderr."""
    curves = results.recovery_curves
    columns = [c for c in DATASET_LABELS if c in results.measured][:1] + ["average"] * ("average" in results.measured)
    models = list(dict.fromkeys(curves["model"]))
    fig, axes = _grid(len(models), len(columns))
    fig.set_layout_engine("constrained")
    for ax_row, model in zip(axes, models):
        for ax, column in zip(ax_row, columns):
            scale = 1 if column in DATASET_LABELS else 100
            for (method, ratio), points in curves[curves["model"] == model].groupby(["method", "ratio"], sort=False):
                ax.errorbar(points["recovery_steps"], scale * points[column], yerr=scale * points[f"{column}_stderr"],
                            capsize=3, color=_color(method), marker="o" if ratio == curves["ratio"].min() else "s",
                            linestyle="-" if ratio == curves["ratio"].min() else "--",
                            label=f"{method_label(method)} @ {ratio:g}")
            name = f"{DATASET_LABELS[column]} perplexity (log)" if scale == 1 else "zero-shot average (%)"
            ax.set(xscale="symlog", yscale="log" if scale == 1 else "linear", xlabel="LoRA steps (0: w/o tune)",
                   ylabel=f"{name}, ± 1 stderr", title=f"{model} · {name.split(' (')[0]}{_sub(results, model, column)}")
            ax.set_xlim(left=0)
    _legend(fig, axes)
    return fig


_FORMAT_MARKERS = {"f16": "o", "Q8_0": "s", "Q4_K_M": "^"}


def deployment_figure(results: Results):
    """Pruning and quantization together, in llama.cpp: each exported structure (w/o tune) in each
    format, perplexity and decode speedup both against the dense model in f16; the dense model's own
    quantized types in black. Error bars: the paired intervals."""
    dep = results.deployment
    quality = dep.quality[dep.quality["tune"] == "none"]
    speed = dep.speed[dep.speed["dense_format"] == "f16"]
    dataset = quality["dataset"].iloc[0]
    models = list(dict.fromkeys(speed["model"]))
    fig, axes = _grid(len(models), 1, width=7.5, height=4.5)
    fig.set_layout_engine("constrained")
    for (ax,), model in zip(axes, models):
        points = quality[(quality["model"] == model) & (quality["dataset"] == dataset)].merge(
            speed[speed["model"] == model], on=["model", "method", "ratio", "format"])
        points = points.assign(ppl_ratio=points["dense_f16"].fillna(points["f16"]).fillna(1.0))
        for (method, fmt), group in points.groupby(["method", "format"], sort=False):
            low = (group["ppl_ratio"] - group["dense_f16_low"].fillna(group["f16_low"])).fillna(0)
            high = (group["dense_f16_high"].fillna(group["f16_high"]) - group["ppl_ratio"]).fillna(0)
            ax.errorbar(group["decode_speedup"], group["ppl_ratio"], xerr=_errors(group, "decode_speedup"),
                        yerr=[low, high], capsize=2, linestyle="none", color=_color(method),
                        marker=_FORMAT_MARKERS[fmt], markersize=8 if method == "dense" else 5,
                        label=f"{method_label(method)} · {fmt}", zorder=3)
            for _, p in group.iterrows():
                if method != "dense":
                    ax.annotate(f"{p['ratio']:g}", (p["decode_speedup"], p["ppl_ratio"]), fontsize=6, xytext=(3, 3),
                                textcoords="offset points")
        ax.axhline(1, color="black", linewidth=0.6)
        ax.axvline(1, color="black", linewidth=0.6)
        ax.set(yscale="log", xlabel="llama.cpp decode speedup vs the dense f16 model (×)",
               ylabel=f"{DATASET_LABELS.get(dataset, dataset)} perplexity ÷ dense f16's (log)",
               title=f"{model} · llama.cpp: pruning (markers by format) and quantization together")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(ScalarFormatter())
    _legend(fig, axes)
    return fig


FIGURES: dict[str, Callable] = {"perplexity": perplexity_figure, "zeroshot": zeroshot_figure,
                                "speedup": speedup_figure, "tradeoff": tradeoff_figure, "recovery": recovery_figure,
                                "deployment": deployment_figure}


def figure_names(models: list[str], perplexity: bool, zeroshot: bool, efficiency: bool, pruned: bool,
                 curve: bool = False, deployed: bool = False) -> list[str]:
    """The figures a run produces (file stems under reports/figures/): what was measured (`curve`:
    there are recovery-curve points; `deployed`: exported GGUFs were evaluated and timed in llama.cpp)."""
    names = [name for name, made in (("perplexity", perplexity), ("zeroshot", zeroshot),
                                     ("speedup", efficiency and pruned),
                                     ("tradeoff", efficiency and pruned and perplexity),
                                     ("recovery", curve and pruned), ("deployment", deployed)) if made]
    return names + ([f"structure_{m}" for m in models] if pruned else [])


def build_figure(name: str, results: Results):
    if name.startswith("structure_"):
        return structure_figure(results, name.removeprefix("structure_"))
    return FIGURES[name](results)


def save(fig, stem: str | Path) -> list[Path]:
    """PNG and SVG (atomically), without the timestamp matplotlib would write into the SVG."""
    paths = []
    for fmt, options in (("png", {"dpi": 150}), ("svg", {"metadata": {"Date": None}})):
        paths.append(Path(f"{stem}.{fmt}"))
        with atomic_path(paths[-1]) as tmp:
            fig.savefig(tmp, format=fmt, **options)
    plt.close(fig)
    return paths
