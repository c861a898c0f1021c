"""What pruning buys: parameters, analytical FLOPs per token, peak memory, and speed measured
against the dense model paired and interleaved.

One process holds the pruned and the dense model. Every repeat times both back to back on the same
inputs, the order alternating from repeat to repeat, so that drift of the machine (other jobs,
frequency, caches) hits both alike; a speedup is the median of the per-repeat ratios dense time /
pruned time, with a percentile bootstrap interval over the repeats. Repeats continue from
`repeats` up to `max_repeats` until every interval's half-width is at most `max_halfwidth` of its
speedup. The dense model against itself (an A/A pair) shows the noise floor: its interval must
hold 1.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any, Callable

import numpy as np
import torch
from scipy.stats import bootstrap

from ..provenance import peak_memory_mb
from ..pruning.checkpoint import layer_shapes, load_pruned
from ..sources.models import head_dim_of

__all__ = ["flops_per_token", "run_workload", "speedup_interval", "paired_speed", "measure_pair", "pair_row",
           "speed_columns", "run_fresh"]


def flops_per_token(model, context: int = 128) -> int:
    """Multiply-adds x 2 of one token's forward pass at `context` tokens of attention:
    every projection and the LM head, plus QK^T and AV over the context."""
    config = model.config
    head_dim = head_dim_of(config)
    hidden = config.hidden_size
    total = 2 * hidden * config.vocab_size  # LM head
    for shape in layer_shapes(model):
        q, kv = shape["heads"] * head_dim, shape["kv_heads"] * head_dim
        total += 2 * hidden * (2 * q + 2 * kv)  # q, o and k, v projections
        total += 2 * 2 * q * context  # attention scores and weighted values
        total += 2 * 3 * hidden * shape["channels"]  # gate, up, down
    return total


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


@torch.inference_mode()
def run_workload(model, ids: torch.Tensor, decode_tokens: int) -> dict[str, float]:
    """Seconds of one prefill of `ids` [batch, tokens] (with the KV cache, as before generation)
    and, after a batch of one, seconds per token of `decode_tokens` greedy steps on that cache."""
    device = ids.device
    start = _clock(device)
    out = model(ids, use_cache=True)
    times = {f"prefill_b{len(ids)}": _clock(device) - start}
    if len(ids) == 1 and decode_tokens:
        cache, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        start = _clock(device)
        for _ in range(decode_tokens):
            out = model(token, past_key_values=cache, use_cache=True)
            token = out.logits[:, -1:].argmax(-1)
        times["decode"] = (_clock(device) - start) / decode_tokens
    return times


def speedup_interval(dense_s: list[float], model_s: list[float], confidence: float = 0.95,
                     seed: int = 0) -> tuple[float, float, float]:
    """(median, low, high) of the paired ratios dense / model: the median and its percentile
    bootstrap interval over the repeats (resampling pairs, never splitting one)."""
    ratios = np.asarray(dense_s, dtype=float) / np.asarray(model_s, dtype=float)
    if len(ratios) < 2 or np.ptp(ratios) == 0:
        return float(np.median(ratios)), float(ratios.min()), float(ratios.max())
    ci = bootstrap((ratios,), np.median, confidence_level=confidence, n_resamples=2000, method="percentile",
                   rng=np.random.default_rng(seed)).confidence_interval
    return float(np.median(ratios)), float(ci.low), float(ci.high)


def paired_speed(dense, model, prefill_batches=(1, 8), prefill_tokens: int = 128, decode_tokens: int = 32,
                 repeats: int = 5, max_repeats: int = 20, max_halfwidth: float = 0.05, confidence: float = 0.95,
                 seed: int = 0, workload: Callable[..., dict[str, float]] = run_workload,
                 vocab_size: int | None = None) -> dict[str, Any]:
    """Per measure (prefill_b<batch>, decode): the medians of both models' times, the speedup with
    its interval, and the number of paired repeats it took. `workload(model, ids, decode_tokens)`
    times one model (PyTorch's `run_workload`; another runtime's, e.g. llama.cpp's, on the same
    prompts); `vocab_size` where the models are not PyTorch modules."""
    device = next(model.parameters()).device if isinstance(model, torch.nn.Module) else "cpu"
    rng = torch.Generator().manual_seed(seed)
    batches = sorted(set(prefill_batches) | ({1} if decode_tokens else set()))  # decoding follows a batch of one
    prompts = [torch.randint(0, vocab_size or dense.config.vocab_size, (b, prefill_tokens), generator=rng).to(device)
               for b in batches]
    wanted = [f"prefill_b{b}" for b in prefill_batches] + (["decode"] if decode_tokens else [])
    times: dict[str, dict[str, list[float]]] = {"dense": {k: [] for k in wanted}, "model": {k: [] for k in wanted}}
    for ids in prompts:  # warm-up: allocator, kernels, caches
        workload(dense, ids, decode_tokens)
        workload(model, ids, decode_tokens)
    for r in range(max_repeats):
        for ids in prompts:
            pair = [("dense", dense), ("model", model)]
            for name, m in pair if r % 2 == 0 else pair[::-1]:
                for key, seconds in workload(m, ids, decode_tokens).items():
                    if key in wanted:
                        times[name][key].append(seconds)
        result = {key: speedup_interval(times["dense"][key], times["model"][key], confidence, seed) for key in wanted}
        if r + 1 >= repeats and all((hi - lo) / 2 <= max_halfwidth * mid for mid, lo, hi in result.values()):
            break
    return {"repeats": r + 1, "measures": {
        key: {"model_s": float(np.median(times["model"][key])), "dense_s": float(np.median(times["dense"][key])),
              "speedup": mid, "low": lo, "high": hi} for key, (mid, lo, hi) in result.items()}}


def _size(model, context: int) -> dict[str, int]:
    return {"params": sum(p.numel() for p in model.parameters()), "flops_per_token": flops_per_token(model, context)}


def pair_row(result: dict[str, Any]) -> dict[str, Any]:
    """One efficiency.csv row from a pair's result: the model's own speed (prefill tokens/s, decode
    ms/token) and, `..._dense`, the dense model's in the same process (processes differ in speed:
    only the pair's ratio is comparable), each speedup with its interval and share of the
    FLOP-ideal, sizes against dense."""
    row = {k: result[k] for k in ("params", "flops_per_token", "peak_memory_mb", "process_baseline_mb", "repeats",
                                  "wall_s", "cpu_s")}
    row["params_ratio"] = result["params"] / result["dense"]["params"]
    row["flops_ratio"] = result["flops_per_token"] / result["dense"]["flops_per_token"]
    row["ideal_speedup"] = 1 / row["flops_ratio"]
    row.update(speed_columns(result["measures"], result["prefill_tokens"], row["ideal_speedup"]))
    return row


def speed_columns(measures: dict[str, dict[str, float]], prefill_tokens: int, ideal_speedup: float | None
                  ) -> dict[str, float]:
    """A pair's speeds as efficiency.csv columns: the model's own (prefill tokens/s, decode ms/token)
    and `..._dense` the dense model's, each speedup with its interval and share of the FLOP-ideal."""
    row = {}
    for key, m in measures.items():
        for model, seconds in (("", m["model_s"]), ("_dense", m["dense_s"])):
            if key == "decode":
                row[f"decode_ms_per_token{model}"] = 1000 * seconds
            else:
                row[f"{key}_tokens_per_s{model}"] = int(key.removeprefix("prefill_b")) * prefill_tokens / seconds
        row[f"{key}_speedup"], row[f"{key}_speedup_low"], row[f"{key}_speedup_high"] = m["speedup"], m["low"], m["high"]
        if ideal_speedup:
            row[f"{key}_vs_ideal"] = m["speedup"] / ideal_speedup
    return row


def run_fresh(module: str, *args: str) -> dict[str, Any]:
    """`python -m module args` in a fresh process that imports this very PruneBench (the one the
    caller imported, first on its path): its last line of output, as JSON."""
    import os
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])]))
    output = subprocess.run([sys.executable, "-m", module, *args], check=True, capture_output=True, text=True, env=env)
    return json.loads(output.stdout.splitlines()[-1])


def measure_pair(path: str, dense_path: str, threads: int, device: str = "cpu", **settings) -> dict[str, Any]:
    """`paired_speed` of the checkpoint at `path` against the dense one, in a fresh process whose
    peak memory, read before the dense model is loaded, is this model's alone."""
    start = time.perf_counter()
    result = run_fresh("prunebench.evaluation.efficiency", str(path), "--dense", str(dense_path), "--threads",
                       str(threads), "--device", device, "--settings", json.dumps(settings))
    return dict(result, wall_s=time.perf_counter() - start)


def _main() -> None:
    parser = argparse.ArgumentParser(description="Time one checkpoint against the dense model; prints one JSON line.")
    parser.add_argument("checkpoint")
    parser.add_argument("--dense", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--settings", default="{}")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = json.loads(args.settings)
    context = settings.get("prefill_tokens", 128)
    before = peak_memory_mb()
    model = load_pruned(args.checkpoint, device=args.device)
    for batch in settings.get("prefill_batches", [1]):  # the largest working set before reading the peak
        run_workload(model, torch.zeros(batch, context, dtype=torch.long, device=args.device),
                     settings.get("decode_tokens", 0))
    result = {**_size(model, context), "peak_memory_mb": peak_memory_mb(), "process_baseline_mb": before,
              "prefill_tokens": context}
    dense = load_pruned(args.dense, device=args.device)
    result["dense"] = _size(dense, context)
    result.update(paired_speed(dense, model, **settings))
    result["cpu_s"] = time.process_time()  # every thread of the pair's process: what the job costs elsewhere
    print(json.dumps(result))


if __name__ == "__main__":
    _main()
