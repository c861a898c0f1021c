"""What the reported numbers were measured under, stated from the metrics.json files themselves
(never from the config the report happens to be built with): calibration, windows and documents,
BOS, the metric per task, data sha256, recovery and benchmark settings.
"""
from __future__ import annotations

from ..evaluation.zeroshot import task_config
from .results import COLUMN_LABELS, DATASET_LABELS, Results, method_label

__all__ = ["DAGGER", "perplexity_notes", "full_perplexity_notes", "zeroshot_notes", "calibration_notes", "recovery_notes", "data_note",
           "efficiency_notes"]

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
                   + (f" (evenly spaced){DAGGER}" if sub else ""))
    return out


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
        tasks.append(f"{COLUMN_LABELS[task_config(task)['metadata']['column']]} {_join(r['metric'] for r in rs)} "
                     f"({docs} documents{DAGGER if sub else ''})")
    bos = _join("added" if m.get("add_bos_token") else "not added" for m in runs)
    version = _join(m["provenance"]["packages"].get("lm-eval") for m in runs)
    return [f"Zero-shot (lm-eval {version}, 0-shot, BOS token {bos}; subsets are seeded random draws): "
            + ", ".join(tasks) + ". Scores in %, ± one standard error; Average is the unweighted task mean, "
            "its stderr sqrt(Σse²)/n."]


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
    tuned = [m for m in results.metrics.values() if m["tune"] != "none"]
    if not tuned:
        return []
    rec = tuned[0]["provenance"]["config"].get("recovery", {})
    steps = f"{rec['steps']} steps" if rec.get("steps") else f"{rec.get('epochs')} epochs"
    return [f"Recovery (w/ tune): LoRA r={rec.get('r')}, alpha {rec.get('alpha')}, {steps}, batch {rec.get('batch')}, "
            f"lr {rec.get('lr')}, cutoff {rec.get('cutoff')} tokens, on {rec.get('dataset')}"
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
