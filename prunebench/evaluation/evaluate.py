"""The evaluation stage, the same for the dense, pruned and recovered models: perplexity on the
configured sets and zero-shot accuracy through lm-eval, in the configured dtype, with every
deviation from the papers' protocol (subsamples) written next to the numbers and every item's
outcome kept for paired comparisons.
"""
from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from ..provenance import Stopwatch
from ..sources.bos import encode, resolve_bos
from ..sources.datasets import PERPLEXITY, perplexity_text
from .perplexity import perplexity
from .zeroshot import evaluate_zeroshot

__all__ = ["evaluate", "zeroshot_average"]


def evaluate(model, tokenizer, settings: dict[str, Any], data_root, watch: Stopwatch | None = None,
             full_perplexity: bool = False, full_zeroshot: bool = False,
             bos: str = "auto") -> tuple[dict[str, Any], list[pd.DataFrame]]:
    """Run the configured evaluation; `settings` is the config's `evaluation` section, `bos` the
    model's BOS policy (prunebench.sources.bos). With `full_perplexity` / `full_zeroshot` (the dense
    model), perplexity also on every window of each test set / zero-shot on every document of each
    task, under "full" beside the subsample. Returns the metrics and the per-item tables (`items`).
    The model is cast to the evaluation's dtype first, the same for every model compared."""
    watch = watch or Stopwatch()
    ppl_cfg, zs_cfg = settings["perplexity"], settings["zeroshot"]
    policy = resolve_bos(bos, tokenizer, model.config.model_type)
    dtype = settings.get("dtype", "float32")
    model = model.to(getattr(torch, dtype))
    out: dict[str, Any] = {"dtype": dtype, "perplexity": {}, "zeroshot": {}, "deviations": []}
    items = []
    ppl_tokens = 0
    with watch("perplexity"):
        for name in ppl_cfg["datasets"]:
            ids = torch.tensor(encode(tokenizer, perplexity_text(name, data_root), policy))
            result = perplexity(model, ids, ppl_cfg["seqlen"], ppl_cfg["batch_size"], ppl_cfg.get("max_windows"),
                                name=name, full=full_perplexity, bos_token_id=tokenizer.bos_token_id,
                                prepend_bos=policy == "every-window", watch=watch)
            items.append(result.pop("items"))
            result["protocol"] = PERPLEXITY[name][2]
            out["perplexity"][name] = result
            evaluated = result.get("full", result)
            ppl_tokens += evaluated["windows"] * evaluated["seqlen"]
            if result["windows"] < result["windows_total"]:
                out["deviations"].append(f"{name} perplexity on {result['windows']} of {result['windows_total']} "
                                         f"windows (evenly spaced)")
    if zs_cfg["tasks"]:
        with watch("zeroshot"):
            out["zeroshot"] = evaluate_zeroshot(model, tokenizer, zs_cfg["tasks"], data_root,
                                                limit=zs_cfg.get("limit"), seed=zs_cfg["seed"],
                                                batch_size=zs_cfg["batch_size"], bos=policy,
                                                scorer=zs_cfg["scorer"])
        items += [r.pop("items") for r in out["zeroshot"].values()]
        if full_zeroshot:
            with watch("zeroshot_full"):
                full = evaluate_zeroshot(model, tokenizer, zs_cfg["tasks"], data_root, seed=zs_cfg["seed"],
                                         batch_size=zs_cfg["batch_size"], bos=policy, scorer=zs_cfg["scorer"])
            for task, r in full.items():
                out["zeroshot"][task]["full"] = {k: r[k] for k in ("value", "stderr", "docs")}
        out["deviations"] += [f"{t} zero-shot on {r['docs']} of {r['docs_total']} documents (seeded random subset)"
                              for t, r in out["zeroshot"].items() if r["docs"] < r["docs_total"]]
        out["average"] = zeroshot_average(out["zeroshot"])
    out["bos"] = _bos_record(bos, policy, out)
    # The forward passes' own speed comes from the perplexity pass: timing extra forward passes on
    # random ids cost each evaluation three batches' worth of compute for a number no report reads.
    out["throughput"] = {
        "perplexity_tokens_per_s": _rate(ppl_tokens, watch.times["perplexity"]),
        "raw_forward_tokens_per_s": _rate(ppl_tokens, watch.times.get("forward", 0)),
    }
    out["wall_s"], out["cpu_s"] = dict(watch.times), dict(watch.cpu)
    return out, items


def _rate(tokens: int, seconds: float) -> float | None:
    """Tokens per second; None where nothing was evaluated or too fast for the stopwatch (ms)."""
    return tokens / seconds if tokens and seconds else None


def _bos_record(setting: str, policy: str, results: dict[str, Any]) -> dict[str, Any]:
    """The BOS protocol of one evaluation: the config's setting, the policy it resolved to, and what
    was run, read back from the perplexity windows and from lm-eval's harness."""
    windows = " / ".join(sorted({r["bos"] for r in results["perplexity"].values()}))
    harness = [r["bos"] for r in results["zeroshot"].values()]
    return {"setting": setting, "policy": policy, "perplexity": windows or None,
            "zeroshot": harness[0] if harness else None}


def zeroshot_average(results: dict[str, dict]) -> float:
    """The unweighted mean of the reported metric over the tasks (the papers' "Average")."""
    return sum(r["value"] for r in results.values()) / len(results)
