"""Zero-shot evaluation through lm-eval with the local task YAMLs in `tasks/`.

Each YAML is an ordinary lm-eval task config reading a file of `resources/data/` (its
`data_files` are relative to the data folder and resolved here). Its `metadata` says which
metric the papers report (`report`), how many documents the split has (`docs`) and what guessing
scores (`chance`: the mean of 1 / choices over the split); nothing here special-cases a task. Every document's outcome comes from lm-eval's own sample log.
"""
from __future__ import annotations

import copy
import logging
import random
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import yaml

from ..sources.bos import adds_bos, read_back, resolve_bos
from .items import items_frame

__all__ = ["TASKS_DIR", "available_tasks", "task_config", "build_tasks", "check_limits", "harness",
           "harness_bos", "evaluate_zeroshot"]

TASKS_DIR = Path(__file__).parent / "tasks"


def available_tasks() -> list[str]:
    return sorted(p.stem for p in TASKS_DIR.glob("*.yaml"))


def task_config(name: str, data_root: str | Path | None = None) -> dict[str, Any]:
    """The lm-eval config of task `name`, with data files resolved under `data_root`."""
    if name not in available_tasks():
        raise ValueError(f"unknown zero-shot task {name!r}; allowed: {', '.join(available_tasks())}")
    cfg = yaml.safe_load((TASKS_DIR / f"{name}.yaml").read_text())
    if data_root is not None:
        files = cfg["dataset_kwargs"]["data_files"]
        cfg["dataset_kwargs"]["data_files"] = {k: str(Path(data_root) / v) for k, v in files.items()}
    return cfg


def check_limits(tasks: list[str], limit: int | dict[str, int | None] | None) -> dict[str, int | None]:
    """Per-task document limits, validated against each split's size (None = all documents)."""
    per_task = limit if isinstance(limit, dict) else {t: limit for t in tasks}
    unknown = set(per_task) - set(tasks)
    if unknown:
        raise ValueError(f"zero-shot limit names tasks not evaluated: {sorted(unknown)}; tasks: {tasks}")
    out = {}
    for task in tasks:
        n = per_task.get(task)
        size = task_config(task)["metadata"]["docs"]
        if n is not None and not 0 < n <= size:
            raise ValueError(f"zero-shot limit {n} for {task!r} is outside 1..{size} (the task has {size} documents)")
        out[task] = n
    return out


def _task_manager():
    from lm_eval.tasks import TaskManager

    # Only our YAMLs: indexing lm-eval's own thousands of task files takes ~10 s per call.
    return TaskManager(include_defaults=False)


def build_tasks(tasks: list[str], data_root: str | Path) -> dict[str, Any]:
    """lm-eval Task objects keyed by our task names."""
    loaded = _task_manager().load([task_config(t, data_root) for t in tasks])["tasks"]
    return {t: loaded[task_config(t)["task"]] for t in tasks}


def _sample_indices(size: int, n: int | None, seed: int) -> list[int]:
    # A seeded random subset is an unbiased estimate of the full split (the first n documents
    # of a file need not be).
    return list(range(size)) if n is None else sorted(random.Random(seed).sample(range(size), n))


Scorer = Literal["shared-context", "lm-eval"]


def harness(model, tokenizer, batch_size: int, bos: str, scorer: Scorer = "shared-context"):
    """lm-eval's HF model under the BOS policy `bos`: every request begins with BOS under
    every-window (lm-eval's `add_bos_token`, on a tokenizer copy that adds it if this one does not);
    no request does under text-start (as in the papers' lm-eval 0.3) and none. `scorer` picks
    lm-eval's own log-likelihood loop or the shared-context one (`scorer`: the same numbers, each
    context run once and the head only where a log-likelihood is read)."""
    from lm_eval.models.huggingface import HFLM

    from .scorer import SharedContextLM

    add = resolve_bos(bos, tokenizer, model.config.model_type) == "every-window"
    if add and not adds_bos(tokenizer):
        tokenizer = copy.deepcopy(tokenizer)
        tokenizer.add_bos_token = True
    # log-softmax in float32 whatever the model's dtype: a bfloat16 model's log-probabilities
    # would otherwise be rounded to 3 significant digits before choices are compared
    lm_class = SharedContextLM if scorer == "shared-context" else HFLM
    return lm_class(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, add_bos_token=add,
                    softmax_dtype=torch.float32)


def harness_bos(lm) -> dict[str, Any]:
    """What the harness does, read back from the object: its `add_bos_token` setting and whether a
    request's tokens (encoded by the harness itself) begin with BOS."""
    first = lm.tok_encode("Question: is the sky blue?")[:1]
    return {"add_bos_token": lm.add_bos_token, "requests": read_back(first, lm.tokenizer.bos_token_id)}


@torch.inference_mode()
def evaluate_zeroshot(model, tokenizer, tasks: list[str], data_root: str | Path, *,
                      limit: int | dict[str, int | None] | None = None, seed: int = 0,
                      batch_size: int = 16, bos: str = "auto", scorer: Scorer = "shared-context") -> dict[str, Any]:
    """Score each task zero-shot under the BOS policy `bos`; returns per task the reported
    metric, its stderr, all metrics, the harness's BOS setting read back (`harness_bos`) and,
    under "items", every document's outcome (see `items`)."""
    import lm_eval

    limits = check_limits(tasks, limit)
    objs = build_tasks(tasks, data_root)
    samples = {objs[t].config.task: _sample_indices(task_config(t)["metadata"]["docs"], limits[t], seed)
               for t in tasks}
    lm = harness(model, tokenizer, batch_size, bos, scorer)
    lm_bos = harness_bos(lm)
    logging.getLogger("lm-eval").setLevel(logging.WARNING)
    out = lm_eval.simple_evaluate(model=lm, tasks=list(objs.values()), num_fewshot=0, samples=samples,
                                  bootstrap_iters=100, log_samples=True, task_manager=_task_manager(),
                                  random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed)
    results = {}
    for task in tasks:
        cfg = task_config(task)
        raw = out["results"][cfg["task"]]
        metric = cfg["metadata"]["report"]
        results[task] = {
            "metric": metric,
            "value": raw[f"{metric},none"],
            "stderr": raw.get(f"{metric}_stderr,none"),
            "docs": len(samples[cfg["task"]]),
            "docs_total": cfg["metadata"]["docs"],
            "chance": cfg["metadata"]["chance"],
            "all": {k.split(",")[0]: v for k, v in raw.items() if k.endswith(",none")},
            "bos": lm_bos,
            "items": _items(task, objs[task], out["samples"][cfg["task"]], metric),
        }
    return results


def _items(task: str, obj, logged: list[dict], metric: str) -> pd.DataFrame:
    """Each logged document: its index in the split, lm-eval's correctness under `metric`, the gold
    answer as lm-eval scores it, and the choice `metric` picks from the logged loglikelihoods
    (acc_norm: divided by the choice's length in characters, as lm-eval does)."""
    rows = []
    for sample in sorted(logged, key=lambda s: s["doc_id"]):
        doc = sample["doc"]
        lls = np.array([resp[0] for resp in sample["filtered_resps"]])
        if metric == "acc_norm":
            lls = lls / np.array([len(c) for c in obj.doc_to_choice(doc)], dtype=float)
        gold = obj.doc_to_text(doc) if obj.multiple_input else sample["target"]
        chosen = int(np.argmax(lls))
        if (chosen == gold) != bool(sample[metric]):
            raise RuntimeError(f"{task} document {sample['doc_id']}: choice {chosen} against gold {gold!r} "
                               f"disagrees with lm-eval's {metric} {sample[metric]}")
        rows.append((sample["doc_id"], float(sample[metric]), int(gold), chosen))
    index, value, gold, chosen = zip(*rows)
    return items_frame("zeroshot", task, index, value, gold, chosen)
