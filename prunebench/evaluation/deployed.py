"""An exported GGUF in llama.cpp, the CPU runtime people deploy on: its perplexity on the suite's own
windows (the same windows as PyTorch's, so the two pair by window), and its speed against the dense
model of the same format, paired and interleaved exactly as the PyTorch benchmark (`paired_speed`).

The speed workloads are PyTorch's: a prefill of `batch` sequences of `prefill_tokens` tokens into an
empty KV cache (one llama.cpp batch, a sequence id per row), then, after a batch of one, greedy
decode steps of one token each.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..export.llamacpp import open_model, window_nll
from .efficiency import paired_speed, run_fresh
from .items import items_frame
from .perplexity import window_starts, window_summary

__all__ = ["llamacpp_perplexity", "LlamaCppRunner", "measure_gguf_pair"]


def llamacpp_perplexity(gguf: str | Path, token_ids: torch.Tensor, seqlen: int, max_windows: int | None,
                        name: str, threads: int, bos_token_id: int | None = None,
                        prepend_bos: bool = False) -> dict[str, Any]:
    """`perplexity`'s result, computed by llama.cpp from the GGUF: the same windows (evenly spaced,
    BOS as the model's policy), each window's mean next-token NLL under "items" (set: `name`)."""
    token_ids = token_ids.flatten()
    llm = open_model(gguf, n_threads=threads, n_ctx=seqlen + 1)
    starts = window_starts(token_ids.numel(), seqlen, max_windows)
    nll = []
    for start in tqdm(starts, desc=f"{name} (llama.cpp)", mininterval=10):
        window = ([bos_token_id] if prepend_bos else []) + token_ids[start:start + seqlen].tolist()
        nll.append(float(np.mean(window_nll(llm, window))))
    llm.close()
    result = window_summary(torch.tensor(nll, dtype=torch.float64), seqlen, token_ids.numel())
    result["items"] = items_frame("perplexity", name, starts, nll)
    return result


class LlamaCppRunner:
    """One GGUF in llama.cpp with a context for up to `max_batch` sequences of `tokens` prompt and
    `decode_tokens` generated tokens; `__call__(ids, decode_tokens)` is `paired_speed`'s workload."""

    def __init__(self, path: str | Path, threads: int, max_batch: int, tokens: int, decode_tokens: int,
                 flash_attn: bool = True):
        import llama_cpp
        from llama_cpp import _internals

        self.llm = open_model(path, n_threads=threads, n_ctx=tokens + decode_tokens + 1, flash_attn=flash_attn)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = max_batch * (tokens + decode_tokens + 1)
        params.n_batch = params.n_ubatch = max_batch * tokens
        params.n_seq_max = max_batch
        params.n_threads = params.n_threads_batch = threads
        params.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn
                                  else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        self.ctx = _internals.LlamaContext(model=self.llm._model, params=params, verbose=False)
        self.batch = _internals.LlamaBatch(n_tokens=max_batch * tokens, embd=0, n_seq_max=max_batch, verbose=False)
        self.n_vocab = self.llm.n_vocab()

    def _next_token(self, i: int) -> int:
        logits = np.ctypeslib.as_array(self.ctx.get_logits_ith(i), shape=(self.n_vocab,))
        return int(logits.argmax())

    def __call__(self, ids: torch.Tensor, decode_tokens: int) -> dict[str, float]:
        self.ctx.kv_cache_clear()
        self.batch.reset()
        for seq, row in enumerate(ids.tolist()):
            self.batch.add_sequence(row, seq, logits_all=False)
        start = time.perf_counter()
        self.ctx.decode(self.batch)
        times = {f"prefill_b{len(ids)}": time.perf_counter() - start}
        if len(ids) == 1 and decode_tokens:
            position, token = ids.shape[1], self._next_token(-1)
            start = time.perf_counter()
            for _ in range(decode_tokens):
                self.batch.set_batch([token], n_past=position, logits_all=False)
                self.ctx.decode(self.batch)
                position, token = position + 1, self._next_token(-1)
            times["decode"] = (time.perf_counter() - start) / decode_tokens
        return times


def measure_gguf_pair(path: str | Path, dense_path: str | Path, threads: int, **settings) -> dict[str, Any]:
    """`paired_speed` of the GGUF at `path` against the dense GGUF of the same format in llama.cpp,
    in a fresh process (as the PyTorch pairs), with both files' sizes."""
    start = time.perf_counter()
    result = run_fresh("prunebench.evaluation.deployed", str(path), "--dense", str(dense_path), "--threads",
                       str(threads), "--settings", json.dumps(settings))
    return dict(result, wall_s=time.perf_counter() - start, file_mb=Path(path).stat().st_size / 2**20,
                dense_file_mb=Path(dense_path).stat().st_size / 2**20)


def _main() -> None:
    parser = argparse.ArgumentParser(description="Time one GGUF against the dense one in llama.cpp; prints one "
                                                 "JSON line.")
    parser.add_argument("gguf")
    parser.add_argument("--dense", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--settings", default="{}")
    args = parser.parse_args()
    settings = json.loads(args.settings)
    batches = settings.get("prefill_batches", [1])
    shape = dict(threads=args.threads, max_batch=max(batches), tokens=settings.get("prefill_tokens", 128),
                 decode_tokens=settings.get("decode_tokens", 0))
    model, dense = LlamaCppRunner(args.gguf, **shape), LlamaCppRunner(args.dense, **shape)
    if model.n_vocab != dense.n_vocab:
        raise ValueError(f"{args.gguf} has {model.n_vocab} tokens, the dense {args.dense} {dense.n_vocab}")
    result = paired_speed(dense, model, workload=lambda runner, ids, n: runner(ids, n), vocab_size=model.n_vocab,
                          **settings)
    result["cpu_s"] = time.process_time()
    print(json.dumps(result))


if __name__ == "__main__":
    _main()
