"""The evaluation stage, the same for the dense, pruned and recovered models: perplexity on the
configured sets and zero-shot accuracy through lm-eval, with every deviation from the papers'
protocol (subsamples) written next to the numbers.
"""
from __future__ import annotations

import time
from typing import Any

import torch

from ..provenance import Stopwatch
from ..sources.bos import encode, resolve_bos
from ..sources.datasets import PERPLEXITY, perplexity_text
from .perplexity import perplexity
from .zeroshot import evaluate_zeroshot

__all__ = ["evaluate", "raw_forward_throughput", "zeroshot_average"]


def evaluate(model, tokenizer, settings: dict[str, Any], data_root, watch: Stopwatch | None = None,
             full_perplexity: bool = False, bos: str = "auto") -> dict[str, Any]:
    """Run the configured evaluation; `settings` is the config's `evaluation` section, `bos` the
    model's BOS policy (prunebench.sources.bos). With `full_perplexity` (the dense model), perplexity
    also on every window of each test set."""
    watch = watch or Stopwatch()
    ppl_cfg, zs_cfg = settings["perplexity"], settings["zeroshot"]
    policy = resolve_bos(bos, tokenizer)
    out: dict[str, Any] = {"perplexity": {}, "zeroshot": {}, "deviations": []}
    ppl_tokens = 0
    with watch("perplexity"):
        for name in ppl_cfg["datasets"]:
            ids = torch.tensor(encode(tokenizer, perplexity_text(name, data_root), policy))
            result = perplexity(model, ids, ppl_cfg["seqlen"], ppl_cfg["batch_size"], ppl_cfg.get("max_windows"),
                                desc=name, full=full_perplexity, bos_token_id=tokenizer.bos_token_id,
                                prepend_bos=policy == "every-window")
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
                                                batch_size=zs_cfg["batch_size"], bos=policy)
        out["deviations"] += [f"{t} zero-shot on {r['docs']} of {r['docs_total']} documents (seeded random subset)"
                              for t, r in out["zeroshot"].items() if r["docs"] < r["docs_total"]]
        out["average"] = zeroshot_average(out["zeroshot"])
    out["bos"] = _bos_record(bos, policy, out)
    out["throughput"] = {
        "perplexity_tokens_per_s": ppl_tokens / watch.times["perplexity"] if ppl_tokens else None,
        "raw_forward_tokens_per_s": raw_forward_throughput(model, ppl_cfg["seqlen"], ppl_cfg["batch_size"]),
    }
    out["wall_s"] = dict(watch.times)
    return out


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


@torch.inference_mode()
def raw_forward_throughput(model, seqlen: int = 128, batch_size: int = 8, seconds: float = 1.0) -> float:
    """Tokens/s of bare forward passes on random ids: the ceiling the evaluation is compared with."""
    device = next(model.parameters()).device
    ids = torch.randint(0, model.config.vocab_size, (batch_size, seqlen), device=device)
    model(ids)  # warm-up
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds or n < 2:
        model(ids)
        n += 1
    return n * batch_size * seqlen / (time.perf_counter() - start)
