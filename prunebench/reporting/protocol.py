"""What the reported numbers were measured under, stated from the metrics.json files themselves
(never from the config the report happens to be built with): each model's family, BOS protocol and
attention units, calibration, windows and documents, dtype, the metric per task, calibration seeds,
shared evaluations, the paired comparisons, data sha256, recovery and benchmark settings.
"""
from __future__ import annotations

import pandas as pd

from ..evaluation.zeroshot import task_config
from ..paths import METRICS, result_dir, split_run
from .results import COLUMN_LABELS, DATASET_LABELS, Results, method_label, row_key, setting_label
from .statistics import LEVEL, N_RESAMPLES, SEED

__all__ = ["DAGGER", "model_notes", "perplexity_notes", "full_perplexity_notes", "zeroshot_notes",
           "calibration_notes", "recovery_notes", "data_note", "efficiency_notes", "comparison_note",
           "seeds_notes", "shared_evaluation_notes", "run_label"]

DAGGER = "†"


def _join(values) -> str:
    return " / ".join(str(v) for v in dict.fromkeys(values))


def perplexity_notes(results: Results, datasets: list[str]) -> list[str]:
    out = []
    for name in datasets:
        runs = [m["perplexity"][name] for m in results.metrics.values() if name in m["perplexity"]]
        sub = any(r["windows"] < r["windows_total"] for r in runs)
        windows = _join(f"{r['windows']} of {r['windows_total']}" for r in runs)
        out.append(f"{DATASET_LABELS[name]} perplexity: {_join(r['protocol'] for r in runs)}; "
                   f"{_join(r['seqlen'] for r in runs)}-token windows, {windows} windows"
                   + (f" (evenly spaced){DAGGER}" if sub else "") + f"; evaluated in {_dtypes(results)}")
    return out


def _dtypes(results: Results) -> str:
    return _join(m["dtype"] for m in results.metrics.values())


def full_perplexity_notes(results: Results, datasets: list[str]) -> list[str]:
    """Window counts of the dense models' full-test-set and subsample perplexities."""
    out = []
    for name in datasets:
        runs = [m["perplexity"][name] for m in results.metrics.values()
                if m["method"] == "dense" and name in m["perplexity"]]
        full = [r.get("full", r) for r in runs]
        out.append(f"{DATASET_LABELS[name]} perplexity: {_join(r['protocol'] for r in runs)}; "
                   f"{_join(r['seqlen'] for r in full)}-token windows; full: all {_join(r['windows'] for r in full)} "
                   f"windows; subsample: {_join(r['windows'] for r in runs)} evenly spaced windows, from the same pass")
    return out


def zeroshot_notes(results: Results) -> list[str]:
    runs = [m for m in results.metrics.values() if m["zeroshot"]]
    if not runs:
        return []
    tasks = []
    for task in runs[0]["zeroshot"]:
        rs = [m["zeroshot"][task] for m in runs]
        sub = any(r["docs"] < r["docs_total"] for r in rs)
        docs = _join(f"{r['docs']} of {r['docs_total']}" for r in rs)
        meta = task_config(task)["metadata"]
        tasks.append(f"{COLUMN_LABELS[meta['column']]} {_join(r['metric'] for r in rs)} "
                     f"({docs} documents{DAGGER if sub else ''}; chance {100 * meta['chance']:.0f} %)")
    bos = _join("added" if _zeroshot_bos(m) else "not added" for m in runs)
    version = _join(m["provenance"]["packages"].get("lm-eval") for m in runs)
    return [f"Zero-shot (lm-eval {version}, 0-shot, {_dtypes(results)}, BOS token {bos}; subsets are seeded random "
            "draws): "
            + ", ".join(tasks) + ". Scores in %, ± one standard error; Average is the unweighted task mean, "
            "its stderr sqrt(Σse²)/n."]


def _zeroshot_bos(metrics: dict) -> bool:
    """Whether lm-eval's requests began with BOS, as read back from the harness (results written
    before the BOS policy existed record only lm-eval's `add_bos_token`)."""
    record = (metrics.get("bos") or {}).get("zeroshot")
    return record["requests"] == "every-window" if record else bool(metrics.get("add_bos_token"))


def _bos_note(metrics: dict) -> str:
    record = metrics.get("bos")
    if not record:
        return "not recorded"
    zeroshot = f"; zero-shot requests {record['zeroshot']['requests']}" if record.get("zeroshot") else ""
    return (f"{record['policy']} (setting {record['setting']}; perplexity windows {record['perplexity']}"
            f"{zeroshot})")


UNIT_LABELS = {"kv_group": "KV groups", "query_heads": "query heads"}


def model_notes(results: Results) -> list[str]:
    """Per model: its family, the BOS protocol read back from what was run, and the attention unit
    each method pruned."""
    lines = []
    for model in results.models:
        rows = results.summary[results.summary["model"] == model]
        runs = [results.metrics[row_key(row)] for _, row in rows.iterrows()]  # in report order
        units: dict[str, list[str]] = {}
        for m in runs:
            unit = ((m.get("pruning") or {}).get("details") or {}).get("attention_unit")
            if unit and method_label(m["method"]) not in units.get(unit, []):
                units.setdefault(unit, []).append(method_label(m["method"]))
        attention = "; ".join(f"{UNIT_LABELS[u]} ({', '.join(methods)})" for u, methods in units.items())
        lines.append(f"{model}: {_join(m.get('family') or 'family not recorded' for m in runs)}; "
                     f"BOS {_join(_bos_note(m) for m in runs)}" + (f"; attention unit: {attention}" if attention else ""))
    return [f"Models — {' | '.join(lines)}."]


def calibration_notes(results: Results) -> list[str]:
    """One line per pruning method: its calibration data and the paper's setting it stands for."""
    seen: dict[str, str] = {}
    for (_, method, _, _), m in results.metrics.items():
        pruning = m.get("pruning") or {}
        if method == "dense" or method in seen or not pruning:
            continue
        cal = pruning.get("calibration")
        text = cal["description"] if cal else "no calibration data"
        if cal and cal.get("substitutes"):
            text += f" (stands in for {cal['substitutes']})"
        if pruning.get("paper"):
            text += f"; paper: {pruning['paper']}"
        seen[method] = f"{method_label(method)}: {text}"
    return [f"Calibration — {'; '.join(seen.values())}."] if seen else []


def recovery_notes(results: Results) -> list[str]:
    """The recovery settings and the effective schedule each recovered model records."""
    tuned = [m for m in results.metrics.values() if m["tune"] == "lora"]  # the curve's points: their own table
    if not tuned:
        return []
    rec = tuned[0]["provenance"]["config"].get("recovery", {})
    logs = [m["pruning"].get("recovery", {}).get("log", {}) for m in tuned]
    schedules = [log["schedule"] for log in logs if "schedule" in log]
    if schedules:
        steps = (f"{_join(s['steps'] for s in schedules)} optimizer steps ({_join(s['epochs'] for s in schedules)} "
                 f"epochs) of batch {_join(s['batch'] for s in schedules)}, warm-up "
                 f"{_join(s['warmup_steps'] for s in schedules)} steps, validation every "
                 f"{_join(s['eval_every_steps'] for s in schedules)} steps and the best trained adapters kept, "
                 f"lr {_join(s['lr'] for s in schedules)}, weight decay {_join(s['weight_decay'] for s in schedules)}, "
                 f"gradient clipping {_join(s['max_grad_norm'] for s in schedules)}")
    else:  # results recorded before the schedule was
        steps = (f"{rec['steps']} steps" if rec.get("steps") else f"{rec.get('epochs')} epochs") + \
            f", batch {rec.get('batch')}, lr {rec.get('lr')}"
    return [f"Recovery ({results.recovery_label}): LoRA r={rec.get('r')}, alpha {rec.get('alpha')}, {steps}, "
            f"cutoff {rec.get('cutoff')} tokens, on {rec.get('dataset')}"
            + (f" ({rec['substitutes']})" if rec.get("substitutes") else "") + "."]


def data_note(results: Results) -> str:
    files: dict[str, str] = {}
    for m in results.metrics.values():
        for dataset, hashes in m["provenance"]["data_sha256"].items():
            files.update({f"{dataset}/{f}": h for f, h in hashes.items()})
    listed = ", ".join(f"{f} {h[:12]}" for f, h in sorted(files.items()))
    return f"Data sha256 (first 12 hex digits): {listed}."


def efficiency_notes(results: Results) -> list[str]:
    """From the run's config (the workflow reruns the benchmark whenever these settings change) and
    the repeats each pair took."""
    config = results.config
    bench = config["benchmark"]
    batches = ", ".join(str(b) for b in bench.get("prefill_batches", []))
    eff = results.efficiency
    taken = f"; here {eff['repeats'].min()}–{eff['repeats'].max()}" if "repeats" in eff else ""
    return [f"Measured on {config.get('device')} ({config.get('dtype')}), using all cores of the job, each pruned "
            "model paired with the dense one in a fresh process and interleaved: every repeat times both back to "
            "back on the same inputs, the order alternating, so that drift of the machine hits both. Speedup: the "
            "median of the per-repeat ratios dense time / model time, "
            f"[{bench.get('confidence', 0.95):.0%} percentile bootstrap interval over the repeats]; "
            f"{bench.get('repeats')} to {bench.get('max_repeats')} paired repeats, until every interval is within "
            f"±{bench.get('max_halfwidth', 0.05):.0%} of its speedup{taken}. The dense row is the dense model "
            "against itself: its interval is the noise floor and must hold 1.",
            f"Prefill: {bench.get('prefill_tokens')} tokens at batch {batches}, with the KV cache; decode: "
            f"{bench.get('decode_tokens')} greedy steps at batch 1 on the cache of that prompt, per token; peak "
            "memory: the process's peak RSS with the model alone, after one prefill and decode.",
            f"FLOPs per token: 2 × multiply-adds of one token at {bench.get('prefill_tokens')} tokens of context. "
            "FLOP-ideal = dense FLOPs / model FLOPs; % of ideal = speedup / FLOP-ideal."] + _shared_timing_note(results)


def _shared_timing_note(results: Results) -> list[str]:
    """Speed depends on the layer shapes alone: checkpoints of the same shapes are timed once."""
    eff = results.efficiency
    if "measured_on" not in eff:
        return []
    key = eff["method"] + "/" + eff["ratio"].map(lambda r: f"{r:g}")
    shared = eff[(eff["method"] != "dense") & (key != eff["measured_on"])]
    if shared.empty:
        return []
    pairs = "; ".join(f"{method_label(m)} at {r:g} as {method_label(on.split('/')[0])}"
                      for m, r, on in zip(shared["method"], shared["ratio"], shared["measured_on"]))
    return [f"Checkpoints with the same layer shapes run the same computation and were timed once: {pairs}."]


def comparison_note(results: Results) -> str:
    """How the paired intervals (prunebench.reporting.comparisons) were computed."""
    if results.comparisons.empty:
        return "Paired intervals need per-item results; these results have none."
    return (f"Intervals: {100 * LEVEL:g} % paired bootstrap percentile intervals ({N_RESAMPLES:,} resamples, seed "
            f"{SEED}, drawing the same windows or documents for both models; perplexity: the difference of "
            "log-perplexities; Average: documents resampled within each task, unweighted task mean).")


def seeds_notes(results: Results) -> list[str]:
    seeds = results.seeds
    if seeds.empty:
        return []
    runs = seeds.groupby(["method", "ratio", "tune"], sort=False)["seed"].agg(list)
    listed = "; ".join(f"{method_label(m)} at {setting_label(r, t)}: seeds {', '.join(f'{x:.0f}' for x in s)}"
                       for (m, r, t), s in runs.items())
    return ["Rows marked (n seeds): the mean over n calibration seeds, each a fresh calibration draw (Random: a "
            "fresh random choice), perplexity as the geometric mean; after the number its sd over the seeds instead "
            f"of the stderr. Each seed's numbers are in the seeds table ({listed})."]


def run_label(run: str, ratio: float | None = None, tune: str | None = None) -> str:
    """"FLAP (seed 1) at Ratio = 20% w/o tune": a run's method, its seed after the first, the setting."""
    method, seed = split_run(run)
    label = method_label(method) + ("" if seed is None else f" (seed {seed})")
    return label if ratio is None else f"{label} at {setting_label(ratio, tune)}"


def shared_evaluation_notes(results: Results) -> list[str]:
    """Rows that report another run's evaluation, their checkpoints being bit-identical."""
    runs = pd.concat([results.summary, results.seeds], ignore_index=True).drop_duplicates(
        ["model", "run", "ratio", "tune"])
    pairs = []
    for _, row in runs.iterrows():
        own = f"{result_dir(row['model'], row['run'], f'{row.ratio:g}', row['tune'])}/{METRICS}"
        if row["evaluated_as"] != own:  # results/{model}/{run}/{ratio}[/{tune}]/metrics.json
            parts = row["evaluated_as"].split("/")
            other = run_label(parts[2], row["ratio"], parts[4] if len(parts) == 6 else "none")
            pairs.append(f"{run_label(row['run'], row['ratio'], row['tune'])} reports {other}")
    if not pairs:
        return []
    return ["Bit-identical checkpoints (same content hash of weights and config) were evaluated once, and both "
            "rows report that evaluation: " + "; ".join(pairs) + "."]
