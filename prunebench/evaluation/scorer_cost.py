"""What the shared-context scorer saves: CPU-seconds per document of every task, lm-eval's own HF
model against `SharedContextLM`, on the same requests in one process, with the largest
log-likelihood difference and how many `is_greedy` flags differ.

    python -m prunebench.evaluation.scorer_cost MODEL_DIR DATA_DIR OUT.csv [--docs 32] [--dtype bfloat16]

MODEL_DIR is a checkpoint (`resources/models/...`, or a pruned one), DATA_DIR the installed data
(`resources/data`). One thread, as the evaluation jobs run; the README's scorer table comes from it.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .zeroshot import _sample_indices, available_tasks, build_tasks, harness, task_config

__all__ = ["requests_of", "scorer_cost"]


def requests_of(task: str, data_root: str | Path, docs: int, seed: int = 0) -> list:
    """lm-eval's log-likelihood requests of `docs` seeded documents of `task`, as the evaluation
    draws them."""
    obj = build_tasks([task], data_root)[task]
    obj.build_all_requests(samples=_sample_indices(task_config(task)["metadata"]["docs"], docs, seed))
    return list(obj.instances)


def _cpu(fn):
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start


def scorer_cost(model, tokenizer, data_root: str | Path, docs: int, batch_size: int = 8,
                bos: str = "auto") -> pd.DataFrame:
    """Per task: documents, requests, CPU-s per document of each scorer, and their agreement."""
    rows = []
    stock = harness(model, tokenizer, batch_size, bos, scorer="lm-eval")
    shared = harness(model, tokenizer, batch_size, bos, scorer="shared-context")
    for task in available_tasks():
        requests = requests_of(task, data_root, docs)
        ref, ref_s = _cpu(lambda: stock.loglikelihood(requests, disable_tqdm=True))
        new, new_s = _cpu(lambda: shared.loglikelihood(requests, disable_tqdm=True))
        diff = np.abs(np.array([a[0] for a in ref]) - np.array([b[0] for b in new]))
        rows.append({"task": task, "docs": docs, "requests": len(requests),
                     "lm_eval_cpu_s_per_doc": ref_s / docs, "shared_cpu_s_per_doc": new_s / docs,
                     "speedup": ref_s / new_s, "max_abs_diff": float(diff.max()),
                     "greedy_differs": sum(a[1] != b[1] for a, b in zip(ref, new))})
    return pd.DataFrame(rows)


def main() -> None:
    from transformers import AutoTokenizer

    from ..pruning.checkpoint import load_pruned

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("out")
    parser.add_argument("--docs", type=int, default=32)
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_pruned(args.model).to(getattr(torch, args.dtype))
    table = scorer_cost(model, AutoTokenizer.from_pretrained(args.model), args.data, args.docs)
    table.to_csv(args.out, index=False, float_format="%.6g")
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
