"""Perplexity as the seeds measure it: the test text tokenized once, cut into non-overlapping
windows of `seqlen` tokens, ppl = exp(mean next-token NLL over every predicted token). Under the
every-window BOS protocol each window is preceded by BOS, so all its `seqlen` tokens are predicted.
"""
from __future__ import annotations

import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..sources.bos import read_back
from .items import items_frame

__all__ = ["window_starts", "window_nll", "window_summary", "perplexity"]


def window_starts(n_tokens: int, seqlen: int, max_windows: int | None = None) -> list[int]:
    """Start offsets of the non-overlapping windows (the tail shorter than `seqlen` is dropped).

    With `max_windows`, an evenly spaced subset: it covers the whole text rather than its start.
    """
    n = n_tokens // seqlen
    if max_windows is None or max_windows >= n:
        return [i * seqlen for i in range(n)]
    return [(i * n // max_windows) * seqlen for i in range(max_windows)]


@torch.inference_mode()
def window_nll(model, windows: torch.Tensor) -> torch.Tensor:
    """Mean NLL of each window's predicted tokens (positions 1..seqlen-1), float64 [n]."""
    logits = model(windows).logits[:, :-1].float()
    nll = F.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten(), reduction="none")
    return nll.view(windows.shape[0], -1).mean(dim=1).double()


def perplexity(model, token_ids: torch.Tensor, seqlen: int = 128, batch_size: int = 8,
               max_windows: int | None = None, name: str = "ppl", full: bool = False,
               bos_token_id: int | None = None, prepend_bos: bool = False, watch=None) -> dict:
    """ppl of `token_ids` (1-D) plus the standard error of the mean window NLL and the window counts.
    Every window predicts the same number of tokens, so the mean of window means is the mean token NLL.
    With `full`, every window is evaluated and the result, still that of the `max_windows` subsample
    (its windows are among them), carries the full test set's under "full": one pass gives both.
    With `prepend_bos` every window is preceded by `bos_token_id`; "bos" records the protocol read
    back from the windows evaluated (see `prunebench.sources.bos`).
    Under "items": every evaluated window's mean NLL, named by its first token's offset (set: `name`).
    `watch` (a provenance.Stopwatch) times the model's forward passes as "forward".
    """
    token_ids = token_ids.flatten()
    n_tokens = token_ids.numel()
    subsample = window_starts(n_tokens, seqlen, max_windows)
    starts = window_starts(n_tokens, seqlen) if full else subsample
    if not starts:
        raise ValueError(f"text of {n_tokens} tokens is shorter than one window of {seqlen}")
    device = next(model.parameters()).device
    nlls, first_tokens = [], []
    for i in tqdm(range(0, len(starts), batch_size), desc=name, mininterval=10):
        batch = torch.stack([token_ids[s:s + seqlen] for s in starts[i:i + batch_size]])
        if prepend_bos:
            batch = torch.cat([torch.full((len(batch), 1), bos_token_id, dtype=batch.dtype), batch], dim=1)
        first_tokens += batch[:, 0].tolist()
        with watch("forward") if watch else nullcontext():
            nlls.append(window_nll(model, batch.to(device)).cpu())
    nll = torch.cat(nlls)
    result = window_summary(nll, seqlen, n_tokens)
    if len(subsample) < len(starts):  # a full pass: the subsample's numbers, the full set's under "full"
        result = {**window_summary(nll[[s // seqlen for s in subsample]], seqlen, n_tokens), "full": result}
    result["bos"] = read_back(first_tokens, bos_token_id)
    result["items"] = items_frame("perplexity", name, starts, nll.numpy())
    return result


def window_summary(nll: torch.Tensor, seqlen: int, n_tokens: int) -> dict:
    """ppl of the windows' mean NLLs `nll` [n] (one set of `n_tokens`), with delta-method errors."""
    mean = nll.mean().item()
    sem = nll.std().item() / math.sqrt(len(nll)) if len(nll) > 1 else float("nan")
    return {
        "ppl": math.exp(mean),
        "ppl_stderr": math.exp(mean) * sem,  # delta method
        "nll": mean,
        "nll_stderr": sem,
        "seqlen": seqlen,
        "windows": len(nll),
        "windows_total": n_tokens // seqlen,
        "tokens": n_tokens,
    }
