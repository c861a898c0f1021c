"""What the reported numbers were measured under, stated from the metrics.json files themselves
(never from the config the report happens to be built with): each model's family, BOS protocol and
attention units, calibration, windows and documents, the metric per task, data sha256, recovery
and benchmark settings.
"""
from __future__ import annotations

from ..evaluation.zeroshot import task_config
from .results import COLUMN_LABELS, DATASET_LABELS, Results, method_label, row_key, setting_label

__all__ = ["DAGGER", "model_notes", "perplexity_notes", "full_perplexity_notes", "zeroshot_notes", "calibration_notes",
           "recovery_notes", "same_model_notes", "data_note", "efficiency_notes"]

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
    bos = _join("added" if _zeroshot_bos(m) else "not added" for m in runs)
    version = _join(m["provenance"]["packages"].get("lm-eval") for m in runs)
    return [f"Zero-shot (lm-eval {version}, 0-shot, BOS token {bos}; subsets are seeded random draws): "
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
    tuned = [m for m in results.metrics.values() if m["tune"] != "none"]
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
    return [f"Recovery (w/ tune): LoRA r={rec.get('r')}, alpha {rec.get('alpha')}, {steps}, cutoff {rec.get('cutoff')} "
            f"tokens, on {rec.get('dataset')}" + (f" ({rec['substitutes']})" if rec.get("substitutes") else "") + "."]


def same_model_notes(results: Results) -> list[str]:
    """Methods that produced the very same checkpoint (equal weight sha256) at a setting: their rows
    are one model, not a reproduction of distinct results."""
    groups: dict[tuple, list[str]] = {}
    for (model, method, ratio, tune), m in results.metrics.items():
        weights = m["provenance"].get("checkpoint_sha256") or {}
        if method != "dense" and weights:
            groups.setdefault((model, ratio, tune, repr(sorted(weights.items()))), []).append(method)
    settings: dict[tuple, list[str]] = {}
    for (model, ratio, tune, _), methods in groups.items():
        if len(methods) > 1:
            settings.setdefault(tuple(methods), []).append(f"{model} {setting_label(ratio, tune)}")
    return [f"{' and '.join(method_label(m) for m in methods)} produced the same checkpoint (identical weights, "
            f"so identical rows) at: {', '.join(where)}." for methods, where in settings.items()]


def data_note(results: Results) -> str:
    files: dict[str, str] = {}
    for m in results.metrics.values():
        for dataset, hashes in m["provenance"]["data_sha256"].items():
            files.update({f"{dataset}/{f}": h for f, h in hashes.items()})
    listed = ", ".join(f"{f} {h[:12]}" for f, h in sorted(files.items()))
    return f"Data sha256 (first 12 hex digits): {listed}."


def efficiency_notes(results: Results) -> list[str]:
    """From the run's config: the workflow reruns the benchmark whenever these settings change."""
    config = results.config
    bench = config["benchmark"]
    batches = ", ".join(str(b) for b in bench.get("prefill_batches", []))
    return [f"Measured on {config.get('device')} ({config.get('dtype')}), each model in a fresh process using all "
            f"cores of the job; median of {bench.get('repeats')} repeats after a warm-up.",
            f"Prefill: {bench.get('prefill_tokens')} tokens at batch {batches}; decode: {bench.get('decode_tokens')} "
            "greedy tokens at batch 1 with KV cache (prefill time subtracted); peak memory: the process's peak RSS.",
            f"FLOPs per token: 2 × multiply-adds of one token at {bench.get('prefill_tokens')} tokens of context. "
            "Speedup = dense time / model time; FLOP-ideal = dense FLOPs / model FLOPs; "
            "% of ideal = speedup / FLOP-ideal."] + _shared_timing_note(results)


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
