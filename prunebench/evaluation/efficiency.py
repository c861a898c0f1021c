"""What pruning buys: parameters, analytical FLOPs per token, measured prefill throughput, decode
latency and peak memory, for each model against the dense one measured in the same process.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

import torch

from ..provenance import peak_memory_mb
from ..pruning.checkpoint import layer_shapes, load_pruned
from ..sources.models import head_dim_of

__all__ = ["flops_per_token", "measure", "measure_checkpoint", "compare"]


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


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.inference_mode()
def measure(model, prefill_batches=(1, 8), prefill_tokens: int = 128, decode_tokens: int = 32,
            repeats: int = 5) -> dict[str, Any]:
    """Prefill tokens/s per batch size, and decode ms/token (batch 1, KV cache, greedy)."""
    device = next(model.parameters()).device
    vocab = model.config.vocab_size
    out: dict[str, Any] = {"params": sum(p.numel() for p in model.parameters()),
                           "flops_per_token": flops_per_token(model, prefill_tokens)}
    for batch in prefill_batches:
        ids = torch.randint(0, vocab, (batch, prefill_tokens), device=device)
        seconds = _median_time(lambda: model(ids, use_cache=False), repeats)
        out[f"prefill_b{batch}_tokens_per_s"] = batch * prefill_tokens / seconds
    prompt = torch.randint(0, vocab, (1, prefill_tokens), device=device)
    generate = lambda: model.generate(prompt, max_new_tokens=decode_tokens, min_new_tokens=decode_tokens,  # noqa: E731
                                      do_sample=False, use_cache=True)
    prefill_only = _median_time(lambda: model(prompt, use_cache=True), repeats)
    out["decode_ms_per_token"] = 1000 * max(_median_time(generate, repeats) - prefill_only, 0) / decode_tokens
    return out


def compare(row: dict[str, Any], dense: dict[str, Any]) -> dict[str, Any]:
    """Ratios to the dense model: measured speedups next to the FLOP-ideal one."""
    out = dict(row)
    out["params_ratio"] = row["params"] / dense["params"]
    out["flops_ratio"] = row["flops_per_token"] / dense["flops_per_token"]
    out["ideal_speedup"] = dense["flops_per_token"] / row["flops_per_token"]
    for key in [k for k in row if k.startswith("prefill_")]:
        out[key.replace("_tokens_per_s", "_speedup")] = row[key] / dense[key]
    # A decode step below the timer's noise (tiny models) measures as 0 ms: no ratio, not a crash.
    resolved = row["decode_ms_per_token"] > 0 and dense["decode_ms_per_token"] > 0
    out["decode_speedup"] = dense["decode_ms_per_token"] / row["decode_ms_per_token"] if resolved else None
    for key in [k for k in out if k.endswith("_speedup") and k != "ideal_speedup"]:
        out[key.replace("_speedup", "_vs_ideal")] = None if out[key] is None else out[key] / out["ideal_speedup"]
    return out


def measure_checkpoint(path: str, threads: int, device: str = "cpu", **settings) -> dict[str, Any]:
    """`measure` in a fresh process, so that its peak memory is this model's alone."""
    cmd = [sys.executable, "-m", "prunebench.evaluation.efficiency", str(path), "--threads", str(threads), "--device", device,
           "--settings", json.dumps(settings)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])


def _main() -> None:
    parser = argparse.ArgumentParser(description="Measure one checkpoint; prints one JSON line.")
    parser.add_argument("checkpoint")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--settings", default="{}")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    before = peak_memory_mb()
    model = load_pruned(args.checkpoint, device=args.device)
    result = measure(model, **json.loads(args.settings))
    result["peak_memory_mb"] = peak_memory_mb()
    result["process_baseline_mb"] = before
    print(json.dumps(result))


if __name__ == "__main__":
    _main()
